//! Write reach and read dependencies from the catalog: what a write to a relation also writes (triggers, rules, defaults, sequences, cascades, partitions, policies) and what a read also depends on (views' and functions' bodies).
//!
//! The router adds the reach to each statement's written relations and the dependencies to its
//! read ones, so the result cache and read-your-writes see the same thing. Names are
//! unqualified and lowercased, like every other table key in the proxy. Function bodies are
//! read by word: every word that names a relation counts, so the reach errs towards too much;
//! a body with dynamic SQL, or in a language that cannot be read, has unknown reach.

use ahash::{AHashMap, AHashSet};
use std::collections::BTreeSet;
use std::sync::Arc;

use super::clock_reads::{
    is_time_word, is_user_word, Marks, NAMED_FUNCTIONS_SQL, READS_SQL, TIME_WORDS, USER_WORDS,
};

/// Directed (from, to, reads): a write to `from` can change what reads of `to` return; `reads`
/// when a read of `to` also reads `from` (a view's query, a parent's child, a policy's table),
/// the edges clock and user marks spread along. Writes go the other way too: through an
/// updatable view or a rule into its tables, from a parent into its children, along cascading
/// foreign keys, and from a table into the sequences its defaults and identity columns use.
const EDGES_SQL: &str = "
    select lower(c.relname), lower(p.relname), true
      from pg_inherits i
      join pg_class c on c.oid = i.inhrelid
      join pg_class p on p.oid = i.inhparent
    union
    select lower(p.relname), lower(c.relname), false
      from pg_inherits i
      join pg_class c on c.oid = i.inhrelid
      join pg_class p on p.oid = i.inhparent
    union
    select lower(t.relname), lower(v.relname), r.rulename = '_RETURN'
      from pg_rewrite r
      join pg_class v on v.oid = r.ev_class and v.relkind = 'v'
      join pg_depend d on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid
                      and d.refclassid = 'pg_class'::regclass
      join pg_class t on t.oid = d.refobjid and t.oid <> v.oid
    union
    select lower(v.relname), lower(t.relname), false
      from pg_rewrite r
      join pg_class v on v.oid = r.ev_class
      join pg_depend d on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid
                      and d.refclassid = 'pg_class'::regclass
      join pg_class t on t.oid = d.refobjid and t.oid <> v.oid
     where v.relkind = 'v' or r.rulename <> '_RETURN'
    union
    select lower(p.relname), lower(c.relname), false
      from pg_constraint k
      join pg_class c on c.oid = k.conrelid
      join pg_class p on p.oid = k.confrelid
     where k.contype = 'f'
       and (k.confdeltype in ('c', 'n', 'd') or k.confupdtype in ('c', 'n', 'd'))
    union
    select lower(t.relname), lower(c.relname), true
      from pg_policy pol
      join pg_class c on c.oid = pol.polrelid
      join pg_depend d on d.classid = 'pg_policy'::regclass and d.objid = pol.oid
                      and d.refclassid = 'pg_class'::regclass
      join pg_class t on t.oid = d.refobjid and t.oid <> c.oid
    union
    select lower(c.relname), lower(s.relname), false
      from pg_attrdef ad
      join pg_class c on c.oid = ad.adrelid
      join pg_depend d on d.classid = 'pg_attrdef'::regclass and d.objid = ad.oid
                      and d.refclassid = 'pg_class'::regclass
      join pg_class s on s.oid = d.refobjid and s.relkind = 'S'
    union
    select lower(c.relname), lower(s.relname), false
      from pg_depend d
      join pg_class s on s.oid = d.objid and s.relkind = 'S'
      join pg_class c on c.oid = d.refobjid
     where d.classid = 'pg_class'::regclass and d.refclassid = 'pg_class'::regclass
       and d.deptype in ('a', 'i')";

/// Every foreign key, referenced → referencing: what TRUNCATE ... CASCADE also empties.
const TRUNCATE_SQL: &str = "
    select lower(p.relname), lower(c.relname)
      from pg_constraint k
      join pg_class c on c.oid = k.conrelid
      join pg_class p on p.oid = k.confrelid
     where k.contype = 'f'";

