//! Write reach and read dependencies from the catalog: what a write to a relation also writes (triggers, rules, defaults, sequences, cascades, partitions, policies) and what a read also depends on (views' and functions' bodies).
//!
//! The router adds the reach to each statement's written relations and the dependencies to its
//! read ones, so the result cache and read-your-writes see the same thing. Names are
//! unqualified and lowercased, like every other table key in the proxy. Function bodies are
//! read by word: every word that names a relation counts, so the reach errs towards too much;
//! a body with dynamic SQL, or in a language that cannot be read, has unknown reach.

use ahash::{AHashMap, AHashSet};
use std::collections::BTreeSet;

/// Directed (from, to): a write to `from` can change what reads of `to` return.
const EDGES_SQL: &str = "
    select lower(c.relname), lower(p.relname)
      from pg_inherits i
      join pg_class c on c.oid = i.inhrelid
      join pg_class p on p.oid = i.inhparent
    union
    select lower(p.relname), lower(c.relname)
      from pg_inherits i
      join pg_class c on c.oid = i.inhrelid
      join pg_class p on p.oid = i.inhparent
    union
    select lower(t.relname), lower(v.relname)
      from pg_rewrite r
      join pg_class v on v.oid = r.ev_class and v.relkind = 'v'
      join pg_depend d on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid
                      and d.refclassid = 'pg_class'::regclass
      join pg_class t on t.oid = d.refobjid and t.oid <> v.oid
    union
    select lower(v.relname), lower(t.relname)
      from pg_rewrite r
      join pg_class v on v.oid = r.ev_class
      join pg_depend d on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid
                      and d.refclassid = 'pg_class'::regclass
      join pg_class t on t.oid = d.refobjid and t.oid <> v.oid
     where v.relkind = 'v' or r.rulename <> '_RETURN'
    union
    select lower(p.relname), lower(c.relname)
      from pg_constraint k
      join pg_class c on c.oid = k.conrelid
      join pg_class p on p.oid = k.confrelid
     where k.contype = 'f'
       and (k.confdeltype in ('c', 'n', 'd') or k.confupdtype in ('c', 'n', 'd'))
    union
    select lower(t.relname), lower(c.relname)
      from pg_policy pol
      join pg_class c on c.oid = pol.polrelid
      join pg_depend d on d.classid = 'pg_policy'::regclass and d.objid = pol.oid
                      and d.refclassid = 'pg_class'::regclass
      join pg_class t on t.oid = d.refobjid and t.oid <> c.oid
    union
    select lower(c.relname), lower(s.relname)
      from pg_attrdef ad
      join pg_class c on c.oid = ad.adrelid
      join pg_depend d on d.classid = 'pg_attrdef'::regclass and d.objid = ad.oid
                      and d.refclassid = 'pg_class'::regclass
      join pg_class s on s.oid = d.refobjid and s.relkind = 'S'
    union
    select lower(c.relname), lower(s.relname)
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

/// User functions' bodies.
const BODIES_SQL: &str = "
    select lower(p.proname), l.lanname, coalesce(p.prosrc, '')
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
#[derive(Clone, Debug, Default)]
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
}

/// One user function's body, reduced to what reach needs.
#[derive(Default, Clone)]
struct Body {
    relations: BTreeSet<String>,
    calls: Vec<String>,
    opaque: bool,
}

/// Catalog rows, as loaded (kept apart from the loading so the computation is testable).
#[derive(Default)]
pub(super) struct Rows {
    pub edges: Vec<(String, String)>,
    pub truncate: Vec<(String, String)>,
    /// (relation, function, is user function, kind 'w' or 'r').
    pub functions: Vec<(String, String, bool, String)>,
    /// (function, language, body).
    pub bodies: Vec<(String, String, String)>,
    pub relations: Vec<String>,
    pub sequences: Vec<String>,
}

