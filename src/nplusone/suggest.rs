//! The suggested fix for a finding, derived from its normalized query (never from parameter values).

use super::Kind;
use serde::Serialize;

/// How pgsplit's result cache stands to a repeated statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheUse {
    /// `[cache] enabled = false`.
    Off,
    /// The cache is on but never answers this statement (not a cacheable read).
    NotCacheable,
    /// The cache may answer it.
    On,
}

/// Both ends of a confirmed loop, named from the statements' text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowNames {
    /// 0-based parameter of the child that takes the parent's values.
    pub param: usize,
    /// "conversations.contact_id": what the parameter is compared with in the child.
    pub child_column: Option<String>,
    /// "leads.contact_id": the parent's result column the values come from.
    pub parent_column: Option<String>,
}

impl FlowNames {
    /// "conversations.contact_id takes leads.contact_id", with `$n` / "column n" where a name is unknown.
    pub fn describe(&self, parent_column_index: Option<usize>) -> String {
        let child = self
            .child_column
            .clone()
            .unwrap_or_else(|| format!("${}", self.param + 1));
        let parent = self.parent_column.clone().unwrap_or_else(|| {
            parent_column_index.map_or_else(
                || "a parent column".to_string(),
                |i| format!("the parent's column {}", i + 1),
            )
        });
        format!("{child} takes {parent}")
    }
}

/// One line telling the developer how to remove an N+1 loop or a batch of writes.
pub fn suggest(kind: Kind, query: &str, parent: Option<&str>, flow: Option<&FlowNames>) -> String {
    match kind {
        Kind::NPlusOne => match flow {
            Some(f) => loop_fix(query, f),
            None => {
                let join = if parent.is_some() {
                    "or join it with the parent query"
                } else {
                    "or join it with the query that produced the keys"
                };
                match any_form(query, None) {
                    Some(q) => format!(
                        "fetch the rows for all parents in one query: {q} (bind one array of keys), {join}"
                    ),
                    None => format!(
                        "fetch the rows for all parents in one query (WHERE key = ANY($1)), {join}"
                    ),
                }
            }
        },
        Kind::RepeatedIdentical => repeated(CacheUse::Off, None),
        Kind::BatchableWrites => {
            let verb = query
                .trim_start()
                .split(|c: char| !c.is_ascii_alphabetic())
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            match verb.as_str() {
                "INSERT" => "send the rows in one multi-row INSERT ... VALUES (...), (...), or with COPY".to_string(),
                "UPDATE" => "update all rows in one statement: UPDATE ... FROM (VALUES ...) or WHERE key = ANY($1)".to_string(),
                "DELETE" => "delete all rows in one statement: DELETE ... WHERE key = ANY($1)".to_string(),
                _ => "send the rows in one statement (multi-row VALUES, = ANY($1), or COPY) instead of one per row".to_string(),
            }
        }
    }
}

/// The exact fix of a loop whose data flow is known.
fn loop_fix(query: &str, f: &FlowNames) -> String {
    let n = f.param + 1;
    let values = f.parent_column.as_deref().map_or_else(
        || "the parent's values".to_string(),
        |c| format!("the {c} values of the parent's rows"),
    );
    let any = match any_form(query, Some(n)) {
        Some(q) => format!("{q} with ${n} bound to an array of {values}"),
        None => format!("one query with ... = ANY(${n}) bound to an array of {values}"),
    };
    let join = match (&f.child_column, &f.parent_column) {
        (Some(c), Some(p)) => match (c.split_once('.'), p.split_once('.')) {
            // A loop over the same table (listings in each listing's city) joins it to itself.
            (Some((table, column)), Some((parent_table, _))) if table == parent_table => {
                format!("or join it into the parent query: ... JOIN {table} AS child ON child.{column} = {p}")
            }
            (Some((table, _)), _) => {
                format!("or join it into the parent query: ... JOIN {table} ON {c} = {p}")
            }
            _ => format!("or join it into the parent query: ... JOIN ... ON {c} = {p}"),
        },
        _ => "or join it into the parent query on that column".to_string(),
    };
    format!(
        "{}: fetch the rows for all parents in one query: {any}, {join}",
        f.describe(None)
    )
}

/// The advice for a statement repeated with the same parameters; `cached` is the share of its
/// executions the result cache answered.
pub fn repeated(cache: CacheUse, cached: Option<f64>) -> String {
    let head = "the same statement ran with the same parameters each time";
    match cache {
        CacheUse::Off => format!(
            "{head}: reuse the first result (cache it in the application, or turn on pgsplit's result cache: [cache] enabled = true)"
        ),
        CacheUse::NotCacheable => format!(
            "{head}: pgsplit's result cache cannot answer it (not a cacheable read): reuse the first result in the application"
        ),
        CacheUse::On => format!(
            "{head}: pgsplit's result cache already answers {:.0}% of these executions (the others missed: first reads, expiries, writes): nothing to change in pgsplit; reusing the result in the application would also save the round trips",
            cached.unwrap_or(0.0) * 100.0
        ),
    }
}

