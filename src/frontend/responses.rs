//! Handling what the server sends: forward, swallow or answer in order, track transactions, release when idle.

use super::action::ReadyAction;
use super::attachment::Fate;
use super::plan::{columns_shape, Expect, Forget, Step};
use super::refusal::Seen;
use super::session::{End, Session};
use super::settings::DIRTY;
use super::translate::Question;
use crate::error::ClientError;
use crate::pool::Role;
use crate::protocol::build;
use crate::protocol::frame::{peek_header, HEADER_LEN};
use crate::protocol::messages::{command_rows, error_field, TxStatus};
use crate::protocol::tags::{backend as tag, frontend};
use crate::router::{PinReason, SessionEffect};
use crate::stats::{AnsweredBy, Sample};
use bytes::Buf;
use std::time::Instant;

/// Server messages may be large (a wide row); they are bounded only by PostgreSQL's own 1 GiB.
const MAX_SERVER_MESSAGE: usize = 1 << 30;

impl Session {
    pub(super) fn handle_server_messages(&mut self) -> Result<(), End> {
        let mut forget: Vec<Forget> = Vec::new();
        let mut became_ready = false;
        loop {
            let Some(lease) = self.server.as_mut() else {
                return Ok(());
            };
            let conn = lease.conn();
            let (t, len) = match peek_header(&conn.rbuf, MAX_SERVER_MESSAGE) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(_) => return self.server_lost("server sent an invalid message"),
            };
            if conn.rbuf.len() < HEADER_LEN + len {
                break;
            }
            let armed = self.ryw.armed();
            // A read whose server is shutting down is re-sent elsewhere, unseen by the client.
            if armed
                && t == tag::ERROR_RESPONSE
                && is_fatal(&conn.rbuf[HEADER_LEN..HEADER_LEN + len])
            {
                return self.server_lost("server ended the connection");
            }
            // Replies the proxy makes itself, due before this message, wait with the rest of an
            // armed read's answer: a retry would make them again.
            if armed {
                self.plan.drain_synthetic(self.ryw.held_mut());
            } else {
                self.plan.drain_synthetic(&mut self.wbuf);
            }
            let (step, mut ev) = match self.plan.on_message(t, &mut forget) {
                Ok(x) => x,
                Err(desync) => {
                    tracing::error!(error = %desync, "server reply out of step with the request");
                    conn.broken = true;
                    return Err(End::Fatal(ClientError::Internal(desync.to_string())));
                }
            };
            // The safety net watches what the client would see (not the proxy's own settings
            // replay or position probes), request by request (frontend/refusal.rs).
            let mut pin = None;
            if step == Step::Forward && self.refusal.in_flight() > 0 {
                let seen = if self.ready_actions.len() == self.refusal.in_flight() {
                    let idle = self.tx == TxStatus::Idle && self.pin.is_none();
                    let body = &conn.rbuf[HEADER_LEN..HEADER_LEN + len];
                    self.refusal.watch(t, body, self.wbuf.len(), idle)
                } else {
                    self.refusal.disarm();
                    Seen::Nothing
                };
                match seen {
                    Seen::Nothing => {}
                    Seen::Pin(reason) => pin = Some(reason),
                    Seen::Hide(reason) => {
                        // The reads go to the primary instead; this replica's reply is dropped.
                        self.refused(reason);
                        return Ok(());
                    }
                }
            }
            let end = HEADER_LEN + len;
            // Swallowed messages (the proxy's own) and the start of the answer keep the read
            // retryable; the first message the client must see now ends that.
            let hold = armed && (step != Step::Forward || self.ryw.may_hold(t, end));
            if armed && !hold {
                self.ryw.disarm(&mut self.wbuf);
            }
            if ev.unsolicited_error {
                let error = conn.rbuf.split_to(end).freeze();
                return self.server_ended_idle(error);
            }
            let body = &conn.rbuf[HEADER_LEN..end];
            // ParameterDescription's body is laid out as Parse's parameter types.
            let described_types = ev
                .described
                .is_some()
                .then(|| bytes::Bytes::copy_from_slice(body));
            let shape = (ev.described_columns.is_some() || ev.check.is_some())
                .then(|| columns_shape((t == tag::ROW_DESCRIPTION).then_some(body)))
                .flatten();
            if ev.probe {
                self.ryw.on_probe_message(t, body);
            }
            if ev.position {
                self.ryw.on_position_message(t, body);
            }
            if step == Step::Forward && matches!(t, tag::ERROR_RESPONSE | tag::COMMAND_COMPLETE) {
                self.copy.on_server_end();
            }
            // Can tell the client a write is done (the bytes leave when this function returns).
            // Inside an explicit transaction only its COMMIT (or an idle ReadyForQuery) can:
            // until then no other session could see the writes, so reads of their tables may
            // go on at the replica.
            let acknowledges = step == Step::Forward
                && match t {
                    tag::READY_FOR_QUERY => {
                        TxStatus::from_body(body).unwrap_or(TxStatus::Idle) == TxStatus::Idle
                    }
                    tag::COMMAND_COMPLETE => {
                        self.tx == TxStatus::Idle || body.starts_with(b"COMMIT")
                    }
                    _ => false,
                };
            match t {
                tag::READY_FOR_QUERY if !ev.internal_done => {
                    self.tx = TxStatus::from_body(body).unwrap_or(TxStatus::Idle);
                }
                tag::COPY_IN_RESPONSE | tag::COPY_BOTH_RESPONSE if step == Step::Forward => {
                    self.copy.on_copy_in_response();
                    for _ in 0..self.plan.copy_in_started() {
                        // Their effects move to the Sync that will really end the request.
                        if let Some(mut early) = self.ready_actions.pop_front() {
                            match self.ready_actions.front_mut() {
                                Some(next) => next.absorb(early),
                                None => {
                                    early.absorb(self.flushed.take());
                                    self.flushed.set(early);
                                }
                            }
                        }
                    }
                }
                tag::COMMAND_COMPLETE | tag::EMPTY_QUERY_RESPONSE | tag::PORTAL_SUSPENDED
                    if step == Step::Forward =>
                {
                    let rows = if t == tag::COMMAND_COMPLETE {
                        command_rows(body)
                    } else {
                        0
                    };
                    let rollback = body.starts_with(b"ROLLBACK");
                    if rollback && !self.tx_effects.is_empty() {
                        self.tx_rolled_back = true;
                    }
                    // Replies come in order: one not for a queued Sync is for the statements
                    // sent before a Flush.
                    let a = match self.ready_actions.front_mut() {
                        Some(a) => a,
                        None => self.flushed.get_mut(),
                    };
                    a.completed(rows);
                    a.rolled_back |= rollback;
                    a.ended_with_rollback = rollback;
                    a.ended_transaction |= rollback || body.starts_with(b"COMMIT");
                }
                tag::ERROR_RESPONSE if is_fatal(body) => {
                    // The server is closing this connection: nothing more may be sent to it.
                    conn.broken = true;
                    self.server_dying = true;
                }
                _ => {}
            }
            if ev.internal_failed {
                // The replay failed (a setting the server rejects now): the next lease replays again.
                conn.settings_hash = DIRTY;
                tracing::warn!(user = %self.user, "session settings could not be replayed on a server connection");
            }
            if step == Step::Forward {
                if t != tag::READY_FOR_QUERY {
                    if let Some(f) = self
                        .ready_actions
                        .front_mut()
                        .and_then(|a| a.fill.as_deref_mut())
                    {
                        f.feed(t, &conn.rbuf[..end]);
                    }
                    self.n1_capture.feed(t, &conn.rbuf[HEADER_LEN..end]);
                }
                let to = if hold {
                    self.ryw.held_mut()
                } else {
                    &mut self.wbuf
                };
                if ev.checked_failed {
                    ClientError::ResultColumnsChanged.write(to);
                }
                super::stream::append(to, &conn.rbuf, end);
            }
            conn.rbuf.advance(end);
            if ev.error {
                if let Some(a) = self.ready_actions.front_mut() {
                    a.failed = true;
                }
            }
            for f in forget.drain(..) {
                if let Some(k) = f.key {
                    conn.prepared.remove(k);
                }
                if let Some(n) = f.client_name {
                    self.statements.remove(&n);
                }
            }
            if let (Some((name, key)), Some(types)) = (&ev.described, described_types) {
                self.keep_described_types(name, *key, types);
            }
            self.on_columns(&mut ev, shape);
            if ev.unsynced_error {
                self.server_skips_to_sync();
            }
            if let Some(reason) = pin {
                self.pin_refused(reason);
            }
            if acknowledges {
                self.announce_writes();
            }
            if ev.internal_done && ev.internal_failed && (ev.position || ev.probe) {
                let q = if ev.position {
                    Question::ReplayPosition
                } else {
                    Question::InsertPosition
                };
                if let Some(lease) = self.server.as_mut() {
                    q.failed(lease.conn());
                }
            }
            if ev.position && ev.internal_done {
                self.position_answered(ev.internal_failed);
            }
            if ev.voided {
                self.run_voided_again();
                became_ready = true;
            } else if ev.ready {
                self.on_ready();
                became_ready = true;
            }
            if self.plan.is_empty() {
                self.copy.settle();
            }
            if ev.ready || ev.internal_done {
                self.after_ready(ev.probe && ev.internal_done, ev.internal_failed);
            }
            became_ready |= ev.internal_done;
        }
        if self.ryw.armed() {
            self.plan.drain_synthetic(self.ryw.held_mut());
        } else {
            self.plan.drain_synthetic(&mut self.wbuf);
        }
        if became_ready {
            self.maybe_release();
        }
        Ok(())
    }

    /// The server ended a connection the session holds with nothing in flight (terminated,
    /// timed out, shutting down). Between transactions that is invisible: the next request takes
    /// a fresh connection. Inside a transaction or a pinned session the server's state is gone,
    /// so the client hears the server's own error and is closed, as a direct connection would
    /// be: nothing it sends afterwards may run on another server as if the transaction went on.
    fn server_ended_idle(&mut self, error: bytes::Bytes) -> Result<(), End> {
        let Some(server) = self.release(Fate::Discard) else {
            return Ok(());
        };
        let lost_state = self.tx != TxStatus::Idle || self.pin.is_some();
        tracing::info!(server = %server.addr, in_transaction = lost_state, "server ended an idle connection");
        if !lost_state {
            return Ok(());
        }
        self.writes_orphaned();
        self.wbuf.extend_from_slice(&error);
        Err(End::ServerEnded)
    }

    /// An error ended a request sent on without Sync: PostgreSQL now ignores every message up
    /// to a Sync. Whatever the client sends before its Sync must get no reply, so the proxy
    /// sends the server that Sync itself (its ReadyForQuery swallowed), drops the client's
    /// messages up to the client's Sync and answers that Sync, as the server would have. Left
    /// to the server, those messages would wait in the plan for replies that never come (a
    /// desync at the server's ReadyForQuery), or run on another server if the request moved.
    fn server_skips_to_sync(&mut self) {
        build::sync(&mut self.swbuf);
        self.plan.push(Expect::Internal);
        self.unsynced = false;
        if self.tx == TxStatus::InTransaction {
            self.tx = TxStatus::Failed;
        }
        // The statements sent before the Flush end here, failed: recorded, their writes
        // counted, only their pins kept (as for any failed request); no ReadyForQuery of the
        // server's will come for them. Every earlier Sync is answered, so none waits ahead.
        let mut flushed = self.flushed.take();
        if flushed.is_open() {
            flushed.failed = true;
            self.ready_actions.push_front(flushed);
            self.on_ready();
        }
        let pending = std::mem::take(&mut self.pending);
        if pending.terminator == Some(frontend::SYNC) {
            build::ready_for_query(&mut self.wbuf, self.tx);
        } else {
            self.skip_until_sync = true;
        }
        self.recycle_messages(pending.messages);
    }

    /// A Sync, Query or FunctionCall finished: record its statements and apply its session effects.
    fn on_ready(&mut self) {
        let Some(mut action) = self.ready_actions.pop_front() else {
            return;
        };
        // One clock read for the request's stats and its N+1 window.
        let now = Instant::now();
        self.record(&action, now);
        self.detect_bursts(&action, false, now);
        self.catalog_on_ready(&action);
        if action.executed.iter().any(|(a, _)| a.reason == "ddl") {
            // Views, casts, domains or functions may now reach something new.
            self.shared.router.note_ddl();
        }
        self.cache_on_ready(&mut action);
        let mut changed = false;
        let mut reset = false;
        if action.function_call {
            // A FunctionCall names its function by oid: it may have set anything.
            self.pin.get_or_insert(PinReason::SessionState);
        }
        for a in &action.effects {
            if let Some(p) = a.pin {
                // Pin even on error: the server may hold the lock or listener anyway. A pin
                // RESET ALL cannot lift replaces one it can.
                if self.pin == Some(PinReason::SessionState) {
                    self.pin = Some(p);
                } else {
                    self.pin.get_or_insert(p);
                }
            }
            if action.failed {
                continue;
            }
            if a.discard_all {
                self.settings.reset_all();
                reset = true;
                changed = true;
            }
            if !a.session.is_empty() {
                if action.rolled_back {
                    // The request's own ROLLBACK undid its SETs; replay the old state to be sure.
                    reset = true;
                } else if self.tx == TxStatus::Idle {
                    for e in &a.session {
                        reset |= apply(&mut self.settings, e);
                        self.unpin_on_reset_all(e, a.pin);
                    }
                    changed = true;
                } else {
                    self.tx_effects.extend(a.session.iter().cloned());
                }
            }
        }
        if self.tx == TxStatus::Idle && !self.tx_effects.is_empty() {
            // The transaction that ran the SETs is over: keep them only if it committed.
            let effects = std::mem::take(&mut self.tx_effects);
            if !std::mem::take(&mut self.tx_rolled_back) {
                for e in &effects {
                    reset |= apply(&mut self.settings, e);
                    self.unpin_on_reset_all(e, None);
                }
                changed = true;
            } else {
                // The server rolled them back; its state is the client's old one, but
                // RESETs inside may have been undone too, so replay to be sure.
                reset = true;
            }
        }
        if changed || reset {
            let hash = if reset { DIRTY } else { self.settings.hash() };
            if let Some(lease) = self.server.as_mut() {
                lease.conn().settings_hash = hash;
            }
        }
    }
}

