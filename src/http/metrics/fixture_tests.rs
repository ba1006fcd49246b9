//! Renders a snapshot with every family populated and checks names, labels and values.

use super::*;
use crate::admin::snapshot::{
    CacheInvalidations, CacheSnapshot, ConsistencySnapshot, PoolSnapshot, ReadRouting,
    ServerSnapshot,
};
use crate::stats::{Measured, Percentiles, QuerySnapshot, TargetThresholds, Targets};

fn query(fingerprint: &str, database: &str, total_ms: f64) -> QuerySnapshot {
    QuerySnapshot {
        fingerprint: fingerprint.into(),
        database: database.into(),
        query: "select $1".into(),
        calls: 10,
        errors: 1,
        rows: 20,
        total_ms,
        mean_ms: total_ms / 10.0,
        min_ms: 0.1,
        max_ms: 9.0,
        percentiles: Percentiles {
            p50_ms: 1.0,
            p90_ms: 2.0,
            p95_ms: 3.0,
            p99_ms: 4.0,
            p999_ms: 5.0,
        },
        primary_calls: 4,
        replica_calls: 5,
        cache_hits: 1,
        cache_misses: 2,
        primary_ms: 0.0,
        replica_ms: 0.0,
        cache_ms: 0.0,
        pool_wait_ms: 0.0,
        not_cacheable: None,
        first_seen: 0.0,
        last_seen: 0.0,
    }
}

fn pool(name: &str, role: &'static str) -> PoolSnapshot {
    PoolSnapshot {
        name: name.into(),
        database: "app".into(),
        user: "app".into(),
        server: "127.0.0.1:5432".into(),
        role,
        max_size: 50,
        size: 5,
        idle: 3,
        busy: 2,
        waiting: 7,
        acquisitions: 100,
        acquire_p50_ms: 1.0,
        acquire_p95_ms: 2.0,
        acquire_p99_ms: 4.0,
        acquire_max_ms: 8.0,
        efficiency: Some(0.75),
        timeouts: 1,
        connections_opened: 6,
        connections_closed: 1,
        connections_broken: 2,
        connect_errors: 0,
    }
}

fn server(addr: &str, role: &'static str, lag: Option<(u64, u64)>) -> ServerSnapshot {
    ServerSnapshot {
        server: addr.into(),
        role,
        reachable: role == "primary",
        outstanding: 3,
        banned_ms: if role == "primary" { 0 } else { 1500 },
        bans: 2,
        checks_failed: 0,
        last_error: None,
        lsn: None,
        lag_bytes: lag.map(|l| l.0),
        lag_ms: lag.map(|l| l.1),
        lag_ok: true,
        reads: ReadRouting {
            served: 40,
            position_checks: 6,
            checked_in_line: 5,
            sent_again: 1,
            to_primary: [("replica_behind", 3), ("banned", 0)].into_iter().collect(),
            ..ReadRouting::default()
        },
    }
}

/// Every family has at least one series; one database name needs escaping.
pub(super) fn snapshot() -> StatsSnapshot {
    let measured = Measured {
        p90_ms: Some(2.0),
        p95_ms: Some(500.0),
        ..Measured::default()
    };
    StatsSnapshot {
        uptime_s: 42,
        queries: vec![
            query("00000000000000aa", "app", 10.0),
            query("00000000000000bb", "we\"ird\\db\nx", 2500.0),
        ],
        queries_folded: 3,
        pools: vec![
            pool("app@127.0.0.1:5432/app (primary)", "primary"),
            pool("app@127.0.0.1:5433/app (replica)", "replica"),
        ],
        servers: vec![
            server("127.0.0.1:5432", "primary", None),
            server("127.0.0.1:5433", "replica", Some((4096, 250))),
        ],
        cache: CacheSnapshot {
            hits: 11,
            misses: 12,
            coalesced: 13,
            entries: 14,
            bytes: 15,
            evictions_size: 16,
            evictions_expired: 17,
            invalidations: CacheInvalidations {
                write: 18,
                unknown: 19,
                wal: 20,
            },
            wal: vec![crate::cache::wal_status::FollowerSnapshot {
                database: "app".into(),
                running: true,
                user: "cachewal".into(),
                applied_lsn: None,
                error: None,
                sqlstate: None,
                fix: None,
                since_ms: 0,
            }],
            ..CacheSnapshot::default()
        },
        n_plus_one: Vec::new(),
        n_plus_one_bursts: crate::nplusone::BurstCounts {
            n_plus_one: 4,
            repeated_identical: 5,
            batchable_writes: 6,
        },
        targets: Targets::judge(&TargetThresholds::default(), &measured),
        clients: 9,
        primary_only: Vec::new(),
        replica_refusals: 2,
        consistency: ConsistencySnapshot {
            mode: "global",
            position_reads: 21,
            position_queries: 22,
            position_failures: 23,
            queries_per_1000_reads: None,
        },
    }
}

#[test]
fn dump_before() {
    print!("{}", render(snapshot()).unwrap());
}
