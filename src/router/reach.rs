//! What a statement reaches beyond the functions it names: views, aggregates' support functions, casts, domain checks, operators, type I/O and attribute-notation calls, resolved once per catalog load.
//!
//! PostgreSQL runs more than the text shows. `SELECT * FROM v` runs whatever v's definition calls
//! (through other views); `SELECT agg(x)` runs the aggregate's transition and final functions
//! (the aggregate's own pg_proc row always says immutable); `5::ct` runs the cast's function or
//! ct's input function, and a domain's CHECK constraints; `a === b` runs the operator's function;
//! `t.f` is `f(t)`. The loader reads these edges from the catalogs, and a fixpoint gives every
//! object the worst volatility it can reach, so a read that reaches a writer goes to the primary.

use ahash::{AHashMap, AHashSet};

use super::builtin;
use super::catalog::Volatility;

/// Relations, types and attribute-notation calls with their reach, by lowercased name (bare and
/// schema-qualified). Only objects that reach something not immutable are listed.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Reach {
    relations: AHashMap<Box<str>, Volatility>,
    types: AHashMap<Box<str>, Volatility>,
    /// Functions of one composite (or pseudo-type) argument that may write: `x.f` may call one.
    attribute_calls: AHashSet<Box<str>>,
}

impl Reach {
    pub fn relation(&self, name: &str) -> Option<Volatility> {
        self.relations.get(name).copied()
    }

    pub fn type_(&self, name: &str) -> Option<Volatility> {
        self.types.get(name).copied()
    }

    pub fn attribute_call(&self, name: &str) -> bool {
        self.attribute_calls.contains(name)
    }

    pub fn insert_relation(&mut self, name: &str, v: Volatility) {
        self.relations.insert(name.to_lowercase().into(), v);
    }

    pub fn insert_type(&mut self, name: &str, v: Volatility) {
        self.types.insert(name.to_lowercase().into(), v);
    }

    pub fn insert_attribute_call(&mut self, name: &str) {
        self.attribute_calls.insert(name.to_lowercase().into());
    }
}

/// Kinds of catalog object in the reach graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Function,
    Operator,
    /// Making a value of the type: input and receive functions, casts, a domain's checks, and
    /// showing it (below).
    Type,
    /// Showing a stored value of the type: output and send functions only. A read of a
    /// column runs these, never the domain's checks or the casts.
    TypeOut,
    Relation,
}

impl Kind {
    fn from_code(code: &str) -> Option<Kind> {
        match code {
            "f" => Some(Kind::Function),
            "o" => Some(Kind::Operator),
            "t" => Some(Kind::Type),
            "u" => Some(Kind::TypeOut),
            "r" => Some(Kind::Relation),
            _ => None,
        }
    }
}

/// Every function with what it is by itself and whether `x.f` notation can call it.
const FUNCTIONS_SQL: &str = "\
    SELECT p.oid, lower(p.proname) AS name, p.provolatile::text AS volatility, \
           n.nspname = 'pg_catalog' AS builtin, \
           (p.pronargs = 1 AND t.typtype IN ('c', 'p')) AS attribute \
      FROM pg_catalog.pg_proc p \
      JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
      LEFT JOIN pg_catalog.pg_type t ON t.oid = p.proargtypes[0]";