impl Session {
    /// `RESET ALL` and `DISCARD ALL` end a pin for unseen settings: the server's settings are
    /// the defaults again, and the next user of the connection replays its own anyway (the
    /// reset makes the connection's settings unknown). A statement that pins again wins.
    fn unpin_on_reset_all(&mut self, e: &SessionEffect, pin_of_same_text: Option<PinReason>) {
        if *e == SessionEffect::ResetAll
            && self.pin == Some(PinReason::SessionState)
            && pin_of_same_text.is_none()
        {
            self.pin = None;
        }
    }

    /// Function, privilege or policy DDL: the router stops trusting its catalog before this
    /// ReadyForQuery reaches the client, and again when the transaction holding it ends (a
    /// reload made before the commit saw the old catalog). Any DDL, and the end of its
    /// transaction, starts a new schema epoch before the client can send its next Parse.
    fn catalog_on_ready(&mut self, action: &ReadyAction) {
        let now = action.executed.iter().any(|(a, _)| a.reloads_catalog);
        // Defaults: now, so no connection opened before reaches a new session, and again at
        // the commit, for connections opened while the transaction was open.
        let defaults = action.executed.iter().any(|(a, _)| a.changes_defaults);
        let defaults_ended =
            self.tx == TxStatus::Idle && std::mem::take(&mut self.defaults_changed_in_tx);
        if defaults || defaults_ended {
            self.shared.pools.defaults.changed();
        }
        if defaults && self.tx != TxStatus::Idle {
            self.defaults_changed_in_tx = true;
        }
        let ddl = action.executed.iter().any(|(a, _)| a.reason == "ddl");
        let ended = self.tx == TxStatus::Idle && std::mem::take(&mut self.catalog_changed_in_tx);
        if now || ddl || ended {
            self.shared.router.bump_schema_epoch();
        }
        if now || ended {
            self.shared.router.catalog_changed();
            self.shared.router_catalog_changed.notify_one();
        }
        if now && self.tx != TxStatus::Idle {
            self.catalog_changed_in_tx = true;
        }
    }

