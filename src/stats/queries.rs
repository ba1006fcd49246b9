//! Per-fingerprint statistics per database, sharded locks, bounded by least-recently-used folding into an "other" row.

use super::histogram::{LatencyHistogram, Percentiles};
use super::unix_now;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Where a statement's answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnsweredBy {
    Primary,
    Replica,
    Cache,
}

/// One finished statement, as the session reports it.
pub struct Sample<'a> {
    pub fingerprint: u64,
    pub normalized: &'a Arc<str>,
    pub database: &'a Arc<str>,
    pub answered_by: AnsweredBy,
    pub duration_us: u64,
    pub rows: u64,
    pub error: bool,
    pub pool_wait_us: u64,
    /// The result cache was asked and had no answer (the server's answer may fill it).
    pub cache_miss: bool,
    /// Why the cache may not answer this statement (`Analysis::cache_refusal`), if it may not.
    pub not_cacheable: Option<&'a str>,
    /// When it finished, for the entry's last-seen time.
    pub at: Instant,
}

/// The wall clock and the monotonic one read together, to date instants in a snapshot.
struct WallClock {
    unix: f64,
    at: Instant,
}

impl WallClock {
    fn now() -> WallClock {
        WallClock {
            unix: unix_now(),
            at: Instant::now(),
        }
    }

    fn unix(&self, at: Instant) -> f64 {
        self.unix - self.at.saturating_duration_since(at).as_secs_f64()
    }
}

#[derive(Clone)]
struct Entry {
    query: Arc<str>,
    database: Arc<str>,
    fingerprint: u64,
    calls: u64,
    errors: u64,
    rows: u64,
    total_us: u64,
    min_us: u64,
    max_us: u64,
    by_route: [u64; 3],
    time_by_route_us: [u64; 3],
    pool_wait_us: u64,
    cache_misses: u64,
    /// The last reason the cache could not answer it (a catalog change may alter it).
    not_cacheable: Option<Arc<str>>,
    hist: LatencyHistogram,
    // Instants, not wall-clock seconds: a statement's `at` is already read, and the wall
    // clock is read once per snapshot instead of once per call.
    first_seen: Instant,
    last_seen: Instant,
    /// Logical clock of the last use, for least-recently-used folding.
    tick: u64,
}

impl Entry {
    fn new(query: Arc<str>, database: Arc<str>, fingerprint: u64, now: Instant) -> Entry {
        Entry {
            query,
            database,
            fingerprint,
            calls: 0,
            errors: 0,
            rows: 0,
            total_us: 0,
            min_us: u64::MAX,
            max_us: 0,
            by_route: [0; 3],
            time_by_route_us: [0; 3],
            pool_wait_us: 0,
            cache_misses: 0,
            not_cacheable: None,
            hist: LatencyHistogram::new(),
            first_seen: now,
            last_seen: now,
            tick: 0,
        }
    }

    fn add(&mut self, s: &Sample<'_>, tick: u64) {
        let r = s.answered_by as usize;
        self.calls += 1;
        self.errors += u64::from(s.error);
        self.rows += s.rows;
        self.total_us += s.duration_us;
        self.min_us = self.min_us.min(s.duration_us);
        self.max_us = self.max_us.max(s.duration_us);
        self.by_route[r] += 1;
        self.time_by_route_us[r] += s.duration_us;
        self.pool_wait_us += s.pool_wait_us;
        self.cache_misses += u64::from(s.cache_miss);
        // Allocates only when the reason changes, not per call.
        if self.not_cacheable.as_deref() != s.not_cacheable {
            self.not_cacheable = s.not_cacheable.map(Arc::from);
        }
        self.hist.record_us(s.duration_us);
        self.last_seen = s.at;
        self.tick = tick;
    }

    fn merge(&mut self, o: &Entry) {
        self.calls += o.calls;
        self.errors += o.errors;
        self.rows += o.rows;
        self.total_us += o.total_us;
        self.min_us = self.min_us.min(o.min_us);
        self.max_us = self.max_us.max(o.max_us);
        for i in 0..3 {
            self.by_route[i] += o.by_route[i];
            self.time_by_route_us[i] += o.time_by_route_us[i];
        }
        self.pool_wait_us += o.pool_wait_us;
        self.cache_misses += o.cache_misses;
        self.hist.merge(&o.hist);
        self.first_seen = self.first_seen.min(o.first_seen);
        self.last_seen = self.last_seen.max(o.last_seen);
    }

