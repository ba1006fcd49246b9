//! Assembling a client request up to Sync/Query/Flush, choosing its server, and translating it for that server.

use super::action::ReadyAction;
use super::cached::Outcome;
use super::copy::Route as CopyRoute;
use super::plan::Expect;
use super::session::{End, Session};
use crate::backend::prepared::server_name;
use crate::backend::ServerConn;
use crate::error::ClientError;
use crate::pool::{AcquireError, ReadNeed, Role};
use crate::protocol::build;
use crate::protocol::frame::{self, Frame};
use crate::protocol::messages::{Bind, Parse, Query, Target, TxStatus, TARGET_STATEMENT};
use crate::protocol::tags::frontend as tag;
use crate::router::{Analysis, Deallocate, Route};
use bytes::{Bytes, BytesMut};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Instant;

/// A client's prepared statement, enough to prepare it again on any server connection.
#[derive(Debug)]
pub struct ClientStatement {
    /// Hash of text and parameter types: the statement's name on every server.
    pub key: u64,
    pub sql: Bytes,
    pub param_types: Bytes,
    pub analysis: Arc<Analysis>,
    /// W3C trace id of a `traceparent` in the text (0: none), found once at Parse.
    pub trace: u128,
}

impl ClientStatement {
    pub fn new(p: &Parse<'_>, analysis: Arc<Analysis>, trace: u128) -> ClientStatement {
        ClientStatement {
            key: statement_key(p.sql, p.param_types),
            sql: Bytes::copy_from_slice(p.sql),
            param_types: Bytes::copy_from_slice(p.param_types),
            analysis,
            trace,
        }
    }
}

/// The request being assembled from client messages.
#[derive(Default)]
pub struct Pending {
    pub frames: Vec<Frame>,
    pub bytes: usize,
    /// The message that completes the request: Query, Sync, Flush or FunctionCall.
    pub terminator: Option<u8>,
    /// The request is complete but must wait for the current server to be released.
    pub blocked: bool,
    /// When its first message arrived.
    pub arrived: Option<Instant>,
}

/// A request with no Sync this large is sent on as if the client had sent Flush.
const MAX_PENDING_BYTES: usize = 1 << 20;

fn statement_key(sql: &[u8], param_types: &[u8]) -> u64 {
    let mut h = ahash::RandomState::with_seeds(11, 22, 33, 44).build_hasher();
    h.write(sql);
    h.write_u8(0);
    h.write(param_types);
    h.finish()
}

impl Session {
    fn analyze(&self, sql: &[u8]) -> Arc<Analysis> {
        // Text that is not UTF-8 (a LATIN1 client) cannot be parsed: it goes to the primary.
        match std::str::from_utf8(sql) {
            Ok(s) => self
                .shared
                .router
                .analyze_with(s, self.settings.string_rules()),
            Err(_) => self.shared.router.analyze(""),
        }
    }

    /// Reads whole client messages and dispatches complete requests while the server allows.
    pub(super) async fn pump_client(&mut self) -> Result<(), End> {
        let max = self.shared.live.load().max_message_bytes;
        loop {
            if self.pending.terminator.is_some() {
                if self.over_budget() {
                    // Answers owed exceed the limit: the session writes or awaits them first
                    // (and reads no more of the client meanwhile), then comes back here.
                    return Ok(());
                }
                if !self.can_dispatch() {
                    self.pending.blocked = true;
                    self.close_implicit_transaction();
                    return Ok(());
                }
                self.pending.blocked = false;
                self.dispatch().await?;
                continue;
            }
            let Some(f) = frame::decode_frontend(&mut self.rbuf, max)? else {
                return Ok(());
            };
            let t = f.tag();
            if t == tag::TERMINATE {
                return Err(End::ClientGone);
            }
            if t == tag::PASSWORD {
                return Err(End::Fatal(ClientError::Protocol(
                    crate::protocol::ProtocolError::UnknownTag { tag: t },
                )));
            }
            if self.skip_until_sync {
                if t == tag::SYNC {
                    self.skip_until_sync = false;
                    build::ready_for_query(&mut self.wbuf, self.tx);
                }
                continue;
            }
            let in_flight = self.server.is_some() && !self.plan.is_empty();
            match self
                .copy
                .on_client(t, in_flight, !self.pending.frames.is_empty())
            {
                CopyRoute::Request => {}
                CopyRoute::Server => {
                    self.swbuf.extend_from_slice(f.raw());
                    continue;
                }
                CopyRoute::Drop => continue,
            }
            if self.pending.frames.is_empty() {
                self.pending.arrived = Some(Instant::now());
            }
            self.pending.bytes += f.len();
            self.pending.frames.push(f);
            match t {
                tag::QUERY | tag::SYNC | tag::FUNCTION_CALL | tag::FLUSH => {
                    self.pending.terminator = Some(t)
                }
                _ if self.pending.bytes > MAX_PENDING_BYTES => {
                    self.pending.terminator = Some(tag::FLUSH)
                }
                _ => {}
            }
        }
    }