    /// Adds the request's statements to the per-fingerprint stats and logs it if slow.
    fn record(&mut self, action: &ReadyAction, now: Instant) {
        let answered_by = match self.server.as_ref().map(|l| l.server.role()) {
            Some(Role::Replica) => AnsweredBy::Replica,
            _ => AnsweredBy::Primary,
        };
        self.record_as(action, answered_by, now);
    }

    /// Adds the request's statements to the stats as answered `by`.
    pub(super) fn record_as(&mut self, action: &ReadyAction, by: AnsweredBy, now: Instant) {
        let stats = &self.shared.stats;
        let Some(started) = action.started else {
            return;
        };
        if !stats.settings.enabled {
            return;
        }
        let us = now.saturating_duration_since(started).as_micros() as u64;
        let shared_users = self.live.caching().share_across_users;
        for (i, (a, rows)) in action.executed.iter().enumerate() {
            // After an error the server skipped the rest of an extended-protocol request.
            let error = action.failed && (action.simple || i == action.cursor);
            if action.failed && !action.simple && i > action.cursor {
                break;
            }
            stats.queries.record(&Sample {
                fingerprint: a.fingerprint,
                normalized: &a.normalized,
                database: &self.db,
                answered_by: by,
                duration_us: us,
                rows: *rows,
                error,
                pool_wait_us: if i == 0 { action.pool_wait_us } else { 0 },
                cache_miss: action.cache_miss,
                not_cacheable: a.cache_refusal(shared_users),
                at: now,
            });
        }
        if us / 1000 >= stats.settings.slow_query_ms {
            if let Some((a, _)) = action.executed.iter().next() {
                tracing::warn!(
                    fingerprint = format_args!("{:016x}", a.fingerprint),
                    query = %a.normalized,
                    duration_ms = us as f64 / 1000.0,
                    route = match by { AnsweredBy::Replica => "replica", AnsweredBy::Primary => "primary", AnsweredBy::Cache => "cache" },
                    database = %self.db,
                    user = %self.user,
                    application_name = %self.application_name,
                    parameters = action.parameters.as_ref().map(describe_parameters).unwrap_or_default(),
                    "slow query"
                );
            }
        }
    }
}

