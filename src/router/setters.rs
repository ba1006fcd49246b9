//! Which functions may change session settings the proxy cannot see (set_config, SET, dynamic SQL), resolved from their bodies.
//!
//! A function that runs `SET`, `RESET`, `set_config(.., false)` or dynamic SQL leaves the server
//! connection with settings no statement text shows; the session that called it is then pinned
//! (see `PinReason::SessionState`). Bodies are scanned by token, conservatively: a false positive
//! costs one session its pooling, a false negative would hand another client the settings.

use ahash::{AHashMap, AHashSet};

/// Functions outside pg_catalog/information_schema with their language and body.
const BODIES_SQL: &str = "\
    SELECT lower(p.proname) AS name, l.lanname AS language, coalesce(p.prosrc, '') AS body \
      FROM pg_catalog.pg_proc p \
      JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
      JOIN pg_catalog.pg_language l ON l.oid = p.prolang \
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')";

/// What scanning one body found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct BodyFacts {
    /// Runs SET/RESET/DISCARD, set_config or dynamic SQL itself.
    pub sets: bool,
    /// Names called as `name(`, lowercased, for the transitive closure.
    pub calls: Vec<String>,
}

/// Scans a SQL or PL/pgSQL body. `UPDATE ... SET` and `SET LOCAL` (undone when the transaction
/// ends, which a pooled connection always sees) do not count.
pub(super) fn scan_body(body: &str) -> BodyFacts {
    let mut facts = BodyFacts::default();
    let words = words(body);
    let mut in_update = false;
    for (i, (word, call)) in words.iter().enumerate() {
        match word.as_str() {
            ";" => in_update = false,
            "update" => in_update = true,
            "set" if !in_update => {
                let next = words.get(i + 1).map(|(w, _)| w.as_str());
                if next != Some("local") {
                    facts.sets = true;
                }
            }
            "reset" | "discard" | "execute" | "set_config" => facts.sets = true,
            _ => {}
        }
        if *call && word != "set_config" && !facts.calls.contains(word) {
            facts.calls.push(word.clone());
        }
    }
    facts
}

/// Lowercased words and punctuation, each flagged when a `(` follows it.
pub(super) fn words(body: &str) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<(String, bool)>| {
        if !word.is_empty() {
            out.push((std::mem::take(word), false));
        }
    };
    for c in body.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.extend(c.to_lowercase());
            continue;
        }
        flush(&mut word, &mut out);
        match c {
            '(' => {
                if let Some(last) = out.last_mut() {
                    if last.0 != ";" {
                        last.1 = true;
                    }
                }
            }
            ';' => out.push((";".to_owned(), false)),
            c if c.is_whitespace() => {}
            // Any other punctuation ends a call name ("a.b(" still names b).
            _ => {
                if c != '.' {
                    out.push((String::from(c), false));
                }
            }
        }
    }
    flush(&mut word, &mut out);
    out
}

/// The names (of any overload) that may change settings: direct setters, functions in
/// languages whose bodies cannot be read here, and callers of either, transitively. C and
/// internal functions (extensions) are taken not to.
pub(super) fn setters<'a>(
    functions: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
) -> AHashSet<Box<str>> {
    let mut calls: AHashMap<String, Vec<String>> = AHashMap::new();
    let mut set: AHashSet<Box<str>> = AHashSet::new();
    for (name, language, body) in functions {
        let facts = match language {
            "sql" | "plpgsql" => scan_body(body),
            "c" | "internal" => BodyFacts::default(),
            _ => BodyFacts {
                sets: true,
                calls: Vec::new(),
            },
        };
        if facts.sets {
            set.insert(name.into());
        }
        calls
            .entry(name.to_owned())
            .or_default()
            .extend(facts.calls);
    }
    loop {
        let grown: Vec<&String> = calls
            .iter()
            .filter(|(name, called)| {
                !set.contains(name.as_str()) && called.iter().any(|c| set.contains(c.as_str()))
            })
            .map(|(name, _)| name)
            .collect();
        if grown.is_empty() {
            return set;
        }
        for name in grown {
            set.insert(name.as_str().into());
        }
    }
}

