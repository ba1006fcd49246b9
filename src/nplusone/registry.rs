//! The findings: one entry per (kind, fingerprint, parent of a loop, database), sharded and bounded, counted live while a burst grows.

use super::suggest::{self, CacheUse, FlowNames};
use super::{columns, Kind, Origin};
use crate::stats::unix_now;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const SHARDS: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    kind: Kind,
    fingerprint: u64,
    parent: u64,
    database: Arc<str>,
}

/// One finding. Counters are atomics so that a growing burst updates it without a lock.
pub struct Finding {
    kind: Kind,
    fingerprint: u64,
    database: Arc<str>,
    query: Arc<str>,
    parent: Option<(u64, Arc<str>)>,
    /// For a loop confirmed by data flow: its two columns, named.
    flow: Option<FlowNames>,
    cache: CacheUse,
    pub suggestion: Arc<str>,
    /// (user, application_name) of the last burst.
    who: Mutex<(String, String)>,
    occurrences: AtomicU64,
    last_count: AtomicU64,
    max_count: AtomicU64,
    total_us: AtomicU64,
    /// Executions in all bursts, and those of them the result cache answered.
    executions: AtomicU64,
    cached: AtomicU64,
    first_seen: f64,
    /// f64 bits of Unix seconds.
    last_seen: AtomicU64,
}

impl Finding {
    /// One more execution in the current burst, which now has `count`.
    pub fn grow(&self, count: u64, us: u64, cached: bool) {
        self.executions.fetch_add(1, Ordering::Relaxed);
        if cached {
            self.cached.fetch_add(1, Ordering::Relaxed);
        }
        self.last_count.store(count, Ordering::Relaxed);
        self.max_count.fetch_max(count, Ordering::Relaxed);
        self.total_us.fetch_add(us, Ordering::Relaxed);
        self.last_seen
            .store(unix_now().to_bits(), Ordering::Relaxed);
    }

    fn last_seen(&self) -> f64 {
        f64::from_bits(self.last_seen.load(Ordering::Relaxed))
    }

    /// Share of the bursts' executions the result cache answered.
    fn cached_share(&self) -> f64 {
        let n = self.executions.load(Ordering::Relaxed);
        if n == 0 {
            return 0.0;
        }
        self.cached.load(Ordering::Relaxed) as f64 / n as f64
    }

    fn snapshot(&self) -> FindingSnapshot {
        let who = self.who.lock();
        let cached_share = (self.kind == Kind::RepeatedIdentical).then(|| self.cached_share());
        let suggestion = match self.kind {
            // Worded from the live share, which grows as the cache warms.
            Kind::RepeatedIdentical => suggest::repeated(self.cache, cached_share),
            _ => self.suggestion.to_string(),
        };
        FindingSnapshot {
            fingerprint: format!("{:016x}", self.fingerprint),
            database: self.database.to_string(),
            query: self.query.to_string(),
            parent_fingerprint: self.parent.as_ref().map(|(fp, _)| format!("{fp:016x}")),
            parent_query: self
                .parent
                .as_ref()
                .map(|(_, q)| q.to_string())
                .unwrap_or_default(),
            kind: self.kind,
            occurrences: self.occurrences.load(Ordering::Relaxed),
            last_count: self.last_count.load(Ordering::Relaxed),
            max_count: self.max_count.load(Ordering::Relaxed),
            total_ms: self.total_us.load(Ordering::Relaxed) as f64 / 1000.0,
            first_seen: self.first_seen,
            last_seen: self.last_seen(),
            user: who.0.clone(),
            application_name: who.1.clone(),
            suggestion,
            flow: self.flow.as_ref().map(|f| f.describe(None)),
            parent_column: self.flow.as_ref().and_then(|f| f.parent_column.clone()),
            child_column: self.flow.as_ref().and_then(|f| f.child_column.clone()),
            cached_share,
            cache: (self.kind == Kind::RepeatedIdentical).then_some(self.cache),
        }
    }
}

/// One row of `/stats` `n_plus_one` and SHOW N_PLUS_ONE.
#[derive(Clone, Debug, Serialize)]
pub struct FindingSnapshot {
    pub fingerprint: String,
    pub database: String,
    /// Normalized text: constants replaced by $n, never literal values.
    pub query: String,
    /// Null when no statement preceded the run in its stream.
    pub parent_fingerprint: Option<String>,
    /// Empty when there is no parent.
    pub parent_query: String,
    /// "n_plus_one", "repeated_identical" or "batchable_writes".
    pub kind: Kind,
    /// Bursts seen.
    pub occurrences: u64,
    /// Executions in the latest burst (still growing while it lasts).
    pub last_count: u64,
    pub max_count: u64,
    /// Time of every statement of every burst.
    pub total_ms: f64,
    /// Unix seconds.
    pub first_seen: f64,
    pub last_seen: f64,
    pub user: String,
    pub application_name: String,
    pub suggestion: String,
    /// For n_plus_one: "conversations.contact_id takes leads.contact_id", the data flow that
    /// confirmed the loop (null for other kinds).
    pub flow: Option<String>,
    /// The parent's result column the child's parameter values came from, when it could be named.
    pub parent_column: Option<String>,
    /// The child's column those values are compared with, when it could be named.
    pub child_column: Option<String>,
    /// For repeated_identical: the share (0..1) of its executions pgsplit's result cache answered.
    pub cached_share: Option<f64>,
    /// For repeated_identical: "off", "not_cacheable" or "on".
    pub cache: Option<CacheUse>,
}

