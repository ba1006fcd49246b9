//! One top-level statement: its route, reason, cacheability and effects on the server session.

use pg_query::protobuf::{self, ObjectType, TransactionStmtKind, VariableSetKind};
use pg_query::NodeEnum;

use super::builtin::SESSION_ADVISORY_LOCKS;
use super::catalog::{FunctionCatalog, Volatility};
use super::facts::{Facts, Use};
use super::{Deallocate, PinReason, Route, SessionEffect};

/// How one statement routes and what it does to the session.
#[derive(Debug)]
pub(super) struct Outcome {
    pub route: Route,
    pub reason: &'static str,
    /// Why the result cache may not answer it (None: it may).
    pub not_cacheable: Option<String>,
    pub session: Vec<SessionEffect>,
    pub pin: Option<PinReason>,
    pub deallocate: Option<Deallocate>,
    pub discard_all: bool,
    pub transaction_control: bool,
    /// The statement may write relations not named in the text (procedures, DO blocks,
    /// functions that may write, prepared statements run by name).
    pub writes_unknown: bool,
    /// Written relations the walk cannot see (DROP targets, COPY FROM's table).
    pub written: Vec<String>,
    /// Changes functions, privileges or policies: the catalog must be reloaded.
    pub reloads_catalog: bool,
    /// Changes role or database defaults (ALTER ROLE/DATABASE ... SET).
    pub changes_defaults: bool,
}

impl Outcome {
    fn primary(reason: &'static str) -> Self {
        Self {
            route: Route::Primary,
            reason,
            not_cacheable: Some(format!("runs on the primary ({reason})")),
            session: Vec::new(),
            pin: None,
            deallocate: None,
            discard_all: false,
            transaction_control: false,
            writes_unknown: false,
            written: Vec::new(),
            reloads_catalog: false,
            changes_defaults: false,
        }
    }

    fn replica(reason: &'static str) -> Self {
        Self {
            route: Route::Replica,
            not_cacheable: Some(format!("not a cacheable read ({reason})")),
            ..Self::primary(reason)
        }
    }
}

/// `SHOW` variables whose value differs between a primary and a standby: clients (libpq's
/// `target_session_attrs`, JDBC's `targetServerType`) ask them to find the writable server.
const SERVER_ROLE_SETTINGS: &[&str] = &[
    "all",
    "default_transaction_read_only",
    "in_hot_standby",
    "transaction_read_only",
];

/// `DECLARE ... WITH HOLD` (parsenodes.h).
const CURSOR_OPT_HOLD: i32 = 0x0020;

