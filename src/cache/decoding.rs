//! Just enough of test_decoding's text output to learn which relations each committed transaction changed.
//!
//! pgoutput would need a publication, and a `FOR ALL TABLES` publication makes every UPDATE and
//! DELETE on a table without a replica identity fail (SQLSTATE 55000) for every application on
//! the server. test_decoding needs none and ships with PostgreSQL.

/// Follows the decoded lines of a slot, yielding each committed transaction's relations.
#[derive(Default)]
pub struct Decoder {
    pending: Vec<String>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the decoded change `{0}`")]
pub struct Unreadable(pub String);

impl Decoder {
    /// Feeds one line; returns the changed relations (unqualified, lowercased) when it ends a
    /// transaction that changed any.
    pub fn feed(&mut self, line: &str) -> Result<Option<Vec<String>>, Unreadable> {
        if line == "BEGIN" || line.starts_with("BEGIN ") {
            self.pending.clear();
        } else if line == "COMMIT" || line.starts_with("COMMIT ") {
            if self.pending.is_empty() {
                return Ok(None);
            }
            let mut names = std::mem::take(&mut self.pending);
            names.sort_unstable();
            names.dedup();
            return Ok(Some(names));
        } else if let Some(rest) = line.strip_prefix("table ") {
            let names =
                relations(rest).ok_or_else(|| Unreadable(line.chars().take(200).collect()))?;
            self.pending.extend(names);
        }
        // Logical messages and anything newer change no relation.
        Ok(None)
    }
}

/// `public.leads: UPDATE: ...` or `a."B c", public.t: TRUNCATE: ...` → unqualified, lowercased
/// names (the proxy compares relation names case-insensitively, erring towards invalidating).
fn relations(s: &str) -> Option<Vec<String>> {
    let mut names = Vec::new();
    let mut current = String::new();
    let mut chars = s.chars().peekable();
    loop {
        match chars.next()? {
            '"' => loop {
                // A quoted identifier; "" inside it is a literal quote.
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        current.push('"');
                    }
                    '"' => break,
                    q => current.push(q),
                }
            },
            '.' => current.clear(),
            ',' => {
                names.push(std::mem::take(&mut current).to_lowercase());
                if chars.peek() == Some(&' ') {
                    chars.next();
                }
            }
            ':' => {
                names.push(current.to_lowercase());
                return Some(names);
            }
            c => current.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_yields_its_relations_at_commit() {
        let mut d = Decoder::default();
        assert_eq!(d.feed("BEGIN").unwrap(), None);
        assert_eq!(
            d.feed("table public.leads: UPDATE: id[integer]:1 v[text]:'a: b'")
                .unwrap(),
            None
        );
        assert_eq!(
            d.feed("table crm.\"Notes\": INSERT: id[integer]:2")
                .unwrap(),
            None
        );
        assert_eq!(
            d.feed("table public.leads: DELETE: id[integer]:3").unwrap(),
            None
        );
        assert_eq!(
            d.feed("COMMIT").unwrap(),
            Some(vec!["leads".to_string(), "notes".to_string()])
        );
        assert_eq!(d.feed("BEGIN 7").unwrap(), None);
        assert_eq!(d.feed("COMMIT 7").unwrap(), None, "empty transaction");
    }

    #[test]
    fn truncate_lists_every_relation_and_quotes_are_understood() {
        assert_eq!(
            relations("public.a, \"odd.\"\"name\"\", x\".b: TRUNCATE: (no-flags)").unwrap(),
            vec!["a".to_string(), "b".to_string()]
        );
        assert_eq!(
            relations("s.\"Has: colon\": INSERT: x").unwrap(),
            vec!["has: colon".to_string()]
        );
        assert!(relations("public.unterminated").is_none());
        let mut d = Decoder::default();
        assert!(d.feed("table \"broken: INSERT").is_err());
        assert_eq!(
            d.feed("message: transactional: 1 prefix: p, sz: 0 content:")
                .unwrap(),
            None
        );
    }
}
