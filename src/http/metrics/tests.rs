//! Renders snapshots that fill every family, hold many fingerprints or hold nothing, and checks names, labels and values.

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
        connections_handed_over: 0,
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

fn has(out: &str, line: &str) {
    assert!(
        out.lines().any(|l| l == line),
        "no line {line:?} in:\n{out}"
    );
}

#[test]
fn every_family_renders_with_its_labels_values_and_escaping() {
    let out = render(snapshot()).unwrap();
    // 46 families, each with HELP and TYPE once.
    assert_eq!(out.lines().filter(|l| l.starts_with("# TYPE ")).count(), 46);
    has(
        &out,
        "# TYPE pgsplit_fingerprint_duration_seconds_total counter",
    );
    has(&out, "# TYPE pgsplit_fingerprint_latency_seconds gauge");
    has(
        &out,
        "# HELP pgsplit_uptime_seconds Seconds since pgsplit started.",
    );
    has(&out, "pgsplit_uptime_seconds 42");
    has(&out, "pgsplit_queries_total 20");
    has(&out, "pgsplit_query_errors_total 2");
    // The database name holds a quote, a backslash and a newline.
    has(
        &out,
        r#"pgsplit_fingerprint_calls_total{database="we\"ird\\db\nx",fingerprint="00000000000000bb"} 10"#,
    );
    has(
        &out,
        r#"pgsplit_fingerprint_duration_seconds_total{database="we\"ird\\db\nx",fingerprint="00000000000000bb"} 2.5"#,
    );
    has(
        &out,
        r#"pgsplit_fingerprint_latency_seconds{database="app",fingerprint="00000000000000aa",percentile="99.9"} 0.005"#,
    );
    has(
        &out,
        r#"pgsplit_fingerprint_route_calls_total{database="app",fingerprint="00000000000000aa",route="replica"} 5"#,
    );
    has(
        &out,
        r#"pgsplit_pool_connections{pool="app@127.0.0.1:5432/app (primary)",role="primary",state="busy"} 2"#,
    );
    has(
        &out,
        r#"pgsplit_pool_acquire_seconds{percentile="99",pool="app@127.0.0.1:5432/app (primary)",role="primary"} 0.004"#,
    );
    has(
        &out,
        r#"pgsplit_server_up{role="replica",server="127.0.0.1:5433"} 0"#,
    );
    has(
        &out,
        r#"pgsplit_server_banned_seconds{role="replica",server="127.0.0.1:5433"} 1.5"#,
    );
    has(
        &out,
        r#"pgsplit_replica_lag_seconds{role="replica",server="127.0.0.1:5433"} 0.25"#,
    );
    has(
        &out,
        r#"pgsplit_reads_sent_to_primary_total{reason="replica_behind",role="replica",server="127.0.0.1:5433"} 3"#,
    );
    has(&out, r#"pgsplit_cache_invalidations_total{cause="wal"} 20"#);
    has(
        &out,
        r#"pgsplit_cache_wal_follower_running{database="app"} 1"#,
    );
    has(
        &out,
        r#"pgsplit_global_position_queries_total{kind="failures"} 23"#,
    );
    has(
        &out,
        r#"pgsplit_n_plus_one_bursts_total{kind="batchable_writes"} 6"#,
    );
    has(&out, r#"pgsplit_target_met{target="p95_query_time_ms"} 0"#);
    // Replica-only families leave the primary out; lag is absent where it is unknown.
    assert!(!out.contains(r#"pgsplit_replica_reads_total{role="primary""#));
    assert!(!out.contains(r#"pgsplit_replica_lag_bytes{role="primary""#));
    // Targets without data are left out rather than shown as missed.
    assert!(!out.contains(r#"target="cache_hit_rate""#));
}

#[test]
fn per_fingerprint_series_keep_the_costliest_and_totals_keep_all() {
    let mut s = snapshot();
    s.queries = (0..TOP_FINGERPRINTS + 10)
        .map(|i| query(&format!("{i:016x}"), "app", i as f64))
        .collect();
    let out = render(s).unwrap();
    let series = out
        .lines()
        .filter(|l| l.starts_with("pgsplit_fingerprint_calls_total{"))
        .count();
    assert_eq!(series, TOP_FINGERPRINTS);
    // The cheapest ten (total_ms 0..9) are the ones left out.
    assert!(!out.contains(&format!("fingerprint=\"{:016x}\"", 9)));
    assert!(out.contains(&format!("fingerprint=\"{:016x}\"", 10)));
    has(
        &out,
        &format!("pgsplit_queries_total {}", 10 * (TOP_FINGERPRINTS + 10)),
    );
}

#[test]
fn a_quiet_proxy_renders_its_totals_and_leaves_empty_families_out() {
    let mut s = snapshot();
    s.queries.clear();
    s.pools.clear();
    s.servers.clear();
    s.cache.wal.clear();
    let out = render(s).unwrap();
    has(&out, "pgsplit_queries_total 0");
    has(&out, "pgsplit_cache_hits_total 11");
    assert!(!out.contains("pgsplit_fingerprint_calls_total"));
    assert!(!out.contains("pgsplit_pool_connections"));
    assert!(!out.contains("pgsplit_cache_wal_follower_running"));
}

#[test]
fn a_negative_or_nan_counter_reading_shows_as_zero() {
    let mut s = snapshot();
    s.queries = vec![query("00000000000000aa", "app", f64::NAN)];
    let out = render(s).unwrap();
    has(
        &out,
        r#"pgsplit_fingerprint_duration_seconds_total{database="app",fingerprint="00000000000000aa"} 0"#,
    );
}

/// Every family as the hand-written writer rendered `snapshot()`: name, type, label names
/// (`-` for none). Dashboards and alerts query these, so a change here must be on purpose.
const FAMILIES: &str = "\
pgsplit_cache_bytes gauge -
pgsplit_cache_coalesced_total counter -
pgsplit_cache_entries gauge -
pgsplit_cache_evictions_total counter cause
pgsplit_cache_hits_total counter -
pgsplit_cache_invalidations_total counter cause
pgsplit_cache_misses_total counter -
pgsplit_cache_wal_follower_running gauge database
pgsplit_client_connections gauge -
pgsplit_fingerprint_calls_total counter database,fingerprint
pgsplit_fingerprint_duration_seconds_total counter database,fingerprint
pgsplit_fingerprint_errors_total counter database,fingerprint
pgsplit_fingerprint_latency_seconds gauge database,fingerprint,percentile
pgsplit_fingerprint_route_calls_total counter database,fingerprint,route
pgsplit_fingerprint_rows_total counter database,fingerprint
pgsplit_global_position_queries_total counter kind
pgsplit_n_plus_one_bursts_total counter kind
pgsplit_n_plus_one_findings gauge -
pgsplit_pool_acquire_seconds gauge percentile,pool,role
pgsplit_pool_acquisitions_total counter pool,role
pgsplit_pool_connections gauge pool,role,state
pgsplit_pool_connections_broken_total counter pool,role
pgsplit_pool_connections_handed_over_total counter pool,role
pgsplit_pool_connections_opened_total counter pool,role
pgsplit_pool_efficiency_ratio gauge pool,role
pgsplit_pool_max_connections gauge pool,role
pgsplit_pool_timeouts_total counter pool,role
pgsplit_pool_waiting_clients gauge pool,role
pgsplit_primary_only_fingerprints gauge -
pgsplit_queries_total counter -
pgsplit_query_errors_total counter -
pgsplit_query_fingerprints_folded_total counter -
pgsplit_reads_sent_to_primary_total counter reason,role,server
pgsplit_replica_lag_bytes gauge role,server
pgsplit_replica_lag_seconds gauge role,server
pgsplit_replica_position_checks_in_line_total counter role,server
pgsplit_replica_position_checks_total counter role,server
pgsplit_replica_reads_sent_again_total counter role,server
pgsplit_replica_reads_total counter role,server
pgsplit_replica_refusals_total counter -
pgsplit_server_banned_seconds gauge role,server
pgsplit_server_bans_total counter role,server
pgsplit_server_outstanding_requests gauge role,server
pgsplit_server_up gauge role,server
pgsplit_target_met gauge target
pgsplit_uptime_seconds gauge -
";

#[test]
fn names_types_and_label_sets_are_those_of_the_hand_written_writer() {
    let out = render(snapshot()).unwrap();
    let mut families: Vec<(String, String, std::collections::BTreeSet<String>)> = Vec::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            families.push((name.into(), kind.into(), Default::default()));
        } else if !line.starts_with('#') {
            let series = line.rsplit_once(' ').unwrap().0;
            let names = match series.split_once('{') {
                // Label values in the fixture hold no `="`, so splitting on it finds the names.
                Some((_, labels)) => labels
                    .split("\",")
                    .map(|kv| kv.split_once("=\"").unwrap().0)
                    .collect::<Vec<_>>()
                    .join(","),
                None => "-".into(),
            };
            families.last_mut().unwrap().2.insert(names);
        }
    }
    let mut got: Vec<String> = families
        .into_iter()
        .map(|(name, kind, labels)| {
            let labels: Vec<String> = labels.into_iter().collect();
            format!("{name} {kind} {}", labels.join(" "))
        })
        .collect();
    got.sort();
    assert_eq!(got, FAMILIES.lines().collect::<Vec<_>>());
}
