//! `SHOW N_PLUS_ONE`: the N+1 query patterns found so far.

use crate::admin::table::{ms, n, Table};
use crate::Shared;

pub fn table(shared: &Shared) -> Table {
    Table {
        columns: vec![
            "fingerprint",
            "database",
            "query",
            "parent_fingerprint",
            "parent_query",
            "kind",
            "occurrences",
            "last_count",
            "max_count",
            "total_ms",
            "first_seen",
            "last_seen",
            "application_name",
            "suggestion",
        ],
        rows: shared
            .n_plus_one
            .registry
            .snapshot()
            .into_iter()
            .map(|f| {
                vec![
                    Some(f.fingerprint),
                    Some(f.database),
                    Some(f.query),
                    f.parent_fingerprint,
                    Some(f.parent_query).filter(|q| !q.is_empty()),
                    n(f.kind.as_str()),
                    n(f.occurrences),
                    n(f.last_count),
                    n(f.max_count),
                    ms(f.total_ms),
                    Some(utc(f.first_seen)),
                    Some(utc(f.last_seen)),
                    Some(f.application_name),
                    Some(f.suggestion),
                ]
            })
            .collect(),
    }
}

/// Unix seconds as RFC 3339 UTC with milliseconds.
fn utc(unix_s: f64) -> String {
    let ms = (unix_s.max(0.0) * 1000.0) as i64;
    let (days, rem_ms) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = crate::civil::civil_from_days(days);
    let s = rem_ms / 1000;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        rem_ms % 1000
    )
}