/// (relation, function, user function?, kind): 'w' the function runs when the relation is
/// written (triggers, defaults, rules), 'r' reads of the relation run it (views, policies).
const FUNCTIONS_SQL: &str = "
    with uses(rel, fn, kind) as (
        select t.tgrelid, t.tgfoid, 'w' from pg_trigger t where not t.tgisinternal
        union
        select ad.adrelid, d.refobjid, 'w'
          from pg_attrdef ad
          join pg_depend d on d.classid = 'pg_attrdef'::regclass and d.objid = ad.oid
                          and d.refclassid = 'pg_proc'::regclass
        union
        select r.ev_class, d.refobjid, case when r.rulename = '_RETURN' then 'r' else 'w' end
          from pg_rewrite r
          join pg_depend d on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid
                          and d.refclassid = 'pg_proc'::regclass
        union
        select pol.polrelid, d.refobjid, 'r'
          from pg_policy pol
          join pg_depend d on d.classid = 'pg_policy'::regclass and d.objid = pol.oid
                          and d.refclassid = 'pg_proc'::regclass
    )
    select lower(c.relname), lower(p.proname),
           n.nspname not in ('pg_catalog', 'information_schema'), u.kind
      from uses u
      join pg_class c on c.oid = u.rel
      join pg_proc p on p.oid = u.fn
      join pg_namespace n on n.oid = p.pronamespace";

/// User functions' bodies (a BEGIN ATOMIC body is in prosqlbody, prosrc is empty).
const BODIES_SQL: &str = "
    select lower(p.proname), l.lanname,
           coalesce(nullif(p.prosrc, ''), pg_get_function_sqlbody(p.oid), '')
      from pg_proc p
      join pg_namespace n on n.oid = p.pronamespace
      join pg_language l on l.oid = p.prolang
     where n.nspname not in ('pg_catalog', 'information_schema')";

/// Relation names a body may mention, and whether each is a sequence.
const RELATIONS_SQL: &str = "
    select distinct lower(c.relname), c.relkind = 'S'
      from pg_class c
      join pg_namespace n on n.oid = c.relnamespace
     where c.relkind in ('r', 'p', 'v', 'm', 'f', 'S')
       and n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')";

/// What the catalog says about reach and dependencies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteReach {
    /// Relation → every other relation a write to it reaches, transitively.
    writes: AHashMap<Box<str>, Vec<Box<str>>>,
    /// Relations a write to which may reach anything.
    unknown: AHashSet<Box<str>>,
    /// Relation → what TRUNCATE ... CASCADE of it also empties (with their reach).
    truncate: AHashMap<Box<str>, Vec<Box<str>>>,
    /// User function → relations its body (and what it calls) mentions.
    function_reads: AHashMap<Box<str>, Vec<Box<str>>>,
    /// User functions whose bodies cannot be read (dynamic SQL, other languages).
    opaque_functions: AHashSet<Box<str>>,
    /// Views and tables whose reads run an opaque function (a view's or a policy's).
    opaque_reads: AHashSet<Box<str>>,
    /// Sequences: a standby shows them up to 32 values ahead (nextval logs ahead), so their
    /// reads go to the primary.
    sequences: AHashSet<Box<str>>,
    /// Relations whose reads reach the clock (through views, policies, function bodies):
    /// relation → what, for /stats.
    time_reads: AHashMap<Box<str>, Arc<str>>,
    /// Relations whose reads depend on the login user (row-level security, current_user in a
    /// view): relation → what.
    user_reads: AHashMap<Box<str>, Arc<str>>,
}

/// One user function's body, reduced to what reach needs.
#[derive(Default, Clone)]
struct Body {
    relations: BTreeSet<String>,
    calls: Vec<String>,
    opaque: bool,
    /// The first word of TIME_WORDS the body (or what it calls) uses.
    time: Option<String>,
    /// The body (or what it calls) uses a word of USER_WORDS.
    user: bool,
}

