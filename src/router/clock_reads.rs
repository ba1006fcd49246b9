//! What reads of a relation depend on beyond its rows: the clock (now(), CURRENT_TIMESTAMP, random()) and the login user (row-level security, current_user), through views, policies and function bodies.
//!
//! The cache keys on the data, the settings and (unless `share_across_users`) the user. A read
//! that reaches the clock is never cached; one that depends on the user is cached only while
//! the key holds the user. Views' and policies' node trees are read as text for what pg_depend
//! leaves out (built-in functions are pinned objects, SQLValueFunction is no function at all).

use ahash::AHashMap;
use std::collections::BTreeSet;
use std::sync::Arc;

/// What a read of a relation evaluates beyond the functions pg_depend lists: (relation, kind,
/// node tree as text) for views ('v') and read policies ('p'), and 's' for each relation with
/// row-level security on. The node text is read for SQLValueFunction (CURRENT_TIMESTAMP, ...
/// leave no pg_depend row); pg_node_tree is cast, not deparsed, so a relation dropped during
/// the load cannot fail it.
pub(super) const READS_SQL: &str = "
    select lower(c.relname), 'v', r.ev_action::text
      from pg_rewrite r
      join pg_class c on c.oid = r.ev_class and c.relkind = 'v'
      join pg_namespace n on n.oid = c.relnamespace
     where r.rulename = '_RETURN' and n.nspname not in ('pg_catalog', 'information_schema')
    union all
    select lower(c.relname), 'p', coalesce(p.polqual::text, '')
      from pg_policy p
      join pg_class c on c.oid = p.polrelid
     where p.polcmd in ('r', '*')
    union all
    select lower(c.relname), 's', ''
      from pg_class c
     where c.relrowsecurity";

/// Built-in functions by oid whose names are in TIME_WORDS or USER_WORDS: a view's or policy's
/// node tree names them by `:funcid` only (pg_depend records no dependency on pinned objects).
pub(super) const NAMED_FUNCTIONS_SQL: &str = r"
    select p.oid, lower(p.proname)
      from pg_proc p
      join pg_namespace n on n.oid = p.pronamespace
     where n.nspname = 'pg_catalog'
       and (lower(p.proname) = any($1) or p.proname like 'has\_%\_privilege')";

/// Words that make a value depend on the moment or the backend, not on the data, settings
/// and role the cache keys on: a read reaching one through a view, a policy or a function
/// body is never cached. 'today' and friends count in bodies, where a string literal is
/// cast when the body runs (in a view or default it was cast once, at creation).
pub(super) const TIME_WORDS: &[&str] = &[
    "now",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtime",
    "localtimestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "clock_timestamp",
    "timeofday",
    "today",
    "tomorrow",
    "yesterday",
    "random",
    "random_normal",
    "gen_random_uuid",
    "pg_backend_pid",
    "txid_current",
    "pg_current_xact_id",
];

/// Words that make a value depend on who is logged in (or the role's own defaults), which the
/// cache key leaves out under `cache.share_across_users`.
pub(super) const USER_WORDS: &[&str] = &[
    "current_user",
    "session_user",
    "current_role",
    "current_setting",
    "pg_has_role",
    "row_security_active",
];

pub(super) fn is_user_word(w: &str) -> bool {
    USER_WORDS.contains(&w) || (w.starts_with("has_") && w.ends_with("_privilege"))
}

/// SQLValueFunction operators in a node tree's text (SVFOP_*): 0..=8 read the clock, 9..=12
/// the user (PostgreSQL 15; from 16 on the user ones are function calls pg_depend lists).
fn sql_value_functions(tree: &str) -> (bool, bool) {
    let (mut time, mut user) = (false, false);
    for part in tree.split("{SQLVALUEFUNCTION :op ").skip(1) {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        match digits.parse::<u32>() {
            Ok(0..=8) => time = true,
            Ok(9..=12) => user = true,
            _ => {}
        }
    }
    (time, user)
}

/// The `:funcid`s of a node tree's text (FuncExpr nodes).
fn function_ids(tree: &str) -> impl Iterator<Item = u32> + '_ {
    tree.split(":funcid ").skip(1).filter_map(|part| {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    })
}

pub(super) fn is_time_word(w: &str) -> bool {
    TIME_WORDS.contains(&w)
}

