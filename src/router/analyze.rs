//! The slow path: a statement text through pg_query (parse, fingerprint, normalize) into an [`Analysis`].

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use pg_query::FingerprintOptions;

use super::catalog::FunctionCatalog;
use super::facts::{Facts, Use};
use super::shape::{self, Keyword, Shape};
use super::statement::{self, Outcome};
use super::walk::walk;
use super::{Analysis, PinReason, Route};

/// Analyzes `sql`, whose shape is `shape`, without the cache.
pub(super) fn analyze(sql: &str, shape: &Shape, catalog: &FunctionCatalog) -> Analysis {
    // pg_query's tree post-processing indexes and casts with panics on shapes it does not expect;
    // a panic must cost one statement its analysis, not the client its connection.
    let parsed = catch_unwind(AssertUnwindSafe(|| pg_query::parse(sql, 0)));
    let mut analysis = match parsed {
        Ok(Ok(result)) => match from_tree(sql, &result.protobuf, catalog) {
            Some(analysis) => analysis,
            None => not_understood(sql, shape, "unparsed"),
        },
        Ok(Err(pg_query::Error::Parse(message))) if !message.contains("stack depth") => {
            rejected(sql, shape)
        }
        Ok(Err(_)) => not_understood(sql, shape, "too complex"),
        Err(_) => not_understood(sql, shape, "unparsed"),
    };
    if shape.primary_hint {
        analysis.route = Route::Primary;
        analysis.reason = "hint";
        analysis.not_cacheable = Some(Arc::from("a primary hint"));
    }
    analysis
}

fn from_tree(
    sql: &str,
    tree: &pg_query::protobuf::ParseResult,
    catalog: &FunctionCatalog,
) -> Option<Analysis> {
    let mut merged = Merged::default();
    let mut truncate_cascade = false;
    for raw in &tree.stmts {
        let Some(node) = raw.stmt.as_ref().and_then(|n| n.node.as_ref()) else {
            continue;
        };
        if let pg_query::NodeEnum::TruncateStmt(t) = node {
            truncate_cascade |= t.behavior == pg_query::protobuf::DropBehavior::DropCascade as i32;
        }
        let mut facts = Facts::default();
        walk(node, &mut facts).ok()?;
        let text = statement_text(sql, raw.stmt_location, raw.stmt_len);
        let outcome = statement::classify(node, text, &facts, catalog);
        merged.add(&facts, outcome);
    }
    let fingerprint = pg_query::fingerprint(
        sql,
        0,
        FingerprintOptions::RANGEVAR_PG17_COMPAT | FingerprintOptions::FULL_RELNAME,
    )
    .ok()?
    .value;
    // pg_query leaves literals in utility statements (DEFAULT 'x', COPY ... FROM 'file',
    // PREPARE ... AS SELECT 'x') and keeps comments; the lexer pass removes what is left.
    let normalized = shape::normalize(&pg_query::normalize(sql).ok()?);
    let mut analysis = merged.finish(fingerprint, normalized);
    catalog
        .write_reach()
        .expand(&mut analysis, truncate_cascade, catalog.is_stale());
    Some(analysis)
}

/// A statement's own text: PostgreSQL's location skips leading whitespace and comments, and a
/// zero length means "to the end of the string".
fn statement_text(sql: &str, location: i32, len: i32) -> &str {
    let start = usize::try_from(location).unwrap_or(0);
    let end = match usize::try_from(len) {
        Ok(0) | Err(_) => sql.len(),
        Ok(len) => start.saturating_add(len).min(sql.len()),
    };
    sql.get(start..end)
        .unwrap_or(sql)
        .trim()
        .trim_end_matches(';')
        .trim_end()
}

/// Text the server will reject as well: nothing runs, so nothing happens to the session.
fn rejected(sql: &str, shape: &Shape) -> Analysis {
    Analysis {
        route: Route::Primary,
        reason: "unparsed",
        fingerprint: shape.hash,
        normalized: Arc::from(shape::normalize(sql)),
        tables_read: Vec::new(),
        tables_written: Vec::new(),
        functions: Vec::new(),
        not_cacheable: Some(Arc::from("not parsed")),
        user_dependent: None,
        session: Vec::new(),
        pin: None,
        deallocate: None,
        discard_all: false,
        is_transaction_control: false,
        statement_count: shape.statements as usize,
        reuse_by_shape: true,
        writes_unknown: false,
        reloads_catalog: false,
        changes_defaults: false,
    }
}