/// Classifies one top-level statement. `text` is its own text within the query string.
pub(super) fn classify(
    node: &NodeEnum,
    text: &str,
    facts: &Facts,
    catalog: &FunctionCatalog,
) -> Outcome {
    let mut out = match node {
        NodeEnum::SelectStmt(_) => select(facts, catalog),
        NodeEnum::VariableShowStmt(s) => {
            if SERVER_ROLE_SETTINGS.contains(&s.name.to_lowercase().as_str()) {
                Outcome::primary("show server role")
            } else {
                Outcome::replica("show")
            }
        }
        NodeEnum::ExplainStmt(s) => explain(s, text, facts, catalog),
        NodeEnum::VariableSetStmt(s) => {
            let mut out = Outcome::primary("set");
            out.session.extend(session_effect(s, text));
            out
        }
        NodeEnum::TransactionStmt(s) => {
            let mut out = Outcome::primary(match TransactionStmtKind::try_from(s.kind) {
                Ok(TransactionStmtKind::TransStmtBegin | TransactionStmtKind::TransStmtStart) => {
                    "begin"
                }
                Ok(TransactionStmtKind::TransStmtCommit) => "commit",
                Ok(TransactionStmtKind::TransStmtRollback) => "rollback",
                _ => "transaction control",
            });
            out.transaction_control = true;
            // The prepared transaction's writes become visible now, in some other session's
            // transaction whose writes we may never have seen.
            if matches!(
                TransactionStmtKind::try_from(s.kind),
                Ok(TransactionStmtKind::TransStmtCommitPrepared)
            ) {
                out.writes_unknown = true;
            }
            out
        }
        NodeEnum::DiscardStmt(s) => {
            let mut out = Outcome::primary("discard");
            if s.target == protobuf::DiscardMode::DiscardAll as i32 {
                out.discard_all = true;
                out.session.push(SessionEffect::ResetAll);
            }
            out
        }
        NodeEnum::DeallocateStmt(s) => {
            let mut out = Outcome::primary("deallocate");
            out.deallocate = Some(if s.isall || s.name.is_empty() {
                Deallocate::All
            } else {
                Deallocate::Name(s.name.clone())
            });
            out
        }
        NodeEnum::PrepareStmt(_) => pinned("prepare", PinReason::SqlPrepare),
        NodeEnum::ListenStmt(_) => pinned("listen", PinReason::Listen),
        NodeEnum::LoadStmt(_) => pinned("load", PinReason::Other),
        NodeEnum::DeclareCursorStmt(s) => {
            let mut out = Outcome::primary("declare cursor");
            if s.options & CURSOR_OPT_HOLD != 0 {
                out.pin = Some(PinReason::HoldCursor);
            }
            out
        }
        NodeEnum::ExecuteStmt(_) => unknown_writes("execute"),
        NodeEnum::CallStmt(_) => unknown_writes("call"),
        NodeEnum::DoStmt(s) => {
            let mut out = unknown_writes("do");
            if do_block_sets(s, catalog) {
                out.pin = Some(PinReason::SessionState);
            }
            out
        }
        NodeEnum::CopyStmt(s) => {
            let mut out = Outcome::primary("copy");
            if s.is_from {
                out.written.extend(s.relation.as_ref().map(relation_name));
            }
            out
        }
        NodeEnum::DropStmt(s) => {
            let mut out = Outcome::primary("ddl");
            out.written = dropped_relations(s);
            // A policy or function may be what cached reads (views, RLS) depend on.
            let reaching = [
                ObjectType::ObjectPolicy,
                ObjectType::ObjectFunction,
                ObjectType::ObjectProcedure,
                ObjectType::ObjectRoutine,
                ObjectType::ObjectRule,
                ObjectType::ObjectTrigger,
            ];
            out.writes_unknown = reaching.iter().any(|&t| t as i32 == s.remove_type);
            out.reloads_catalog = true;
            out
        }
        NodeEnum::InsertStmt(_) => Outcome::primary("insert"),
        NodeEnum::UpdateStmt(_) => Outcome::primary("update"),
        NodeEnum::DeleteStmt(_) => Outcome::primary("delete"),
        NodeEnum::MergeStmt(_) => Outcome::primary("merge"),
        NodeEnum::TruncateStmt(_) => Outcome::primary("truncate"),
        NodeEnum::CreateTableAsStmt(_) => Outcome::primary("create table as"),
        NodeEnum::LockStmt(_) => Outcome::primary("lock table"),
        NodeEnum::VacuumStmt(_) => Outcome::primary("vacuum"),
        NodeEnum::NotifyStmt(_) => Outcome::primary("notify"),
        NodeEnum::UnlistenStmt(_) => Outcome::primary("unlisten"),
        // What writes reach (triggers, rules, defaults, partitions, views) may change.
        NodeEnum::CreateStmt(_)
        | NodeEnum::AlterTableStmt(_)
        | NodeEnum::ViewStmt(_)
        | NodeEnum::CreateTrigStmt(_)
        | NodeEnum::RuleStmt(_)
        | NodeEnum::RenameStmt(_)
        | NodeEnum::AlterObjectSchemaStmt(_)
            if !facts.temp_target =>
        {
            let mut out = Outcome::primary("ddl");
            out.reloads_catalog = true;
            out
        }
        NodeEnum::CreateStmt(_)
        | NodeEnum::AlterTableStmt(_)
        | NodeEnum::IndexStmt(_)
        | NodeEnum::ViewStmt(_)
        | NodeEnum::CreateSeqStmt(_)
        | NodeEnum::AlterSeqStmt(_)
        | NodeEnum::RenameStmt(_)
        | NodeEnum::CreateSchemaStmt(_)
        | NodeEnum::CreateTrigStmt(_)
        | NodeEnum::RefreshMatViewStmt(_)
        | NodeEnum::CommentStmt(_)
        // Objects a read can reach without naming them (router/reach.rs): the catalog loader
        // looks again after these.
        | NodeEnum::DefineStmt(_)
        | NodeEnum::CreateCastStmt(_)
        | NodeEnum::CreateDomainStmt(_)
        | NodeEnum::AlterDomainStmt(_)
        | NodeEnum::RuleStmt(_)
        | NodeEnum::CreateEnumStmt(_)
        | NodeEnum::AlterEnumStmt(_)
        | NodeEnum::CompositeTypeStmt(_)
        | NodeEnum::CreateRangeStmt(_)
        | NodeEnum::AlterTypeStmt(_)
        | NodeEnum::AlterOperatorStmt(_)
        | NodeEnum::CreateExtensionStmt(_)
        | NodeEnum::AlterExtensionStmt(_)
        | NodeEnum::AlterExtensionContentsStmt(_)
        | NodeEnum::AlterObjectSchemaStmt(_)
        | NodeEnum::CreateTransformStmt(_) => Outcome::primary("ddl"),
        // Who may read what, and which rows: any cached answer may now be wrong for someone.
        NodeEnum::GrantStmt(_)
        | NodeEnum::CreateFunctionStmt(_)
        | NodeEnum::AlterFunctionStmt(_)
        | NodeEnum::GrantRoleStmt(_)
        | NodeEnum::CreatePolicyStmt(_)
        | NodeEnum::AlterPolicyStmt(_)
        | NodeEnum::AlterRoleStmt(_)
        | NodeEnum::AlterRoleSetStmt(_)
        | NodeEnum::AlterDatabaseSetStmt(_)
        | NodeEnum::DropRoleStmt(_)
        | NodeEnum::AlterDefaultPrivilegesStmt(_)
        | NodeEnum::AlterOwnerStmt(_)
        | NodeEnum::ReassignOwnedStmt(_)
        | NodeEnum::DropOwnedStmt(_) => {
            let mut out = unknown_writes("privileges");
            out.reloads_catalog = true;
            out.changes_defaults = matches!(
                node,
                NodeEnum::AlterRoleSetStmt(_) | NodeEnum::AlterDatabaseSetStmt(_)
            );
            out
        }
        _ => Outcome::primary("utility"),
    };
    if executes_expressions(node) {
        if facts
            .functions
            .iter()
            .any(|f| SESSION_ADVISORY_LOCKS.contains(&f.as_str()))
        {
            out.pin = out.pin.or(Some(PinReason::AdvisoryLock));
        }
        if facts.set_config_session || facts.functions.iter().any(|f| catalog.may_set_session(f)) {
            out.pin = out.pin.or(Some(PinReason::SessionState));
        }
        if facts.functions.iter().any(|f| !catalog.is_read_only(f)) {
            out.writes_unknown = true;
        }
    }
    let creates = matches!(
        node,
        NodeEnum::CreateStmt(_)
            | NodeEnum::CreateTableAsStmt(_)
            | NodeEnum::SelectStmt(_)
            | NodeEnum::CreateSeqStmt(_)
            | NodeEnum::ViewStmt(_)
    );
    if creates && facts.temp_target {
        out.pin = out.pin.or(Some(PinReason::TempTable));
    }
    out
}

