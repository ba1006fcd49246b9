//! `pgsplit analyze`: slow queries, sequential scans, unused/invalid indexes and pgsplit's own
//! statistics, measured against the seed's performance targets, with concrete recommendations.

mod advise;
mod explain;
mod pg;
mod report;
mod stats;

use std::path::PathBuf;

use crate::control::critical;
use crate::control::db;
use crate::control::ControlError;
use report::{CriticalPath, Findings, SlowQuery};

/// How many of the costliest statements count as slow by total time, whatever their mean.
const TOP_BY_TOTAL: usize = 5;

/// Arguments of `pgsplit analyze`.
#[derive(clap::Args, Debug, Clone)]
pub struct AnalyzeArgs {
    /// URL of the database to analyze (the primary), e.g. postgres://app:app@127.0.0.1:15432/app.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// pgsplit's stats endpoint (a bare http://host:port means /stats); skipped when unreachable.
    #[arg(
        long,
        env = "PGSPLIT_STATS_URL",
        default_value = "http://127.0.0.1:9930"
    )]
    pub stats_url: String,

    /// A statement is slow when its mean execution time reaches this many milliseconds.
    #[arg(long, default_value_t = 50.0)]
    pub threshold_ms: f64,

    /// Also write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,

    /// Tables with fewer live rows are small: their sequential scans are not worth an index.
    #[arg(long, default_value_t = 10_000)]
    pub min_table_rows: i64,

    /// How many statements, costliest in total time first, to EXPLAIN.
    #[arg(long, default_value_t = 10)]
    pub explain_top: usize,
}

/// Runs `pgsplit analyze`.
pub async fn run(args: &AnalyzeArgs) -> Result<(), ControlError> {
    let report = collect(args).await?;
    report::print(&report);
    if let Some(path) = &args.export {
        let json = serde_json::to_string_pretty(&report::build(&report)).unwrap_or_default();
        std::fs::write(path, json + "\n").map_err(|source| ControlError::Export {
            path: path.clone(),
            source,
        })?;
        println!("\nreport written to {}", path.display());
    }
    Ok(())
}

/// Gathers every finding.
async fn collect(args: &AnalyzeArgs) -> Result<Findings, ControlError> {
    let db = db::connect(&args.database_url, "pgsplit analyze").await?;
    let c = &db.client;
    // Size functions take AccessShareLock: never hang behind someone's ACCESS EXCLUSIVE lock.
    c.batch_execute("SET lock_timeout = '2s'; SET statement_timeout = '60s'")
        .await
        .map_err(|e| ControlError::query("configuring the session", &e))?;
    let version_num = db::server_version_num(c).await?;
    let generated_at: String = c
        .query_one(
            "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
            &[],
        )
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| ControlError::query("reading the time", &e))?;
    let mut f = Findings {
        generated_at,
        database: db.target.clone(),
        threshold_ms: args.threshold_ms,
        min_table_rows: args.min_table_rows,
        ..Default::default()
    };

    match stats::fetch(&args.stats_url).await {
        Ok(s) => f.pgsplit = Some(s),
        Err(reason) => f.skipped.push(format!("pgsplit statistics: {reason}")),
    }
    let statements = match pg::statements(c).await? {
        Ok(all) => all.into_iter().filter(|s| is_workload(&s.query)).collect(),
        Err(reason) => {
            f.skipped
                .push(format!("slow queries from the server: {reason}"));
            Vec::new()
        }
    };
    f.tables = pg::tables(c).await?;
    f.indexes = pg::indexes(c).await?;
    f.stats_age_days = pg::stats_age_days(c).await?;

    // pg_stat_statements: sorted by total time already; EXPLAIN the costliest.
    for (rank, s) in statements.iter().enumerate() {
        let mut flagged_by = Vec::new();
        if s.mean_ms >= args.threshold_ms {
            flagged_by.push("mean");
        }
        if rank < TOP_BY_TOTAL && s.total_ms >= args.threshold_ms {
            flagged_by.push("total");
        }
        let mut slow = SlowQuery {
            source: "postgres",
            queryid: Some(s.queryid),
            query: s.query.clone(),
            calls: s.calls as f64,
            mean_ms: s.mean_ms,
            total_ms: s.total_ms,
            rows: s.rows as f64,
            p95_ms: None,
            flagged_by,
            plan_source: None,
            plan: Vec::new(),
        };
        if rank < args.explain_top {
            let samples = f
                .pgsplit
                .as_ref()
                .and_then(|p| sampled_parameters(p, &s.query));
            match explain::explain(c, version_num, &s.query, samples.as_deref(), rank).await {
                Ok(plan) => {
                    slow.plan_source = Some(plan.source.to_string());
                    for scan in explain::seq_scans(&plan.json) {
                        slow.plan
                            .push(format!("Seq Scan on {} filter {}", scan.table, scan.filter));
                        match advise::index_for_scan(
                            c,
                            &scan,
                            &s.query,
                            &f.tables,
                            args.min_table_rows,
                        )
                        .await?
                        {
                            Ok(Some(rec))
                                if !f.recommendations.iter().any(|r| r.sql == rec.sql) =>
                            {
                                f.recommendations.push(rec)
                            }
                            Ok(_) => {}
                            Err(note) => f.skipped.push(format!("no index recommended: {note}")),
                        }
                    }
                    slow.plan.extend(
                        critical::plan_indexes(&plan.json)
                            .into_iter()
                            .map(|i| format!("uses {i}")),
                    );
                }
                Err(reason) => f.skipped.push(format!(
                    "EXPLAIN of `{}`: {reason}",
                    db::preview(&s.query, 80)
                )),
            }
        }
        if !slow.flagged_by.is_empty() {
            f.slow.push(slow);
        }
    }
    if let Some(p) = &f.pgsplit {
        for q in p.queries.iter().filter(|q| q.mean_ms >= args.threshold_ms) {
            f.slow.push(SlowQuery {
                source: "pgsplit",
                queryid: None,
                query: q.query.clone(),
                calls: q.calls,
                mean_ms: q.mean_ms,
                total_ms: q.total_ms,
                rows: q.rows,
                p95_ms: q.p95_ms,
                flagged_by: vec!["mean"],
                plan_source: None,
                plan: Vec::new(),
            });
        }
        f.recommendations.extend(advise::from_pgsplit(p));
    }
    f.slow.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
    f.recommendations
        .extend(advise::from_indexes(&f.indexes, f.stats_age_days));
    f.critical = critical_paths(c).await;
    Ok(f)
}