/// The literal text of a simple Query, or a Bind's parameter values (text ones as text), for
/// the slow-query log when `stats.log_parameters` allows it.
fn describe_parameters(m: &crate::protocol::message::Message) -> String {
    use crate::protocol::frame::Reader;
    if let Some(q) = m.query() {
        return String::from_utf8_lossy(q.sql).into_owned();
    }
    let Some(b) = m.bind() else {
        return String::new();
    };
    let mut r = Reader::new(b.rest, "Bind");
    let parse = |r: &mut Reader<'_>| -> Result<Vec<String>, crate::protocol::ProtocolError> {
        let nfmt = r.i16()?.max(0) as usize;
        let mut formats = Vec::with_capacity(nfmt);
        for _ in 0..nfmt {
            formats.push(r.i16()?);
        }
        let n = r.i16()?.max(0) as usize;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let len = r.i32()?;
            let binary = match nfmt {
                0 => false,
                1 => formats[0] == 1,
                _ => formats.get(i) == Some(&1),
            };
            out.push(if len < 0 {
                "NULL".to_string()
            } else {
                let v = r.bytes(len as usize)?;
                if binary {
                    format!("<{len} binary bytes>")
                } else {
                    format!("'{}'", String::from_utf8_lossy(v))
                }
            });
        }
        Ok(out)
    };
    parse(&mut r)
        .map(|v| format!("[{}]", v.join(", ")))
        .unwrap_or_default()
}

