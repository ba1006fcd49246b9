//! Naming both ends of a confirmed loop from the statements' normalized text: the parent's result column and the child's column its parameter is compared with.
//!
//! Parsed with pg_query only when a finding is first made, never per statement.

use pg_query::protobuf::{self, Node};
use pg_query::NodeEnum;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// `table.column` (or `column` when the table is not certain) of a column reference.
fn qualified(fields: &[Node], from: &[(String, String)]) -> Option<String> {
    let names: Vec<&str> = fields
        .iter()
        .filter_map(|f| match &f.node {
            Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
            _ => None,
        })
        .collect();
    if names.len() != fields.len() {
        return None; // `t.*`
    }
    match names.as_slice() {
        [column] => Some(match from {
            [(_, table)] => format!("{table}.{column}"),
            _ => (*column).to_string(),
        }),
        [.., qualifier, column] => {
            let table = from
                .iter()
                .find(|(alias, _)| alias == qualifier)
                .map_or(*qualifier, |(_, t)| t.as_str());
            Some(format!("{table}.{column}"))
        }
        [] => None,
    }
}

/// (alias or name, table name) of every relation in a FROM list, joins included.
fn relations(from: &[Node], out: &mut Vec<(String, String)>) {
    for n in from {
        match &n.node {
            Some(NodeEnum::RangeVar(r)) => {
                let alias = r
                    .alias
                    .as_ref()
                    .map_or(r.relname.clone(), |a| a.aliasname.clone());
                out.push((alias, r.relname.clone()));
            }
            Some(NodeEnum::JoinExpr(j)) => {
                let sides: Vec<Node> = [j.larg.as_deref(), j.rarg.as_deref()]
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect();
                relations(&sides, out);
            }
            _ => {}
        }
    }
}

fn select(sql: &str) -> Option<Box<protobuf::SelectStmt>> {
    let parsed = catch_unwind(AssertUnwindSafe(|| pg_query::parse(sql, 0)))
        .ok()?
        .ok()?;
    let stmt = parsed.protobuf.stmts.into_iter().next()?.stmt?;
    match stmt.node? {
        NodeEnum::SelectStmt(s) => Some(s),
        _ => None,
    }
}

fn unwrap_cast(n: &Node) -> &Node {
    match &n.node {
        Some(NodeEnum::TypeCast(c)) => c.arg.as_deref().map_or(n, unwrap_cast),
        _ => n,
    }
}

/// The parent's result column `index` (0-based): "leads.contact_id", or the output name.
pub fn result_column(sql: &str, index: usize) -> Option<String> {
    let s = select(sql)?;
    let mut from = Vec::new();
    relations(&s.from_clause, &mut from);
    let Some(NodeEnum::ResTarget(t)) = &s.target_list.get(index)?.node else {
        return None;
    };
    let val = t.val.as_deref().map(unwrap_cast);
    let column = match val.and_then(|v| v.node.as_ref()) {
        Some(NodeEnum::ColumnRef(c)) => qualified(&c.fields, &from),
        _ => None,
    };
    match (column, t.name.is_empty()) {
        (Some(c), true) => Some(c),
        (_, false) => Some(t.name.clone()),
        (None, true) => None,
    }
}

/// The child's column that parameter `param` (0-based) is compared with: "conversations.contact_id".
pub fn parameter_column(sql: &str, param: usize) -> Option<String> {
    let s = select(sql)?;
    let mut from = Vec::new();
    relations(&s.from_clause, &mut from);
    let number = i32::try_from(param + 1).ok()?;
    find_comparison(s.where_clause.as_deref()?, number, &from)
}

fn is_param(n: &Node, number: i32) -> bool {
    matches!(&unwrap_cast(n).node, Some(NodeEnum::ParamRef(p)) if p.number == number)
}

fn find_comparison(n: &Node, number: i32, from: &[(String, String)]) -> Option<String> {
    match n.node.as_ref()? {
        NodeEnum::BoolExpr(b) => b.args.iter().find_map(|a| find_comparison(a, number, from)),
        NodeEnum::AExpr(e) => {
            let (l, r) = (e.lexpr.as_deref()?, e.rexpr.as_deref()?);
            let column = |c: &Node| match &unwrap_cast(c).node {
                Some(NodeEnum::ColumnRef(c)) => qualified(&c.fields, from),
                _ => None,
            };
            if is_param(r, number) {
                column(l)
            } else if is_param(l, number) {
                column(r)
            } else {
                None
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ends_are_named() {
        let parent = "SELECT id, contact_id, name FROM leads WHERE status = $1 LIMIT $2";
        assert_eq!(
            result_column(parent, 1).as_deref(),
            Some("leads.contact_id")
        );
        assert_eq!(
            result_column(
                "SELECT l.id, p.city AS town FROM leads l JOIN properties p ON p.id = l.id",
                0
            )
            .as_deref(),
            Some("leads.id")
        );
        assert_eq!(
            result_column(
                "SELECT l.id, p.city AS town FROM leads l JOIN properties p ON p.id = l.id",
                1
            )
            .as_deref(),
            Some("town")
        );
        assert_eq!(result_column("SELECT * FROM leads", 0), None);
        let child =
            "SELECT id, channel FROM conversations WHERE contact_id = $1 ORDER BY id LIMIT $2";
        assert_eq!(
            parameter_column(child, 0).as_deref(),
            Some("conversations.contact_id")
        );
        assert_eq!(parameter_column(child, 1), None);
        assert_eq!(
            parameter_column(
                "SELECT 1 FROM properties p WHERE p.status = $1 AND $2::text = p.city",
                1
            )
            .as_deref(),
            Some("properties.city")
        );
        assert_eq!(parameter_column("not sql", 0), None);
    }
}
