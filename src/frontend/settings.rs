//! A client's session settings (startup parameters and SETs), replayed on each server connection it uses.

use std::hash::{BuildHasher, Hasher};

/// The hash a server connection has when a client's settings could not be tracked.
pub const DIRTY: u64 = u64::MAX;

/// Name → SET statement, sorted by name. A sorted Vec rather than a BTreeMap: clients have a
/// handful of settings at most, and a map node would cost every idle client half a kilobyte.
#[derive(Clone, Debug, Default, PartialEq)]
struct SortedMap(Vec<(String, String)>);

impl SortedMap {
    fn insert(&mut self, name: String, stmt: String) {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(&name)) {
            Ok(i) => self.0[i].1 = stmt,
            Err(i) => self.0.insert(i, (name, stmt)),
        }
    }

    fn get(&self, name: &str) -> Option<&String> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| &self.0[i].1)
    }

    fn remove(&mut self, name: &str) {
        if let Ok(i) = self.0.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            self.0.remove(i);
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(n, s)| (n, s))
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Values from the startup packet, which RESET restores, as on PostgreSQL.
    base: SortedMap,
    /// Effective settings: name → the SET statement that produces it.
    current: SortedMap,
    hash: u64,
    /// Hash of the settings that can change a query's result (all but application_name),
    /// part of the result cache's key.
    result_hash: u64,
}

/// Startup parameters that are not settings.
const NOT_SETTINGS: &[&str] = &["user", "database", "replication", "options"];

impl Settings {
    /// Settings from startup parameters, skipping values equal to what the server reports by
    /// default, so most clients need no replay at all.
    pub fn from_startup(
        params: &[(String, String)],
        server_defaults: &[(bytes::Bytes, bytes::Bytes)],
    ) -> Settings {
        let mut base = SortedMap::default();
        let mut add = |name: &str, value: &str| {
            let lname = name.to_ascii_lowercase();
            let default = server_defaults
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(lname.as_bytes()))
                .map(|(_, v)| v.as_ref());
            if default == Some(value.as_bytes()) {
                return;
            }
            base.insert(
                lname.clone(),
                format!("SET {} = {}", quote_ident(&lname), quote_literal(value)),
            );
        };
        for (name, value) in params {
            if name == "options" {
                for (n, v) in parse_options(value) {
                    add(&n, &v);
                }
            } else if !NOT_SETTINGS.contains(&name.as_str()) {
                add(name, value);
            }
        }
        let mut s = Settings {
            current: base.clone(),
            base,
            hash: 0,
            result_hash: 0,
        };
        s.rehash();
        s
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn result_hash(&self) -> u64 {
        self.result_hash
    }

    pub fn set(&mut self, name: &str, statement: &str) {
        self.current.insert(name.to_string(), statement.to_string());
        self.rehash();
    }

    pub fn reset(&mut self, name: &str) {
        match self.base.get(name) {
            Some(b) => {
                self.current.insert(name.to_string(), b.clone());
            }
            None => self.current.remove(name),
        }
        self.rehash();
    }

    pub fn reset_all(&mut self) {
        self.current = self.base.clone();
        self.rehash();
    }

    /// SQL that turns any server connection of this pool into this client's session.
    pub fn replay_sql(&self) -> String {
        let mut sql = String::from("SET SESSION AUTHORIZATION DEFAULT; RESET ALL;");
        // Role changes go last so settings a role may not change are applied first.
        let (roles, rest): (Vec<_>, Vec<_>) = self
            .current
            .iter()
            .partition(|(n, _)| n.as_str() == "role" || n.as_str() == "session_authorization");
        for (_, stmt) in rest.into_iter().chain(roles) {
            sql.push(' ');
            sql.push_str(stmt);
            sql.push(';');
        }
        sql
    }