/// Statements worth analysing: DML on user tables (not catalog reads, not utility commands, not
/// the foreign-key checks PostgreSQL runs itself, which pg_stat_statements.track = all records).
fn is_workload(sql: &str) -> bool {
    if sql.contains(" FROM ONLY ") && sql.contains("FOR KEY SHARE OF x") {
        return false;
    }
    let Ok(parsed) = pg_query::parse(sql, 0) else {
        return false;
    };
    let node = parsed
        .protobuf
        .stmts
        .first()
        .and_then(|s| s.stmt.as_ref())
        .and_then(|n| n.node.as_ref());
    let dml = matches!(
        node,
        Some(
            pg_query::NodeEnum::SelectStmt(_)
                | pg_query::NodeEnum::InsertStmt(_)
                | pg_query::NodeEnum::UpdateStmt(_)
                | pg_query::NodeEnum::DeleteStmt(_)
                | pg_query::NodeEnum::MergeStmt(_)
        )
    );
    let tables = parsed.tables();
    let user = |t: &String| {
        !(t.starts_with("pg_")
            || t.starts_with("pg_catalog.")
            || t.starts_with("information_schema."))
    };
    dml && tables.iter().any(user)
}

/// Parameters pgsplit sampled for the statement with the same fingerprint (pg_query's fingerprint
/// ignores constants and $n alike, so pgsplit's text and the server's normalized text match).
fn sampled_parameters(p: &stats::PgsplitStats, sql: &str) -> Option<Vec<serde_json::Value>> {
    let want = pg_query::fingerprint(sql, 0, 0).ok()?.hex;
    p.queries
        .iter()
        .filter(|q| !q.sample_parameters.is_empty())
        .find(|q| {
            q.fingerprint == want
                || pg_query::fingerprint(&q.query, 0, 0).is_ok_and(|f| f.hex == want)
        })
        .and_then(|q| q.sample_parameters.first().cloned())
}

/// EXPLAIN of the seed's critical paths; None when its tables are not in this database.
async fn critical_paths(c: &tokio_postgres::Client) -> Option<Vec<CriticalPath>> {
    let present = c
        .query_one(
            "SELECT to_regclass('leads') IS NOT NULL AND to_regclass('properties') IS NOT NULL",
            &[],
        )
        .await;
    if !present
        .and_then(|r| r.try_get::<_, bool>(0))
        .unwrap_or(false)
    {
        return None;
    }
    let mut out = Vec::new();
    for (i, q) in critical::ALL.iter().enumerate() {
        let used = match explain::explain(c, 0, q.sql, None, 1000 + i).await {
            Ok(plan) => critical::plan_indexes(&plan.json),
            Err(reason) => vec![format!("EXPLAIN failed: {reason}")],
        };
        out.push(CriticalPath {
            name: q.name,
            intended_index: q.index,
            uses_intended_index: used.iter().any(|u| u == q.index),
            indexes_used: used,
        });
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::is_workload;

    #[test]
    fn workload_is_user_dml_only() {
        assert!(is_workload("SELECT id FROM leads WHERE email = $1"));
        assert!(is_workload("UPDATE leads SET status = $1 WHERE id = $2"));
        assert!(!is_workload("SELECT relname FROM pg_class WHERE oid = $1"));
        assert!(!is_workload("CREATE INDEX CONCURRENTLY i ON leads (email)"));
        assert!(!is_workload("EXPLAIN SELECT 1 FROM leads"));
        assert!(!is_workload(
            "SELECT $2 FROM ONLY \"public\".\"leads\" x WHERE \"id\" OPERATOR(pg_catalog.=) $1 FOR KEY SHARE OF x"
        ));
    }
}
