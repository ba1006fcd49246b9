//! Translating a request for the attached server: client statement names to server ones, statements prepared again where the connection lacks them, and what each message will answer.

use super::action::ReadyAction;
use super::plan::Expect;
use super::session::{End, Session};
use super::statements::{next_unnamed_id, ClientStatement};
use crate::backend::prepared::server_name;
use crate::backend::ServerConn;
use crate::error::ClientError;
use crate::protocol::build;
use crate::protocol::message::Fields;
use crate::protocol::messages::TARGET_STATEMENT;
use crate::protocol::tags::frontend as tag;
use crate::router::Analysis;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

impl Session {
    /// Writes the request for the attached server, renaming prepared statements, and records
    /// what each message will answer.
    pub(super) fn translate(
        &mut self,
        analyses: Vec<Option<Arc<Analysis>>>,
        pool_wait_us: u64,
        mut fill: Option<Box<crate::cache::Fill>>,
        cache_miss: bool,
    ) -> Result<(), End> {
        let started = self.pending.arrived;
        let flush_ended = self.pending.terminator == Some(tag::FLUSH);
        let frames = self.take_pending();
        // A statement prepared again is checked against the columns its client was shown
        // only in a request of one Sync, at its end: the Sync waits for the check's answer,
        // and nothing else may reach the server meanwhile.
        let checkable = frames.last().is_some_and(|f| f.tag() == tag::SYNC)
            && frames
                .iter()
                .filter(|f| matches!(f.tag(), tag::SYNC | tag::QUERY | tag::FUNCTION_CALL))
                .count()
                == 1;
        let mut checks = 0;
        let mut unnamed_id = self.unnamed_id;
        let mut may_link = self.literals_may_link();
        let Some(lease) = self.server.as_mut() else {
            return Err(End::Fatal(ClientError::Internal(
                "no server for request".into(),
            )));
        };
        let conn = lease.conn();
        let out = &mut self.swbuf;
        let plan = &mut self.plan;
        // Statements sent before a Flush belong to the request their Sync will end.
        let first_new = self.ready_actions.len();
        let mut action = ReadyAction::new(started, pool_wait_us);
        action.fill = fill.take();
        action.cache_miss = cache_miss;
        if self.flushed.is_open() {
            action.absorb(self.flushed.take());
        }
        let log_parameters = self.shared.stats.settings.log_parameters;
        let detect = self.live.detection().enabled;
        let mut parsed_unnamed = false;
        let mut failed_at: Option<usize> = None;
        for (i, (f, a)) in frames.iter().zip(analyses).enumerate() {
            let t = f.tag();
            if failed_at.is_some() && t != tag::SYNC {
                continue;
            }
            match f.fields() {
                Fields::Query(_) => {
                    out.extend_from_slice(f.raw());
                    plan.push(Expect::Query);
                    action.simple = true;
                    if log_parameters {
                        action.parameters = Some(f.clone());
                    }
                    if let Some(a) = a {
                        action.execute(a.clone());
                        if detect {
                            let values = may_link || a.statement_count != 1;
                            action
                                .executed
                                .set_call(super::n_plus_one::query_call(f.body(), values));
                        }
                        if a.discard_all {
                            conn.prepared.clear();
                            self.statements.clear();
                            self.unnamed = None;
                        }
                        if has_effects(&a) {
                            action.effects.push(a);
                        }
                    }
                    self.ready_actions
                        .push_back(std::mem::replace(&mut action, ReadyAction::new(started, 0)));
                    may_link = true;
                }
                Fields::Opaque if t == tag::FUNCTION_CALL => {
                    out.extend_from_slice(f.raw());
                    plan.push(Expect::FunctionCall);
                    action.function_call();
                    self.ready_actions
                        .push_back(std::mem::replace(&mut action, ReadyAction::new(started, 0)));
                }
                Fields::Opaque if t == tag::SYNC => {
                    if checks > 0 {
                        // Sent when the checks are answered (responses.rs).
                        build::flush(out);
                        plan.hold_sync(checks);
                    } else {
                        out.extend_from_slice(f.raw());
                    }
                    plan.push(Expect::Sync);
                    self.ready_actions
                        .push_back(std::mem::replace(&mut action, ReadyAction::new(started, 0)));
                    failed_at = None;
                }
                Fields::Parse(p) => {
                    let Some(a) = a else {
                        return Err(End::Fatal(ClientError::Internal("unanalyzed Parse".into())));
                    };
                    let trace = if detect {
                        crate::nplusone::trace_id(p.sql)
                    } else {
                        0
                    };
                    let epoch = self.shared.router.schema_epoch();
                    let salt = self.shared.router.catalog_salt();
                    let stmt = Arc::new(ClientStatement::new(&p, a, trace, epoch, salt));
                    if p.name.is_empty() {
                        out.extend_from_slice(f.raw());
                        plan.push(Expect::Parse {
                            injected: false,
                            key: None,
                            client_name: None,
                        });
                        unnamed_id = next_unnamed_id(unnamed_id);
                        conn.unnamed_owner = unnamed_id;
                        parsed_unnamed = true;
                        self.unnamed = Some(stmt);
                    } else if self.statements.contains_key(p.name) {
                        let mut e = BytesMut::new();
                        build::error_response(
                            &mut e,
                            crate::protocol::sqlstate::Severity::Error,
                            crate::protocol::sqlstate::SqlState::DUPLICATE_PREPARED_STATEMENT,
                            &format!(
                                "prepared statement \"{}\" already exists",
                                String::from_utf8_lossy(p.name)
                            ),
                        );
                        plan.push(Expect::Synthetic(e.freeze()));
                        failed_at = Some(i);
                    } else {
                        let name = Bytes::copy_from_slice(p.name);
                        self.statements.insert(name.clone(), stmt.clone());
                        ensure_prepared(conn, out, plan, &stmt, Some(name), None);
                    }
                }
                Fields::Bind(b) => {
                    if log_parameters {
                        action.parameters = Some(f.clone());
                    }
                    if b.statement.is_empty() {
                        reparse_unnamed(conn, out, plan, &self.unnamed, parsed_unnamed, unnamed_id);
                        out.extend_from_slice(f.raw());
                    } else if let Some(stmt) = self.statements.get(b.statement) {
                        if stmt.columns_changed {
                            let mut e = BytesMut::new();
                            ClientError::ResultColumnsChanged.write(&mut e);
                            plan.push(Expect::Synthetic(e.freeze()));
                            failed_at = Some(i);
                            continue;
                        }
                        let check = checkable.then_some(b.statement);
                        checks += u32::from(ensure_prepared(conn, out, plan, stmt, None, check));
                        build::bind(out, b.portal, &server_name(stmt.key), b.rest);
                    } else {
                        out.extend_from_slice(f.raw());
                    }
                    plan.push(Expect::Bind);
                    if let Some(a) = a {
                        action.execute(a.clone());
                        if detect {
                            let stmt = if b.statement.is_empty() {
                                self.unnamed.as_deref()
                            } else {
                                self.statements.get(b.statement).map(|s| &**s)
                            };
                            action
                                .executed
                                .set_call(super::n_plus_one::bind_call(stmt, b.rest));
                        }
                        if has_effects(&a) {
                            action.effects.push(a);
                        }
                    }
                }
                Fields::Describe(d) => {
                    let mut statement = None;
                    if d.kind == TARGET_STATEMENT && d.name.is_empty() {
                        reparse_unnamed(conn, out, plan, &self.unnamed, parsed_unnamed, unnamed_id);
                        out.extend_from_slice(f.raw());
                        statement = self.unnamed.as_ref().map(|s| (Bytes::new(), s.key));
                    } else if d.kind == TARGET_STATEMENT {
                        match self.statements.get(d.name) {
                            Some(stmt) => {
                                ensure_prepared(conn, out, plan, stmt, None, None);
                                build::target(
                                    out,
                                    tag::DESCRIBE,
                                    TARGET_STATEMENT,
                                    &server_name(stmt.key),
                                );
                                statement = Some((Bytes::copy_from_slice(d.name), stmt.key));
                            }
                            None => out.extend_from_slice(f.raw()),
                        }
                    } else {
                        out.extend_from_slice(f.raw());
                    }
                    plan.push(Expect::Describe { statement });
                }
                Fields::Close(c) => {
                    if c.kind == TARGET_STATEMENT && !c.name.is_empty() {
                        // The server statement stays for other clients; the client's name goes.
                        self.statements.remove(c.name);
                        let mut e = BytesMut::new();
                        build::close_complete(&mut e);
                        plan.push(Expect::Synthetic(e.freeze()));
                    } else {
                        out.extend_from_slice(f.raw());
                        plan.push(Expect::Close);
                    }
                }
                Fields::Opaque if t == tag::EXECUTE => {
                    out.extend_from_slice(f.raw());
                    plan.push(Expect::Execute);
                }
                // Flush; CopyData/CopyDone/CopyFail outside COPY: the server reports the error.
                Fields::Opaque => out.extend_from_slice(f.raw()),
            }
        }
        self.unnamed_id = unnamed_id;
        // Until a Sync, the server keeps what this request opened (pg-cursor's portal).
        let extended = frames.iter().any(|f| {
            matches!(
                f.tag(),
                tag::PARSE | tag::BIND | tag::DESCRIBE | tag::EXECUTE | tag::CLOSE
            )
        });
        self.unsynced = flush_ended && (self.unsynced || extended);
        // Statements bound before a Flush wait for the Sync that ends them.
        if action.is_open() {
            self.flushed.set(action);
        }
        self.note_writes(first_new);
        self.probe_in_line();
        // Replies the proxy makes itself are due now if nothing before them is outstanding.
        self.plan.drain_synthetic(&mut self.wbuf);
        self.recycle_messages(frames);
        self.write_server()
    }
}

