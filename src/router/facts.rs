//! What one walk over a statement's parse tree found: calls, relations, locks, writes nested in reads.

use super::walk::Visitor;

/// A relation reference and how the statement uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Use {
    Read,
    /// Target of INSERT/UPDATE/DELETE/MERGE/TRUNCATE or SELECT INTO / CREATE TABLE AS.
    Written,
    /// Target of a DDL statement.
    Ddl,
}

/// Facts about one top-level statement, collected by [`Facts::visit`].
#[derive(Debug, Default)]
pub(super) struct Facts {
    /// Called functions, lowercased, unqualified, in call order (with repeats).
    pub functions: Vec<String>,
    /// Operator names used in expressions (`a OP b`, `ORDER BY x USING OP`, `x OP ANY (...)`).
    pub operators: Vec<String>,
    /// Type names in casts and other type references, lowercased: the bare name and, when
    /// qualified, `schema.name`. A cast runs the type's input or cast function, and a domain's checks.
    pub types: Vec<String>,
    /// Last field of `a.b` column references and `(x).b` selections, lowercased: attribute
    /// notation, which PostgreSQL resolves to a call `b(a)` when `a` has no column `b`.
    pub attributes: Vec<String>,
    /// A row-locking clause anywhere (`FOR UPDATE`, ...), as a routing reason (the first one's).
    pub locking: Option<&'static str>,
    /// An `INTO` clause anywhere (SELECT INTO, CREATE TABLE AS).
    pub into: bool,
    /// INSERT/UPDATE/DELETE/MERGE below the top statement (a data-modifying CTE, or EXPLAIN's query).
    pub nested_write: bool,
    /// `CURRENT_TIMESTAMP`, `CURRENT_USER`, ... (SQLValueFunction): read-only but never cacheable.
    pub session_dependent: bool,
    /// `TABLESAMPLE`: read-only but never cacheable.
    pub sampled: bool,
    /// A string literal PostgreSQL's date/time input reads as the current time ('now',
    /// 'today', 'tomorrow', 'yesterday'): whatever it is cast to, not a constant.
    pub time_literal: bool,
    /// A relation created or written with TEMP persistence or in `pg_temp`.
    pub temp_target: bool,
    /// `set_config(..)` whose third argument is not the literal `true` (so it may outlive the
    /// transaction); `set_config_any` marks any call, whose effect then depends on a literal.
    pub set_config_session: bool,
    pub set_config_any: bool,
    relations: Vec<Relation>,
    calls: Vec<Call>,
    /// Name parts of the TypeName and ColumnRef being walked.
    type_parts: Vec<Vec<String>>,
    column_parts: Vec<Vec<String>>,
    scopes: Vec<u32>,
    queries: Vec<u32>,
    withs: Vec<With>,
    open_withs: Vec<usize>,
    ctes: Vec<Cte>,
    open_ctes: Vec<usize>,
    next_id: u32,
}

#[derive(Debug)]
struct Relation {
    schema: String,
    name: String,
    temp: bool,
    usage: Use,
    /// Ids of the enclosing queries and CTE bodies, innermost last.
    scopes: Vec<u32>,
}

#[derive(Debug, Default)]
struct Call {
    name: String,
    args: u32,
    third_arg_true: bool,
}

#[derive(Debug)]
struct With {
    recursive: bool,
}

#[derive(Debug)]
struct Cte {
    id: u32,
    name: String,
    /// The query whose WITH clause declares it.
    owner: u32,
    with: usize,
    index: usize,
}

const LOCK_UNKNOWN: &str = "locking clause";

const WRITES: &[&str] = &["InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"];
const QUERIES: &[&str] = &[
    "SelectStmt",
    "InsertStmt",
    "UpdateStmt",
    "DeleteStmt",
    "MergeStmt",
];

/// (statement, field) pairs whose relation is the object of a DDL statement.
const DDL_TARGETS: &[(&str, &str)] = &[
    ("CreateStmt", "relation"),
    ("AlterTableStmt", "relation"),
    ("ViewStmt", "view"),
    ("RefreshMatViewStmt", "relation"),
    ("RenameStmt", "relation"),
    ("CreateTrigStmt", "relation"),
    ("RuleStmt", "relation"),
    ("IndexStmt", "relation"),
    ("AlterObjectSchemaStmt", "relation"),
    ("CreateSeqStmt", "sequence"),
    ("AlterSeqStmt", "sequence"),
    ("CreatePolicyStmt", "table"),
    ("AlterPolicyStmt", "table"),
];

/// Date/time input that means "the current time" (datetime.c's special strings; 'epoch' and
/// 'infinity' are constants). Spaces around it are ignored, as the input functions do.
pub fn is_time_literal(value: &str) -> bool {
    let v = value.trim();
    ["now", "today", "tomorrow", "yesterday"]
        .iter()
        .any(|t| v.eq_ignore_ascii_case(t))
}

