//! The routing safety net: a read a replica refuses because it writes is re-sent to the primary before the client sees anything, and its fingerprint stays on the primary.
//!
//! Routing can be wrong about what PostgreSQL will execute (a function turned VOLATILE and
//! writing behind pgsplit's back, a view created outside it since the catalog was read). The
//! replica then answers 25006 (read_only_sql_transaction) or another hot-standby refusal. While
//! no byte of the answer has been written to the client, the session drops the replica's reply,
//! sends the same messages to the primary, and marks the refused statement's fingerprint
//! primary-only for every session (`/stats` `primary_only`, `/metrics`
//! `pgsplit_replica_refusals_total`). Separate from the read retry of frontend/consistency.rs,
//! which re-sends a read whose server died.

use super::attachment::Fate;
use super::request::Pending;
use super::session::Session;
use crate::pool::Role;
use crate::protocol::message::Message;
use crate::protocol::messages::{error_field, TxStatus};
use crate::protocol::tags::{backend, frontend as tag};
use crate::router::Analysis;
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// Bytes of an armed read's answer held back from the client until the request ends. A server
/// sends RowDescription (and the first rows) before a function in the select list or a later
/// row refuses to write; if those bytes reached the client the refusal could no longer be
/// hidden, and whether they did would depend on how TCP cut the reply. A small answer waits
/// for its ReadyForQuery instead; a larger one streams as usual, unprotected.
const HOLD_BYTES: usize = 16 * 1024;

/// The reads in flight on a replica, oldest first, while a refusal could still be hidden.
///
/// A pipelining client (pgjdbc's batches, psycopg's pipeline mode, libpq's) sends more
/// requests before the first is answered; each that joins the replica connection is kept here
/// too. A refusal always belongs to the oldest (answers come in order), and is hidden when no
/// byte of that request's answer has reached the client: the replica connection is dropped and
/// the oldest and every later request in flight go to the primary, in order. Requests answered
/// before it stay answered: each Sync ends an implicit transaction of its own, so they ran and
/// ended on the replica like any read. Statements before the refused one inside the same Sync
/// are sent again with it, since they share its implicit transaction (and snapshot).
///
/// When that request's answer already outgrew [`HOLD_BYTES`] and was partly written, the
/// client gets the replica's refusal as one ordinary error (then the ReadyForQuery of its
/// Sync); the fingerprint is still pinned, so the next attempt runs on the primary.
#[derive(Default)]
pub struct Refusal {
    flight: VecDeque<InFlight>,
    /// Statements the server finished so far in the oldest request.
    done: usize,
    /// Where the oldest request's answer starts in the client's write buffer.
    mark: usize,
    /// The oldest request ended: the next one's answer starts at the end of the write buffer,
    /// once the ReadyForQuery (and anything held with it) is there.
    advance: bool,
    /// Part of the oldest request's answer was written to the client.
    exposed: bool,
    armed: bool,
    /// The next dispatch is the re-send: it goes to the primary.
    to_primary: bool,
}

/// What the safety net makes of one server message.
pub(super) enum Seen {
    Nothing,
    /// A refusal to hide: [`Session::refused`] must follow.
    Hide(String),
    /// A refusal that reaches the client: [`Session::pin_refused`] keeps the next one away.
    Pin(String),
}

/// One request sent to the replica: what a re-send needs.
struct InFlight {
    messages: Vec<Message>,
    terminator: Option<u8>,
    arrived: Option<Instant>,
    bytes: usize,
    /// The statements in the order the server runs them (a Query's text, or each Execute's
    /// bound statement), to name the one refused.
    units: Vec<Arc<Analysis>>,
    /// Statement names its Parse messages add to the session's map.
    names: Vec<Bytes>,
}