fn has_effects(a: &Analysis) -> bool {
    !a.session.is_empty() || a.pin.is_some() || a.discard_all
}

/// Makes sure the server has `stmt` under the proxy's name for it, preparing it if not.
/// With `check` (the client's name for it), a statement prepared again is also described, to
/// compare its columns with those the client was shown; true when that check was planned.
fn ensure_prepared(
    conn: &mut ServerConn,
    out: &mut BytesMut,
    plan: &mut super::plan::Plan,
    stmt: &ClientStatement,
    client_name: Option<Bytes>,
    check: Option<&[u8]>,
) -> bool {
    let from_client = client_name.is_some();
    if conn.prepared.touch(stmt.key) {
        if from_client {
            let mut e = BytesMut::new();
            build::parse_complete(&mut e);
            plan.push(Expect::Synthetic(e.freeze()));
        }
        return false;
    }
    if let Some(victim) = conn.prepared.insert(stmt.key) {
        build::target(out, tag::CLOSE, TARGET_STATEMENT, &server_name(victim));
        plan.push(Expect::CloseInjected);
    }
    build::parse(out, &server_name(stmt.key), &stmt.sql, &stmt.param_types);
    plan.push(Expect::Parse {
        injected: !from_client,
        key: Some(stmt.key),
        client_name,
    });
    match (check, stmt.columns) {
        (Some(name), Some(columns)) => {
            build::target(out, tag::DESCRIBE, TARGET_STATEMENT, &server_name(stmt.key));
            plan.push(Expect::Check {
                name: Bytes::copy_from_slice(name),
                key: stmt.key,
                columns,
            });
            true
        }
        _ => false,
    }
}

