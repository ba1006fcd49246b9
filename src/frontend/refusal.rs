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

use super::request::Pending;
use super::session::Session;
use crate::pool::Role;
use crate::protocol::frame::Frame;
use crate::protocol::messages::{error_field, TxStatus};
use crate::protocol::tags::{backend, frontend as tag};
use crate::router::Analysis;
use std::sync::Arc;
use std::time::Instant;

/// Bytes of an armed read's answer held back from the client until the request ends. A server
/// sends RowDescription (and the first rows) before a function in the select list or a later
/// row refuses to write; if those bytes reached the client the refusal could no longer be
/// hidden, and whether they did would depend on how TCP cut the reply. A small answer waits
/// for its ReadyForQuery instead; a larger one streams as usual, unprotected.
const HOLD_BYTES: usize = 16 * 1024;

/// A copy of the read in flight on a replica, while a refusal could still be hidden.
#[derive(Default)]
pub struct Refusal {
    frames: Vec<Frame>,
    terminator: Option<u8>,
    arrived: Option<Instant>,
    bytes: usize,
    /// The statements in the order the server runs them (a Query's text, or each Execute's
    /// bound statement), to name the one refused.
    units: Vec<Arc<Analysis>>,
    /// Statements the server finished so far in this request.
    done: usize,
    /// Where this request's answer starts in the client's write buffer.
    mark: usize,
    armed: bool,
    /// The next dispatch is the re-send: it goes to the primary.
    to_primary: bool,
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

/// Messages a second attempt can send again unseen: a named Parse or a Close changed the
/// session's statement map on the first attempt.
fn resendable(f: &Frame) -> bool {
    match f.tag() {
        tag::QUERY | tag::BIND | tag::EXECUTE | tag::DESCRIBE | tag::SYNC => true,
        tag::PARSE => f.body().first() == Some(&0),
        _ => false,
    }
}

impl Refusal {
    /// Another request joined the connection: a refusal could no longer be re-sent alone.
    pub(super) fn disarm(&mut self) -> Option<String> {
        self.armed = false;
        None
    }

    /// One server message of the armed read, before it is forwarded: the refusal's reason when
    /// it is one the session should hide (then [`Session::refused`] must follow).
    pub(super) fn watch(&mut self, t: u8, body: &[u8]) -> Option<String> {
        if !self.armed {
            return None;
        }
        match t {
            backend::COMMAND_COMPLETE | backend::EMPTY_QUERY_RESPONSE => self.done += 1,
            backend::ERROR_RESPONSE if refuses_write(body) => {
                self.armed = false;
                let field = |f| String::from_utf8_lossy(error_field(body, f).unwrap_or_default());
                return Some(format!("replica refused: {} {}", field(b'C'), field(b'M')));
            }
            // Any other error, or the end of the request: nothing to hide.
            backend::ERROR_RESPONSE | backend::READY_FOR_QUERY => self.armed = false,
            _ => {}
        }
        None
    }
}

impl Session {
    /// Whether this dispatch is the re-send of a refused read (it must use the primary).
    pub(super) fn refusal_resend(&mut self) -> bool {
        std::mem::take(&mut self.refusal.to_primary)
    }

    /// Before a freshly acquired read is sent to a replica: keep what a re-send needs.
    pub(super) fn refusal_snapshot(&mut self, role: Role, analyses: &[Option<Arc<Analysis>>]) {
        let r = &mut self.refusal;
        r.armed = false;
        r.frames.clear();
        r.units.clear();
        let eligible = role == Role::Replica
            && self.server.is_none()
            && self.tx == TxStatus::Idle
            && self.pin.is_none()
            && matches!(self.pending.terminator, Some(tag::QUERY | tag::SYNC))
            && self.pending.frames.iter().all(resendable);
        if !eligible {
            return;
        }
        let mut bound = None;
        for (f, a) in self.pending.frames.iter().zip(analyses) {
            match f.tag() {
                tag::QUERY => r.units.extend(a.clone()),
                tag::BIND => bound = a.clone(),
                tag::EXECUTE => r.units.extend(bound.clone()),
                _ => {}
            }
        }
        r.frames.extend(self.pending.frames.iter().cloned());
        r.terminator = self.pending.terminator;
        r.arrived = self.pending.arrived;
        r.bytes = self.pending.bytes;
        r.done = 0;
    }

    /// After the read was written for the server: armed unless the proxy already answered part
    /// of it itself (the write buffer grew).
    pub(super) fn refusal_arm(&mut self, wbuf_before: usize) {
        let r = &mut self.refusal;
        r.mark = wbuf_before;
        r.armed = !r.frames.is_empty() && self.wbuf.len() == wbuf_before;
    }

    /// Whether the client's write buffer should wait: a refusal of the armed read could still
    /// come, and what it would have to take back is small.
    pub(super) fn refusal_holds(&self) -> bool {
        let r = &self.refusal;
        // Without its server nothing more can come: whatever ended the read must reach the client.
        r.armed && self.server.is_some() && self.wbuf.len().saturating_sub(r.mark) <= HOLD_BYTES
    }

    /// The client's write buffer is about to be written out: once part of this request's
    /// answer reaches the client, a refusal can no longer be hidden.
    pub(super) fn refusal_flushing(&mut self) {
        let r = &mut self.refusal;
        if r.armed && self.wbuf.len() > r.mark {
            r.armed = false;
        }
        r.mark = 0;
    }

    /// The armed read was refused: mark its statement, drop the replica's reply, queue it again.
    pub(super) fn refused(&mut self, reason: String) {
        let r = &mut self.refusal;
        // A simple Query is one unit whatever its statement count; otherwise the Execute that
        // was running, or every statement when the count is off.
        let culprits: Vec<Arc<Analysis>> = match r.units.get(r.done) {
            Some(a) if r.units.len() > 1 => vec![a.clone()],
            _ => r.units.clone(),
        };
        for a in &culprits {
            self.shared
                .router
                .force_primary(a.fingerprint, &a.normalized, reason.clone());
        }
        let Some(lease) = self.server.take() else {
            return;
        };
        tracing::warn!(
            server = %lease.server.addr,
            fingerprints = ?culprits.iter().map(|a| format!("{:016x}", a.fingerprint)).collect::<Vec<_>>(),
            reason = %reason,
            "replica refused a read that writes; re-sent to the primary and pinned there"
        );
        // The connection is healthy, but its reply is half read: cheaper to drop than to drain.
        lease.discard();
        self.wbuf.truncate(r.mark);
        self.server_dying = false;
        self.cancel.slot.set(None);
        self.swbuf.clear();
        self.plan.clear();
        self.ready_actions.clear();
        let r = &mut self.refusal;
        self.pending = Pending {
            frames: std::mem::take(&mut r.frames),
            bytes: r.bytes,
            terminator: r.terminator,
            blocked: false,
            arrived: r.arrived,
        };
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