/// Text the server may well run although pg_query could not hand us its tree (too deeply
/// nested for the protobuf decoder, or a panic): assume the worst about its effects.
fn not_understood(sql: &str, shape: &Shape, reason: &'static str) -> Analysis {
    let transaction_control = shape::leading_keywords(sql).iter().any(|k| {
        matches!(
            k,
            Keyword::Begin
                | Keyword::Start
                | Keyword::Commit
                | Keyword::End
                | Keyword::Rollback
                | Keyword::Abort
                | Keyword::Savepoint
                | Keyword::Release
                | Keyword::Prepare
        )
    });
    Analysis {
        reason,
        pin: Some(PinReason::Other),
        is_transaction_control: transaction_control,
        writes_unknown: true,
        reloads_catalog: true,
        ..rejected(sql, shape)
    }
}

/// Per-statement outcomes folded into one analysis of the whole text.
#[derive(Default)]
struct Merged {
    statements: usize,
    primary_reason: Option<&'static str>,
    replica_reason: Option<&'static str>,
    /// The first statement's reason not to cache, if any.
    not_cacheable: Option<String>,
    reuse_by_shape: bool,
    tables_read: Vec<String>,
    tables_written: Vec<String>,
    functions: Vec<String>,
    session: Vec<super::SessionEffect>,
    pin: Option<PinReason>,
    deallocate: Option<super::Deallocate>,
    discard_all: bool,
    transaction_control: bool,
    writes_unknown: bool,
    reloads_catalog: bool,
    changes_defaults: bool,
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

impl Merged {
    fn add(&mut self, facts: &Facts, outcome: Outcome) {
        if self.statements == 0 {
            self.reuse_by_shape = true;
        }
        self.statements += 1;
        for (name, usage) in statement::relations(facts, &outcome) {
            match usage {
                Use::Read => push_unique(&mut self.tables_read, name),
                Use::Written | Use::Ddl => push_unique(&mut self.tables_written, name),
            }
        }
        for name in outcome.written {
            push_unique(&mut self.tables_written, name);
        }
        for name in &facts.functions {
            if !name.is_empty() {
                push_unique(&mut self.functions, name.clone());
            }
        }
        match outcome.route {
            Route::Primary => {
                self.primary_reason.get_or_insert(outcome.reason);
            }
            Route::Replica => {
                self.replica_reason.get_or_insert(outcome.reason);
            }
        }
        if self.not_cacheable.is_none() {
            self.not_cacheable = outcome.not_cacheable;
        }
        // The SET text and set_config's is_local flag differ between texts of one shape.
        self.reuse_by_shape &= outcome.session.is_empty() && !facts.set_config_any;
        self.session.extend(outcome.session);
        self.pin = self.pin.or(outcome.pin);
        self.deallocate = outcome.deallocate.or(self.deallocate.take());
        self.discard_all |= outcome.discard_all;
        self.transaction_control |= outcome.transaction_control;
        self.writes_unknown |= outcome.writes_unknown;
        self.reloads_catalog |= outcome.reloads_catalog;
        self.changes_defaults |= outcome.changes_defaults;
    }

    fn finish(self, fingerprint: u64, normalized: String) -> Analysis {
        let (route, reason) = match (self.primary_reason, self.replica_reason) {
            (Some(reason), _) => (Route::Primary, reason),
            // A pinned session runs everything after on this server, its writes too: a read
            // that pins it (a function that may set settings, with a catalog not yet reloaded
            // after DDL) must not pin it to a replica.
            (None, Some(_)) if self.pin.is_some() => (Route::Primary, "pins the session"),
            (None, Some(reason)) => (Route::Replica, reason),
            (None, None) => (Route::Primary, "empty"),
        };
        Analysis {
            route,
            reason,
            fingerprint,
            normalized: Arc::from(normalized),
            tables_read: self.tables_read,
            tables_written: self.tables_written,
            functions: self.functions,
            not_cacheable: match (route, self.not_cacheable) {
                (_, Some(why)) => Some(Arc::from(why)),
                (Route::Primary, None) => {
                    Some(Arc::from(format!("runs on the primary ({reason})")))
                }
                (Route::Replica, None) => None,
            },
            user_dependent: None,
            session: self.session,
            pin: self.pin,
            deallocate: self.deallocate,
            discard_all: self.discard_all,
            is_transaction_control: self.transaction_control,
            statement_count: self.statements,
            reuse_by_shape: self.statements == 0 || self.reuse_by_shape,
            writes_unknown: self.writes_unknown,
            reloads_catalog: self.reloads_catalog,
            changes_defaults: self.changes_defaults,
        }
    }
}