/// Catalog rows, as loaded (kept apart from the loading so the computation is testable).
#[derive(Default)]
pub(super) struct Rows {
    pub edges: Vec<(String, String)>,
    /// (from, to): a read of `to` reads `from` (EDGES_SQL's `reads`).
    pub read_edges: Vec<(String, String)>,
    pub truncate: Vec<(String, String)>,
    /// (relation, function, is user function, kind 'w' or 'r').
    pub functions: Vec<(String, String, bool, String)>,
    /// (function, language, body).
    pub bodies: Vec<(String, String, String)>,
    pub relations: Vec<String>,
    pub sequences: Vec<String>,
    /// (relation, kind 'v', 'p' or 's', node tree text): see READS_SQL.
    pub reads: Vec<(String, String, String)>,
    /// Built-in clock and user functions by oid (NAMED_FUNCTIONS_SQL).
    pub named_functions: Vec<(u32, String)>,
}

impl WriteReach {
    pub async fn load(
        client: &tokio_postgres::Client,
    ) -> Result<WriteReach, tokio_postgres::Error> {
        let pairs = |rows: Vec<tokio_postgres::Row>| -> Result<Vec<(String, String)>, tokio_postgres::Error> {
            rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
        };
        let mut rows = Rows {
            truncate: pairs(client.query(TRUNCATE_SQL, &[]).await?)?,
            ..Rows::default()
        };
        for r in client.query(EDGES_SQL, &[]).await? {
            let edge: (String, String) = (r.try_get(0)?, r.try_get(1)?);
            if r.try_get(2)? {
                rows.read_edges.push(edge.clone());
            }
            rows.edges.push(edge);
        }
        for r in client.query(FUNCTIONS_SQL, &[]).await? {
            rows.functions
                .push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?));
        }
        for r in client.query(BODIES_SQL, &[]).await? {
            rows.bodies
                .push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
        }
        for r in client.query(RELATIONS_SQL, &[]).await? {
            let name: String = r.try_get(0)?;
            if r.try_get(1)? {
                rows.sequences.push(name.clone());
            }
            rows.relations.push(name);
        }
        for r in client.query(READS_SQL, &[]).await? {
            rows.reads
                .push((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?));
        }
        let words: Vec<&str> = TIME_WORDS.iter().chain(USER_WORDS).copied().collect();
        for r in client.query(NAMED_FUNCTIONS_SQL, &[&words]).await? {
            rows.named_functions.push((r.try_get(0)?, r.try_get(1)?));
        }
        Ok(WriteReach::from_rows(rows))
    }

    pub(super) fn from_rows(rows: Rows) -> WriteReach {
        let relations: AHashSet<&str> = rows.relations.iter().map(String::as_str).collect();
        let mut bodies: AHashMap<String, Body> = AHashMap::new();
        for (name, language, text) in &rows.bodies {
            let body = bodies.entry(name.clone()).or_default();
            match language.as_str() {
                "sql" | "plpgsql" => {
                    for (word, call) in super::setters::words(text) {
                        if word == "execute" {
                            body.opaque = true;
                        } else if is_time_word(&word) {
                            body.time.get_or_insert_with(|| word.clone());
                        } else if is_user_word(&word) {
                            body.user = true;
                        }
                        if call {
                            body.calls.push(word.clone());
                        }
                        if relations.contains(word.as_str()) {
                            body.relations.insert(word);
                        }
                    }
                }
                "c" | "internal" => {}
                _ => body.opaque = true,
            }
        }
        let bodies = close_bodies(bodies);
        let mut reach = WriteReach {
            sequences: rows.sequences.iter().map(|s| s.as_str().into()).collect(),
            ..WriteReach::default()
        };
        let mut edges = rows.edges.clone();
        let mut read_edges = rows.read_edges.clone();
        let mut marks = Marks::from_trees(&rows.reads, &rows.named_functions);
        for (relation, function, user, kind) in &rows.functions {
            if kind == "r" {
                let body = bodies.get(function.as_str()).filter(|_| *user);
                marks.function(
                    relation,
                    function,
                    body.map(|b| (b.time.as_deref(), b.user)),
                );
            }
            if !user {
                continue;
            }
            let body = bodies.get(function.as_str());
            let opaque = body.is_none_or(|b| b.opaque);
            let mentioned = body.map(|b| b.relations.clone()).unwrap_or_default();
            if kind == "w" {
                if opaque {
                    reach.unknown.insert(relation.as_str().into());
                }
                edges.extend(mentioned.into_iter().map(|t| (relation.clone(), t)));
            } else {
                if opaque {
                    reach.opaque_reads.insert(relation.as_str().into());
                }
                read_edges.extend(mentioned.iter().map(|t| (t.clone(), relation.clone())));
                edges.extend(mentioned.into_iter().map(|t| (t, relation.clone())));
            }
        }
        let writes = closure(&edges);
        // A write reaching a relation of unknown reach has unknown reach itself.
        let unknown_now: Vec<Box<str>> = writes
            .iter()
            .filter(|(_, to)| to.iter().any(|t| reach.unknown.contains(t)))
            .map(|(from, _)| from.clone())
            .collect();
        reach.unknown.extend(unknown_now);
        let mut truncate_edges = rows.truncate.clone();
        truncate_edges.extend(edges.iter().cloned());
        reach.truncate = closure(&truncate_edges);
        (reach.time_reads, reach.user_reads) = marks.resolve(&read_edges);
        reach.writes = writes;
        for (name, body) in bodies {
            if body.opaque {
                reach.opaque_functions.insert(name.as_str().into());
            }
            if !body.relations.is_empty() {
                reach.function_reads.insert(
                    name.into(),
                    body.relations.into_iter().map(Box::from).collect(),
                );
            }
        }
        reach
    }

    /// What a change the WAL logged to `tables` changes for readers: each table and every
    /// relation its rows show through (views, parents, policies over it), appended to `out`.
    /// The WAL lists what triggers and cascades wrote as changes of their own. False when a
    /// write to one of them has unknown reach.
    pub(super) fn logged_reach<T: AsRef<str>>(&self, tables: &[T], out: &mut Vec<String>) -> bool {
        let mut known = true;
        for t in tables {
            let key = super::relation_key(t.as_ref());
            known &= !self.unknown.contains(&*key);
            for r in std::iter::once(&*key)
                .chain(self.writes.get(&*key).into_iter().flatten().map(|b| &**b))
            {
                if !out.iter().any(|o| o == r) {
                    out.push(r.to_string());
                }
            }
        }
        known
    }

    /// The reach of several databases' catalogs in one: a name in any of them reaches what it
    /// reaches in each. Relations of different databases that share a name then invalidate
    /// each other: more misses, never a stale read.
    pub fn merge(mut self, other: WriteReach) -> WriteReach {
        fn union(
            into: &mut AHashMap<Box<str>, Vec<Box<str>>>,
            from: AHashMap<Box<str>, Vec<Box<str>>>,
        ) {
            for (k, v) in from {
                let e = into.entry(k).or_default();
                e.extend(v);
                e.sort();
                e.dedup();
            }
        }
        union(&mut self.writes, other.writes);
        union(&mut self.truncate, other.truncate);
        union(&mut self.function_reads, other.function_reads);
        self.unknown.extend(other.unknown);
        self.opaque_functions.extend(other.opaque_functions);
        self.opaque_reads.extend(other.opaque_reads);
        self.sequences.extend(other.sequences);
        for (k, v) in other.time_reads {
            self.time_reads.entry(k).or_insert(v);
        }
        for (k, v) in other.user_reads {
            self.user_reads.entry(k).or_insert(v);
        }
        self
    }

    /// Adds to a statement what its writes reach and what its reads depend on.
    pub(super) fn expand(&self, a: &mut super::Analysis, truncate_cascade: bool, stale: bool) {
        let mut added: Vec<String> = Vec::new();
        for w in &a.tables_written {
            let key = super::relation_key(w);
            if self.unknown.contains(&*key) {
                a.writes_unknown = true;
            }
            let map = if truncate_cascade {
                &self.truncate
            } else {
                &self.writes
            };
            for t in map.get(&*key).into_iter().flatten() {
                if !a.tables_written.iter().any(|w| **w == **t) && !added.iter().any(|w| **w == **t)
                {
                    added.push(t.to_string());
                }
            }
        }
        // Until a catalog read after the last DDL lands, no reach is known.
        if stale && !a.tables_written.is_empty() {
            a.writes_unknown = true;
        }
        a.tables_written.extend(added);
        let mut reads: Vec<String> = Vec::new();
        let mut refusals: Vec<Arc<str>> = Vec::new();
        let mut user: Option<Arc<str>> = None;
        for f in &a.functions {
            if self.opaque_functions.contains(f.as_str()) {
                refusals.push(format!("function {f} runs SQL pgsplit cannot read").into());
            }
            for t in self.function_reads.get(f.as_str()).into_iter().flatten() {
                if !a.tables_read.iter().any(|r| **r == **t) && !reads.iter().any(|r| **r == **t) {
                    reads.push(t.to_string());
                }
            }
        }
        for r in &a.tables_read {
            let key = super::relation_key(r);
            if self.opaque_reads.contains(&*key) {
                refusals.push(format!("{key} runs a function pgsplit cannot read").into());
            }
            if let Some(why) = self.time_reads.get(&*key) {
                refusals.push(why.clone());
            }
            if let Some(why) = self.user_reads.get(&*key) {
                user.get_or_insert_with(|| why.clone());
            }
        }
        for why in refusals {
            a.refuse_cache(why);
        }
        if let Some(why) = user {
            a.user_dependent.get_or_insert(why);
        }
        if a.route == super::Route::Replica
            && a.tables_read
                .iter()
                .any(|r| self.sequences.contains(&*super::relation_key(r)))
        {
            a.route = super::Route::Primary;
            a.reason = "sequence";
            a.not_cacheable = Some(Arc::from("sequence (read on the primary)"));
        }
        a.tables_read.extend(reads);
    }
}