/// Edges "running `from` may run `to`". Objects below 16384 (FirstNormalObjectId) are built
/// in; their I/O functions and casts are built-in functions already judged by pg_proc.
/// `x::T` runs a cast whose target is T, so a type reaches the casts into it; a cast out of a
/// type runs unnamed only when it is implicit (then a value or column of the source type
/// reaches it). Explicit casts out of `int` must not make every `::int` a write.
const EDGES_SQL: &str = "\
    WITH dep AS ( \
      SELECT d.classid, d.objid, d.refobjid, \
             CASE d.refclassid WHEN 'pg_catalog.pg_proc'::regclass THEN 'f' \
                               WHEN 'pg_catalog.pg_operator'::regclass THEN 'o' \
                               WHEN 'pg_catalog.pg_type'::regclass THEN 't' \
                               ELSE 'r' END AS kind \
        FROM pg_catalog.pg_depend d \
       WHERE d.refclassid IN ('pg_catalog.pg_proc'::regclass, 'pg_catalog.pg_operator'::regclass, \
                              'pg_catalog.pg_type'::regclass, 'pg_catalog.pg_class'::regclass) \
         AND d.classid IN ('pg_catalog.pg_rewrite'::regclass, 'pg_catalog.pg_constraint'::regclass, \
                           'pg_catalog.pg_policy'::regclass, 'pg_catalog.pg_proc'::regclass)) \
    SELECT 'f' AS fk, a.aggfnoid::oid AS f, 'f' AS tk, s.fn AS t \
      FROM pg_catalog.pg_aggregate a, \
           unnest(ARRAY[a.aggtransfn, a.aggfinalfn, a.aggcombinefn, a.aggserialfn, a.aggdeserialfn, \
                        a.aggmtransfn, a.aggminvtransfn, a.aggmfinalfn]::oid[]) AS s(fn) \
     WHERE s.fn <> 0 \
    UNION ALL SELECT 'o', o.oid, 'f', o.oprcode::oid FROM pg_catalog.pg_operator o WHERE o.oprcode <> 0 \
    UNION ALL SELECT 't', t.oid, 'f', s.fn \
      FROM pg_catalog.pg_type t, unnest(ARRAY[t.typinput, t.typreceive]::oid[]) AS s(fn) \
     WHERE s.fn <> 0 AND t.oid >= 16384 \
    UNION ALL SELECT 't', t.oid, 'u', t.oid FROM pg_catalog.pg_type t WHERE t.oid >= 16384 \
    UNION ALL SELECT 'u', t.oid, 'f', s.fn \
      FROM pg_catalog.pg_type t, unnest(ARRAY[t.typoutput, t.typsend]::oid[]) AS s(fn) \
     WHERE s.fn <> 0 AND t.oid >= 16384 \
    UNION ALL SELECT 'u', t.oid, 'r', t.typrelid FROM pg_catalog.pg_type t \
     WHERE t.typtype = 'c' AND t.oid >= 16384 \
    UNION ALL SELECT k.k, t.oid, k.k, t.typbasetype FROM pg_catalog.pg_type t, (VALUES ('t'), ('u')) k(k) \
     WHERE t.typbasetype <> 0 \
    UNION ALL SELECT k.k, t.oid, k.k, t.typelem FROM pg_catalog.pg_type t, (VALUES ('t'), ('u')) k(k) \
     WHERE t.typelem <> 0 AND t.oid >= 16384 \
    UNION ALL SELECT 't', c.casttarget, 'f', c.castfunc FROM pg_catalog.pg_cast c \
     WHERE c.castfunc <> 0 AND c.oid >= 16384 \
    UNION ALL SELECT k.k, c.castsource, 'f', c.castfunc FROM pg_catalog.pg_cast c, (VALUES ('t'), ('u')) k(k) \
     WHERE c.castfunc <> 0 AND c.oid >= 16384 AND c.castcontext = 'i' \
    UNION ALL SELECT 't', c.contypid, d.kind, d.refobjid FROM pg_catalog.pg_constraint c \
      JOIN dep d ON d.classid = 'pg_catalog.pg_constraint'::regclass AND d.objid = c.oid \
     WHERE c.contypid <> 0 \
    UNION ALL SELECT 'r', r.ev_class, d.kind, d.refobjid FROM pg_catalog.pg_rewrite r \
      JOIN pg_catalog.pg_class c ON c.oid = r.ev_class AND c.relkind = 'v' \
      JOIN dep d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid \
     WHERE NOT (d.kind = 'r' AND d.refobjid = r.ev_class) \
    UNION ALL SELECT 'r', p.polrelid, d.kind, d.refobjid FROM pg_catalog.pg_policy p \
      JOIN dep d ON d.classid = 'pg_catalog.pg_policy'::regclass AND d.objid = p.oid \
     WHERE p.polcmd IN ('r', '*') AND NOT (d.kind = 'r' AND d.refobjid = p.polrelid) \
    UNION ALL SELECT 'r', a.attrelid, 'u', a.atttypid FROM pg_catalog.pg_attribute a \
     WHERE a.attnum > 0 AND NOT a.attisdropped AND a.atttypid >= 16384 \
    UNION ALL SELECT 'f', d.objid, d.kind, d.refobjid FROM dep d \
     WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND NOT (d.kind = 'f' AND d.refobjid = d.objid)";

