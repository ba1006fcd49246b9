//! The one model of what a request writes: relation keys and the write set that read-your-writes and the result cache both consume.

use std::borrow::Cow;

use super::Analysis;

/// The key every subsystem tracks a relation by: its unqualified, unquoted, lowercased name
/// (`Public."Leads"` → `leads`).
///
/// `public.t`, `t` and `audit.t` share one key. That is coarser than the truth, but a read is
/// never matched against the wrong write: which `t` an unqualified name means depends on the
/// session's search_path, which a write and a later read need not share. Borrows when the name
/// is already a key (the router emits lowercased names), so the read path allocates nothing.
pub fn relation_key(name: &str) -> Cow<'_, str> {
    let last = name.rsplit('.').next().unwrap_or(name);
    let bare = last.trim_matches('"');
    if bare.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(bare.to_ascii_lowercase())
    } else {
        Cow::Borrowed(bare)
    }
}

/// The relations a request (or a transaction so far) wrote, by [`relation_key`]; `unknown` when
/// it may have written anything (CALL, DO, a FunctionCall, a function of unknown body), which
/// then counts for every relation.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct WriteSet {
    pub tables: Vec<Box<str>>,
    pub unknown: bool,
}

impl WriteSet {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && !self.unknown
    }

    /// Adds `table`; returns false if it was there already.
    pub fn add(&mut self, table: &str) -> bool {
        let key = relation_key(table);
        if self.tables.iter().any(|t| **t == *key) {
            return false;
        }
        self.tables.push(key.into());
        true
    }

    /// Adds what one executed statement writes, with the reach the catalog gave it.
    pub fn add_statement(&mut self, a: &Analysis) {
        self.unknown |= a.writes_unknown;
        for t in &a.tables_written {
            self.add(t);
        }
    }

    pub fn merge(&mut self, other: WriteSet) {
        self.unknown |= other.unknown;
        for t in other.tables {
            self.add(&t);
        }
    }

    /// Whether a write of this set may have changed `table`.
    pub fn touches(&self, table: &str) -> bool {
        self.unknown || self.tables.iter().any(|t| **t == *relation_key(table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_meet_across_qualification_quoting_and_case() {
        for name in [
            "leads",
            "public.leads",
            "Public.\"Leads\"",
            "audit.leads",
            "\"LEADS\"",
        ] {
            assert_eq!(relation_key(name), "leads", "{name}");
        }
        assert_eq!(relation_key("a.b.c"), "c");
        assert!(matches!(relation_key("public.t"), Cow::Borrowed("t")));
    }

    #[test]
    fn a_set_holds_each_key_once() {
        let mut s = WriteSet::default();
        assert!(s.is_empty());
        assert!(s.add("public.t"));
        assert!(!s.add("T"));
        assert!(s.add("u"));
        assert_eq!(s.tables, vec![Box::from("t"), Box::from("u")]);
        assert!(s.touches("app.t") && !s.touches("v"));
        let mut other = WriteSet::default();
        other.add("v");
        other.unknown = true;
        s.merge(other);
        assert!(s.touches("anything"));
        assert_eq!(s.tables.len(), 3);
    }
}