    /// A replica held after Parse/Bind/Flush without Sync keeps an implicit transaction open;
    /// when the next request needs the primary, end it with a Sync of our own so the replica
    /// can be released instead of waiting for a reply that will never come.
    fn close_implicit_transaction(&mut self) {
        if self.server.is_some()
            && !self.server_dying
            && self.plan.is_empty()
            && self.ready_actions.is_empty()
            && self.tx == TxStatus::Idle
        {
            build::sync(&mut self.swbuf);
            self.plan.push(Expect::Internal);
            self.unsynced = false;
        }
    }

    fn in_server_transaction(&self) -> bool {
        self.tx != TxStatus::Idle || self.pin.is_some()
    }

    /// A request may join the attached server unless it needs the primary and that server is a replica.
    fn can_dispatch(&self) -> bool {
        match &self.server {
            None => true,
            Some(_) if self.server_dying => false,
            Some(lease) => {
                if self.in_server_transaction()
                    || lease.server.role() == Role::Primary
                    || self.continues_portals()
                {
                    return true;
                }
                let (role, analyses) = self.route();
                role == Role::Replica && self.replica_serves(lease, &analyses)
            }
        }
    }

    /// The request only goes on with what the attached server holds (pg-cursor's next
    /// Execute after a Flush): its portal exists nowhere else, so it cannot move to the primary.
    fn continues_portals(&self) -> bool {
        self.pending.frames.iter().all(|f| {
            matches!(
                f.tag(),
                tag::EXECUTE | tag::DESCRIBE | tag::CLOSE | tag::SYNC | tag::FLUSH
            )
        })
    }

    /// The server role the pending request needs, with each message's analysis.
    fn route(&self) -> (Role, Vec<Option<Arc<Analysis>>>) {
        let mut role = Role::Replica;
        let mut any_statement = false;
        let mut analyses = Vec::with_capacity(self.pending.frames.len());
        let mut unnamed = self.unnamed.as_ref().map(|s| s.analysis.clone());
        for f in &self.pending.frames {
            let a = match f.tag() {
                tag::QUERY => Query::decode(f.body()).ok().map(|q| self.analyze(q.sql)),
                tag::PARSE => Parse::decode(f.body()).ok().map(|p| {
                    let a = self.analyze(p.sql);
                    if p.name.is_empty() {
                        unnamed = Some(a.clone());
                    }
                    a
                }),
                tag::BIND => Bind::decode(f.body()).ok().and_then(|b| {
                    if b.statement.is_empty() {
                        unnamed.clone()
                    } else {
                        self.statements.get(b.statement).map(|s| s.analysis.clone())
                    }
                }),
                tag::FUNCTION_CALL => {
                    role = Role::Primary;
                    None
                }
                _ => None,
            };
            if let Some(a) = &a {
                any_statement = true;
                // A replica refused this fingerprint before (frontend/refusal.rs).
                if a.route == Route::Primary || self.shared.router.is_forced_primary(a.fingerprint)
                {
                    role = Role::Primary;
                }
            }
            analyses.push(a);
        }
        if self.in_server_transaction()
            || self.pending.terminator == Some(tag::FLUSH) && !any_statement
        {
            role = Role::Primary;
        }
        // A partial request sent on before its Sync may be followed by writes in the same
        // implicit transaction, so it must start on the primary.
        if self.pending.terminator == Some(tag::FLUSH) && self.pending.bytes > MAX_PENDING_BYTES {
            role = Role::Primary;
        }
        (role, analyses)
    }