    fn snapshot(&self, clock: &WallClock) -> QuerySnapshot {
        let calls = self.calls.max(1) as f64;
        QuerySnapshot {
            fingerprint: format!("{:016x}", self.fingerprint),
            database: self.database.to_string(),
            query: self.query.to_string(),
            calls: self.calls,
            errors: self.errors,
            rows: self.rows,
            total_ms: self.total_us as f64 / 1000.0,
            mean_ms: self.total_us as f64 / 1000.0 / calls,
            min_ms: if self.calls == 0 {
                0.0
            } else {
                self.min_us as f64 / 1000.0
            },
            max_ms: self.max_us as f64 / 1000.0,
            percentiles: self.hist.percentiles(),
            primary_calls: self.by_route[AnsweredBy::Primary as usize],
            replica_calls: self.by_route[AnsweredBy::Replica as usize],
            cache_hits: self.by_route[AnsweredBy::Cache as usize],
            cache_misses: self.cache_misses,
            primary_ms: self.time_by_route_us[AnsweredBy::Primary as usize] as f64 / 1000.0,
            replica_ms: self.time_by_route_us[AnsweredBy::Replica as usize] as f64 / 1000.0,
            cache_ms: self.time_by_route_us[AnsweredBy::Cache as usize] as f64 / 1000.0,
            pool_wait_ms: self.pool_wait_us as f64 / 1000.0,
            not_cacheable: self
                .not_cacheable
                .as_ref()
                .map(|r| format!("not cacheable: {r}")),
            first_seen: clock.unix(self.first_seen),
            last_seen: clock.unix(self.last_seen),
        }
    }
}

/// One row of the queries table, with units in the field names.
#[derive(Clone, Debug, Serialize)]
pub struct QuerySnapshot {
    /// 16 hex digits; "0000000000000000" is the "other" row of folded fingerprints.
    pub fingerprint: String,
    pub database: String,
    /// Normalized text: constants replaced by $n, never literal values.
    pub query: String,
    pub calls: u64,
    pub errors: u64,
    pub rows: u64,
    pub total_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    #[serde(flatten)]
    pub percentiles: Percentiles,
    pub primary_calls: u64,
    pub replica_calls: u64,
    pub cache_hits: u64,
    /// Calls the result cache could have answered but did not hold.
    pub cache_misses: u64,
    pub primary_ms: f64,
    pub replica_ms: f64,
    pub cache_ms: f64,
    pub pool_wait_ms: f64,
    /// "not cacheable: <why>" when the result cache may not answer it, else null.
    pub not_cacheable: Option<String>,
    /// Unix seconds.
    pub first_seen: f64,
    pub last_seen: f64,
}

const SHARDS: usize = 16;

struct Shard {
    entries: HashMap<(u64, u64), Entry>,
}

/// The per-fingerprint table and the all-queries histogram.
pub struct QueryStats {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    other: Mutex<Entry>,
    folded: AtomicU64,
    clock: AtomicU64,
    /// Bumped by `reset`, so readers of cumulative figures know the counters restarted.
    generation: AtomicU64,
}

fn db_hash(db: &str) -> u64 {
    let mut h = ahash::RandomState::with_seeds(5, 6, 7, 8).build_hasher();
    h.write(db.as_bytes());
    h.finish()
}