/// A DO block may change settings when its body (or a function it calls) may.
fn do_block_sets(s: &protobuf::DoStmt, catalog: &FunctionCatalog) -> bool {
    let mut language = "";
    let mut body = "";
    for arg in &s.args {
        let Some(NodeEnum::DefElem(d)) = &arg.node else {
            continue;
        };
        let value = match d.arg.as_deref().and_then(|a| a.node.as_ref()) {
            Some(NodeEnum::String(v)) => v.sval.as_str(),
            _ => continue,
        };
        match d.defname.as_str() {
            "as" => body = value,
            "language" => language = value,
            _ => {}
        }
    }
    super::setters::do_block_sets(language, body, |f| catalog.body_call_may_set_session(f))
}

fn pinned(reason: &'static str, pin: PinReason) -> Outcome {
    let mut out = Outcome::primary(reason);
    out.pin = Some(pin);
    out
}

fn unknown_writes(reason: &'static str) -> Outcome {
    let mut out = Outcome::primary(reason);
    out.writes_unknown = true;
    out
}

/// Statements that evaluate expressions when run (so their function calls take effect).
fn executes_expressions(node: &NodeEnum) -> bool {
    match node {
        NodeEnum::SelectStmt(_)
        | NodeEnum::InsertStmt(_)
        | NodeEnum::UpdateStmt(_)
        | NodeEnum::DeleteStmt(_)
        | NodeEnum::MergeStmt(_)
        | NodeEnum::CallStmt(_)
        | NodeEnum::CreateTableAsStmt(_)
        | NodeEnum::CopyStmt(_) => true,
        NodeEnum::ExplainStmt(s) => explain_analyze(s),
        _ => false,
    }
}