/// Prepares the client's unnamed statement again when this server connection does not hold it.
fn reparse_unnamed(
    conn: &mut ServerConn,
    out: &mut BytesMut,
    plan: &mut super::plan::Plan,
    unnamed: &Option<Arc<ClientStatement>>,
    parsed_in_request: bool,
    unnamed_id: u64,
) {
    if parsed_in_request || conn.unnamed_owner == unnamed_id {
        return;
    }
    if let Some(stmt) = unnamed {
        build::parse(out, b"", &stmt.sql, &stmt.param_types);
        plan.push(Expect::Parse {
            injected: true,
            key: None,
            client_name: None,
        });
        conn.unnamed_owner = unnamed_id;
    }
}

/// The proxy's own one-value questions on a server connection, sent as statements prepared
/// once per connection: parsing and planning the text at every question cost the server about
/// 13 µs each, and a replica under read load is asked at most reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Question {
    /// How far a replica has replayed, asked ahead of a read that needs a position.
    ReplayPosition,
    /// The primary's WAL position after a write, asked on the same connection after its commit
    /// and before it returns to the pool. The insert position (not the write position) covers
    /// commits made with synchronous_commit = off.
    InsertPosition,
}

impl Question {
    /// Keys no client statement hashes to in practice (they are no [`ClientStatement`] key's
    /// hash of text), so the questions share the connection's statement cache without colliding.
    fn key(self) -> u64 {
        match self {
            Question::ReplayPosition => 0x7067_7370_6c69_7401,
            Question::InsertPosition => 0x7067_7370_6c69_7402,
        }
    }

    fn sql(self) -> &'static str {
        match self {
            Question::ReplayPosition => crate::pool::REPLAY_POSITION_SQL,
            Question::InsertPosition => "SELECT pg_current_wal_insert_lsn()",
        }
    }

    /// Writes the question, prepared first if this connection does not hold it, for `expect`
    /// (an internal expectation, which swallows every reply through its ReadyForQuery).
    pub(super) fn ask(
        self,
        conn: &mut ServerConn,
        out: &mut BytesMut,
        plan: &mut super::plan::Plan,
        expect: Expect,
    ) {
        let key = self.key();
        let name = server_name(key);
        if !conn.prepared.touch(key) {
            if let Some(victim) = conn.prepared.insert(key) {
                build::target(out, tag::CLOSE, TARGET_STATEMENT, &server_name(victim));
                plan.push(Expect::CloseInjected);
            }
            // Closing first makes the Parse safe even where a failed question left the
            // statement on the server but not in the cache: closing a missing one is no error.
            build::target(out, tag::CLOSE, TARGET_STATEMENT, &name);
            plan.push(Expect::CloseInjected);
            build::parse(out, &name, self.sql().as_bytes(), b"\0\0");
        }
        // No parameter formats, no parameters, no result formats: one text column.
        build::bind(out, b"", &name, b"\0\0\0\0\0\0");
        build::execute(out, b"", 0);
        build::sync(out);
        plan.push(expect);
    }

    /// A question that failed may have left its statement unprepared: prepare it again next time.
    pub(super) fn failed(self, conn: &mut ServerConn) {
        conn.prepared.remove(self.key());
    }
}
