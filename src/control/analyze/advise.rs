//! Turning findings into concrete recommendations: index to create, query to batch or cache, index to drop.

use serde::Serialize;

use super::explain::{filter_columns, SeqScan};
use super::pg::{self, IndexStat, TableStat};
use super::stats::PgsplitStats;
use crate::control::db::quote_ident;
use crate::control::ControlError;

/// A sequential scan is worth an index only if the filter keeps at most this share of the table.
const MAX_SELECTIVITY: f64 = 0.10;
/// An index is called unused only when the statistics cover at least this many days.
pub const UNUSED_MIN_DAYS: f64 = 7.0;
/// A proxied SELECT is a cache candidate from this many calls and this share of proxied time.
const CACHE_MIN_CALLS: f64 = 100.0;
const CACHE_MIN_SHARE: f64 = 0.05;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Recommendation {
    pub kind: &'static str,
    pub detail: String,
    pub sql: Option<String>,
}

/// The index a filtered sequential scan on a large table calls for, or why none is recommended
/// (Err, for the report's notes; Ok(None) when the table is small and the scan is fine).
pub async fn index_for_scan(
    c: &tokio_postgres::Client,
    scan: &SeqScan,
    query: &str,
    tables: &[TableStat],
    min_rows: i64,
) -> Result<Result<Option<Recommendation>, String>, ControlError> {
    let live = tables
        .iter()
        .find(|t| t.table == scan.table)
        .map_or(0, |t| t.live_rows);
    if live < min_rows {
        return Ok(Ok(None));
    }
    let columns = filter_columns(&scan.filter);
    if columns.is_empty() {
        return Ok(Err(format!(
            "Seq Scan on {} filters `{}`, which no plain btree index serves (OR, LIKE or a function of a column)",
            scan.table, scan.filter
        )));
    }
    let share = scan.plan_rows / live as f64;
    if share > MAX_SELECTIVITY {
        return Ok(Err(format!(
            "Seq Scan on {} keeps ~{:.0}% of its rows (`{}`): an index would not beat the scan",
            scan.table,
            share * 100.0,
            scan.filter
        )));
    }
    if let Some((index, column)) = pg::index_leading_with(c, &scan.table, &columns).await? {
        return Ok(Err(format!(
            "Seq Scan on {} filtering `{}` although {index} starts with {column}: a partial index whose \
             predicate a generic plan cannot prove, or low selectivity; check with real parameter values",
            scan.table, scan.filter
        )));
    }
    let bare = scan
        .table
        .rsplit('.')
        .next()
        .unwrap_or(&scan.table)
        .trim_matches('"');
    let mut name = format!("idx_{bare}_{}", columns.join("_"));
    name.truncate(63);
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    Ok(Ok(Some(Recommendation {
        kind: "create_index",
        detail: format!(
            "Seq Scan on {} ({live} rows) filtering `{}` in `{}`",
            scan.table,
            scan.filter,
            crate::control::db::preview(query, 100)
        ),
        sql: Some(format!(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({});",
            quote_ident(&name),
            scan.table,
            cols.join(", ")
        )),
    })))
}

/// batch_query for each N+1 burst and cache_query for hot proxied SELECTs.
pub fn from_pgsplit(stats: &PgsplitStats) -> Vec<Recommendation> {
    let mut out = Vec::new();
    for n in &stats.n_plus_one {
        let parent = n
            .parent_query
            .as_deref()
            .map(|p| format!(" after `{}`", crate::control::db::preview(p, 80)));
        let count = n
            .last_count
            .map(|c| format!(" {c:.0} times"))
            .unwrap_or_default();
        out.push(Recommendation {
            kind: "batch_query",
            detail: format!(
                "N+1{}: `{}` ran{count}{}; fetch all rows in one query",
                n.kind
                    .as_deref()
                    .map(|k| format!(" ({k})"))
                    .unwrap_or_default(),
                crate::control::db::preview(&n.query, 100),
                parent.unwrap_or_default()
            ),
            sql: n.suggestion.clone(),
        });
    }
    let total: f64 = stats.queries.iter().map(|q| q.total_ms).sum();
    for q in &stats.queries {
        let share = if total > 0.0 { q.total_ms / total } else { 0.0 };
        if q.calls >= CACHE_MIN_CALLS
            && q.errors == 0.0
            && share >= CACHE_MIN_SHARE
            && is_plain_select(&q.query)
        {
            out.push(Recommendation {
                kind: "cache_query",
                detail: format!(
                    "`{}` ran {:.0} times, {:.0}% of proxied query time (mean {:.1} ms): cache its result in pgsplit",
                    crate::control::db::preview(&q.query, 100),
                    q.calls,
                    share * 100.0,
                    q.mean_ms
                ),
                sql: None,
            });
        }
    }
    out
}