/// Relations whose reads reach the clock (what, for /stats) or the user (which things).
#[derive(Default)]
pub(super) struct Marks {
    time: AHashMap<String, String>,
    user: AHashMap<String, BTreeSet<String>>,
}

impl Marks {
    /// From views' and policies' node trees (READS_SQL) and the built-in functions by oid.
    pub fn from_trees(reads: &[(String, String, String)], named: &[(u32, String)]) -> Marks {
        let named: AHashMap<u32, &str> = named.iter().map(|(oid, n)| (*oid, n.as_str())).collect();
        let mut marks = Marks::default();
        for (relation, kind, tree) in reads {
            let (time, user) = sql_value_functions(tree);
            let mut users: Vec<&str> = Vec::new();
            if time {
                marks
                    .time
                    .entry(relation.clone())
                    .or_insert_with(|| "CURRENT_TIMESTAMP or the like".into());
            }
            for name in function_ids(tree).filter_map(|id| named.get(&id)) {
                if is_time_word(name) {
                    marks
                        .time
                        .entry(relation.clone())
                        .or_insert_with(|| name.to_string());
                } else {
                    users.push(name);
                }
            }
            if user {
                users.push("current_user");
            }
            if kind == "s" {
                users.push("row-level security");
            }
            if !users.is_empty() {
                marks
                    .user
                    .entry(relation.clone())
                    .or_default()
                    .extend(users.into_iter().map(String::from));
            }
        }
        marks
    }

    /// A read of `relation` runs `function` (a view's or a policy's, from pg_depend); `body`:
    /// a user function's first clock word and whether it reads the user, None for a built-in.
    pub fn function(&mut self, relation: &str, function: &str, body: Option<(Option<&str>, bool)>) {
        let (time, user) = match body {
            Some((time, user)) => (time.map(|t| format!("{t} in {function}")), user),
            None => (
                is_time_word(function).then(|| function.to_owned()),
                is_user_word(function),
            ),
        };
        if let Some(t) = time {
            self.time.entry(relation.to_owned()).or_insert(t);
        }
        if user {
            self.user
                .entry(relation.to_owned())
                .or_default()
                .insert(function.to_owned());
        }
    }

    /// Spreads the marks to every relation whose reads read a marked one (write_reach's EDGES_SQL and
    /// the relations read functions mention), and words them for /stats: (clock, user).
    #[allow(clippy::type_complexity)]
    pub fn resolve(
        self,
        read_edges: &[(String, String)],
    ) -> (AHashMap<Box<str>, Arc<str>>, AHashMap<Box<str>, Arc<str>>) {
        let mut time_all = self.time.clone();
        let mut user_all = self.user.clone();
        for (from, tos) in &super::write_reach::closure(read_edges) {
            for to in tos {
                if let Some(t) = self.time.get(from.as_ref()) {
                    time_all
                        .entry(to.to_string())
                        .or_insert_with(|| format!("{t} through {from}"));
                }
                if let Some(u) = self.user.get(from.as_ref()) {
                    user_all
                        .entry(to.to_string())
                        .or_default()
                        .extend(u.iter().cloned());
                }
            }
        }
        let time = time_all
            .into_iter()
            .map(|(r, t)| (Box::from(r.as_str()), Arc::from(format!("{r} reads {t}"))))
            .collect();
        let user = user_all
            .into_iter()
            .map(|(r, what)| {
                let what: Vec<String> = what.into_iter().collect();
                let why = format!(
                    "{r} depends on the user ({}) and cache.share_across_users leaves the user out of the key",
                    what.join(", ")
                );
                (Box::from(r.as_str()), Arc::from(why))
            })
            .collect();
        (time, user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_trees_give_clock_and_user_functions() {
        let tree = "({QUERY :targetList ({TARGETENTRY :expr {SQLVALUEFUNCTION :op 3 :type 1184}} \
                    {TARGETENTRY :expr {SQLVALUEFUNCTION :op 10 :type 19}} \
                    {TARGETENTRY :expr {FUNCEXPR :funcid 2077 :funcresulttype 25}})})";
        assert_eq!(sql_value_functions(tree), (true, true));
        assert_eq!(function_ids(tree).collect::<Vec<_>>(), vec![2077]);
        assert_eq!(
            sql_value_functions("{SQLVALUEFUNCTION :op 14 :type 19}"),
            (false, false)
        );
        assert!(is_user_word("has_table_privilege") && !is_user_word("hash_record"));
    }
}