impl WriteReach {
    pub async fn load(
        client: &tokio_postgres::Client,
    ) -> Result<WriteReach, tokio_postgres::Error> {
        let pairs = |rows: Vec<tokio_postgres::Row>| -> Result<Vec<(String, String)>, tokio_postgres::Error> {
            rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
        };
        let mut rows = Rows {
            edges: pairs(client.query(EDGES_SQL, &[]).await?)?,
            truncate: pairs(client.query(TRUNCATE_SQL, &[]).await?)?,
            ..Rows::default()
        };
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
                        } else if call {
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
        for (relation, function, user, kind) in &rows.functions {
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
        for f in &a.functions {
            if self.opaque_functions.contains(f.as_str()) {
                a.cacheable = false;
            }
            for t in self.function_reads.get(f.as_str()).into_iter().flatten() {
                if !a.tables_read.iter().any(|r| **r == **t) && !reads.iter().any(|r| **r == **t) {
                    reads.push(t.to_string());
                }
            }
        }
        if a.tables_read
            .iter()
            .any(|r| self.opaque_reads.contains(&*super::relation_key(r)))
        {
            a.cacheable = false;
        }
        if a.route == super::Route::Replica
            && a.tables_read
                .iter()
                .any(|r| self.sequences.contains(&*super::relation_key(r)))
        {
            a.route = super::Route::Primary;
            a.reason = "sequence";
            a.cacheable = false;
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
            for c in &calls {
                if let Some(b) = bodies.get(c) {
                    relations.extend(b.relations.iter().cloned());
                    opaque |= b.opaque;
                }
            }
            let Some(body) = bodies.get_mut(&name) else {
                continue;
            };
            let before = (body.relations.len(), body.opaque);
            body.relations.extend(relations);
            body.opaque |= opaque;
            changed |= before != (body.relations.len(), body.opaque);
        }
        if !changed {
            return bodies;
        }
    }
}

/// For each relation with outgoing edges: every other relation it reaches.
fn closure(pairs: &[(String, String)]) -> AHashMap<Box<str>, Vec<Box<str>>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        v.to_owned()
    }

    fn reach() -> WriteReach {
        WriteReach::from_rows(Rows {
            edges: vec![(s("events_2024"), s("events")), (s("events"), s("events_2024")), (s("orders"), s("orders_id_seq"))],
            truncate: vec![(s("customers"), s("orders"))],
            functions: vec![
                (s("orders"), s("audit_order"), true, s("w")),
                (s("payments"), s("dynamic_trigger"), true, s("w")),
                (s("report"), s("stock_of"), true, s("r")),
                (s("docs"), s("allowed"), true, s("r")),
                (s("tsv"), s("tsvector_update_trigger"), false, s("w")),
            ],
            bodies: vec![
                (s("audit_order"), s("plpgsql"), s("BEGIN INSERT INTO order_log VALUES (NEW.id); PERFORM touch(NEW.id); RETURN NEW; END")),
                (s("touch"), s("sql"), s("UPDATE counters SET n = n + 1")),
                (s("dynamic_trigger"), s("plpgsql"), s("BEGIN EXECUTE format('INSERT INTO %I VALUES (1)', TG_ARGV[0]); RETURN NEW; END")),
                (s("stock_of"), s("sql"), s("SELECT sum(qty) FROM stock WHERE item = $1")),
                (s("allowed"), s("sql"), s("SELECT exists (SELECT 1 FROM acl WHERE who = current_user)")),
            ],
            relations: ["events", "events_2024", "orders", "orders_id_seq", "order_log", "counters", "payments", "report", "stock", "docs", "acl", "customers", "tsv"]
                .iter()
                .map(|r| s(r))
                .collect(),
            sequences: vec![s("orders_id_seq")],
        })
    }

    fn analysis(read: &[&str], written: &[&str], functions: &[&str]) -> crate::router::Analysis {
        let mut a =
            crate::router::analyze_uncached("SELECT 1", &crate::router::FunctionCatalog::builtin());
        a.tables_read = read.iter().map(|r| s(r)).collect();
        a.tables_written = written.iter().map(|r| s(r)).collect();
        a.functions = functions.iter().map(|r| s(r)).collect();
        a
    }

    #[test]
    fn writes_reach_triggers_functions_sequences_and_partitions() {
        let r = reach();
        let mut a = analysis(&[], &["public.orders"], &[]);
        r.expand(&mut a, false, false);
        assert_eq!(
            a.tables_written,
            vec!["public.orders", "counters", "order_log", "orders_id_seq"]
        );
        assert!(!a.writes_unknown);
        let mut a = analysis(&[], &["events"], &[]);
        r.expand(&mut a, false, false);
        assert_eq!(a.tables_written, vec!["events", "events_2024"]);
        // Dynamic SQL in a trigger: anything.
        let mut a = analysis(&[], &["payments"], &[]);
        r.expand(&mut a, false, false);
        assert!(a.writes_unknown);
        // TRUNCATE CASCADE follows plain foreign keys, and then the reach of what it empties.
        let mut a = analysis(&[], &["customers"], &[]);
        r.expand(&mut a, false, false);
        assert_eq!(a.tables_written, vec!["customers"]);
        r.expand(&mut a, true, false);
        assert!(
            a.tables_written.contains(&s("orders")) && a.tables_written.contains(&s("order_log"))
        );
        // A stale catalog knows no reach.
        let mut a = analysis(&[], &["stock"], &[]);
        r.expand(&mut a, false, true);
        assert!(a.writes_unknown);
        // Built-in trigger functions reach nothing else.
        let mut a = analysis(&[], &["tsv"], &[]);
        r.expand(&mut a, false, false);
        assert!(!a.writes_unknown && a.tables_written == vec!["tsv"]);
    }

    #[test]
    fn reads_depend_on_views_policies_and_function_bodies() {
        let r = reach();
        // A write to what a view's function or a policy reads reaches the view / the table.
        let mut a = analysis(&[], &["stock"], &[]);
        r.expand(&mut a, false, false);
        assert_eq!(a.tables_written, vec!["stock", "report"]);
        let mut a = analysis(&[], &["acl"], &[]);
        r.expand(&mut a, false, false);
        assert_eq!(a.tables_written, vec!["acl", "docs"]);
        // A function called by the query: its body's relations are read too.
        let mut a = analysis(&["items"], &[], &["stock_of"]);
        a.cacheable = true;
        r.expand(&mut a, false, false);
        assert_eq!(a.tables_read, vec!["items", "stock"]);
        assert!(a.cacheable);
        let mut a = analysis(&["orders_id_seq"], &[], &[]);
        r.expand(&mut a, false, false);
        assert_eq!(a.route, crate::router::Route::Primary);
        let mut a = analysis(&[], &[], &["dynamic_trigger"]);
        a.cacheable = true;
        r.expand(&mut a, false, false);
        assert!(!a.cacheable);
    }
}