impl QueryStats {
    pub fn new(max_fingerprints: usize) -> QueryStats {
        QueryStats {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        entries: HashMap::new(),
                    })
                })
                .collect(),
            per_shard: max_fingerprints.div_ceil(SHARDS).max(1),
            other: Mutex::new(Entry::new(
                Arc::from("<other>"),
                Arc::from("*"),
                0,
                Instant::now(),
            )),
            folded: AtomicU64::new(0),
            clock: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        }
    }

    pub fn record(&self, s: &Sample<'_>) {
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        let key = (s.fingerprint, db_hash(s.database));
        let shard = &self.shards[(s.fingerprint as usize) % SHARDS];
        {
            let mut shard = shard.lock();
            if let Some(e) = shard.entries.get_mut(&key) {
                e.add(s, tick);
            } else {
                if shard.entries.len() >= self.per_shard {
                    self.fold_oldest(&mut shard);
                }
                let mut e = Entry::new(
                    s.normalized.clone(),
                    s.database.clone(),
                    s.fingerprint,
                    s.at,
                );
                e.add(s, tick);
                shard.entries.insert(key, e);
            }
        }
    }

    /// Folds the least recently used entry of a full shard into the "other" row.
    fn fold_oldest(&self, shard: &mut Shard) {
        let Some(oldest) = shard
            .entries
            .iter()
            .min_by_key(|(_, e)| e.tick)
            .map(|(k, _)| *k)
        else {
            return;
        };
        if let Some(e) = shard.entries.remove(&oldest) {
            self.other.lock().merge(&e);
            self.folded.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every tracked row, plus the "other" row when something was folded.
    pub fn snapshot(&self) -> Vec<QuerySnapshot> {
        let clock = WallClock::now();
        let mut out = Vec::new();
        for shard in &self.shards {
            out.extend(shard.lock().entries.values().map(|e| e.snapshot(&clock)));
        }
        let other = self.other.lock();
        if other.calls > 0 {
            out.push(other.snapshot(&clock));
        }
        out
    }

    /// Fingerprints folded into the "other" row since start or reset.
    pub fn folded(&self) -> u64 {
        self.folded.load(Ordering::Relaxed)
    }

    /// Percentiles over every statement of every fingerprint, merged at read time so that
    /// recording takes only its own shard's lock.
    pub fn overall(&self) -> (u64, Percentiles) {
        let mut all = LatencyHistogram::new();
        for shard in &self.shards {
            for e in shard.lock().entries.values() {
                all.merge(&e.hist);
            }
        }
        all.merge(&self.other.lock().hist);
        (all.count(), all.percentiles())
    }

    /// Every statement's latency and the error count since start or the last reset, with the
    /// reset generation: what the per-second series subtracts from one second to the next.
    pub fn cumulative(&self) -> (LatencyHistogram, u64, u64) {
        let generation = self.generation.load(Ordering::Acquire);
        let mut all = LatencyHistogram::new();
        let mut errors = 0;
        for shard in &self.shards {
            for e in shard.lock().entries.values() {
                all.merge(&e.hist);
                errors += e.errors;
            }
        }
        let other = self.other.lock();
        all.merge(&other.hist);
        errors += other.errors;
        (all, errors, generation)
    }

    pub fn reset(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for shard in &self.shards {
            shard.lock().entries.clear();
        }
        *self.other.lock() = Entry::new(Arc::from("<other>"), Arc::from("*"), 0, Instant::now());
        self.folded.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(fp: u64, q: &'a Arc<str>, db: &'a Arc<str>, us: u64) -> Sample<'a> {
        Sample {
            fingerprint: fp,
            normalized: q,
            database: db,
            answered_by: AnsweredBy::Replica,
            duration_us: us,
            rows: 1,
            error: false,
            pool_wait_us: 10,
            cache_miss: false,
            not_cacheable: None,
            at: Instant::now(),
        }
    }

    #[test]
    fn counts_per_fingerprint_and_database() {
        let s = QueryStats::new(100);
        let (q, app, other) = (Arc::from("select $1"), Arc::from("app"), Arc::from("other"));
        for us in [100, 200, 300] {
            s.record(&sample(1, &q, &app, us));
        }
        s.record(&sample(1, &q, &other, 50));
        let mut e = Sample {
            error: true,
            answered_by: AnsweredBy::Primary,
            ..sample(1, &q, &app, 1000)
        };
        e.rows = 0;
        s.record(&e);
        let snap = s.snapshot();
        assert_eq!(snap.len(), 2);
        let app_row = snap.iter().find(|r| r.database == "app").unwrap();
        assert_eq!(app_row.calls, 4);
        assert_eq!(app_row.errors, 1);
        assert_eq!(app_row.rows, 3);
        assert_eq!(app_row.replica_calls, 3);
        assert_eq!(app_row.primary_calls, 1);
        assert!((app_row.total_ms - 1.6).abs() < 1e-9);
        assert!((app_row.min_ms - 0.1).abs() < 1e-9);
        assert!((app_row.max_ms - 1.0).abs() < 1e-9);
        assert_eq!(app_row.fingerprint, "0000000000000001");
        assert_eq!(s.overall().0, 5);
    }

    #[test]
    fn least_recently_used_fold_into_other() {
        let s = QueryStats::new(16); // one entry per shard
        let (q, db) = (Arc::from("q"), Arc::from("app"));
        // Fingerprints 1 and 17 share shard 1.
        s.record(&sample(1, &q, &db, 10));
        s.record(&sample(17, &q, &db, 20));
        assert_eq!(s.folded(), 1);
        let snap = s.snapshot();
        let other = snap.iter().find(|r| r.query == "<other>").unwrap();
        assert_eq!(other.calls, 1);
        assert!(snap.iter().any(|r| r.fingerprint == format!("{:016x}", 17)));
        assert!(!snap.iter().any(|r| r.fingerprint == format!("{:016x}", 1)));
        s.reset();
        assert!(s.snapshot().is_empty());
        assert_eq!(s.folded(), 0);
    }
}