    /// Sends the pending request to a server, acquiring one first if needed.
    async fn dispatch(&mut self) -> Result<(), End> {
        let (mut role, analyses) = self.route();
        if self.refusal_resend() {
            role = Role::Primary;
        }
        let terminator = self.pending.terminator;
        // A lone Sync with nothing in flight needs no server.
        // Between requests even while the server answers the proxy's WAL-position probe.
        let between = self.server.is_none() || self.server_held_only_for_probe();
        if between && self.pending.frames.len() == 1 && terminator == Some(tag::SYNC) {
            self.take_pending();
            build::ready_for_query(&mut self.wbuf, self.tx);
            return Ok(());
        }
        if between && self.try_local_deallocate(&analyses) {
            return Ok(());
        }
        if between && self.try_local_close() {
            return Ok(());
        }
        let mut fill = None;
        if let Some(probe) = self.cache_probe(&analyses) {
            match self.consult_cache(probe).await? {
                Outcome::Answered => return Ok(()),
                Outcome::Server(f) => fill = f,
            }
        }
        let cache_miss = fill.is_some();
        // With table_lsn routing a replica answers only once it has replayed every write to the
        // tables read, so its answer may fill the cache; the other modes keep the time guard.
        let lsn_routed =
            self.shared.config.replication.consistency == crate::config::Consistency::TableLsn;
        if !lsn_routed
            && fill
                .as_ref()
                .is_some_and(|f| f.needs_primary(&self.shared.cache))
        {
            role = Role::Primary;
        }
        if let Some(function) = self.sequence_state_missing(&analyses) {
            ClientError::SequenceStateElsewhere(function).write(&mut self.wbuf);
            self.take_pending();
            match terminator {
                Some(tag::FLUSH) => self.skip_until_sync = true,
                _ => build::ready_for_query(&mut self.wbuf, self.tx),
            }
            return Ok(());
        }
        let mut pool_wait_us = 0;
        if self.server.is_none() && self.in_server_transaction() {
            // A transaction or pinned session never continues on another server: whatever
            // lost its connection must have ended the session, and this is the last guard.
            tracing::error!(user = %self.user, "request of a transaction whose server is gone");
            return Err(End::Fatal(ClientError::ServerLostInTransaction(
                "the transaction's server connection is gone".into(),
            )));
        }
        let fresh = self.server.is_none();
        if fresh {
            self.retry_snapshot(role);
            self.refusal_snapshot(role, &analyses);
            let need = if role == Role::Replica {
                self.read_need_settled(&analyses).await
            } else {
                ReadNeed::Any
            };
            // Boxed: the pool's wait future is large and would otherwise sit in every idle
            // client's task for its whole life.
            match Box::pin(self.pools.acquire(role, need)).await {
                Ok(lease) => {
                    pool_wait_us = lease.waited.as_micros() as u64;
                    self.attach(lease)
                }
                Err(e) => {
                    let err = match e {
                        AcquireError::Timeout { pool, waited, size } => ClientError::PoolTimeout {
                            pool,
                            waited_ms: waited.as_millis(),
                            size,
                        },
                        AcquireError::Backend { pool, source } => ClientError::ServerUnreachable {
                            pool,
                            reason: source.to_string(),
                        },
                        AcquireError::PrimaryDown(reason) => ClientError::PrimaryDown(reason),
                    };
                    tracing::warn!(user = %self.user, db = %self.database, error = %err, "request refused");
                    err.write(&mut self.wbuf);
                    self.take_pending();
                    match terminator {
                        Some(tag::FLUSH) => self.skip_until_sync = true,
                        _ => build::ready_for_query(&mut self.wbuf, self.tx),
                    }
                    return Ok(());
                }
            }
            self.sync_settings();
        } else {
            // A second request on the same connection: a loss could no longer be retried alone.
            self.disarm_retry();
            self.watch_stalls_from_now();
        }
        self.note_sequences(&analyses);
        let wbuf_before = self.wbuf.len();
        self.translate(analyses, pool_wait_us, fill, cache_miss)?;
        self.arm_retry(wbuf_before);
        if fresh {
            self.refusal_arm(wbuf_before);
        } else {
            self.refusal.disarm();
        }
        Ok(())
    }

