//! The report: the seed's JSON shape (performance_targets, findings, recommendations) and a text table.

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::advise::Recommendation;
use super::pg::{IndexStat, TableStat};
use super::stats::PgsplitStats;
use crate::control::db::preview;

/// A slow statement, from pg_stat_statements or from pgsplit.
#[derive(Debug, Clone, Serialize)]
pub struct SlowQuery {
    pub source: &'static str,
    /// pg_stat_statements.queryid, or None for pgsplit entries.
    pub queryid: Option<i64>,
    pub query: String,
    pub calls: f64,
    pub mean_ms: f64,
    pub total_ms: f64,
    pub rows: f64,
    pub p95_ms: Option<f64>,
    /// "mean" (mean over the threshold) and/or "total" (among the costliest in total time).
    pub flagged_by: Vec<&'static str>,
    /// How its plan was obtained, and the scans it shows (pg_stat_statements entries only).
    pub plan_source: Option<String>,
    pub plan: Vec<String>,
}

/// EXPLAIN of one critical path.
#[derive(Debug, Clone, Serialize)]
pub struct CriticalPath {
    pub name: &'static str,
    pub intended_index: &'static str,
    pub indexes_used: Vec<String>,
    pub uses_intended_index: bool,
}

/// Everything collected; `build` and `print` render it.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    pub generated_at: String,
    pub database: String,
    pub threshold_ms: f64,
    pub min_table_rows: i64,
    pub pgsplit: Option<PgsplitStats>,
    pub slow: Vec<SlowQuery>,
    pub tables: Vec<TableStat>,
    pub indexes: Vec<IndexStat>,
    pub stats_age_days: f64,
    pub critical: Option<Vec<CriticalPath>>,
    pub recommendations: Vec<Recommendation>,
    pub skipped: Vec<String>,
}

/// target / actual / status of one performance target.
struct Target {
    key: &'static str,
    target: &'static str,
    actual: String,
    status: &'static str,
}

fn status(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "missed",
        None => "no data",
    }
}

/// A number pgsplit computed itself under `targets.<key>` (bare or `{"actual": n}`).
fn from_targets(stats: &PgsplitStats, keys: &[&str]) -> Option<f64> {
    keys.iter().find_map(|k| {
        let v = stats.targets.get(*k)?;
        v.as_f64()
            .or_else(|| v.get("actual").and_then(Value::as_f64))
    })
}

fn targets(f: &Findings) -> Vec<Target> {
    let no_pgsplit = || "no data: pgsplit /stats unavailable".to_string();
    let latency = |key,
                   target,
                   limit: f64,
                   pick: fn(&super::stats::QueryStat) -> Option<f64>,
                   keys: &[&str]| {
        let Some(s) = &f.pgsplit else {
            return Target {
                key,
                target,
                actual: no_pgsplit(),
                status: "no data",
            };
        };
        let (value, how) = match from_targets(s, keys) {
            Some(v) => (Some(v), "overall"),
            None => (
                s.queries
                    .iter()
                    .filter(|q| q.calls > 0.0)
                    .filter_map(pick)
                    .reduce(f64::max),
                "worst query",
            ),
        };
        match value {
            Some(v) => Target {
                key,
                target,
                actual: format!("{v:.1} ms ({how})"),
                status: status(Some(v < limit)),
            },
            None => Target {
                key,
                target,
                actual: "no data: no proxied queries yet".into(),
                status: "no data",
            },
        }
    };
    let ratio = |key, target, limit: f64, value: Option<f64>| match (&f.pgsplit, value) {
        (None, _) => Target {
            key,
            target,
            actual: no_pgsplit(),
            status: "no data",
        },
        (Some(_), None) => Target {
            key,
            target,
            actual: "no data: not reported by pgsplit".into(),
            status: "no data",
        },
        (Some(_), Some(v)) => Target {
            key,
            target,
            actual: format!("{:.1}%", v * 100.0),
            status: status(Some(v > limit)),
        },
    };
    let mut pool = ratio(
        "connection_pool_efficiency",
        ">90%",
        0.9,
        f.pgsplit.as_ref().and_then(|s| s.pool_efficiency),
    );
    if let Some(p95) = f.pgsplit.as_ref().and_then(|s| s.acquire_p95_ms) {
        pool.actual.push_str(&format!(" (acquire p95 {p95:.1} ms)"));
    }
    let n_plus_one = match &f.pgsplit {
        None => Target {
            key: "n_plus_one_queries",
            target: "0",
            actual: no_pgsplit(),
            status: "no data",
        },
        Some(s) => Target {
            key: "n_plus_one_queries",
            target: "0",
            actual: s.n_plus_one.len().to_string(),
            status: status(Some(s.n_plus_one.is_empty())),
        },
    };
    let critical = match &f.critical {
        None => Target {
            key: "index_usage_critical_paths",
            target: "100%",
            actual: "no data: the seed's tables are not here".into(),
            status: "no data",
        },
        Some(paths) => {
            let ok = paths.iter().filter(|p| p.uses_intended_index).count();
            let pct = if paths.is_empty() {
                0.0
            } else {
                ok as f64 * 100.0 / paths.len() as f64
            };
            Target {
                key: "index_usage_critical_paths",
                target: "100%",
                actual: format!("{ok}/{} ({pct:.0}%)", paths.len()),
                status: status(Some(ok == paths.len())),
            }
        }
    };
    vec![
        latency(
            "p90_query_time_ms",
            "<50",
            50.0,
            |q| q.p90_ms,
            &["p90_ms", "p90_query_time_ms"],
        ),
        latency(
            "p95_query_time_ms",
            "<100",
            100.0,
            |q| q.p95_ms,
            &["p95_ms", "p95_query_time_ms"],
        ),
        pool,
        ratio(
            "cache_hit_rate",
            ">70%",
            0.7,
            f.pgsplit.as_ref().and_then(|s| s.cache_hit_rate),
        ),
        n_plus_one,
        critical,
    ]
}

