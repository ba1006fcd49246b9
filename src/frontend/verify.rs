//! A read sent to a replica together with the question whether it has replayed what the read needs: the answer to the question comes first, and decides whether the read's answer reaches the client or the read runs again.
//!
//! The replica's position as last polled trails it by up to `lag_poll_ms`, so a read of a table
//! written more often than that finds the replica behind on paper. Asking first costs the read
//! a round trip and the replica a wakeup, and the answer is nearly always that the write was
//! replayed already. So the question (`pg_last_wal_replay_lsn()`, a simple Query of its own)
//! is sent ahead of the read in the same write. It runs to completion first, and the read's
//! own transaction starts after it, so a position that covers the need also covers what the
//! read sees. When it does not, nothing of the read's answer is forwarded (`Plan::void`), and
//! once its ReadyForQuery is in, the read is decoded again as if the client had just sent it:
//! that attempt asks first, then waits up to `max_replica_wait_ms`, then takes the primary.

use super::consistency::Ryw;
use super::plan::Expect;
use super::session::Session;
use super::translate::Question;
use bytes::BytesMut;

/// A replay-position question in flight ahead of a read.
#[derive(Debug, Clone, Copy)]
pub struct Verify {
    /// What the read needs the replica to have replayed.
    need: u64,
    /// The position the answer's row holds.
    replayed: Option<u64>,
}

impl Ryw {
    /// One message of the question's answer.
    pub(super) fn on_position_message(&mut self, t: u8, body: &[u8]) {
        if let Some(v) = self.verify.as_mut() {
            if t == crate::protocol::tags::backend::DATA_ROW {
                v.replayed = super::consistency::probe_row(body);
            }
        }
    }
}

impl Session {
    /// Right after the lease: a replica leased to be verified gets its question first.
    pub(super) fn ask_in_line(&mut self) {
        let Some(need) = self.server.as_mut().and_then(|l| l.verify.take()) else {
            return;
        };
        let Some(lease) = self.server.as_mut() else {
            return;
        };
        Question::ReplayPosition.ask(
            lease.conn(),
            &mut self.swbuf,
            &mut self.plan,
            Expect::Position,
        );
        self.ryw.verify = Some(Verify {
            need,
            replayed: None,
        });
    }

    /// A question is in flight, or the answer it decided against is still arriving: nothing
    /// may join this connection, since the read may yet run again elsewhere.
    pub(super) fn verifying(&self) -> bool {
        self.ryw.verify.is_some() || self.plan.is_voided()
    }

    /// The question's ReadyForQuery: the read's answer, next in line, stands or is voided.
    pub(super) fn position_answered(&mut self, failed: bool) {
        let Some(v) = self.ryw.verify.take() else {
            return;
        };
        let Some(lease) = self.server.as_ref() else {
            return;
        };
        // No row (no longer in recovery) or an error: the next attempt's own question decides.
        let replayed = v.replayed.filter(|_| !failed);
        if let Some(lsn) = replayed {
            lease.server.health.advance_lsn(lsn);
        }
        let passed = replayed.is_some_and(|lsn| lsn >= v.need);
        lease.server.routing.in_line_verdict(passed);
        if !passed {
            self.plan.void();
            self.refusal.disarm();
        }
    }

    /// The voided read's ReadyForQuery: the replica is idle again and goes back to the pool;
    /// the read is put back ahead of whatever the client sent after it, to be routed afresh.
    pub(super) fn run_voided_again(&mut self) {
        // Its answer never reached the client: no statistics, no cache fill, no effects.
        self.ready_actions.pop_front();
        self.ryw.retry_armed = false;
        self.ryw.held.clear();
        let messages = std::mem::take(&mut self.ryw.retry_messages);
        let later = std::mem::take(&mut self.pending);
        let len = messages
            .iter()
            .chain(&later.messages)
            .map(|m| m.len())
            .sum::<usize>();
        let mut rbuf = BytesMut::with_capacity(len + self.rbuf.len());
        for f in messages.iter().chain(&later.messages) {
            rbuf.extend_from_slice(f.raw());
        }
        rbuf.extend_from_slice(&self.rbuf);
        self.rbuf = rbuf;
        self.ryw.resumed = self.ryw.retry_arrived.take();
        self.ryw.is_retry = true;
    }
}