    /// Replays the client's settings when the server connection last served other settings.
    fn sync_settings(&mut self) {
        let want = self.settings.hash();
        let Some(lease) = self.server.as_mut() else {
            return;
        };
        let conn = lease.conn();
        if conn.settings_hash == want {
            return;
        }
        let sql = self.settings.replay_sql();
        build::query(&mut self.swbuf, &sql);
        self.plan.push(Expect::Internal);
        conn.settings_hash = want;
    }

    pub(super) fn take_pending(&mut self) -> Vec<Frame> {
        let p = std::mem::take(&mut self.pending);
        p.frames
    }

    /// Hands a drained frame list back, so the next request reuses its allocation.
    pub(super) fn recycle_frames(&mut self, mut frames: Vec<Frame>) {
        frames.clear();
        if frames.capacity() <= 64 && self.pending.frames.is_empty() {
            self.pending.frames = frames;
        }
    }

    /// Close of named statements then Sync (what drivers send when a statement is dropped) is
    /// answered by the proxy: the server statements stay for reuse, so no server is needed.
    fn try_local_close(&mut self) -> bool {
        let frames = &self.pending.frames;
        let Some((last, closes)) = frames.split_last() else {
            return false;
        };
        if last.tag() != tag::SYNC
            || closes.is_empty()
            || !closes.iter().all(|f| {
                f.tag() == tag::CLOSE
                    && Target::decode(f.body(), "Close")
                        .is_ok_and(|c| c.kind == TARGET_STATEMENT && !c.name.is_empty())
            })
        {
            return false;
        }
        let frames = self.take_pending();
        for f in &frames[..frames.len() - 1] {
            if let Ok(c) = Target::decode(f.body(), "Close") {
                self.statements.remove(c.name);
            }
            build::close_complete(&mut self.wbuf);
        }
        build::ready_for_query(&mut self.wbuf, self.tx);
        self.recycle_frames(frames);
        true
    }

    /// DEALLOCATE of a protocol-level statement is answered by the proxy: the server knows it
    /// under another name.
    fn try_local_deallocate(&mut self, analyses: &[Option<Arc<Analysis>>]) -> bool {
        if self.pin.is_some()
            || self.pending.frames.len() != 1
            || self.pending.terminator != Some(tag::QUERY)
        {
            return false;
        }
        let Some(Some(a)) = analyses.first() else {
            return false;
        };
        if a.statement_count != 1 {
            return false;
        }
        match &a.deallocate {
            Some(Deallocate::All) => {
                self.statements.clear();
            }
            Some(Deallocate::Name(n)) if self.statements.remove(n.as_bytes()).is_some() => {}
            _ => return false,
        }
        self.take_pending();
        build::command_complete(
            &mut self.wbuf,
            if matches!(a.deallocate, Some(Deallocate::All)) {
                "DEALLOCATE ALL"
            } else {
                "DEALLOCATE"
            },
        );
        build::ready_for_query(&mut self.wbuf, self.tx);
        true
    }