/// Reads every user function's body and returns the names that may change settings.
pub async fn load(
    client: &tokio_postgres::Client,
) -> Result<AHashSet<Box<str>>, tokio_postgres::Error> {
    let rows = client.query(BODIES_SQL, &[]).await?;
    let mut functions = Vec::with_capacity(rows.len());
    for row in &rows {
        let name: String = row.try_get("name")?;
        let language: String = row.try_get("language")?;
        let body: String = row.try_get("body")?;
        functions.push((name, language, body));
    }
    Ok(setters(
        functions
            .iter()
            .map(|(n, l, b)| (n.as_str(), l.as_str(), b.as_str())),
    ))
}

/// A DO block's body, when its language can be read: whether it may change settings given the
/// functions known to.
pub(super) fn do_block_sets(language: &str, body: &str, is_setter: impl Fn(&str) -> bool) -> bool {
    if !language.is_empty() && !language.eq_ignore_ascii_case("plpgsql") {
        return true;
    }
    let facts = scan_body(body);
    facts.sets || facts.calls.iter().any(|c| is_setter(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_that_set_and_bodies_that_do_not() {
        let sets = [
            "BEGIN PERFORM set_config('app.tenant_id', t::text, false); END",
            "BEGIN SET app.tenant_id = 2; END",
            "BEGIN RESET ALL; END",
            "BEGIN EXECUTE 'SET role x'; END",
            "SELECT set_config('a', 'b', true)",
            "BEGIN UPDATE t SET a = 1; SET search_path = x; END",
        ];
        for body in sets {
            assert!(scan_body(body).sets, "{body}");
        }
        let quiet = [
            "BEGIN UPDATE t SET a = 1 WHERE b = 2; RETURN NEW; END",
            "INSERT INTO t VALUES (1) ON CONFLICT (a) DO UPDATE SET b = 2",
            "BEGIN SET LOCAL work_mem = '1MB'; RETURN 1; END",
            "SELECT x FROM t RETURNS SETOF int",
            "SELECT upper($1)",
        ];
        for body in quiet {
            assert!(!scan_body(body).sets, "{body}");
        }
        assert_eq!(
            scan_body("SELECT public.helper(1) + coalesce(x, 0)").calls,
            vec!["helper".to_owned(), "coalesce".to_owned()]
        );
    }

    #[test]
    fn setters_are_closed_over_calls_and_languages() {
        let s = setters([
            (
                "set_tenant",
                "plpgsql",
                "BEGIN PERFORM set_config('a', $1, false); END",
            ),
            ("wrapper", "sql", "SELECT set_tenant($1)"),
            ("outer_wrapper", "plpgsql", "BEGIN PERFORM wrapper(1); END"),
            ("pure", "sql", "SELECT $1 + 1"),
            ("py", "plpython3u", "return 1"),
            ("st_distance", "c", "LWGEOM_distance"),
        ]);
        for name in ["set_tenant", "wrapper", "outer_wrapper", "py"] {
            assert!(s.contains(name), "{name}");
        }
        for name in ["pure", "st_distance"] {
            assert!(!s.contains(name), "{name}");
        }
    }

    #[test]
    fn do_blocks() {
        let none = |_: &str| false;
        assert!(do_block_sets(
            "",
            "BEGIN PERFORM set_config('a','b',false); END",
            none
        ));
        assert!(!do_block_sets(
            "",
            "BEGIN INSERT INTO t VALUES (1); END",
            none
        ));
        assert!(do_block_sets("", "BEGIN PERFORM f(); END", |n: &str| n == "f"));
        assert!(do_block_sets("plpython3u", "pass", none));
    }
}