/// The query with its first `column = $n` comparison (of placeholder `only`, when given) turned
/// into `column = ANY($n)`.
fn any_form(query: &str, only: Option<usize>) -> Option<String> {
    let b = query.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            let mut end = i + 1;
            while b.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
            let number: Option<usize> = query[i + 1..end].parse().ok();
            if only.is_none_or(|n| number == Some(n)) && compares_column(&b[..i]) {
                return Some(format!(
                    "{}ANY({}){}",
                    &query[..i],
                    &query[i..end],
                    &query[end..]
                ));
            }
            i = end;
        } else {
            i += 1;
        }
    }
    None
}

/// Whether the text before a placeholder ends with `identifier =` (not `<=`, `!=`, `:=`...).
fn compares_column(before: &[u8]) -> bool {
    let t = trim_end(before);
    let Some((&b'=', t)) = t.split_last() else {
        return false;
    };
    if t.last()
        .is_some_and(|c| matches!(c, b'<' | b'>' | b'!' | b':' | b'='))
    {
        return false;
    }
    trim_end(t)
        .last()
        .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'"')
}

fn trim_end(b: &[u8]) -> &[u8] {
    let n = b
        .iter()
        .rev()
        .take_while(|c| c.is_ascii_whitespace())
        .count();
    &b[..b.len() - n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_get_an_any_query() {
        let s = suggest(
            Kind::NPlusOne,
            "SELECT * FROM notes WHERE lead_id = $1",
            Some("SELECT id FROM leads"),
            None,
        );
        assert!(
            s.contains("SELECT * FROM notes WHERE lead_id = ANY($1)"),
            "{s}"
        );
        assert!(s.contains("join it with the parent query"), "{s}");
        let s = suggest(
            Kind::NPlusOne,
            "SELECT * FROM t WHERE created_at >= $1 AND t.\"Owner\" = $2 LIMIT $3",
            None,
            None,
        );
        assert!(s.contains("t.\"Owner\" = ANY($2) LIMIT $3"), "{s}");
        let s = suggest(Kind::NPlusOne, "SELECT f($1)", None, None);
        assert!(s.contains("WHERE key = ANY($1)"), "{s}");
    }

    #[test]
    fn writes_and_repeats() {
        assert!(suggest(
            Kind::BatchableWrites,
            "INSERT INTO t VALUES ($1)",
            None,
            None
        )
        .contains("COPY"));
        assert!(
            suggest(Kind::BatchableWrites, "update t set a = $1", None, None)
                .contains("UPDATE ... FROM")
        );
        assert!(suggest(Kind::RepeatedIdentical, "SELECT 1", None, None).contains("cache"));
    }

    #[test]
    fn a_known_flow_gives_the_exact_fix() {
        let f = FlowNames {
            param: 1,
            child_column: Some("conversations.contact_id".into()),
            parent_column: Some("leads.contact_id".into()),
        };
        let s = suggest(
            Kind::NPlusOne,
            "SELECT id FROM conversations WHERE tenant_id = $1 AND contact_id = $2",
            Some("SELECT id, contact_id FROM leads"),
            Some(&f),
        );
        assert!(
            s.starts_with("conversations.contact_id takes leads.contact_id: "),
            "{s}"
        );
        assert!(s.contains("tenant_id = $1 AND contact_id = ANY($2) with $2 bound to an array of the leads.contact_id values"), "{s}");
        assert!(
            s.contains("JOIN conversations ON conversations.contact_id = leads.contact_id"),
            "{s}"
        );
    }

    #[test]
    fn a_loop_over_its_own_table_joins_it_to_itself() {
        let f = FlowNames {
            param: 0,
            child_column: Some("properties.city".into()),
            parent_column: Some("properties.city".into()),
        };
        let s = suggest(
            Kind::NPlusOne,
            "SELECT id FROM properties WHERE city = $1",
            Some("SELECT id, city FROM properties"),
            Some(&f),
        );
        assert!(
            s.ends_with("JOIN properties AS child ON child.city = properties.city"),
            "{s}"
        );
    }

    #[test]
    fn repeats_recommend_the_cache_only_when_it_cannot_answer() {
        assert!(repeated(CacheUse::Off, None).contains("turn on pgsplit's result cache"));
        assert!(repeated(CacheUse::NotCacheable, None).contains("cannot answer"));
        let on = repeated(CacheUse::On, Some(0.97));
        assert!(on.contains("already answers 97%"), "{on}");
        assert!(!on.contains("turn on"), "{on}");
        assert!(!on.contains("  "), "one line, no runs of spaces: {on}");
    }
}