fn is_fatal(body: &[u8]) -> bool {
    let severity = error_field(body, b'V').or_else(|| error_field(body, b'S'));
    matches!(severity, Some(b"FATAL" | b"PANIC"))
}

/// Applies one effect; true when it was a RESET, after which the server's state differs from
/// the client's (the server resets to its own login values, the client to its startup ones).
fn apply(settings: &mut super::settings::Settings, e: &SessionEffect) -> bool {
    match e {
        SessionEffect::Set { name, statement } => {
            settings.set(name, statement);
            false
        }
        SessionEffect::Reset { name } => {
            settings.reset(name);
            true
        }
        SessionEffect::ResetAll => {
            settings.reset_all();
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::describe_parameters;
    use crate::protocol::message::Message;
    use crate::protocol::{build, frame};
    use bytes::{BufMut, BytesMut};

    #[test]
    fn parameters_for_the_slow_log() {
        let mut out = BytesMut::new();
        build::query(&mut out, "select 42");
        let mut rest = BytesMut::new();
        rest.put_i16(2); // formats: text, binary
        rest.put_i16(0);
        rest.put_i16(1);
        rest.put_i16(3); // three values
        rest.put_i32(2);
        rest.put_slice(b"ab");
        rest.put_i32(4);
        rest.put_slice(&[0, 0, 0, 7]);
        rest.put_i32(-1);
        rest.put_i16(0);
        build::bind(&mut out, b"", b"s1", &rest);
        let mut next = || Message::decode(frame::decode(&mut out, 1024).unwrap().unwrap()).unwrap();
        let q = next();
        assert_eq!(describe_parameters(&q), "select 42");
        let b = next();
        assert_eq!(describe_parameters(&b), "['ab', <4 binary bytes>, NULL]");
    }
}
