//! `SHOW QUERIES`: the 100 fingerprints with the most total time.

use crate::admin::table::{ms, n, Table};
use crate::Shared;

pub fn table(shared: &Shared) -> Table {
    let mut q = shared.stats.queries.snapshot();
    q.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
    q.truncate(100);
    Table {
        columns: vec![
            "fingerprint",
            "database",
            "query",
            "calls",
            "errors",
            "rows",
            "total_ms",
            "mean_ms",
            "p50_ms",
            "p90_ms",
            "p95_ms",
            "p99_ms",
            "primary_calls",
            "replica_calls",
            "cache_hits",
        ],
        rows: q
            .into_iter()
            .map(|r| {
                vec![
                    Some(r.fingerprint),
                    Some(r.database),
                    Some(r.query),
                    n(r.calls),
                    n(r.errors),
                    n(r.rows),
                    ms(r.total_ms),
                    ms(r.mean_ms),
                    ms(r.percentiles.p50_ms),
                    ms(r.percentiles.p90_ms),
                    ms(r.percentiles.p95_ms),
                    ms(r.percentiles.p99_ms),
                    n(r.primary_calls),
                    n(r.replica_calls),
                    n(r.cache_hits),
                ]
            })
            .collect(),
    }
}
