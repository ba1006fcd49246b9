//! Assembles the stats endpoint's JSON document (and the console's tables) from the live proxy.

use crate::pool::ServerPool;
use crate::stats::{LatencyHistogram, Measured, QuerySnapshot, Targets};
use crate::Shared;
use serde::Serialize;
use std::sync::atomic::Ordering;

#[derive(Clone, Debug, Serialize)]
pub struct PoolSnapshot {
    /// "user@host:port/database (role)".
    pub name: String,
    pub database: String,
    pub user: String,
    pub server: String,
    pub role: &'static str,
    pub max_size: usize,
    /// Connections open now.
    pub size: usize,
    pub idle: usize,
    pub busy: usize,
    /// Clients waiting for a connection now.
    pub waiting: usize,
    pub acquisitions: u64,
    pub acquire_p50_ms: f64,
    pub acquire_p95_ms: f64,
    pub acquire_p99_ms: f64,
    pub acquire_max_ms: f64,
    /// Share (0..1) of acquisitions served within `stats.targets.fast_acquire_ms`; null before the first.
    pub efficiency: Option<f64>,
    pub timeouts: u64,
    pub connections_opened: u64,
    pub connections_closed: u64,
    pub connections_broken: u64,
    pub connect_errors: u64,
    /// Idle connections of one data worker closed so that another worker could open one while
    /// the pool was full: a steady count means the workers' loads are uneven.
    pub connections_handed_over: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServerSnapshot {
    pub server: String,
    /// The role routing uses now (follows the server with `role = "auto"`).
    pub role: &'static str,
    pub reachable: bool,
    /// Requests holding a connection to this server now.
    pub outstanding: usize,
    /// Milliseconds left of a ban after failures; 0 when the server takes requests.
    pub banned_ms: u64,
    pub bans: u64,
    pub checks_failed: u64,
    /// Why it was last banned, until it has been healthy for `health.max_ban_ms`.
    pub last_error: Option<String>,
    /// Replicas: last replayed WAL position; the primary: its current insert position.
    pub lsn: Option<String>,
    /// Replicas: how far behind the primary, null before the first poll.
    pub lag_bytes: Option<u64>,
    pub lag_ms: Option<u64>,
    /// Within `replication.max_lag_bytes` / `max_lag_ms`, so it may take reads.
    pub lag_ok: bool,
    /// Where reads went and why: reads this replica served, and reads sent to the primary instead.
    pub reads: ReadRouting,
}

/// One replica's share of reads (zero on the primary), cumulative since start.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReadRouting {
    pub served: u64,
    /// Served only after asking the replica for its replay position (`max_replica_wait_ms`).
    pub served_after_wait: u64,
    /// Replay-position questions sent.
    pub position_checks: u64,
    /// Of those, questions sent in the same round trip as their read.
    pub checked_in_line: u64,
    /// In-line questions that found the replica behind: the read ran again, asking first.
    pub sent_again: u64,
    /// Reads sent to the primary to stay consistent, by reason: position_unknown (the write's
    /// position was not known yet), replica_behind, wait_timed_out, lag_limit, banned.
    pub to_primary: std::collections::BTreeMap<&'static str, u64>,
    /// The waits for a replica to catch up, in milliseconds.
    pub wait_p50_ms: Option<f64>,
    pub wait_p99_ms: Option<f64>,
    pub wait_max_ms: Option<f64>,
}

