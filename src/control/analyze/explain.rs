//! EXPLAIN of normalized statements ($n placeholders) and the index a sequential scan calls for.
//!
//! pg_stat_statements keeps `$1`, `$2` where the constants were, so a plain EXPLAIN fails. In
//! order of preference: no placeholders → plain EXPLAIN; PostgreSQL 16+ → EXPLAIN (GENERIC_PLAN);
//! parameters pgsplit sampled for the same fingerprint → PREPARE + EXPLAIN EXECUTE with them;
//! otherwise PREPARE + EXPLAIN EXECUTE under plan_cache_mode = force_generic_plan with NULLs,
//! which yields the same parameter-independent plan GENERIC_PLAN shows on 16 (the NULLs are
//! never looked at by a generic plan). EXPLAIN never runs the statement, and everything runs in
//! a transaction that is rolled back.

use pg_query::protobuf::{AExprKind, BoolExprType, Token};
use pg_query::NodeEnum;
use serde_json::Value;
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::control::critical;
use crate::control::error::describe;

/// A plan and how it was obtained.
#[derive(Debug, Clone)]
pub struct Plan {
    pub json: Value,
    pub source: &'static str,
}

/// The highest `$n` in a statement (0 when there are none).
pub fn param_count(sql: &str) -> Result<usize, String> {
    let scanned = pg_query::scan(sql).map_err(|e| format!("cannot scan: {e}"))?;
    let mut max = 0;
    for t in scanned
        .tokens
        .iter()
        .filter(|t| t.token == Token::Param as i32)
    {
        let text = sql.get(t.start as usize..t.end as usize).unwrap_or("");
        if let Ok(n) = text.trim_start_matches('$').parse::<usize>() {
            max = max.max(n);
        }
    }
    Ok(max)
}

/// EXPLAINs `sql` as described in the module docs; Err is the reason it was skipped.
pub async fn explain(
    c: &Client,
    version_num: i32,
    sql: &str,
    samples: Option<&[Value]>,
    tag: usize,
) -> Result<Plan, String> {
    let params = param_count(sql)?;
    let name = format!("pgsplit_analyze_{tag}");
    let (setup, statement, source): (Vec<String>, String, &'static str) = if params == 0 {
        (
            vec![],
            format!("EXPLAIN (VERBOSE, FORMAT JSON) {sql}"),
            "plain EXPLAIN",
        )
    } else if version_num >= 160000 {
        (
            vec![],
            format!("EXPLAIN (VERBOSE, FORMAT JSON, GENERIC_PLAN) {sql}"),
            "EXPLAIN (GENERIC_PLAN)",
        )
    } else if let Some(values) = samples.filter(|v| v.len() == params) {
        let args: Vec<String> = values.iter().map(literal).collect();
        (
            vec![format!("PREPARE {name} AS {sql}")],
            format!(
                "EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE {name}({})",
                args.join(", ")
            ),
            "parameters sampled by pgsplit",
        )
    } else {
        let nulls = vec!["NULL"; params].join(", ");
        (
            vec![
                "SET LOCAL plan_cache_mode = force_generic_plan".into(),
                format!("PREPARE {name} AS {sql}"),
            ],
            format!("EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE {name}({nulls})"),
            "generic plan (PREPARE under plan_cache_mode = force_generic_plan)",
        )
    };
    let prepared = setup.iter().any(|s| s.starts_with("PREPARE"));
    let result = run_in_rolled_back_tx(c, &setup, &statement).await;
    if prepared {
        // PREPARE is not undone by ROLLBACK; drop it so the session stays clean.
        let _ = c.batch_execute(&format!("DEALLOCATE {name}")).await;
    }
    let text = result?;
    let json = serde_json::from_str(&text)
        .map_err(|e| format!("EXPLAIN returned unreadable JSON: {e}"))?;
    Ok(Plan { json, source })
}

async fn run_in_rolled_back_tx(
    c: &Client,
    setup: &[String],
    statement: &str,
) -> Result<String, String> {
    let run = async {
        c.batch_execute("BEGIN; SET LOCAL statement_timeout = '10s'")
            .await?;
        for s in setup {
            c.batch_execute(s).await?;
        }
        c.simple_query(statement).await
    };
    let outcome = run.await;
    let _ = c.batch_execute("ROLLBACK").await;
    let messages = outcome.map_err(|e| describe(&e))?;
    messages
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .ok_or_else(|| "EXPLAIN returned no rows".to_string())
}

/// A JSON value as an untyped SQL literal, which PostgreSQL coerces to the parameter's type.
fn literal(v: &Value) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    match v {
        Value::Null => "NULL".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => quote(&n.to_string()),
        Value::String(s) => quote(s),
        other => quote(&other.to_string()),
    }
}

/// A sequential scan with a filter found in a plan.
#[derive(Debug, Clone)]
pub struct SeqScan {
    /// `schema.table`, quoted as quote_ident would.
    pub table: String,
    pub filter: String,
    pub plan_rows: f64,
}