fn tail_is(path: &[&str], tail: &[&str]) -> bool {
    path.ends_with(tail)
}

/// The (struct, field) that holds the struct at the end of `path`, looking through `Node` wrappers.
fn holder<'p>(path: &[&'p str]) -> (&'p str, &'p str) {
    let mut field = path.len().saturating_sub(2);
    while field >= 2 && path[field] == "node" && path[field - 1] == "Node" {
        field -= 2;
    }
    let owner = field
        .checked_sub(1)
        .and_then(|i| path.get(i))
        .copied()
        .unwrap_or("");
    (owner, path.get(field).copied().unwrap_or(""))
}

impl Facts {
    /// Relations as `(name, use)`, lowercased and schema-qualified when written so, with CTE
    /// references left out and duplicates kept (the caller deduplicates across statements).
    pub fn relations(&self) -> impl Iterator<Item = (String, Use)> + '_ {
        self.relations
            .iter()
            .filter(|r| !self.is_cte_reference(r))
            .map(|r| {
                let name = if r.schema.is_empty() {
                    r.name.to_lowercase()
                } else {
                    format!("{}.{}", r.schema, r.name).to_lowercase()
                };
                (name, r.usage)
            })
    }

    /// Whether an unqualified read names a CTE visible where it appears. Scoping follows
    /// PostgreSQL: a CTE is visible in its query and in later siblings' bodies, and in its own
    /// and earlier siblings' bodies only under WITH RECURSIVE. Erring here towards "table" only
    /// adds a name; erring towards "CTE" would hide a real table from cache invalidation.
    fn is_cte_reference(&self, r: &Relation) -> bool {
        if r.usage != Use::Read || !r.schema.is_empty() {
            return false;
        }
        self.ctes
            .iter()
            .filter(|c| c.name == r.name && r.scopes.contains(&c.owner))
            .any(|c| {
                let sibling = self
                    .ctes
                    .iter()
                    .find(|d| d.with == c.with && r.scopes.contains(&d.id));
                match sibling {
                    None => true,
                    Some(d) => {
                        self.withs.get(c.with).is_some_and(|w| w.recursive) || c.index < d.index
                    }
                }
            })
    }

    fn fresh_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }
}