/// Bodies with the relations and opacity of everything they call, transitively.
fn close_bodies(mut bodies: AHashMap<String, Body>) -> AHashMap<String, Body> {
    loop {
        let mut changed = false;
        let names: Vec<String> = bodies.keys().cloned().collect();
        for name in names {
            let calls = bodies[&name].calls.clone();
            let mut relations = BTreeSet::new();
            let mut opaque = false;
            let mut time = None;
            let mut user = false;
            for c in &calls {
                if let Some(b) = bodies.get(c) {
                    relations.extend(b.relations.iter().cloned());
                    opaque |= b.opaque;
                    if time.is_none() {
                        time = b.time.as_ref().map(|t| format!("{t} in {c}"));
                    }
                    user |= b.user;
                }
            }
            let Some(body) = bodies.get_mut(&name) else {
                continue;
            };
            let before = (
                body.relations.len(),
                body.opaque,
                body.time.is_some(),
                body.user,
            );
            body.relations.extend(relations);
            body.opaque |= opaque;
            if body.time.is_none() {
                body.time = time;
            }
            body.user |= user;
            changed |= before
                != (
                    body.relations.len(),
                    body.opaque,
                    body.time.is_some(),
                    body.user,
                );
        }
        if !changed {
            return bodies;
        }
    }
}

/// For each relation with outgoing edges: every other relation it reaches.
pub(super) fn closure(pairs: &[(String, String)]) -> AHashMap<Box<str>, Vec<Box<str>>> {
    let mut edges: AHashMap<&str, Vec<&str>> = AHashMap::new();
    for (from, to) in pairs {
        if from != to {
            edges.entry(from.as_str()).or_default().push(to.as_str());
        }
    }
    edges
        .keys()
        .map(|&start| {
            let mut seen = BTreeSet::new();
            let mut stack = vec![start];
            while let Some(n) = stack.pop() {
                for &next in edges.get(n).into_iter().flatten() {
                    if next != start && seen.insert(next) {
                        stack.push(next);
                    }
                }
            }
            (Box::from(start), seen.into_iter().map(Box::from).collect())
        })
        .collect()
}
