//! Reading pg_stat_statements, pg_stat_user_tables and pg_stat_user_indexes for this database.

use tokio_postgres::{Client, Row};

use crate::control::db;
use crate::control::ControlError;

/// One pg_stat_statements row of the connected database.
#[derive(Debug, Clone)]
pub struct StatementStat {
    pub queryid: i64,
    pub query: String,
    pub calls: i64,
    pub total_ms: f64,
    pub mean_ms: f64,
    pub rows: i64,
}

#[derive(Debug, Clone)]
pub struct TableStat {
    pub table: String,
    pub seq_scan: i64,
    pub seq_tup_read: i64,
    pub idx_scan: i64,
    pub live_rows: i64,
    pub size_bytes: i64,
}

#[derive(Debug, Clone)]
pub struct IndexStat {
    pub table: String,
    pub index: String,
    pub scans: i64,
    pub size_bytes: i64,
    pub valid: bool,
    /// Unique, primary key or backing a constraint: never a drop candidate.
    pub enforces: bool,
    pub definition: String,
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    i: usize,
    ctx: &str,
) -> Result<T, ControlError> {
    row.try_get(i).map_err(|e| ControlError::query(ctx, &e))
}

/// Statements of this database (pg_stat_statements is cluster-wide), or why there are none.
pub async fn statements(c: &Client) -> Result<Result<Vec<StatementStat>, String>, ControlError> {
    if !db::extension_installed(c, "pg_stat_statements").await? {
        return Ok(Err("pg_stat_statements is not installed in this database (CREATE EXTENSION \
                       pg_stat_statements as a superuser; it must also be in shared_preload_libraries)"
            .into()));
    }
    let ctx = "reading pg_stat_statements";
    let rows = match c
        .query(
            "SELECT coalesce(queryid, 0), coalesce(query, ''), calls, total_exec_time, mean_exec_time, rows \
             FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND calls > 0 \
             ORDER BY total_exec_time DESC",
            &[],
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) => return Ok(Err(format!("pg_stat_statements is not readable: {}", crate::control::error::describe(&e)))),
    };
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(StatementStat {
            queryid: get(r, 0, ctx)?,
            query: get(r, 1, ctx)?,
            calls: get(r, 2, ctx)?,
            total_ms: get(r, 3, ctx)?,
            mean_ms: get(r, 4, ctx)?,
            rows: get(r, 5, ctx)?,
        });
    }
    Ok(Ok(out))
}

/// User tables that were sequentially scanned, most rows read first.
pub async fn tables(c: &Client) -> Result<Vec<TableStat>, ControlError> {
    let ctx = "reading pg_stat_user_tables";
    let rows = c
        .query(
            "SELECT quote_ident(schemaname) || '.' || quote_ident(relname), coalesce(seq_scan, 0), \
                    coalesce(seq_tup_read, 0), coalesce(idx_scan, 0), greatest(n_live_tup, 0), pg_table_size(relid) \
             FROM pg_stat_user_tables ORDER BY seq_tup_read DESC NULLS LAST",
            &[],
        )
        .await
        .map_err(|e| ControlError::query(ctx, &e))?;
    rows.iter()
        .map(|r| {
            Ok(TableStat {
                table: get(r, 0, ctx)?,
                seq_scan: get(r, 1, ctx)?,
                seq_tup_read: get(r, 2, ctx)?,
                idx_scan: get(r, 3, ctx)?,
                live_rows: get(r, 4, ctx)?,
                size_bytes: get(r, 5, ctx)?,
            })
        })
        .collect()
}

pub async fn indexes(c: &Client) -> Result<Vec<IndexStat>, ControlError> {
    let ctx = "reading pg_stat_user_indexes";
    let rows = c
        .query(
            "SELECT quote_ident(s.schemaname) || '.' || quote_ident(s.relname), \
                    quote_ident(s.schemaname) || '.' || quote_ident(s.indexrelname), \
                    coalesce(s.idx_scan, 0), pg_relation_size(s.indexrelid), i.indisvalid AND i.indisready, \
                    i.indisunique OR i.indisprimary OR EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = s.indexrelid), \
                    pg_get_indexdef(s.indexrelid) \
             FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid \
             ORDER BY pg_relation_size(s.indexrelid) DESC",
            &[],
        )
        .await
        .map_err(|e| ControlError::query(ctx, &e))?;
    rows.iter()
        .map(|r| {
            Ok(IndexStat {
                table: get(r, 0, ctx)?,
                index: get(r, 1, ctx)?,
                scans: get(r, 2, ctx)?,
                size_bytes: get(r, 3, ctx)?,
                valid: get(r, 4, ctx)?,
                enforces: get(r, 5, ctx)?,
                definition: get(r, 6, ctx)?,
            })
        })
        .collect()
}

/// Days the cumulative statistics cover: since the last reset, else since the server started
/// (a lower bound: PostgreSQL 15 keeps statistics across clean restarts).
pub async fn stats_age_days(c: &Client) -> Result<f64, ControlError> {
    let row = c
        .query_one(
            "SELECT extract(epoch FROM now() - coalesce(stats_reset, pg_postmaster_start_time()))::float8 / 86400 \
             FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await
        .map_err(|e| ControlError::query("reading pg_stat_database", &e))?;
    get(&row, 0, "reading pg_stat_database")
}

/// A valid index on `table` (partial ones included) whose first column is one of `columns`:
/// (index, column). Its existence means the scan is a selectivity or parameter question, not a
/// missing index (a generic plan cannot prove a partial index's predicate for `status = $1`).
pub async fn index_leading_with(
    c: &Client,
    table: &str,
    columns: &[String],
) -> Result<Option<(String, String)>, ControlError> {
    let ctx = "looking for existing indexes";
    let row = c
        .query_opt(
            "SELECT x.relname::text, a.attname::text FROM pg_index i \
             JOIN pg_class x ON x.oid = i.indexrelid \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
             WHERE i.indrelid = to_regclass($1) AND i.indisvalid AND a.attname = ANY($2) \
             ORDER BY array_position($2, a.attname::text) LIMIT 1",
            &[&table, &columns],
        )
        .await
        .map_err(|e| ControlError::query(ctx, &e))?;
    match row {
        Some(r) => Ok(Some((get(&r, 0, ctx)?, get(&r, 1, ctx)?))),
        None => Ok(None),
    }
}