/// The result cache's figures, cumulative since start.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CacheSnapshot {
    pub enabled: bool,
    /// "proxy" (writes through this proxy, TTL for others) or "wal" (also the primary's WAL).
    pub invalidation: &'static str,
    pub hits: u64,
    pub misses: u64,
    /// hits / (hits + misses); null before the first lookup.
    pub hit_rate: Option<f64>,
    /// Requests that waited for an identical request in flight and were answered by its entry.
    pub coalesced: u64,
    /// Requests a `never` rule kept out of the cache.
    pub bypassed: u64,
    pub entries: u64,
    pub bytes: u64,
    pub max_bytes: u64,
    /// Entries dropped for space or age (size + expired).
    pub evictions: u64,
    pub evictions_size: u64,
    pub evictions_expired: u64,
    /// Replies stored.
    pub fills: u64,
    /// Replies not stored: error, notice, too large (aborted); written meanwhile (stale);
    /// from a replica that may lag a recent write (lagging).
    pub fills_aborted: u64,
    pub fills_stale: u64,
    pub fills_lagging: u64,
    /// Entries found invalid at lookup (a table they read was written) and dropped.
    pub stale_dropped: u64,
    pub invalidations: CacheInvalidations,
    /// Databases whose WAL is being followed now (with `invalidation = "wal"`).
    pub wal_followers: u64,
    pub wal_transactions: u64,
    /// WAL invalidation per database: running, or why not (the server's error, SQLSTATE and
    /// the fix); empty unless `invalidation = "wal"`.
    pub wal: Vec<crate::cache::wal_status::FollowerSnapshot>,
    /// `consistency = "global"`: entries found but not served because neither the WAL follower
    /// nor the entry's own fill was known to cover the primary's position.
    pub unproven: u64,
}

/// Invalidation events by cause.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CacheInvalidations {
    /// A write through the proxy to known tables (DML, DDL, TRUNCATE).
    pub write: u64,
    /// A write whose tables are unknown (a function, DO, CALL): everything was invalidated.
    pub unknown: u64,
    /// A commit seen in the primary's WAL.
    pub wal: u64,
}