fn select(facts: &Facts, catalog: &FunctionCatalog) -> Outcome {
    match read_only(facts, catalog) {
        Err(reason) => Outcome::primary(reason),
        Ok(()) => {
            let mut out = Outcome::replica("read-only");
            out.not_cacheable = not_cacheable(facts, catalog);
            out
        }
    }
}

/// Why the statement cannot run on a replica, if it cannot.
fn read_only(facts: &Facts, catalog: &FunctionCatalog) -> Result<(), &'static str> {
    if let Some(lock) = facts.locking {
        return Err(lock);
    }
    if facts.into {
        return Err("select into");
    }
    if facts.nested_write {
        return Err("data-modifying cte");
    }
    for name in &facts.functions {
        match catalog.function(name) {
            Some(v) if v.is_read_only() => {}
            Some(_) => return Err(volatile_reason(name)),
            None => return Err("unknown function"),
        }
    }
    for op in &facts.operators {
        match catalog.operator(op) {
            Some(v) if v.is_read_only() => {}
            Some(_) => return Err("volatile operator"),
            None => return Err("unknown operator"),
        }
    }
    super::reach_check::read_only(facts, catalog)
}

fn volatile_reason(name: &str) -> &'static str {
    match name {
        "nextval" => "volatile function nextval",
        "setval" => "volatile function setval",
        "currval" => "volatile function currval",
        "lastval" => "volatile function lastval",
        "set_config" => "volatile function set_config",
        "pg_notify" => "volatile function pg_notify",
        "txid_current" | "pg_current_xact_id" => "function assigns a transaction id",
        n if n.ends_with("_to_xml")
            || n.ends_with("_to_xmlschema")
            || n.ends_with("_and_xmlschema") =>
        {
            "function runs sql text"
        }
        n if n.contains("advisory") => "advisory lock function",
        n if n.starts_with("lo_") || n == "loread" || n == "lowrite" => "large object function",
        _ => "volatile function",
    }
}

/// Why a read-only statement's result may not be cached, if it may not: the one place that
/// decides it from the statement's own text (write_reach adds what views and policies reach).
fn not_cacheable(facts: &Facts, catalog: &FunctionCatalog) -> Option<String> {
    if facts.session_dependent {
        return Some(
            "reads the clock or the session (CURRENT_TIMESTAMP, CURRENT_USER, ...)".into(),
        );
    }
    if facts.sampled {
        return Some("TABLESAMPLE".into());
    }
    if facts.time_literal {
        return Some("time literal ('now', 'today', ...)".into());
    }
    for f in &facts.functions {
        match catalog.function(f) {
            Some(Volatility::Immutable) => {}
            Some(Volatility::Stable) => return Some(format!("stable function {f}")),
            Some(_) => return Some(format!("volatile function {f}")),
            None => return Some(format!("unknown function {f}")),
        }
    }
    for (name, _) in facts.relations() {
        if is_system_relation(&name) {
            return Some(format!("system catalog {name}"));
        }
        // Views and policies reaching a volatile function (random(), clock_timestamp()).
        if catalog.relation(&name).is_some_and(|v| {
            super::reach::rank(v) >= super::reach::rank(Volatility::VolatileReadOnly)
        }) {
            return Some(format!("{name} reaches a volatile function"));
        }
    }
    None
}

/// System catalogs and statistics views change without any write through the proxy.
fn is_system_relation(name: &str) -> bool {
    let (schema, relation) = name.rsplit_once('.').unwrap_or(("", name));
    schema == "pg_catalog" || schema == "information_schema" || relation.starts_with("pg_")
}