    /// How plain string literals read in this session: `standard_conforming_strings`, from
    /// the SET or startup value that produces it (on unless it is a false boolean).
    pub fn string_rules(&self) -> crate::router::Strings {
        match self.current.get("standard_conforming_strings") {
            Some(stmt) if is_false(setting_value(stmt)) => crate::router::Strings::Backslash,
            _ => crate::router::Strings::Standard,
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.current.get(name).map(String::as_str)
    }

    fn rehash(&mut self) {
        if self.current.is_empty() {
            self.hash = 0;
            self.result_hash = 0;
            return;
        }
        let mut h = ahash::RandomState::with_seeds(1, 2, 3, 4).build_hasher();
        let mut r = ahash::RandomState::with_seeds(5, 6, 7, 8).build_hasher();
        for (n, s) in self.current.iter() {
            h.write(n.as_bytes());
            h.write_u8(0);
            h.write(s.as_bytes());
            h.write_u8(0);
            if n != "application_name" {
                r.write(n.as_bytes());
                r.write_u8(0);
                r.write(s.as_bytes());
                r.write_u8(0);
            }
        }
        let v = h.finish();
        self.hash = if v == 0 || v == DIRTY { 1 } else { v };
        self.result_hash = r.finish();
    }
}

/// The value in `SET name = value` / `SET name TO value`, unquoted and lowercased.
fn setting_value(stmt: &str) -> String {
    let lower = stmt.to_ascii_lowercase();
    let at = match (lower.rfind('='), lower.rfind(" to ")) {
        (Some(e), Some(t)) => e.max(t + 3),
        (Some(e), None) => e,
        (None, Some(t)) => t + 3,
        (None, None) => return String::new(),
    };
    lower[at + 1..]
        .trim()
        .trim_end_matches(';')
        .trim()
        .trim_matches(|c| c == '\'' || c == '"')
        .trim()
        .to_owned()
}

/// PostgreSQL's parse_bool for false: any prefix of "false" or "no", "off" (at least "of"), "0".
fn is_false(v: String) -> bool {
    !v.is_empty()
        && ("false".starts_with(&v)
            || "no".starts_with(&v)
            || (v.len() >= 2 && "off".starts_with(&v))
            || v == "0")
}

/// `-c name=value` and `--name=value` pairs from the startup `options` parameter.
fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut words = options.split_whitespace();
    while let Some(w) = words.next() {
        let pair = if w == "-c" {
            words.next()
        } else if let Some(rest) = w.strip_prefix("--") {
            Some(rest)
        } else {
            w.strip_prefix("-c")
        };
        if let Some((n, v)) = pair.and_then(|p| p.split_once('=')) {
            out.push((n.replace('-', "_"), v.to_string()));
        }
    }
    out
}

pub fn quote_literal(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 3);
    if v.contains('\\') {
        s.push('E');
    }
    s.push('\'');
    for c in v.chars() {
        match c {
            '\'' => s.push_str("''"),
            '\\' => s.push_str("\\\\"),
            c => s.push(c),
        }
    }
    s.push('\'');
    s
}

pub fn quote_ident(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
    {
        return v.to_string();
    }
    format!("\"{}\"", v.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn defaults() -> Vec<(Bytes, Bytes)> {
        vec![
            (
                Bytes::from_static(b"client_encoding"),
                Bytes::from_static(b"UTF8"),
            ),
            (
                Bytes::from_static(b"application_name"),
                Bytes::from_static(b"pgsplit"),
            ),
        ]
    }

    #[test]
    fn defaults_need_no_replay() {
        let s = Settings::from_startup(
            &[
                ("user".into(), "app".into()),
                ("client_encoding".into(), "UTF8".into()),
            ],
            &defaults(),
        );
        assert_eq!(s.hash(), 0);
    }

    #[test]
    fn startup_values_replay_and_reset() {
        let mut s = Settings::from_startup(
            &[
                ("application_name".into(), "psql".into()),
                (
                    "options".into(),
                    "-c search_path=a,b --statement-timeout=5s".into(),
                ),
            ],
            &defaults(),
        );
        let sql = s.replay_sql();
        assert!(sql.contains("SET application_name = 'psql'"), "{sql}");
        assert!(sql.contains("SET search_path = 'a,b'"), "{sql}");
        assert!(sql.contains("SET statement_timeout = '5s'"), "{sql}");
        let h = s.hash();
        s.set("application_name", "SET application_name = 'x'");
        assert_ne!(s.hash(), h);
        s.reset("application_name");
        assert_eq!(s.hash(), h);
        s.set("work_mem", "SET work_mem = '64MB'");
        s.reset_all();
        assert_eq!(s.hash(), h);
        assert!(s.get("work_mem").is_none());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
        assert_eq!(quote_ident("DateStyle"), "\"DateStyle\"");
        assert_eq!(quote_ident("datestyle"), "datestyle");
    }

    #[test]
    fn standard_conforming_strings_from_set_and_startup() {
        use crate::router::Strings;
        let mut s = Settings::default();
        assert_eq!(s.string_rules(), Strings::Standard);
        for (stmt, rules) in [
            ("SET standard_conforming_strings = off", Strings::Backslash),
            (
                "set standard_conforming_strings to 'OFF'",
                Strings::Backslash,
            ),
            (
                "SET standard_conforming_strings TO false",
                Strings::Backslash,
            ),
            ("SET standard_conforming_strings = 0", Strings::Backslash),
            ("SET standard_conforming_strings = on", Strings::Standard),
            (
                "SET standard_conforming_strings TO DEFAULT",
                Strings::Standard,
            ),
        ] {
            s.set("standard_conforming_strings", stmt);
            assert_eq!(s.string_rules(), rules, "{stmt}");
        }
        s.reset("standard_conforming_strings");
        assert_eq!(s.string_rules(), Strings::Standard);
        let startup = Settings::from_startup(
            &[(
                "options".into(),
                "-c standard_conforming_strings=off".into(),
            )],
            &[],
        );
        assert_eq!(startup.string_rules(), Strings::Backslash);
    }
}