    /// Writes the request for the attached server, renaming prepared statements, and records
    /// what each message will answer.
    fn translate(
        &mut self,
        analyses: Vec<Option<Arc<Analysis>>>,
        pool_wait_us: u64,
        mut fill: Option<Box<crate::cache::Fill>>,
        cache_miss: bool,
    ) -> Result<(), End> {
        let started = self.pending.arrived;
        let flush_ended = self.pending.terminator == Some(tag::FLUSH);
        let frames = self.take_pending();
        let mut unnamed_id = self.unnamed_id;
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
            action.absorb(std::mem::take(&mut self.flushed));
        }
        let log_parameters = self.shared.stats.settings.log_parameters;
        let detect = self.shared.n_plus_one.settings.load().enabled;
        let mut parsed_unnamed = false;
        let mut failed_at: Option<usize> = None;
        for (i, (f, a)) in frames.iter().zip(analyses).enumerate() {
            let t = f.tag();
            if failed_at.is_some() && t != tag::SYNC {
                continue;
            }
            match t {
                tag::QUERY => {
                    out.extend_from_slice(f.raw());
                    plan.push(Expect::Query);
                    action.simple = true;
                    if log_parameters {
                        action.parameters = Some(f.clone());
                    }
                    if let Some(a) = a {
                        action.execute(a.clone());
                        if detect {
                            action
                                .executed
                                .set_call(super::n_plus_one::query_call(f.body()));
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
                }
                tag::FUNCTION_CALL => {
                    out.extend_from_slice(f.raw());
                    plan.push(Expect::FunctionCall);
                    action.function_call();
                    self.ready_actions
                        .push_back(std::mem::replace(&mut action, ReadyAction::new(started, 0)));
                }
                tag::SYNC => {
                    out.extend_from_slice(f.raw());
                    plan.push(Expect::Sync);
                    self.ready_actions
                        .push_back(std::mem::replace(&mut action, ReadyAction::new(started, 0)));
                    failed_at = None;
                }
                tag::FLUSH => out.extend_from_slice(f.raw()),
                tag::PARSE => {
                    let p = Parse::decode(f.body())?;
                    let Some(a) = a else {
                        return Err(End::Fatal(ClientError::Internal("unanalyzed Parse".into())));
                    };
                    let trace = if detect {
                        crate::nplusone::trace_id(p.sql)
                    } else {
                        0
                    };
                    let stmt = Arc::new(ClientStatement::new(&p, a, trace));
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
                        ensure_prepared(conn, out, plan, &stmt, Some(name));
                    }
                }
                tag::BIND => {
                    let b = Bind::decode(f.body())?;
                    if log_parameters {
                        action.parameters = Some(f.clone());
                    }
                    if b.statement.is_empty() {
                        reparse_unnamed(conn, out, plan, &self.unnamed, parsed_unnamed, unnamed_id);
                        out.extend_from_slice(f.raw());
                    } else if let Some(stmt) = self.statements.get(b.statement) {
                        ensure_prepared(conn, out, plan, stmt, None);
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
                tag::DESCRIBE => {
                    let d = Target::decode(f.body(), "Describe")?;
                    if d.kind == TARGET_STATEMENT && d.name.is_empty() {
                        reparse_unnamed(conn, out, plan, &self.unnamed, parsed_unnamed, unnamed_id);
                        out.extend_from_slice(f.raw());
                    } else if d.kind == TARGET_STATEMENT {
                        match self.statements.get(d.name) {
                            Some(stmt) => {
                                ensure_prepared(conn, out, plan, stmt, None);
                                build::target(
                                    out,
                                    tag::DESCRIBE,
                                    TARGET_STATEMENT,
                                    &server_name(stmt.key),
                                );
                            }
                            None => out.extend_from_slice(f.raw()),
                        }
                    } else {
                        out.extend_from_slice(f.raw());
                    }
                    plan.push(Expect::Describe);
                }
                tag::CLOSE => {
                    let c = Target::decode(f.body(), "Close")?;
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
                tag::EXECUTE => {
                    out.extend_from_slice(f.raw());
                    plan.push(Expect::Execute);
                }
                // CopyData/CopyDone/CopyFail outside COPY: the server reports the error.
                _ => out.extend_from_slice(f.raw()),
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
            self.flushed = action;
        }
        self.note_writes(first_new);
        // Replies the proxy makes itself are due now if nothing before them is outstanding.
        self.plan.drain_synthetic(&mut self.wbuf);
        self.recycle_frames(frames);
        self.write_server()
    }
}

fn has_effects(a: &Analysis) -> bool {
    !a.session.is_empty() || a.pin.is_some() || a.discard_all
}

/// Makes sure the server has `stmt` under the proxy's name for it, preparing it if not.
fn ensure_prepared(
    conn: &mut ServerConn,
    out: &mut BytesMut,
    plan: &mut super::plan::Plan,
    stmt: &ClientStatement,
    client_name: Option<Bytes>,
) {
    let from_client = client_name.is_some();
    if conn.prepared.touch(stmt.key) {
        if from_client {
            let mut e = BytesMut::new();
            build::parse_complete(&mut e);
            plan.push(Expect::Synthetic(e.freeze()));
        }
        return;
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

/// A fresh identity for a client's unnamed statement, unique across all sessions: a server
/// connection holds the client's current one only if it was the last to parse it, not merely
/// some earlier statement of the same client (or of a client with a reused pid).
pub fn next_unnamed_id(_previous: u64) -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_keys_depend_on_text_and_types() {
        let a = statement_key(b"select $1", b"\x00\x00");
        assert_eq!(a, statement_key(b"select $1", b"\x00\x00"));
        assert_ne!(a, statement_key(b"select $2", b"\x00\x00"));
        assert_ne!(a, statement_key(b"select $1", b"\x00\x01\x00\x00\x00\x17"));
    }
}