fn explain_analyze(s: &protobuf::ExplainStmt) -> bool {
    // Any ANALYZE option counts whatever its value (`ANALYZE false`, `ANALYZE 0`): values are
    // literals, which the shape cache does not tell apart.
    s.options.iter().any(|o| matches!(&o.node, Some(NodeEnum::DefElem(d)) if d.defname.eq_ignore_ascii_case("analyze")))
}

/// EXPLAIN runs nothing, so it routes as its statement would (EXPLAIN SELECT to a replica,
/// EXPLAIN UPDATE to the primary) but has no effects. EXPLAIN ANALYZE runs the statement; it
/// always goes to the primary, where people measure, even for a read-only statement.
fn explain(
    s: &protobuf::ExplainStmt,
    text: &str,
    facts: &Facts,
    catalog: &FunctionCatalog,
) -> Outcome {
    if explain_analyze(s) {
        return Outcome::primary("explain analyze");
    }
    let Some(inner) = s.query.as_ref().and_then(|q| q.node.as_ref()) else {
        return Outcome::primary("explain");
    };
    let planned = classify(inner, text, facts, catalog);
    match planned.route {
        Route::Replica => Outcome::replica("explain"),
        Route::Primary => Outcome::primary(planned.reason),
    }
}

fn session_effect(s: &protobuf::VariableSetStmt, text: &str) -> Option<SessionEffect> {
    if s.is_local {
        return None;
    }
    let name = s.name.to_lowercase();
    let set = |name: String| SessionEffect::Set {
        name,
        statement: text.to_owned(),
    };
    match VariableSetKind::try_from(s.kind) {
        Ok(
            VariableSetKind::VarSetValue
            | VariableSetKind::VarSetDefault
            | VariableSetKind::VarSetCurrent,
        ) => Some(set(name)),
        // SET TRANSACTION lasts one transaction; SET SESSION CHARACTERISTICS sets the
        // default_transaction_* settings.
        Ok(VariableSetKind::VarSetMulti) if name == "session characteristics" => {
            let modes: Vec<&str> = s
                .args
                .iter()
                .filter_map(|a| match &a.node {
                    Some(NodeEnum::DefElem(d)) => Some(d.defname.as_str()),
                    _ => None,
                })
                .collect();
            Some(set(match modes.as_slice() {
                [one] => format!("default_{one}"),
                _ => "session_characteristics".to_owned(),
            }))
        }
        Ok(VariableSetKind::VarSetMulti) => None,
        Ok(VariableSetKind::VarReset) => Some(SessionEffect::Reset { name }),
        Ok(VariableSetKind::VarResetAll) => Some(SessionEffect::ResetAll),
        Ok(VariableSetKind::Undefined) | Err(_) => Some(set(name)),
    }
}

fn relation_name(r: &protobuf::RangeVar) -> String {
    if r.schemaname.is_empty() {
        r.relname.to_lowercase()
    } else {
        format!("{}.{}", r.schemaname, r.relname).to_lowercase()
    }
}

/// DROP names its objects as lists of strings, not relation references.
fn dropped_relations(s: &protobuf::DropStmt) -> Vec<String> {
    let relations = [
        ObjectType::ObjectTable,
        ObjectType::ObjectView,
        ObjectType::ObjectMatview,
        ObjectType::ObjectSequence,
        ObjectType::ObjectForeignTable,
    ];
    if !relations.iter().any(|&t| t as i32 == s.remove_type) {
        return Vec::new();
    }
    s.objects
        .iter()
        .filter_map(|o| match &o.node {
            Some(NodeEnum::List(list)) => {
                let parts: Vec<&str> = list
                    .items
                    .iter()
                    .filter_map(|i| match &i.node {
                        Some(NodeEnum::String(s)) => Some(s.sval.as_str()),
                        _ => None,
                    })
                    .collect();
                // A three-part name starts with the database, which relation names here omit.
                let start = parts.len().saturating_sub(2);
                Some(parts[start..].join(".").to_lowercase())
            }
            _ => None,
        })
        .collect()
}

/// Relations from the walk, for the caller to merge; COPY FROM's table reads as written.
pub(super) fn relations(facts: &Facts, outcome: &Outcome) -> Vec<(String, Use)> {
    facts
        .relations()
        .filter(|(name, usage)| !(*usage == Use::Read && outcome.written.contains(name)))
        .collect()
}