const RELATIONS_SQL: &str = "\
    SELECT c.oid, lower(c.relname) AS name, lower(n.nspname) AS schema \
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f', 'S')";

const TYPES_SQL: &str = "\
    SELECT t.oid, lower(t.typname) AS name, lower(n.nspname) AS schema \
      FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace";

const OPERATORS_SQL: &str = "SELECT o.oid, o.oprname::text AS name FROM pg_catalog.pg_operator o";

/// What one load found: the graph and the names to report it under.
#[derive(Default)]
pub(super) struct Graph {
    index: AHashMap<(Kind, u32), usize>,
    base: Vec<Volatility>,
    /// `callers[n]`: the objects that may run `n`.
    callers: Vec<Vec<usize>>,
}

impl Graph {
    fn node(&mut self, kind: Kind, oid: u32) -> usize {
        let next = self.base.len();
        let i = *self.index.entry((kind, oid)).or_insert(next);
        if i == next {
            self.base.push(Volatility::Immutable);
            self.callers.push(Vec::new());
        }
        i
    }

    fn set_base(&mut self, kind: Kind, oid: u32, v: Volatility) {
        let i = self.node(kind, oid);
        self.base[i] = v;
    }

    fn edge(&mut self, from: (Kind, u32), to: (Kind, u32)) {
        let f = self.node(from.0, from.1);
        let t = self.node(to.0, to.1);
        self.callers[t].push(f);
    }

    /// Every object's worst reachable volatility: a worklist over callers, monotone in a
    /// four-step order, so it ends whatever the cycles (recursive views, a type and its own
    /// input function).
    fn resolve(&self) -> Vec<Volatility> {
        let mut reach = self.base.clone();
        let mut work: Vec<usize> = (0..reach.len())
            .filter(|&i| reach[i] != Volatility::Immutable)
            .collect();
        while let Some(n) = work.pop() {
            for &c in &self.callers[n] {
                if rank(reach[c]) < rank(reach[n]) {
                    reach[c] = reach[n];
                    work.push(c);
                }
            }
        }
        reach
    }

    fn get(&self, reach: &[Volatility], kind: Kind, oid: u32) -> Volatility {
        self.index
            .get(&(kind, oid))
            .map_or(Volatility::Immutable, |&i| reach[i])
    }
}

pub(super) fn rank(v: Volatility) -> u8 {
    match v {
        Volatility::Immutable => 0,
        Volatility::Stable => 1,
        Volatility::VolatileReadOnly => 2,
        Volatility::Volatile => 3,
    }
}