pub fn cache(shared: &Shared) -> CacheSnapshot {
    let c = &shared.cache;
    let k = &c.counters;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let (hits, misses) = (get(&k.hits), get(&k.misses));
    let (size, expired) = (get(&k.evictions_size), get(&k.evictions_expired));
    CacheSnapshot {
        enabled: c.enabled(),
        invalidation: match c.settings.invalidation {
            crate::cache::Invalidation::Proxy => "proxy",
            crate::cache::Invalidation::Wal => "wal",
        },
        hits,
        misses,
        hit_rate: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
        coalesced: get(&k.coalesced),
        bypassed: get(&k.bypassed),
        entries: c.entry_count(),
        bytes: c.weighted_size(),
        max_bytes: c.settings.max_bytes,
        evictions: size + expired,
        evictions_size: size,
        evictions_expired: expired,
        fills: get(&k.fills),
        fills_aborted: get(&k.fills_aborted),
        fills_stale: get(&k.fills_stale),
        fills_lagging: get(&k.fills_lagging),
        stale_dropped: get(&k.stale_dropped),
        invalidations: CacheInvalidations {
            write: get(&k.invalidations_write),
            unknown: get(&k.invalidations_unknown),
            wal: get(&k.invalidations_wal),
        },
        wal_followers: get(&shared.wal.attached),
        wal_transactions: get(&shared.wal.transactions),
        wal: shared.wal.followers.snapshot(),
        unproven: get(&k.unproven),
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StatsSnapshot {
    pub uptime_s: u64,
    pub queries: Vec<QuerySnapshot>,
    /// Fingerprints folded into the "<other>" row because of `stats.max_fingerprints`.
    pub queries_folded: u64,
    pub pools: Vec<PoolSnapshot>,
    pub servers: Vec<ServerSnapshot>,
    pub cache: CacheSnapshot,
    /// N+1 findings (and repeated identical queries, batchable writes), most recent first.
    pub n_plus_one: Vec<crate::nplusone::FindingSnapshot>,
    /// Bursts detected since start or reset, by kind (findings may have been evicted since).
    pub n_plus_one_bursts: crate::nplusone::BurstCounts,
    pub targets: Targets,
    pub clients: usize,
    /// Fingerprints sent to the primary for good after a replica refused them because they
    /// write (the routing safety net), oldest first.
    pub primary_only: Vec<PrimaryOnlySnapshot>,
    /// Replica refusals hidden from clients and re-sent to the primary, since start.
    pub replica_refusals: u64,
    pub consistency: ConsistencySnapshot,
}

/// `replication.consistency` and, in "global" mode, the primary position queries it costs.
#[derive(Clone, Debug, Serialize)]
pub struct ConsistencySnapshot {
    pub mode: &'static str,
    /// Reads that waited for the primary's WAL position.
    pub position_reads: u64,
    /// Position queries sent to the primary (one serves every read that arrived meanwhile).
    pub position_queries: u64,
    /// Position queries that failed or timed out (their reads went to the primary).
    pub position_failures: u64,
    /// position_queries per 1,000 position_reads; null before the first.
    pub queries_per_1000_reads: Option<f64>,
}

pub fn consistency(shared: &Shared) -> ConsistencySnapshot {
    let g = &shared.pools.global;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let (reads, queries) = (get(&g.reads), get(&g.queries));
    ConsistencySnapshot {
        mode: shared.config.replication.consistency.as_str(),
        position_reads: reads,
        position_queries: queries,
        position_failures: get(&g.failures),
        queries_per_1000_reads: (reads > 0).then(|| queries as f64 * 1000.0 / reads as f64),
    }
}

/// One fingerprint the safety net pinned to the primary.
#[derive(Clone, Debug, Serialize)]
pub struct PrimaryOnlySnapshot {
    /// 16 hex digits, as in `queries`.
    pub fingerprint: String,
    /// Normalized text.
    pub query: String,
    /// What the replica answered (SQLSTATE and message).
    pub reason: String,
    pub refusals: u64,
    /// Unix seconds of the first refusal.
    pub since: f64,
}

fn primary_only(shared: &Shared) -> (Vec<PrimaryOnlySnapshot>, u64) {
    let (forced, refusals) = shared.router.forced_primary();
    let rows = forced
        .into_iter()
        .map(|f| PrimaryOnlySnapshot {
            fingerprint: format!("{:016x}", f.fingerprint),
            query: f.query,
            reason: f.reason,
            refusals: f.refusals,
            since: f.since,
        })
        .collect();
    (rows, refusals)
}

fn pool_snapshot(database: &str, user: &str, p: &ServerPool) -> PoolSnapshot {
    let status = p.status();
    let hist: LatencyHistogram = p.acquire_time();
    let churn = p.churn();
    PoolSnapshot {
        name: p.name.clone(),
        database: database.to_string(),
        user: user.to_string(),
        server: p.server.addr.to_string(),
        role: p.server.configured_role.as_str(),
        max_size: status.max_size,
        size: status.size,
        idle: status.available,
        busy: status.size.saturating_sub(status.available),
        waiting: p.waiting.load(Ordering::Relaxed),
        acquisitions: p.acquisitions.load(Ordering::Relaxed),
        acquire_p50_ms: hist.quantile_ms(0.50),
        acquire_p95_ms: hist.quantile_ms(0.95),
        acquire_p99_ms: hist.quantile_ms(0.99),
        acquire_max_ms: hist.quantile_ms(1.0),
        efficiency: p.efficiency(),
        timeouts: p.timeouts.load(Ordering::Relaxed),
        connections_opened: churn.opened.load(Ordering::Relaxed),
        connections_closed: churn.closed.load(Ordering::Relaxed),
        connections_broken: churn.broken.load(Ordering::Relaxed),
        connect_errors: churn.connect_errors.load(Ordering::Relaxed),
        connections_handed_over: p.handed_over.load(Ordering::Relaxed),
    }
}

pub fn pools(shared: &Shared) -> Vec<PoolSnapshot> {
    let mut out = Vec::new();
    for set in shared.pools.sets() {
        for p in set.all() {
            out.push(pool_snapshot(&set.database, &set.user, p));
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

pub fn servers(shared: &Shared) -> Vec<ServerSnapshot> {
    shared
        .pools
        .servers()
        .map(|s| {
            let h = &s.health;
            let role = s.role();
            let lag = (role == crate::pool::Role::Replica)
                .then(|| h.lag())
                .flatten();
            let lsn = h.lsn();
            ServerSnapshot {
                server: s.addr.to_string(),
                role: role.as_str(),
                reachable: s.is_up(),
                outstanding: s.outstanding.load(Ordering::Relaxed),
                banned_ms: h.banned_for_ms(),
                bans: h.bans.load(Ordering::Relaxed),
                checks_failed: h.checks_failed.load(Ordering::Relaxed),
                last_error: h.last_error(),
                lsn: (lsn > 0).then(|| crate::protocol::lsn::format(lsn)),
                lag_bytes: lag.map(|l| l.0),
                lag_ms: lag.map(|l| l.1),
                lag_ok: h.lag_ok(),
                reads: read_routing(&s.routing),
            }
        })
        .collect()
}

fn read_routing(r: &crate::pool::RouteStats) -> ReadRouting {
    let wait = r.wait_histogram();
    let q = |x: f64| (wait.count() > 0).then(|| wait.quantile_ms(x));
    ReadRouting {
        served: r.served.load(Ordering::Relaxed),
        served_after_wait: r.served_after_wait.load(Ordering::Relaxed),
        position_checks: r.position_checks.load(Ordering::Relaxed),
        checked_in_line: r.checked_in_line.load(Ordering::Relaxed),
        sent_again: r.sent_again.load(Ordering::Relaxed),
        to_primary: crate::pool::PrimaryReason::ALL
            .iter()
            .map(|w| (w.as_str(), r.to_primary_count(*w)))
            .collect(),
        wait_p50_ms: q(0.5),
        wait_p99_ms: q(0.99),
        wait_max_ms: q(1.0),
    }
}

/// Pool efficiency and acquisition p95 over every pool together.
fn pool_totals(shared: &Shared) -> (Option<f64>, Option<f64>) {
    let mut all = LatencyHistogram::new();
    let (mut n, mut fast) = (0u64, 0u64);
    for set in shared.pools.sets() {
        for p in set.all() {
            n += p.acquisitions.load(Ordering::Relaxed);
            fast += p.fast_acquisitions.load(Ordering::Relaxed);
            all.merge(&p.acquire_time());
        }
    }
    if n == 0 {
        return (None, None);
    }
    (Some(fast as f64 / n as f64), Some(all.quantile_ms(0.95)))
}

pub fn targets(shared: &Shared) -> Targets {
    let (count, overall) = shared.stats.queries.overall();
    let (efficiency, acquire_p95) = pool_totals(shared);
    let measured = Measured {
        p90_ms: (count > 0).then_some(overall.p90_ms),
        p95_ms: (count > 0).then_some(overall.p95_ms),
        pool_efficiency: efficiency,
        acquire_p95_ms: acquire_p95,
        cache_hit_rate: shared
            .cache
            .enabled()
            .then(|| cache(shared).hit_rate)
            .flatten(),
        // Detection off: "no data" rather than a claim of zero.
        n_plus_one_bursts: shared
            .n_plus_one
            .settings
            .load()
            .enabled
            .then(|| shared.n_plus_one.registry.bursts().n_plus_one),
    };
    Targets::judge(&shared.stats.settings.thresholds, &measured)
}

pub fn snapshot(shared: &Shared) -> StatsSnapshot {
    let (primary_only, replica_refusals) = primary_only(shared);
    StatsSnapshot {
        primary_only,
        replica_refusals,
        consistency: consistency(shared),
        uptime_s: shared.stats.uptime_s(),
        queries: shared.stats.queries.snapshot(),
        queries_folded: shared.stats.queries.folded(),
        pools: pools(shared),
        servers: servers(shared),
        cache: cache(shared),
        n_plus_one: shared.n_plus_one.registry.snapshot(),
        n_plus_one_bursts: shared.n_plus_one.registry.bursts(),
        targets: targets(shared),
        clients: shared.cancels.len(),
    }
}

/// Clears query stats and pool acquisition figures (connections stay open).
pub fn reset(shared: &Shared) {
    shared.stats.queries.reset();
    shared.n_plus_one.reset();
    for set in shared.pools.sets() {
        for p in set.all() {
            p.reset_stats();
        }
    }
    for s in shared.pools.servers() {
        s.routing.reset();
    }
    shared.pools.global.reset();
}
