//! Statement families: totals over all fingerprints, and per-fingerprint series for the costliest few.

use super::{counters, gauges, Result, TOP_FINGERPRINTS};
use crate::admin::snapshot::StatsSnapshot;
use crate::stats::QuerySnapshot;
use prometheus::Registry;

const PERCENTILES: [&str; 5] = ["50", "90", "95", "99", "99.9"];

fn fp(q: &QuerySnapshot) -> [&str; 2] {
    [q.fingerprint.as_str(), q.database.as_str()]
}

pub(super) fn register(r: &Registry, s: &StatsSnapshot) -> Result<()> {
    let calls: u64 = s.queries.iter().map(|q| q.calls).sum();
    let errors: u64 = s.queries.iter().map(|q| q.errors).sum();
    counters(
        r,
        "pgsplit_queries_total",
        "Statements answered, all fingerprints.",
        [],
        [([], calls as f64)],
    )?;
    counters(
        r,
        "pgsplit_query_errors_total",
        "Statements that failed, all fingerprints.",
        [],
        [([], errors as f64)],
    )?;
    counters(
        r,
        "pgsplit_query_fingerprints_folded_total",
        "Fingerprints folded into the <other> row by stats.max_fingerprints.",
        [],
        [([], s.queries_folded as f64)],
    )?;

    let mut top: Vec<&QuerySnapshot> = s.queries.iter().collect();
    top.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
    top.truncate(TOP_FINGERPRINTS);
    let per_fp = ["fingerprint", "database"];
    counters(
        r,
        "pgsplit_fingerprint_calls_total",
        "Statements answered, per fingerprint (costliest 50).",
        per_fp,
        top.iter().map(|q| (fp(q), q.calls as f64)),
    )?;
    counters(
        r,
        "pgsplit_fingerprint_errors_total",
        "Statements failed, per fingerprint.",
        per_fp,
        top.iter().map(|q| (fp(q), q.errors as f64)),
    )?;
    counters(
        r,
        "pgsplit_fingerprint_rows_total",
        "Rows returned or affected, per fingerprint.",
        per_fp,
        top.iter().map(|q| (fp(q), q.rows as f64)),
    )?;
    counters(
        r,
        "pgsplit_fingerprint_duration_seconds_total",
        "Total latency, per fingerprint.",
        per_fp,
        top.iter().map(|q| (fp(q), q.total_ms / 1000.0)),
    )?;
    gauges(
        r,
        "pgsplit_fingerprint_latency_seconds",
        "Latency percentiles from the proxy's HDR histogram, per fingerprint.",
        ["fingerprint", "database", "percentile"],
        top.iter().flat_map(|q| {
            let p = q.percentiles;
            let values = [p.p50_ms, p.p90_ms, p.p95_ms, p.p99_ms, p.p999_ms];
            PERCENTILES.into_iter().zip(values).map(move |(pct, v)| {
                let [f, d] = fp(q);
                ([f, d, pct], v / 1000.0)
            })
        }),
    )?;
    counters(
        r,
        "pgsplit_fingerprint_route_calls_total",
        "Statements per fingerprint by where they were answered.",
        ["fingerprint", "database", "route"],
        top.iter().flat_map(|q| {
            [
                ("primary", q.primary_calls),
                ("replica", q.replica_calls),
                ("cache", q.cache_hits),
            ]
            .into_iter()
            .map(move |(route, n)| {
                let [f, d] = fp(q);
                ([f, d, route], n as f64)
            })
        }),
    )
}
