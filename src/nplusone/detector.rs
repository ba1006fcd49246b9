//! One stream of statements (a session's or a trace's): the last few fingerprints, each with the times of its last executions.

use super::flow::{Link, Parents, Rows};
use super::registry::{Finding, NewBurst};
use super::{Class, Kind, Origin, Registry, Settings, Statement};
use std::sync::Arc;
use std::time::Instant;

/// Fingerprints tracked per stream; the least recently executed is forgotten beyond this.
/// Enough for a parent and several children interleaved in one loop.
const SLOTS: usize = 8;

/// One execution in the stream: (fingerprint, sequence number).
type Mark = (u64, u64);

/// A burst just crossed the threshold: what the session logs and tells its client.
#[derive(Clone, Debug)]
pub struct Detection {
    pub kind: Kind,
    pub fingerprint: u64,
    pub query: Arc<str>,
    /// Fingerprint and normalized text of the statement before the run.
    pub parent: Option<(u64, Arc<str>)>,
    /// Executions in the burst so far (the threshold, at detection).
    pub count: u64,
    pub total_us: u64,
    /// From the first to the last execution of the burst so far.
    pub span_ms: u64,
    pub suggestion: Arc<str>,
}

/// A session's or a trace's recent statements. Owned by its session (no lock) or by its trace's
/// shard; the slots are allocated on first use and reused after, so a statement allocates nothing.
#[derive(Default)]
pub struct Stream {
    epoch: Option<Instant>,
    seq: u64,
    last: Option<Mark>,
    /// The most recent statement with another fingerprint than `last`.
    before_last: Option<Mark>,
    slots: Vec<Slot>,
    /// Hashed values of recent multi-row results, the possible parents of a loop.
    parents: Parents,
}

struct Slot {
    fingerprint: u64,
    query: Arc<str>,
    /// 0 while the slot has no execution of its fingerprint yet.
    last_seq: u64,
    last_ms: u64,
    run: Run,
    /// Which parent's rows this statement's parameters have been walking.
    link: Link,
    times: Ring,
}

/// The executions of one fingerprint with no gap longer than the window between them.
struct Run {
    /// The statement executed just before the run's first execution.
    pred: Option<Mark>,
    last_params: u64,
    /// Executions in a row (of this fingerprint) with the same parameters.
    same_params: u32,
    /// Executions in a row with no other statement between them.
    back_to_back: u32,
    /// Executions in the run the result cache answered.
    cached: u64,
    burst: Option<Burst>,
}

impl Run {
    fn new(pred: Option<Mark>) -> Run {
        Run {
            pred,
            last_params: 0,
            same_params: 0,
            back_to_back: 0,
            cached: 0,
            burst: None,
        }
    }
}

struct Burst {
    kind: Kind,
    /// For N+1: the parent, whose next execution ends the burst (a new loop begins).
    parent: Option<Mark>,
    count: u64,
    finding: Arc<Finding>,
}

/// Times (ms since the stream's epoch, wrapping; spans are bounded by threshold × window, far
/// below 2^32 ms) and durations (µs, saturating) of a fingerprint's last `threshold` executions.
#[derive(Default)]
struct Ring {
    at: Vec<(u32, u32)>,
    head: usize,
}

impl Ring {
    fn push(&mut self, ms: u64, us: u64, cap: usize) {
        let e = (ms as u32, u32::try_from(us).unwrap_or(u32::MAX));
        if self.at.len() < cap {
            if self.at.capacity() == 0 {
                self.at.reserve_exact(cap);
            }
            self.at.push(e);
        } else {
            self.at[self.head] = e;
            self.head = (self.head + 1) % cap;
        }
    }

    fn len(&self) -> usize {
        self.at.len()
    }

    /// The oldest time kept; with a full ring, the first of the last `cap` executions.
    fn oldest_ms(&self) -> u32 {
        self.at.get(self.head).map_or(0, |e| e.0)
    }

    fn total_us(&self) -> u64 {
        self.at.iter().map(|e| u64::from(e.1)).sum()
    }

    fn clear(&mut self) {
        self.at.clear();
        self.head = 0;
    }
}

