//! `SHOW STATS`: one row of totals over every query fingerprint.

use crate::admin::table::{ms, n, Table};
use crate::Shared;

pub fn table(shared: &Shared) -> Table {
    let q = shared.stats.queries.snapshot();
    let (count, p) = shared.stats.queries.overall();
    let calls: u64 = q.iter().map(|r| r.calls).sum();
    let errors: u64 = q.iter().map(|r| r.errors).sum();
    let rows: u64 = q.iter().map(|r| r.rows).sum();
    let total: f64 = q.iter().map(|r| r.total_ms).sum();
    Table {
        columns: vec![
            "uptime_s",
            "clients",
            "fingerprints",
            "calls",
            "errors",
            "rows",
            "total_ms",
            "p50_ms",
            "p90_ms",
            "p95_ms",
            "p99_ms",
            "folded",
        ],
        rows: vec![vec![
            n(shared.stats.uptime_s()),
            n(shared.cancels.len()),
            n(q.len()),
            n(calls.max(count)),
            n(errors),
            n(rows),
            ms(total),
            ms(p.p50_ms),
            ms(p.p90_ms),
            ms(p.p95_ms),
            ms(p.p99_ms),
            n(shared.stats.queries.folded()),
        ]],
    }
}