impl Visitor for Facts {
    fn enter(&mut self, path: &[&'static str]) {
        let Some(&name) = path.last() else { return };
        match name {
            "FuncCall" => self.calls.push(Call::default()),
            "TypeName" => self.type_parts.push(Vec::new()),
            "ColumnRef" => self.column_parts.push(Vec::new()),
            "Node" if tail_is(path, &["FuncCall", "args", "Node"]) => {
                if let Some(call) = self.calls.last_mut() {
                    call.args += 1;
                }
            }
            "RangeVar" => {
                let usage = match holder(path) {
                    (owner, "relation") if WRITES.contains(&owner) => Use::Written,
                    ("IntoClause", "rel") | ("TruncateStmt", "relations") => Use::Written,
                    held if DDL_TARGETS.contains(&held) => Use::Ddl,
                    _ => Use::Read,
                };
                self.relations.push(Relation {
                    schema: String::new(),
                    name: String::new(),
                    temp: false,
                    usage,
                    scopes: self.scopes.clone(),
                });
            }
            // Refined by the clause's strength, reported next.
            "LockingClause" => self.locking = self.locking.or(Some(LOCK_UNKNOWN)),
            "IntoClause" => self.into = true,
            "SqlValueFunction" => self.session_dependent = true,
            "RangeTableSample" => self.sampled = true,
            "WithClause" => {
                self.withs.push(With { recursive: false });
                self.open_withs.push(self.withs.len() - 1);
            }
            "CommonTableExpr" => {
                let id = self.fresh_id();
                let with = self.open_withs.last().copied().unwrap_or(usize::MAX);
                let index = self.ctes.iter().filter(|c| c.with == with).count();
                let owner = self.queries.last().copied().unwrap_or(0);
                self.ctes.push(Cte {
                    id,
                    name: String::new(),
                    owner,
                    with,
                    index,
                });
                self.open_ctes.push(self.ctes.len() - 1);
                self.scopes.push(id);
            }
            _ => {}
        }
        if QUERIES.contains(&name) {
            if WRITES.contains(&name) && path.len() > 1 {
                self.nested_write = true;
            }
            let id = self.fresh_id();
            self.queries.push(id);
            self.scopes.push(id);
        }
    }

    fn leave(&mut self, name: &'static str) {
        match name {
            "FuncCall" => {
                let Some(call) = self.calls.pop() else { return };
                if call.name == "set_config" {
                    self.set_config_any = true;
                    if !(call.args == 3 && call.third_arg_true) {
                        self.set_config_session = true;
                    }
                }
                self.functions.push(call.name);
            }
            "TypeName" => {
                let parts = self.type_parts.pop().unwrap_or_default();
                if let Some(last) = parts.last() {
                    self.types.push(last.clone());
                    if parts.len() >= 2 {
                        self.types.push(parts[parts.len() - 2..].join("."));
                    }
                }
            }
            "ColumnRef" => {
                let parts = self.column_parts.pop().unwrap_or_default();
                if parts.len() >= 2 {
                    self.attributes.extend(parts.last().cloned());
                }
            }
            "WithClause" => {
                self.open_withs.pop();
            }
            "CommonTableExpr" => {
                self.open_ctes.pop();
                self.scopes.pop();
            }
            "RangeVar" => {
                if let Some(r) = self.relations.last() {
                    if r.temp && r.usage != Use::Read {
                        self.temp_target = true;
                    }
                }
            }
            _ if QUERIES.contains(&name) => {
                self.queries.pop();
                self.scopes.pop();
            }
            _ => {}
        }
    }

    fn string(&mut self, path: &[&'static str], value: &str) {
        if tail_is(
            path,
            &["FuncCall", "funcname", "Node", "node", "String", "sval"],
        ) {
            // Qualified names arrive part by part; the last part is the function's own name.
            if let Some(call) = self.calls.last_mut() {
                call.name = value.to_lowercase();
            }
        } else if tail_is(
            path,
            &["TypeName", "names", "Node", "node", "String", "sval"],
        ) {
            if let Some(parts) = self.type_parts.last_mut() {
                parts.push(value.to_lowercase());
            }
        } else if tail_is(
            path,
            &["ColumnRef", "fields", "Node", "node", "String", "sval"],
        ) {
            if let Some(parts) = self.column_parts.last_mut() {
                parts.push(value.to_lowercase());
            }
        } else if tail_is(
            path,
            &[
                "AIndirection",
                "indirection",
                "Node",
                "node",
                "String",
                "sval",
            ],
        ) {
            self.attributes.push(value.to_lowercase());
        } else if tail_is(
            path,
            &["SortBy", "use_op", "Node", "node", "String", "sval"],
        ) || tail_is(
            path,
            &["SubLink", "oper_name", "Node", "node", "String", "sval"],
        ) {
            if !value.bytes().any(|b| b.is_ascii_alphabetic()) {
                self.operators.push(value.to_owned());
            }
        } else if tail_is(path, &["AExpr", "name", "Node", "node", "String", "sval"]) {
            // BETWEEN and friends carry words here; real operators never contain letters.
            if !value.bytes().any(|b| b.is_ascii_alphabetic()) {
                self.operators.push(value.to_owned());
            }
        } else if path.len() >= 2 && path[path.len() - 2] == "RangeVar" {
            let Some(r) = self.relations.last_mut() else {
                return;
            };
            match path[path.len() - 1] {
                "schemaname" => {
                    r.schema = value.to_owned();
                    r.temp |= value.eq_ignore_ascii_case("pg_temp");
                }
                "relname" => r.name = value.to_owned(),
                "relpersistence" => r.temp |= value == "t",
                _ => {}
            }
        } else if tail_is(path, &["AConst", "val", "String", "sval"]) {
            self.time_literal |= is_time_literal(value);
        } else if tail_is(path, &["CommonTableExpr", "ctename"]) {
            if let Some(cte) = self.open_ctes.last().and_then(|&i| self.ctes.get_mut(i)) {
                cte.name = value.to_owned();
            }
        }
    }

    fn boolean(&mut self, path: &[&'static str], value: bool) {
        if tail_is(path, &["WithClause", "recursive"]) {
            if let Some(with) = self.open_withs.last().and_then(|&i| self.withs.get_mut(i)) {
                with.recursive = value;
            }
        } else if tail_is(
            path,
            &[
                "FuncCall", "args", "Node", "node", "AConst", "val", "Boolean", "boolval",
            ],
        ) {
            if let Some(call) = self.calls.last_mut() {
                if call.args == 3 {
                    call.third_arg_true = value;
                }
            }
        }
    }

    fn int(&mut self, path: &[&'static str], value: i64) {
        if tail_is(path, &["LockingClause", "strength"]) {
            let reason = match value {
                2 => "for key share",
                3 => "for share",
                4 => "for no key update",
                _ => "for update",
            };
            if self.locking.is_none() || self.locking == Some(LOCK_UNKNOWN) {
                self.locking = Some(reason);
            }
        }
    }
}