impl Stream {
    /// Feeds one executed statement, with its result's hashed values when it returned rows;
    /// returns the burst it completes, if any.
    pub fn observe(
        &mut self,
        now: Instant,
        s: &Statement<'_>,
        result: Option<Rows>,
        settings: &Settings,
        registry: &Registry,
        origin: Origin<'_>,
    ) -> Option<Detection> {
        let epoch = *self.epoch.get_or_insert(now);
        let now_ms = now.saturating_duration_since(epoch).as_millis() as u64;
        let window = u64::from(settings.window_ms);
        let threshold = settings.threshold.max(1) as usize;
        self.seq += 1;
        let seq = self.seq;
        let back_to_back = matches!(self.last, Some((fp, _)) if fp == s.fingerprint);
        let pred = if back_to_back {
            self.before_last
        } else {
            self.last
        };
        if !back_to_back {
            self.before_last = self.last;
        }
        self.last = Some((s.fingerprint, seq));

        let i = self.slot_for(s);
        let parent_ran = match &self.slots[i].run.burst {
            Some(Burst {
                parent: Some((fp, at)),
                ..
            }) => self.ran_since(*fp, *at) || self.parents.ran_again(*fp, *at),
            _ => false,
        };
        if s.class == Class::Read {
            self.slots[i]
                .link
                .step(&self.parents, s.fingerprint, s.values);
        }
        // This execution's rows replace its earlier ones as a possible parent.
        match result {
            Some(rows) if rows.is_parent() => {
                self.parents.keep(s.fingerprint, seq, s.normalized, rows)
            }
            _ => self.parents.forget(s.fingerprint),
        }
        let sl = &mut self.slots[i];
        let stale = sl.last_seq == 0 || now_ms.saturating_sub(sl.last_ms) > window;
        let same = !stale && sl.run.same_params > 0 && sl.run.last_params == s.params;
        let goes_on = match &sl.run.burst {
            Some(b) if !stale && !parent_ran => match b.kind {
                Kind::NPlusOne => true,
                Kind::RepeatedIdentical => same,
                Kind::BatchableWrites => back_to_back,
            },
            _ => false,
        };
        let reset = stale || (sl.run.burst.is_some() && !goes_on);
        if reset {
            sl.run = Run::new(pred);
            sl.times.clear();
        }
        sl.run.same_params = if same && !reset {
            sl.run.same_params.saturating_add(1)
        } else {
            1
        };
        sl.run.back_to_back = if back_to_back && !reset {
            sl.run.back_to_back.saturating_add(1)
        } else {
            1
        };
        sl.run.last_params = s.params;
        sl.run.cached += u64::from(s.cached);
        sl.last_seq = seq;
        sl.last_ms = now_ms;
        sl.times.push(now_ms, s.duration_us, threshold);
        if let Some(b) = &mut sl.run.burst {
            b.count += 1;
            b.finding.grow(b.count, s.duration_us, s.cached);
            return None;
        }

        if sl.times.len() < threshold {
            return None;
        }
        let span_ms = u64::from((now_ms as u32).wrapping_sub(sl.times.oldest_ms()));
        if span_ms > window {
            return None;
        }
        // A read is a loop only when its values walked a parent's rows, execution after
        // execution, at least `threshold` times: timing alone cannot tell a loop from
        // independent lookups that follow a list query.
        let confirmed = match s.class {
            Class::Read => sl.link.confirmed(threshold as u32),
            _ => None,
        };
        let kind = if sl.run.same_params as usize >= threshold {
            if !settings.repeated_identical {
                return None;
            }
            Kind::RepeatedIdentical
        } else {
            match s.class {
                Class::Read if confirmed.is_some() => Kind::NPlusOne,
                Class::Write
                    if settings.batchable_writes && sl.run.back_to_back as usize >= threshold =>
                {
                    Kind::BatchableWrites
                }
                _ => return None,
            }
        };
        let count = threshold as u64;
        let total_us = sl.times.total_us();
        let cached = sl.run.cached.min(count);
        let (parent, parent_query) = match kind {
            Kind::NPlusOne => {
                let fp = sl.link.parent_fingerprint;
                let q = sl.link.parent_query.clone();
                (Some((fp, sl.link.parent_seq)), q.map(|q| (fp, q)))
            }
            _ => {
                let run_pred = sl.run.pred;
                let parent = run_pred.filter(|(fp, _)| self.find(*fp).is_some());
                let q = parent
                    .and_then(|(fp, _)| self.find(fp).map(|j| (fp, self.slots[j].query.clone())));
                (None, q)
            }
        };
        let sl = &mut self.slots[i];
        let query = sl.query.clone();
        let finding = registry.burst(
            &NewBurst {
                kind,
                fingerprint: s.fingerprint,
                query: &query,
                parent: parent_query.as_ref(),
                flow: confirmed.map(|p| (p.param as usize, p.column as usize)),
                cache: s.cache,
                count,
                cached,
                total_us,
            },
            origin,
        );
        let suggestion = finding.suggestion.clone();
        sl.run.burst = Some(Burst {
            kind,
            parent,
            count,
            finding,
        });
        Some(Detection {
            kind,
            fingerprint: s.fingerprint,
            query,
            parent: parent_query,
            count,
            total_us,
            span_ms,
            suggestion,
        })
    }

    /// Some recent result may be the parent of a loop.
    pub fn has_parents(&self) -> bool {
        !self.parents.is_empty()
    }

    /// Drops the hashed results and the links into them (detection was turned off).
    pub fn forget_results(&mut self) {
        self.parents.clear();
        for s in &mut self.slots {
            s.link.clear();
        }
    }

    fn find(&self, fingerprint: u64) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.fingerprint == fingerprint && s.last_seq != 0)
    }

    /// Whether the statement at `mark` has run again since.
    fn ran_since(&self, fingerprint: u64, at: u64) -> bool {
        self.find(fingerprint)
            .is_some_and(|j| self.slots[j].last_seq != at)
    }

    /// The slot for `s`'s fingerprint, taking the least recently executed one when all are used.
    fn slot_for(&mut self, s: &Statement<'_>) -> usize {
        if let Some(i) = self
            .slots
            .iter()
            .position(|x| x.fingerprint == s.fingerprint)
        {
            return i;
        }
        let fresh = |times| Slot {
            fingerprint: s.fingerprint,
            query: s.normalized.clone(),
            last_seq: 0,
            last_ms: 0,
            run: Run::new(None),
            link: Link::default(),
            times,
        };
        if self.slots.len() < SLOTS {
            // Grown by doubling up to SLOTS, not reserved whole: most clients run a handful of
            // statements, and each slot is a few hundred bytes held for the client's life.
            if self.slots.len() == self.slots.capacity() {
                let want = (self.slots.capacity() * 2).clamp(1, SLOTS);
                self.slots.reserve_exact(want - self.slots.len());
            }
            self.slots.push(fresh(Ring::default()));
            return self.slots.len() - 1;
        }
        let (i, _) = self
            .slots
            .iter()
            .enumerate()
            .min_by_key(|(_, x)| x.last_seq)
            .unwrap_or((0, &self.slots[0]));
        let mut times = std::mem::take(&mut self.slots[i].times);
        times.clear();
        self.slots[i] = fresh(times);
        i
    }
}

#[cfg(test)]
impl Stream {
    pub(super) fn slot_count(&self) -> usize {
        self.slots.len()
    }
}