fn large_seq_scans(f: &Findings) -> impl Iterator<Item = &TableStat> {
    f.tables
        .iter()
        .filter(move |t| t.seq_scan > 0 && t.live_rows >= f.min_table_rows)
}

/// The report as JSON, in the seed's shape plus `critical_paths` and `skipped`.
pub fn build(f: &Findings) -> Value {
    let mut perf = Map::new();
    for t in targets(f) {
        perf.insert(
            t.key.into(),
            json!({"target": t.target, "actual": t.actual, "status": t.status}),
        );
    }
    let seq: Vec<Value> = large_seq_scans(f)
        .map(|t| {
            json!({"table": t.table, "seq_scan": t.seq_scan, "seq_tup_read": t.seq_tup_read, "idx_scan": t.idx_scan,
                   "live_rows": t.live_rows, "size_bytes": t.size_bytes,
                   "avg_rows_per_seq_scan": t.seq_tup_read / t.seq_scan.max(1)})
        })
        .collect();
    let index = |i: &IndexStat| json!({"index": i.index, "table": i.table, "scans": i.scans, "size_bytes": i.size_bytes, "definition": i.definition});
    let unused: Vec<Value> = f
        .indexes
        .iter()
        .filter(|i| i.valid && !i.enforces && i.scans == 0)
        .map(index)
        .collect();
    let invalid: Vec<Value> = f.indexes.iter().filter(|i| !i.valid).map(index).collect();
    json!({
        "generated_at": f.generated_at,
        "database": f.database,
        "threshold_ms": f.threshold_ms,
        "performance_targets": perf,
        "slow_queries": f.slow,
        "sequential_scans": seq,
        "unused_indexes": unused,
        "unused_indexes_note": format!("statistics cover {:.1} days; drop_index is recommended only after {:.0}",
                                       f.stats_age_days, super::advise::UNUSED_MIN_DAYS),
        "invalid_indexes": invalid,
        "critical_paths": f.critical,
        "recommendations": f.recommendations,
        "skipped": f.skipped,
    })
}

/// The human-readable report on stdout.
pub fn print(f: &Findings) {
    println!("pgsplit analyze: {} at {}", f.database, f.generated_at);
    println!("\nperformance targets");
    println!("  {:<28} {:<7} {:<36} status", "metric", "target", "actual");
    for t in targets(f) {
        println!(
            "  {:<28} {:<7} {:<36} {}",
            t.key,
            t.target,
            preview(&t.actual, 36),
            t.status
        );
    }
    println!(
        "\nslow queries (mean >= {} ms, or among the costliest in total time)",
        f.threshold_ms
    );
    if f.slow.is_empty() {
        println!("  none");
    }
    for q in &f.slow {
        println!(
            "  {:<8} {:>8} calls {:>9.1} ms mean {:>10.1} ms total  {}",
            q.source,
            q.calls,
            q.mean_ms,
            q.total_ms,
            preview(&q.query, 70)
        );
        if !q.plan.is_empty() {
            println!("           plan: {}", q.plan.join("; "));
        }
    }
    println!(
        "\nsequential scans on tables with >= {} rows",
        f.min_table_rows
    );
    let mut any = false;
    for t in large_seq_scans(f) {
        any = true;
        println!(
            "  {:<36} {:>8} seq scans {:>12} rows read {:>8} idx scans {:>10} rows",
            t.table, t.seq_scan, t.seq_tup_read, t.idx_scan, t.live_rows
        );
    }
    if !any {
        println!("  none");
    }
    let unused = f
        .indexes
        .iter()
        .filter(|i| i.valid && !i.enforces && i.scans == 0)
        .count();
    let invalid: Vec<&IndexStat> = f.indexes.iter().filter(|i| !i.valid).collect();
    println!(
        "\nindexes: {unused} never scanned (statistics cover {:.1} days), {} INVALID{}",
        f.stats_age_days,
        invalid.len(),
        invalid
            .iter()
            .map(|i| format!(" {}", i.index))
            .collect::<String>()
    );
    if let Some(paths) = &f.critical {
        println!("\ncritical paths");
        for p in paths {
            let mark = if p.uses_intended_index {
                "ok  "
            } else {
                "MISS"
            };
            println!(
                "  {mark} {:<45} wants {:<32} uses {}",
                p.name,
                p.intended_index,
                p.indexes_used.join(", ")
            );
        }
    }
    println!("\nrecommendations");
    if f.recommendations.is_empty() {
        println!("  none");
    }
    for (n, r) in f.recommendations.iter().enumerate() {
        println!("  {}. [{}] {}", n + 1, r.kind, r.detail);
        if let Some(sql) = &r.sql {
            println!("     {sql}");
        }
    }
    if !f.skipped.is_empty() {
        println!("\nskipped");
        for s in &f.skipped {
            println!("  - {s}");
        }
    }
}
