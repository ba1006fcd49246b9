//! Assembling a client request up to Sync/Query/Flush and choosing its server (translate.rs writes it for that server).

use super::cached::Outcome;
use super::copy::Route as CopyRoute;
use super::plan::Expect;
use super::session::{End, Session};
use crate::error::ClientError;
use crate::pool::{AcquireError, ReadNeed, Role};
use crate::protocol::build;
use crate::protocol::frame;
use crate::protocol::message::{Fields, Message};
use crate::protocol::messages::{TxStatus, TARGET_STATEMENT};
use crate::protocol::tags::frontend as tag;
use crate::router::{Analysis, Deallocate, Route};
use std::sync::Arc;
use std::time::Instant;

/// The request being assembled from client messages.
#[derive(Default)]
pub struct Pending {
    pub messages: Vec<Message>,
    pub bytes: usize,
    /// The message that completes the request: Query, Sync, Flush or FunctionCall.
    pub terminator: Option<u8>,
    /// The request is complete but must wait for the current server to be released.
    pub blocked: bool,
    /// When its first message arrived.
    pub arrived: Option<Instant>,
}

impl Pending {
    /// Gives back the frame list's capacity while no request is being gathered.
    pub fn shed_idle(&mut self) {
        super::shed::Shed::shed(&mut self.messages);
    }
}

/// The pending request's server role and each message's analysis, worked out once per
/// request and shared by the cache probe, translation, stats and N+1 detection.
pub(super) struct Routed {
    role: Role,
    analyses: Vec<Option<Arc<Analysis>>>,
}

/// Whether the pending request may go now.
enum Admission {
    /// It must wait for the attached server to be released.
    Wait,
    Go(Option<Routed>),
}

impl Admission {
    fn when(go: bool, routed: Routed) -> Admission {
        if go {
            Admission::Go(Some(routed))
        } else {
            Admission::Wait
        }
    }
}

/// A request with no Sync this large is sent on as if the client had sent Flush.
const MAX_PENDING_BYTES: usize = 1 << 20;