pub fn seq_scans(plan: &Value) -> Vec<SeqScan> {
    let mut out = Vec::new();
    critical::walk(plan, &mut |node| {
        if node.get("Node Type").and_then(Value::as_str) != Some("Seq Scan") {
            return;
        }
        let (Some(rel), Some(filter)) = (
            node.get("Relation Name").and_then(Value::as_str),
            node.get("Filter").and_then(Value::as_str),
        ) else {
            return;
        };
        let schema = node
            .get("Schema")
            .and_then(Value::as_str)
            .unwrap_or("public");
        out.push(SeqScan {
            table: format!(
                "{}.{}",
                crate::control::db::quote_ident(schema),
                crate::control::db::quote_ident(rel)
            ),
            filter: filter.to_string(),
            plan_rows: node.get("Plan Rows").and_then(Value::as_f64).unwrap_or(0.0),
        });
    });
    out
}

/// Columns of a plan's Filter that a btree index can use: equality columns first, then one
/// range column (a btree serves at most one range well, and it must come last). Empty when
/// nothing in the filter is indexable by a plain btree (OR, LIKE, functions of columns...).
pub fn filter_columns(filter: &str) -> Vec<String> {
    let Ok(parsed) = pg_query::parse(&format!("SELECT 1 WHERE {filter}"), 0) else {
        return Vec::new();
    };
    let where_clause = parsed
        .protobuf
        .stmts
        .first()
        .and_then(|s| s.stmt.as_ref())
        .and_then(|n| match &n.node {
            Some(NodeEnum::SelectStmt(s)) => s.where_clause.as_deref(),
            _ => None,
        });
    let (mut eq, mut range) = (Vec::new(), Vec::new());
    if let Some(w) = where_clause {
        collect(w, &mut eq, &mut range);
    }
    let mut cols: Vec<String> = Vec::new();
    for c in eq {
        if !cols.contains(&c) {
            cols.push(c);
        }
    }
    if let Some(r) = range.into_iter().find(|r| !cols.contains(r)) {
        cols.push(r);
    }
    cols.truncate(3);
    cols
}

fn collect(node: &pg_query::protobuf::Node, eq: &mut Vec<String>, range: &mut Vec<String>) {
    match &node.node {
        Some(NodeEnum::BoolExpr(b)) if b.boolop == BoolExprType::AndExpr as i32 => {
            b.args.iter().for_each(|a| collect(a, eq, range));
        }
        Some(NodeEnum::AExpr(e)) => {
            let op = e.name.last().and_then(|n| match &n.node {
                Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                _ => None,
            });
            let (l, r) = (e.lexpr.as_deref(), e.rexpr.as_deref());
            let column = match (l.and_then(column_of), r.and_then(column_of)) {
                (Some(c), None) | (None, Some(c)) => c,
                _ => return,
            };
            let kind = e.kind;
            if kind == AExprKind::AexprOp as i32 && op == Some("=")
                || kind == AExprKind::AexprIn as i32 && op == Some("=")
                || kind == AExprKind::AexprOpAny as i32 && op == Some("=")
            {
                eq.push(column);
            } else if kind == AExprKind::AexprOp as i32
                && matches!(op, Some("<" | ">" | "<=" | ">="))
                || kind == AExprKind::AexprBetween as i32
                || kind == AExprKind::AexprBetweenSym as i32
            {
                range.push(column);
            }
        }
        _ => {}
    }
}

/// The column a ColumnRef (possibly under casts) names, unqualified.
fn column_of(node: &pg_query::protobuf::Node) -> Option<String> {
    match &node.node {
        Some(NodeEnum::ColumnRef(c)) => c.fields.last().and_then(|f| match &f.node {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            _ => None,
        }),
        Some(NodeEnum::TypeCast(t)) => t.arg.as_deref().and_then(column_of),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_placeholders_outside_strings() {
        assert_eq!(
            param_count("SELECT * FROM t WHERE a = $1 AND b = $3 AND c = '$9'").ok(),
            Some(3)
        );
        assert_eq!(param_count("SELECT 1").ok(), Some(0));
    }

    #[test]
    fn equality_columns_come_before_the_range_column() {
        assert_eq!(filter_columns("((leads.email)::text = $1)"), ["email"]);
        assert_eq!(
            filter_columns(
                "((created_at > $2) AND (status = 'active'::text) AND (ml_score >= '7'::numeric))"
            ),
            ["status", "created_at"]
        );
        assert_eq!(filter_columns("(price BETWEEN $1 AND $2)"), ["price"]);
        assert_eq!(filter_columns("(email = ANY ($1))"), ["email"]);
    }

    #[test]
    fn unindexable_filters_give_no_columns() {
        assert!(filter_columns("((a = $1) OR (b = $2))").is_empty());
        assert!(filter_columns("(name ~~ '%smith%'::text)").is_empty());
        assert!(filter_columns("(lower(email) = $1)").is_empty());
        assert!(filter_columns("(SubPlan 1)").is_empty());
        assert!(filter_columns("(a = b)").is_empty());
    }

    #[test]
    fn finds_filtered_seq_scans_in_nested_plans() {
        let plan = serde_json::json!([{"Plan": {"Node Type": "Limit", "Plans": [
            {"Node Type": "Seq Scan", "Relation Name": "leads", "Schema": "public",
             "Filter": "(email = $1)", "Plan Rows": 1.0},
            {"Node Type": "Seq Scan", "Relation Name": "tiny", "Schema": "public"}]}}]);
        let scans = seq_scans(&plan);
        assert_eq!(scans.len(), 1);
        assert_eq!(scans[0].table, "public.leads");
        assert_eq!(scans[0].filter, "(email = $1)");
    }
}