/// Bursts detected since start or reset, by kind.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct BurstCounts {
    pub n_plus_one: u64,
    pub repeated_identical: u64,
    pub batchable_writes: u64,
}

impl BurstCounts {
    pub fn get(&self, kind: Kind) -> u64 {
        match kind {
            Kind::NPlusOne => self.n_plus_one,
            Kind::RepeatedIdentical => self.repeated_identical,
            Kind::BatchableWrites => self.batchable_writes,
        }
    }
}

/// What a stream knows of a burst when it crosses the threshold.
#[derive(Clone, Copy)]
pub struct NewBurst<'a> {
    pub kind: Kind,
    pub fingerprint: u64,
    pub query: &'a Arc<str>,
    pub parent: Option<&'a (u64, Arc<str>)>,
    /// (0-based parameter of the child, 0-based column of the parent) that confirmed a loop.
    pub flow: Option<(usize, usize)>,
    pub cache: CacheUse,
    pub count: u64,
    pub cached: u64,
    pub total_us: u64,
}

/// All findings of the process, at most `max_findings` (the least recently seen go first).
pub struct Registry {
    shards: Vec<Mutex<HashMap<Key, Arc<Finding>>>>,
    per_shard: usize,
    bursts: [AtomicU64; 3],
    evicted: AtomicU64,
}

impl Registry {
    pub fn new(max_findings: usize) -> Registry {
        Registry {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: max_findings.div_ceil(SHARDS).max(1),
            bursts: Default::default(),
            evicted: AtomicU64::new(0),
        }
    }

    /// A new burst of `count` executions taking `total_us`, `cached` of them answered by the
    /// result cache; returns its finding to grow.
    pub fn burst(&self, b: &NewBurst<'_>, origin: Origin<'_>) -> Arc<Finding> {
        let NewBurst {
            kind,
            fingerprint,
            query,
            parent,
            flow,
            cache,
            count,
            cached,
            total_us,
        } = *b;
        self.bursts[kind.index()].fetch_add(1, Ordering::Relaxed);
        let key = Key {
            kind,
            fingerprint,
            // Only a loop is told apart by its parent; a repeat or a batch is one finding
            // whatever ran before it.
            parent: match kind {
                Kind::NPlusOne => parent.map_or(0, |p| p.0),
                _ => 0,
            },
            database: origin.database.clone(),
        };
        let now = unix_now();
        let mut shard = self.shards[(fingerprint as usize) % SHARDS].lock();
        if let Some(f) = shard.get(&key) {
            f.occurrences.fetch_add(1, Ordering::Relaxed);
            f.last_count.store(count, Ordering::Relaxed);
            f.max_count.fetch_max(count, Ordering::Relaxed);
            f.total_us.fetch_add(total_us, Ordering::Relaxed);
            f.executions.fetch_add(count, Ordering::Relaxed);
            f.cached.fetch_add(cached, Ordering::Relaxed);
            f.last_seen.store(now.to_bits(), Ordering::Relaxed);
            *f.who.lock() = (origin.user.to_string(), origin.application_name.to_string());
            return f.clone();
        }
        if shard.len() >= self.per_shard {
            let oldest = shard
                .iter()
                .min_by(|a, b| a.1.last_seen().total_cmp(&b.1.last_seen()))
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                shard.remove(&k);
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Named once per finding: pg_query runs here, never per statement.
        let flow = match (kind, flow, parent) {
            (Kind::NPlusOne, Some((param, column)), Some(p)) => Some(FlowNames {
                param,
                child_column: columns::parameter_column(query, param),
                parent_column: columns::result_column(&p.1, column),
            }),
            _ => None,
        };
        let f = Arc::new(Finding {
            kind,
            fingerprint,
            database: origin.database.clone(),
            query: query.clone(),
            parent: parent.cloned(),
            suggestion: Arc::from(suggest::suggest(
                kind,
                query,
                parent.map(|p| &*p.1),
                flow.as_ref(),
            )),
            flow,
            cache,
            who: Mutex::new((origin.user.to_string(), origin.application_name.to_string())),
            occurrences: AtomicU64::new(1),
            last_count: AtomicU64::new(count),
            max_count: AtomicU64::new(count),
            total_us: AtomicU64::new(total_us),
            executions: AtomicU64::new(count),
            cached: AtomicU64::new(cached),
            first_seen: now,
            last_seen: AtomicU64::new(now.to_bits()),
        });
        shard.insert(key, f.clone());
        f
    }

    /// Every finding, most recently seen first.
    pub fn snapshot(&self) -> Vec<FindingSnapshot> {
        let mut out: Vec<FindingSnapshot> = Vec::new();
        for shard in &self.shards {
            out.extend(shard.lock().values().map(|f| f.snapshot()));
        }
        out.sort_by(|a, b| {
            b.last_seen
                .total_cmp(&a.last_seen)
                .then_with(|| a.fingerprint.cmp(&b.fingerprint))
        });
        out
    }

    pub fn bursts(&self) -> BurstCounts {
        let n = |k: Kind| self.bursts[k.index()].load(Ordering::Relaxed);
        BurstCounts {
            n_plus_one: n(Kind::NPlusOne),
            repeated_identical: n(Kind::RepeatedIdentical),
            batchable_writes: n(Kind::BatchableWrites),
        }
    }

    /// Findings dropped to stay within `max_findings`.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    pub fn reset(&self) {
        for shard in &self.shards {
            shard.lock().clear();
        }
        for b in &self.bursts {
            b.store(0, Ordering::Relaxed);
        }
        self.evicted.store(0, Ordering::Relaxed);
    }
}