/// A SELECT without FOR UPDATE/SHARE: its result can be cached.
fn is_plain_select(sql: &str) -> bool {
    match pg_query::parse(sql, 0) {
        Ok(p) => {
            let node = p
                .protobuf
                .stmts
                .first()
                .and_then(|s| s.stmt.as_ref())
                .and_then(|n| n.node.as_ref());
            matches!(node, Some(pg_query::NodeEnum::SelectStmt(s)) if s.locking_clause.is_empty() && s.into_clause.is_none())
        }
        Err(_) => false,
    }
}

/// drop_index for invalid indexes always, and for unused ones once the statistics are old enough.
pub fn from_indexes(indexes: &[IndexStat], stats_age_days: f64) -> Vec<Recommendation> {
    let mut out = Vec::new();
    for i in indexes.iter().filter(|i| !i.valid) {
        out.push(Recommendation {
            kind: "drop_index",
            detail: format!(
                "{} is INVALID (an interrupted concurrent build): it slows writes and serves no reads; drop it and \
                 build it again (`pgsplit migrate` does both for its own indexes)",
                i.index
            ),
            sql: Some(format!("DROP INDEX CONCURRENTLY IF EXISTS {};", i.index)),
        });
    }
    if stats_age_days >= UNUSED_MIN_DAYS {
        for i in indexes
            .iter()
            .filter(|i| i.valid && !i.enforces && i.scans == 0)
        {
            out.push(Recommendation {
                kind: "drop_index",
                detail: format!(
                    "{} on {} has not been scanned in {stats_age_days:.0} days",
                    i.index, i.table
                ),
                sql: Some(format!("DROP INDEX CONCURRENTLY IF EXISTS {};", i.index)),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::analyze::stats::{NPlusOne, QueryStat};

    #[test]
    fn n_plus_one_becomes_batch_and_hot_select_becomes_cache() {
        let stats = PgsplitStats {
            queries: vec![
                QueryStat {
                    query: "SELECT * FROM leads WHERE status = $1".into(),
                    calls: 500.0,
                    total_ms: 900.0,
                    ..Default::default()
                },
                QueryStat {
                    query: "UPDATE leads SET status = $1".into(),
                    calls: 500.0,
                    total_ms: 900.0,
                    ..Default::default()
                },
                QueryStat {
                    query: "SELECT 1".into(),
                    calls: 5.0,
                    total_ms: 1.0,
                    ..Default::default()
                },
            ],
            n_plus_one: vec![NPlusOne {
                query: "SELECT * FROM conversations WHERE contact_id = $1".into(),
                last_count: Some(40.0),
                ..Default::default()
            }],
            ..Default::default()
        };
        let recs = from_pgsplit(&stats);
        let kinds: Vec<_> = recs.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, ["batch_query", "cache_query"]);
        assert!(recs[0].detail.contains("40 times"));
    }

    #[test]
    fn unused_indexes_wait_for_a_week_of_statistics() {
        let idx = |valid, scans| IndexStat {
            table: "public.t".into(),
            index: "public.i".into(),
            scans,
            size_bytes: 8192,
            valid,
            enforces: false,
            definition: String::new(),
        };
        assert!(from_indexes(&[idx(true, 0)], 1.0).is_empty());
        assert_eq!(from_indexes(&[idx(true, 0)], 8.0).len(), 1);
        assert_eq!(from_indexes(&[idx(false, 0)], 0.0).len(), 1);
        assert!(from_indexes(&[idx(true, 3)], 30.0).is_empty());
    }
}