/// Whether an ErrorResponse is a hot standby refusing to write: 25006, or the refusals that
/// come with another code ("cannot acquire lock mode ... during recovery", "recovery is in
/// progress", "cannot assign TransactionIds during recovery").
pub fn refuses_write(body: &[u8]) -> bool {
    let code = error_field(body, b'C').unwrap_or_default();
    if code == b"25006" {
        return true;
    }
    let message = error_field(body, b'M').unwrap_or_default();
    matches!(code, b"0A000" | b"55000" | b"XX000")
        && (contains(message, b"during recovery") || contains(message, b"recovery is in progress"))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Messages a second attempt can send again unseen. A Close changed the session's statement
/// map on the first attempt; a named Parse did too, but only by adding its name, which a
/// re-send takes back first (see `new_names`).
fn resendable(m: &Message) -> bool {
    matches!(
        m.tag(),
        tag::QUERY | tag::BIND | tag::EXECUTE | tag::DESCRIBE | tag::SYNC | tag::PARSE
    )
}

impl Refusal {
    /// A request joined the connection that a re-send could not repeat: nothing is hidden
    /// any more on this connection.
    pub(super) fn disarm(&mut self) {
        self.armed = false;
        self.flight.clear();
    }

    /// Before a request is dispatched: whether reads in flight are armed. Left unarmed, so that
    /// a request answered without its server (from the cache, or an error of the proxy's own)
    /// ends the protection; [`Session::refusal_join`] arms again when it is written.
    pub(super) fn pause(&mut self) -> bool {
        std::mem::take(&mut self.armed)
    }

    /// Requests kept for a re-send; while armed, one per ReadyForQuery the session awaits.
    pub(super) fn in_flight(&self) -> usize {
        self.flight.len()
    }

    /// One server message of the armed reads, before it is forwarded (`wbuf_len`: the write
    /// buffer's length now). `idle`: no transaction or pin is open, so the oldest request may
    /// move to another server.
    pub(super) fn watch(&mut self, t: u8, body: &[u8], wbuf_len: usize, idle: bool) -> Seen {
        if !self.armed {
            return Seen::Nothing;
        }
        if std::mem::take(&mut self.advance) {
            self.mark = wbuf_len;
            self.exposed = false;
            self.done = 0;
        }
        if self.flight.is_empty() {
            return Seen::Nothing;
        }
        match t {
            backend::COMMAND_COMPLETE | backend::EMPTY_QUERY_RESPONSE => self.done += 1,
            backend::ERROR_RESPONSE if refuses_write(body) => {
                let field = |f| String::from_utf8_lossy(error_field(body, f).unwrap_or_default());
                let reason = format!("replica refused: {} {}", field(b'C'), field(b'M'));
                return match !self.exposed && idle {
                    true => Seen::Hide(reason),
                    false => Seen::Pin(reason),
                };
            }
            backend::READY_FOR_QUERY => {
                self.flight.pop_front();
                self.advance = true;
            }
            _ => {}
        }
        Seen::Nothing
    }

    /// Where the oldest request's answer starts, if its refusal could still be hidden.
    fn protected_from(&self, wbuf_len: usize) -> Option<usize> {
        if !self.armed || self.flight.is_empty() || self.exposed {
            return None;
        }
        Some(if self.advance { wbuf_len } else { self.mark })
    }
}

impl Session {
    /// Whether this dispatch is the re-send of a refused read (it must use the primary).
    pub(super) fn refusal_resend(&mut self) -> bool {
        std::mem::take(&mut self.refusal.to_primary)
    }

    /// If the pending request could be sent again elsewhere, unseen: the names its re-send
    /// would take back (see `new_names`).
    fn resend_names(&self) -> Option<Vec<Bytes>> {
        let fits = self.tx == TxStatus::Idle
            && self.pin.is_none()
            && matches!(self.pending.terminator, Some(tag::QUERY | tag::SYNC))
            && self.pending.messages.iter().all(resendable);
        fits.then(|| self.new_names()).flatten()
    }

    /// The names the pending request's named Parse messages will add to the statement map,
    /// or None if one is taken already (its Parse fails, and a re-send must not drop the
    /// statement that holds the name).
    fn new_names(&self) -> Option<Vec<Bytes>> {
        let mut names: Vec<Bytes> = Vec::new();
        for p in self.pending.messages.iter().filter_map(Message::parse) {
            if p.name.is_empty() {
                continue;
            }
            if self.statements.contains_key(p.name) || names.iter().any(|n| n[..] == *p.name) {
                return None;
            }
            names.push(Bytes::copy_from_slice(p.name));
        }
        Some(names)
    }

    /// A copy of the pending request, with its statements in the order the server runs them.
    fn refusal_copy(&self, analyses: &[Option<Arc<Analysis>>], names: Vec<Bytes>) -> InFlight {
        let mut units = Vec::new();
        let mut bound = None;
        for (m, a) in self.pending.messages.iter().zip(analyses) {
            match m.tag() {
                tag::QUERY => units.extend(a.clone()),
                tag::BIND => bound = a.clone(),
                tag::EXECUTE => units.extend(bound.clone()),
                _ => {}
            }
        }
        InFlight {
            messages: self.pending.messages.clone(),
            terminator: self.pending.terminator,
            arrived: self.pending.arrived,
            bytes: self.pending.bytes,
            units,
            names,
        }
    }

    /// Before a freshly acquired read is sent to a replica: keep what a re-send needs.
    pub(super) fn refusal_snapshot(&mut self, role: Role, analyses: &[Option<Arc<Analysis>>]) {
        self.refusal.disarm();
        self.refusal.advance = false;
        self.refusal.exposed = false;
        self.refusal.done = 0;
        if role != Role::Replica || self.server.is_some() {
            return;
        }
        if let Some(names) = self.resend_names() {
            let copy = self.refusal_copy(analyses, names);
            self.refusal.flight.push_back(copy);
        }
    }

    /// After the read was written for the server: armed unless the proxy already answered part
    /// of it itself (the write buffer grew).
    pub(super) fn refusal_arm(&mut self, wbuf_before: usize) {
        let r = &mut self.refusal;
        r.mark = wbuf_before;
        r.armed = !r.flight.is_empty() && self.wbuf.len() == wbuf_before;
        if !r.armed {
            r.flight.clear();
        }
    }

    /// A request about to be written behind others on the attached replica (pipelining):
    /// kept for a re-send too, or else nothing more is hidden on this connection. Called just
    /// before it is written, after every path that answers a request without its server.
    pub(super) fn refusal_join(&mut self, armed_before: bool, analyses: &[Option<Arc<Analysis>>]) {
        let on_replica = self
            .server
            .as_ref()
            .is_some_and(|l| l.server.role() == Role::Replica);
        let names = (armed_before && on_replica)
            .then(|| self.resend_names())
            .flatten()
            .filter(|_| self.ready_actions.len() == self.refusal.in_flight());
        let Some(names) = names else {
            self.refusal.disarm();
            return;
        };
        if self.refusal.flight.is_empty() {
            // Nothing of the connection's answers is still to come: this one starts at the end.
            self.refusal.advance = true;
        }
        let copy = self.refusal_copy(analyses, names);
        self.refusal.flight.push_back(copy);
        self.refusal.armed = true;
    }

    /// How much of the client's write buffer may be written now: all of it, unless a refusal
    /// of the oldest read could still come and what it would take back is small.
    pub(super) fn refusal_flushable(&self) -> usize {
        let len = self.wbuf.len();
        match self.refusal.protected_from(len) {
            // Without its server nothing more can come: whatever ended the read must reach the client.
            Some(mark) if self.server.is_some() && len.saturating_sub(mark) <= HOLD_BYTES => {
                mark.min(len)
            }
            _ => len,
        }
    }

    /// The first `n` bytes of the client's write buffer are about to be written out: once part
    /// of the oldest request's answer reaches the client, its refusal can no longer be hidden.
    pub(super) fn refusal_flushing(&mut self, n: usize) {
        let len = self.wbuf.len();
        let r = &mut self.refusal;
        if r.armed && std::mem::take(&mut r.advance) {
            r.mark = len;
            r.exposed = false;
            r.done = 0;
        }
        if r.armed && !r.flight.is_empty() && n > r.mark {
            r.exposed = true;
        }
        r.mark = r.mark.saturating_sub(n);
    }

    /// The oldest armed read's refused statements, now marked primary-only.
    fn pin_culprits(&mut self, reason: &str) -> Vec<Arc<Analysis>> {
        let r = &self.refusal;
        let Some(oldest) = r.flight.front() else {
            return Vec::new();
        };
        // A simple Query is one unit whatever its statement count; otherwise the Execute that
        // was running, or every statement when the count is off.
        let culprits: Vec<Arc<Analysis>> = match oldest.units.get(r.done) {
            Some(a) if oldest.units.len() > 1 => vec![a.clone()],
            _ => oldest.units.clone(),
        };
        for a in &culprits {
            self.shared
                .router
                .force_primary(a.fingerprint, &a.normalized, reason.to_owned());
        }
        culprits
    }

    /// A refusal the client sees (part of its request's answer is out, or a transaction is
    /// open): the statement still goes to the primary from now on.
    pub(super) fn pin_refused(&mut self, reason: String) {
        let culprits = self.pin_culprits(&reason);
        tracing::warn!(
            fingerprints = ?culprits.iter().map(|a| format!("{:016x}", a.fingerprint)).collect::<Vec<_>>(),
            reason = %reason,
            "replica refused a read that writes after part of its answer reached the client; pinned to the primary"
        );
    }

    /// The oldest armed read was refused: mark its statement, drop the replica's reply, queue
    /// it and every later request again, ahead of what the client sent since.
    pub(super) fn refused(&mut self, reason: String) {
        let culprits = self.pin_culprits(&reason);
        // The connection is healthy, but its reply is half read: cheaper to drop than to drain.
        let Some(server) = self.release(Fate::Discard) else {
            return;
        };
        let r = &mut self.refusal;
        tracing::warn!(
            server = %server.addr,
            fingerprints = ?culprits.iter().map(|a| format!("{:016x}", a.fingerprint)).collect::<Vec<_>>(),
            requests = r.flight.len(),
            reason = %reason,
            "replica refused a read that writes; re-sent to the primary and pinned there"
        );
        self.wbuf.truncate(r.mark);
        // What the read-retry held of this attempt is the replica's too.
        self.ryw.drop_attempt();
        self.swbuf.clear();
        self.plan.clear();
        self.ready_actions.clear();
        // What the client sent after the requests in flight is read again after them.
        let later = std::mem::take(&mut self.pending);
        if !later.messages.is_empty() {
            let mut unread = bytes::BytesMut::with_capacity(later.bytes + self.rbuf.len());
            for f in &later.messages {
                unread.extend_from_slice(f.raw());
            }
            unread.extend_from_slice(&self.rbuf);
            self.rbuf = unread;
        }
        let r = &mut self.refusal;
        let mut pending = Pending::default();
        for req in r.flight.drain(..) {
            // Their Parse adds them again on the primary.
            for name in &req.names {
                self.statements.remove(&name[..]);
            }
            if pending.messages.is_empty() {
                pending.arrived = req.arrived;
            }
            pending.messages.extend(req.messages);
            pending.bytes += req.bytes;
            pending.terminator = req.terminator;
        }
        self.pending = pending;
        r.armed = false;
        r.to_primary = true;
    }
}

#[cfg(test)]
mod tests {
    use super::refuses_write;

    /// An ErrorResponse body as a server sends it.
    fn error(code: &str, message: &str) -> Vec<u8> {
        let mut body = Vec::new();
        for (field, value) in [(b'S', "ERROR"), (b'C', code), (b'M', message)] {
            body.push(field);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(0);
        body
    }

    #[test]
    fn hot_standby_refusals() {
        assert!(refuses_write(&error(
            "25006",
            "cannot execute INSERT in a read-only transaction"
        )));
        assert!(refuses_write(&error(
            "0A000",
            "cannot acquire lock mode ExclusiveLock on database objects while recovery is in progress"
        )));
        assert!(refuses_write(&error(
            "XX000",
            "cannot assign TransactionIds during recovery"
        )));
        assert!(!refuses_write(&error(
            "42P01",
            "relation \"x\" does not exist"
        )));
        assert!(!refuses_write(&error("0A000", "cannot do that")));
    }
}
