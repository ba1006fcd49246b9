//! A session's hold on a server connection: the one idle predicate, attaching, and the one release path.

use super::session::{Session, SERVER_READ_CHUNK};
use crate::clients::CancelTarget;
use crate::pool::{Lease, ServerInfo};
use crate::protocol::messages::TxStatus;
use std::sync::Arc;

/// What becomes of a server connection the session lets go of.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Fate {
    /// Back to the pool for the next client: nothing of this session is left on it.
    Return,
    /// Closed: it died, its state belongs to a lost transaction, or a reply is half read.
    Discard,
}

impl Session {
    /// The attached server still owes the session an answer.
    pub(super) fn in_flight(&self) -> bool {
        !self.ready_actions.is_empty() || !self.plan.is_empty()
    }

    /// No answer owed, no transaction, unsynced implicit transaction or COPY: closing the
    /// server now would lose nothing the client was told of.
    pub(super) fn at_rest(&self) -> bool {
        !self.in_flight() && self.tx == TxStatus::Idle && !self.unsynced && !self.copy.active()
    }

    /// At rest and not pinned: the one test for whether the connection may serve anyone else.
    pub(super) fn between_transactions(&self) -> bool {
        self.at_rest() && self.pin.is_none()
    }

    /// At shutdown: nothing would be lost by closing now (a pinned but idle server connection
    /// is simply closed).
    pub(super) fn can_close_now(&self) -> bool {
        self.server.is_none() || self.at_rest()
    }

    /// Attaches a server connection for the request about to be sent.
    pub(super) fn attach(&mut self, lease: Lease) {
        let conn = lease.conn_ref();
        self.cancel.slot.set(Some(CancelTarget {
            host: lease.server.host.clone(),
            port: lease.server.addr.port,
            pid: conn.backend_pid,
            secret: conn.backend_secret,
        }));
        self.server = Some(lease);
        self.sequences_here = false;
    }

    /// The one way a session lets go of its server connection: cancel requests stop reaching
    /// it, and it goes back to the pool or is closed. Returns which server it was, for the
    /// caller's log and health; None if none was attached.
    pub(super) fn release(&mut self, fate: Fate) -> Option<Arc<ServerInfo>> {
        let dying = std::mem::take(&mut self.server_dying);
        let mut lease = self.server.take()?;
        self.cancel.slot.set(None);
        let server = lease.server.clone();
        match fate {
            Fate::Discard => lease.discard(),
            Fate::Return => {
                let conn = lease.conn();
                // Bytes nobody asked for, or a FATAL already seen: not fit for another client.
                if dying || !conn.rbuf.is_empty() {
                    conn.broken = true;
                }
                if conn.rbuf.capacity() > 4 * SERVER_READ_CHUNK {
                    conn.rbuf = bytes::BytesMut::with_capacity(8192);
                }
                drop(lease);
            }
        }
        Some(server)
    }

    /// Gives the server connection back once nothing is in flight and no transaction is open.
    pub(super) fn maybe_release(&mut self) {
        if self.between_transactions() && self.swbuf.is_empty() {
            self.release(Fate::Return);
        }
    }
}
