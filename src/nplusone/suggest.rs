//! The suggested fix for a finding, derived from its normalized query (never from parameter values).

use super::Kind;

/// One line telling the developer how to remove the burst.
pub fn suggest(kind: Kind, query: &str, parent: Option<&str>) -> String {
    match kind {
        Kind::NPlusOne => {
            let join = if parent.is_some() {
                "or join it with the parent query"
            } else {
                "or join it with the query that produced the keys"
            };
            match any_form(query) {
                Some(q) => format!(
                    "fetch the rows for all parents in one query: {q} (bind one array of keys), {join}"
                ),
                None => format!(
                    "fetch the rows for all parents in one query (WHERE key = ANY($1)), {join}"
                ),
            }
        }
        Kind::RepeatedIdentical => "the same statement ran with the same parameters each time: \
             reuse the first result (cache it in the application, or let pgsplit's result cache answer it)"
            .to_string(),
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

/// The query with its first `column = $n` comparison turned into `column = ANY($n)`.
fn any_form(query: &str) -> Option<String> {
    let b = query.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            let mut end = i + 1;
            while b.get(end).is_some_and(u8::is_ascii_digit) {
                end += 1;
            }
            if compares_column(&b[..i]) {
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
        );
        assert!(s.contains("t.\"Owner\" = ANY($2) LIMIT $3"), "{s}");
        let s = suggest(Kind::NPlusOne, "SELECT f($1)", None);
        assert!(s.contains("WHERE key = ANY($1)"), "{s}");
    }

    #[test]
    fn writes_and_repeats() {
        assert!(suggest(Kind::BatchableWrites, "INSERT INTO t VALUES ($1)", None).contains("COPY"));
        assert!(
            suggest(Kind::BatchableWrites, "update t set a = $1", None).contains("UPDATE ... FROM")
        );
        assert!(suggest(Kind::RepeatedIdentical, "SELECT 1", None).contains("cache"));
    }
}