fn worst(a: Volatility, b: Volatility) -> Volatility {
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// What pg_proc says of one function by itself.
fn own_volatility(code: &str, builtin_schema: bool, name: &str) -> Volatility {
    if builtin_schema
        && (builtin::PRIMARY_ONLY.contains(&name) || builtin::RUNS_SQL_TEXT.contains(&name))
    {
        return Volatility::Volatile;
    }
    match code {
        "i" => Volatility::Immutable,
        "s" => Volatility::Stable,
        _ if builtin_schema && builtin::VOLATILE_READ_ONLY.contains(&name) => {
            Volatility::VolatileReadOnly
        }
        _ => Volatility::Volatile,
    }
}

/// Names and their resolved volatility, for [`super::FunctionCatalog`] to take in.
pub(super) struct Loaded {
    pub functions: AHashMap<String, Volatility>,
    pub operators: AHashMap<String, Volatility>,
    pub reach: Reach,
}

/// Reads the reach graph of the connected database and resolves it.
pub(super) async fn load(client: &tokio_postgres::Client) -> Result<Loaded, tokio_postgres::Error> {
    let mut graph = Graph::default();
    let mut functions = Vec::new();
    for row in client.query(FUNCTIONS_SQL, &[]).await? {
        let oid: u32 = row.try_get("oid")?;
        let name: String = row.try_get("name")?;
        let code: String = row.try_get("volatility")?;
        let builtin_schema: bool = row.try_get("builtin")?;
        let attribute: Option<bool> = row.try_get("attribute")?;
        graph.set_base(
            Kind::Function,
            oid,
            own_volatility(&code, builtin_schema, &name),
        );
        functions.push((oid, name, attribute.unwrap_or(false)));
    }
    for row in client.query(EDGES_SQL, &[]).await? {
        let (Some(fk), Some(tk)) = (
            Kind::from_code(row.try_get("fk")?),
            Kind::from_code(row.try_get("tk")?),
        ) else {
            continue;
        };
        graph.edge((fk, row.try_get("f")?), (tk, row.try_get("t")?));
    }
    let reach = graph.resolve();

    let mut loaded = Loaded {
        functions: AHashMap::new(),
        operators: AHashMap::new(),
        reach: Reach::default(),
    };
    for (oid, name, attribute) in functions {
        let v = graph.get(&reach, Kind::Function, oid);
        if attribute && v == Volatility::Volatile {
            loaded.reach.insert_attribute_call(&name);
        }
        let entry = loaded
            .functions
            .entry(name)
            .or_insert(Volatility::Immutable);
        *entry = worst(*entry, v);
    }
    for row in client.query(OPERATORS_SQL, &[]).await? {
        let v = graph.get(&reach, Kind::Operator, row.try_get("oid")?);
        let entry = loaded
            .operators
            .entry(row.try_get("name")?)
            .or_insert(Volatility::Immutable);
        *entry = worst(*entry, v);
    }
    for (sql, kind) in [(RELATIONS_SQL, Kind::Relation), (TYPES_SQL, Kind::Type)] {
        for row in client.query(sql, &[]).await? {
            let v = graph.get(&reach, kind, row.try_get("oid")?);
            if v == Volatility::Immutable {
                continue;
            }
            let name: String = row.try_get("name")?;
            let schema: String = row.try_get("schema")?;
            for key in [name.clone(), format!("{schema}.{name}")] {
                let map = match kind {
                    Kind::Relation => &mut loaded.reach.relations,
                    _ => &mut loaded.reach.types,
                };
                let entry = map.entry(key.into()).or_insert(Volatility::Immutable);
                *entry = worst(*entry, v);
            }
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reach_follows_chains_and_cycles() {
        let mut g = Graph::default();
        let f = |oid| (Kind::Function, oid);
        // view 1 -> view 2 -> writer 10; type 5 <-> its input function 11, which is stable.
        g.set_base(Kind::Function, 10, Volatility::Volatile);
        g.set_base(Kind::Function, 11, Volatility::Stable);
        g.edge((Kind::Relation, 1), (Kind::Relation, 2));
        g.edge((Kind::Relation, 2), f(10));
        g.edge((Kind::Type, 5), f(11));
        g.edge(f(11), (Kind::Type, 5));
        g.edge((Kind::Relation, 3), (Kind::TypeOut, 5));
        // Domain 6 over int: its check calls writer 10, its output is int's (built in).
        g.edge((Kind::Type, 6), f(10));
        g.edge((Kind::Type, 6), (Kind::TypeOut, 6));
        g.edge((Kind::Relation, 4), (Kind::TypeOut, 6));
        g.edge((Kind::TypeOut, 5), f(11));
        let r = g.resolve();
        assert_eq!(g.get(&r, Kind::Relation, 1), Volatility::Volatile);
        assert_eq!(g.get(&r, Kind::Relation, 2), Volatility::Volatile);
        assert_eq!(g.get(&r, Kind::Type, 5), Volatility::Stable);
        assert_eq!(g.get(&r, Kind::Relation, 3), Volatility::Stable);
        // Reading a column of the domain runs no check.
        assert_eq!(g.get(&r, Kind::Type, 6), Volatility::Volatile);
        assert_eq!(g.get(&r, Kind::Relation, 4), Volatility::Immutable);
        assert_eq!(g.get(&r, Kind::Relation, 99), Volatility::Immutable);
    }

    #[test]
    fn own_volatility_follows_pg_proc_and_the_builtin_lists() {
        assert_eq!(own_volatility("i", true, "lower"), Volatility::Immutable);
        assert_eq!(own_volatility("s", false, "f"), Volatility::Stable);
        assert_eq!(
            own_volatility("v", true, "random"),
            Volatility::VolatileReadOnly
        );
        // Only pg_catalog's random is known harmless; a user's may write.
        assert_eq!(own_volatility("v", false, "random"), Volatility::Volatile);
        assert_eq!(
            own_volatility("s", true, "txid_current"),
            Volatility::Volatile
        );
    }
}