impl Session {
    /// Reads whole client messages and dispatches complete requests while the server allows.
    pub(super) async fn pump_client(&mut self) -> Result<(), End> {
        let max = self.live.config().max_message_bytes;
        loop {
            if self.pending.terminator.is_some() {
                if self.over_budget() {
                    // Answers owed exceed the limit: the session writes or awaits them first
                    // (and reads no more of the client meanwhile), then comes back here.
                    return Ok(());
                }
                self.refresh_statements();
                let Admission::Go(routed) = self.admission() else {
                    self.pending.blocked = true;
                    self.close_implicit_transaction();
                    return Ok(());
                };
                self.pending.blocked = false;
                // Boxed: dispatch's state (pool wait, probes) lives only while a request is
                // being dispatched, not in every idle client's task.
                Box::pin(self.dispatch(routed)).await?;
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
                .on_client(t, in_flight, !self.pending.messages.is_empty())
            {
                CopyRoute::Request => {}
                CopyRoute::Server => {
                    self.swbuf.extend_from_slice(f.raw());
                    continue;
                }
                CopyRoute::Drop => continue,
            }
            if self.pending.messages.is_empty() {
                self.pending.arrived = Some(self.ryw.resumed.take().unwrap_or_else(Instant::now));
            }
            self.pending.bytes += f.len();
            self.pending.messages.push(Message::decode(f)?);
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
            && !self.in_flight()
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

    /// A request may join the attached server unless it needs the primary and that server is a
    /// replica, or it is a read and that server, a primary, is held only for a position probe.
    /// A route worked out to decide is handed on, so dispatch does not work it out again.
    fn admission(&self) -> Admission {
        match &self.server {
            None => Admission::Go(None),
            Some(_) if self.server_dying => Admission::Wait,
            // The server waits for the Sync of a request being checked (translate.rs).
            Some(_) if self.plan.holds_sync() => Admission::Wait,
            // The read in flight may yet run again elsewhere (frontend/verify.rs).
            Some(_) if self.verifying() => Admission::Wait,
            Some(_) if self.in_server_transaction() || self.continues_portals() => {
                Admission::Go(None)
            }
            // A primary held only for a write's position probe: a read waits for the answer
            // (one round trip) and is routed afresh, to a replica if it can, instead of riding
            // along to the primary.
            Some(lease) if lease.server.role() == Role::Primary => {
                if !self.server_held_only_for_probe() {
                    return Admission::Go(None);
                }
                let routed = self.route();
                Admission::when(routed.role == Role::Primary, routed)
            }
            Some(lease) => {
                let routed = self.route();
                let joins =
                    routed.role == Role::Replica && self.replica_serves(lease, &routed.analyses);
                Admission::when(joins, routed)
            }
        }
    }

    /// The request only goes on with what the attached server holds (pg-cursor's next
    /// Execute after a Flush): its portal exists nowhere else, so it cannot move to the primary.
    fn continues_portals(&self) -> bool {
        self.pending.messages.iter().all(|f| {
            matches!(
                f.tag(),
                tag::EXECUTE | tag::DESCRIBE | tag::CLOSE | tag::SYNC | tag::FLUSH
            )
        })
    }

    /// The server role the pending request needs, with each message's analysis.
    fn route(&self) -> Routed {
        let mut role = Role::Replica;
        let mut any_statement = false;
        let mut analyses = Vec::with_capacity(self.pending.messages.len());
        let mut unnamed = self.unnamed.as_ref().map(|s| self.current_analysis(s));
        // Statements named by a Parse of this request (pgjdbc prepares and binds in one batch).
        let mut parsed: Vec<(&[u8], Arc<Analysis>)> = Vec::new();
        for m in &self.pending.messages {
            let a = match m.fields() {
                Fields::Query(q) => Some(self.analyze(q.sql)),
                Fields::Parse(p) => {
                    let a = self.analyze(p.sql);
                    if p.name.is_empty() {
                        unnamed = Some(a.clone());
                    } else {
                        parsed.push((p.name, a.clone()));
                    }
                    Some(a)
                }
                Fields::Bind(b) => {
                    if b.statement.is_empty() {
                        unnamed.clone()
                    } else if let Some((_, a)) =
                        parsed.iter().rev().find(|(n, _)| *n == b.statement)
                    {
                        Some(a.clone())
                    } else {
                        self.statements
                            .get(b.statement)
                            .map(|s| self.current_analysis(s))
                    }
                }
                _ if m.tag() == tag::FUNCTION_CALL => {
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
        Routed { role, analyses }
    }

    /// Sends the pending request to a server, acquiring one first if needed; `routed` if
    /// admission already worked out its route.
    pub(super) async fn dispatch(&mut self, routed: Option<Routed>) -> Result<(), End> {
        // Reads in flight stay protected only if this request joins them (refusal_join).
        let refusal_armed = self.refusal.pause();
        let Routed { mut role, analyses } = routed.unwrap_or_else(|| self.route());
        if self.refusal_resend() {
            role = Role::Primary;
        }
        let terminator = self.pending.terminator;
        // A lone Sync with nothing in flight needs no server.
        // Between requests even while the server answers the proxy's WAL-position probe.
        let between = self.server.is_none() || self.server_held_only_for_probe();
        if between && self.pending.messages.len() == 1 && terminator == Some(tag::SYNC) {
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
        let (mut fill, mut global_need) = (None, None);
        let global = self.needs_global_position(role, &analyses);
        if let Some(probe) = self.cache_probe(&analyses) {
            match self.consult_cache(probe, global).await? {
                Outcome::Answered => return Ok(()),
                Outcome::Server(f, need) => (fill, global_need) = (f, need),
            }
        }
        let cache_miss = fill.is_some();
        // With table_lsn or global routing a replica answers only once it has replayed what the
        // read needs, so its answer may fill the cache; the other modes keep the time guard.
        let lsn_routed = self.shared.config.replication.consistency.routes_by_lsn();
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
                self.routed_need(global, global_need, &analyses).await
            } else {
                ReadNeed::Any
            };
            // A read kept for a re-send may ask its replica's position in its own round trip.
            let in_line = role == Role::Replica && !self.ryw.retry_messages.is_empty();
            // Boxed: the pool's wait future is large and would otherwise sit in every idle
            // client's task for its whole life.
            match Box::pin(self.pools.acquire(role, need, in_line)).await {
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
            self.ask_in_line();
        } else {
            // A second request on the same connection: a loss could no longer be retried alone.
            self.disarm_retry();
            self.watch_stalls_from_now();
        }
        self.note_sequences(&analyses);
        let wbuf_before = self.wbuf.len();
        if !fresh {
            self.refusal_join(refusal_armed, &analyses);
        }
        self.translate(analyses, pool_wait_us, fill, cache_miss)?;
        self.arm_retry(wbuf_before);
        if fresh {
            self.refusal_arm(wbuf_before);
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

    pub(super) fn take_pending(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.pending).messages
    }

    /// Hands a drained message list back, so the next request reuses its allocation.
    pub(super) fn recycle_messages(&mut self, mut messages: Vec<Message>) {
        messages.clear();
        if messages.capacity() <= 64 && self.pending.messages.is_empty() {
            self.pending.messages = messages;
        }
    }

    /// Close of named statements then Sync (what drivers send when a statement is dropped) is
    /// answered by the proxy: the server statements stay for reuse, so no server is needed.
    fn try_local_close(&mut self) -> bool {
        let messages = &self.pending.messages;
        let Some((last, closes)) = messages.split_last() else {
            return false;
        };
        if last.tag() != tag::SYNC
            || closes.is_empty()
            || !closes.iter().all(|m| {
                m.close()
                    .is_some_and(|c| c.kind == TARGET_STATEMENT && !c.name.is_empty())
            })
        {
            return false;
        }
        let messages = self.take_pending();
        for m in &messages[..messages.len() - 1] {
            if let Some(c) = m.close() {
                self.statements.remove(c.name);
            }
            build::close_complete(&mut self.wbuf);
        }
        build::ready_for_query(&mut self.wbuf, self.tx);
        self.recycle_messages(messages);
        true
    }

    /// DEALLOCATE of a protocol-level statement is answered by the proxy: the server knows it
    /// under another name.
    fn try_local_deallocate(&mut self, analyses: &[Option<Arc<Analysis>>]) -> bool {
        if self.pin.is_some()
            || self.pending.messages.len() != 1
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
}
