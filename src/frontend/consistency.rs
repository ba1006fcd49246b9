//! Read-your-writes and read retry for one session: what a read needs, marking writes pending, the WAL-position probe, and re-sending a read whose server died.

use super::attachment::Fate;
use super::plan::Expect;
use super::request::Pending;
use super::session::Session;
use super::translate::Question;
use crate::config::Consistency;
use crate::pool::{Lease, ReadNeed, Role, WriteSet};
use crate::protocol::frame::Reader;
use crate::protocol::message::Message;
use crate::protocol::messages::TxStatus;
use crate::protocol::tags::{backend, frontend as tag};
use crate::router::Analysis;
use std::sync::Arc;
use std::time::Instant;

/// A session's share of read-your-writes and retry state.
#[derive(Default)]
pub struct Ryw {
    /// Tables written by requests sent on the current connection, LSN not known yet.
    written: WriteSet,
    /// The part of `written` not yet marked pending: a write is marked when its first reply
    /// that can tell a client it is done (CommandComplete, ReadyForQuery) is forwarded, not
    /// when it is sent, since no read needs a write it could not have heard of.
    unannounced: WriteSet,
    /// The set whose LSN the probe in flight will tell.
    probing: Option<WriteSet>,
    probe_lsn: Option<u64>,
    /// The shared clock when the probe in flight was sent (`WriteLsns::fresh_since`).
    probe_at: u64,
    /// `consistency = "session"`: this session's last write LSN; `u64::MAX` when a write's LSN
    /// was lost with its connection (reads then use the primary until the next write is probed).
    session_lsn: u64,
    /// A copy of the read in flight while it may still be re-sent elsewhere.
    pub(super) retry_messages: Vec<Message>,
    retry_terminator: Option<u8>,
    pub(super) retry_arrived: Option<Instant>,
    retry_bytes: usize,
    /// No byte of the read's answer has reached the client: it may be re-sent.
    pub(super) retry_armed: bool,
    /// The start of the answer while the read could still be re-sent: notices (a replica's
    /// immediate-shutdown WARNING before it closes) and the small messages before the first row
    /// (ParseComplete, BindComplete, RowDescription; a server flushes them with that WARNING).
    /// They reach the client only if this attempt is the one it sees.
    pub(super) held: bytes::BytesMut,
    /// The request being dispatched is itself a retry: it is not retried again.
    pub(super) is_retry: bool,
    /// The replay position the attached replica must show before the read's answer counts,
    /// asked in the read's own round trip (frontend/verify.rs).
    pub(super) verify: Option<super::verify::Verify>,
    /// When a read re-sent after its in-line question failed first arrived, for its statistics.
    pub(super) resumed: Option<Instant>,
}

impl Ryw {
    /// The read may still be re-sent: nothing of its answer has been forwarded.
    pub(super) fn armed(&self) -> bool {
        self.retry_armed
    }

    /// This attempt is the one the client sees: what was held back for it goes to `wbuf` first.
    pub(super) fn disarm(&mut self, wbuf: &mut bytes::BytesMut) {
        self.retry_armed = false;
        if !self.held.is_empty() {
            // Usually nothing is waiting ahead of it: the held bytes become the write buffer
            // instead of being copied into a fresh one.
            if wbuf.is_empty() {
                std::mem::swap(wbuf, &mut self.held);
            } else {
                wbuf.extend_from_slice(&self.held);
            }
            self.held = bytes::BytesMut::new();
        }
    }

    /// The attempt in flight is abandoned (the safety net re-sends it to the primary): what it
    /// held is not the client's to see, and it is not retried.
    pub(super) fn drop_attempt(&mut self) {
        self.retry_armed = false;
        self.held.clear();
        self.retry_messages.clear();
    }

    /// Between requests: the retry copy's and held answer's capacity go.
    pub(super) fn shed_idle(&mut self) {
        use super::shed::Shed;
        self.retry_messages.shed();
        self.held.shed();
    }

    /// Where the answer of an armed read goes until the attempt is decided.
    pub(super) fn held_mut(&mut self) -> &mut bytes::BytesMut {
        &mut self.held
    }

    /// A message of an armed read's answer that may be held back rather than forwarded: the
    /// read stays retryable. Bounded, so holding never buffers a result.
    pub(super) fn may_hold(&self, t: u8, len: usize) -> bool {
        use crate::protocol::tags::backend as b;
        const HOLD_LIMIT: usize = 64 * 1024;
        matches!(
            t,
            b::NOTICE_RESPONSE
                | b::PARSE_COMPLETE
                | b::BIND_COMPLETE
                | b::ROW_DESCRIPTION
                | b::PARAMETER_DESCRIPTION
                | b::NO_DATA
        ) && self.held.len() + len <= HOLD_LIMIT
    }

    /// One message of the probe's answer: the row holds the position.
    pub(super) fn on_probe_message(&mut self, t: u8, body: &[u8]) {
        if t == backend::DATA_ROW {
            self.probe_lsn = probe_row(body);
        }
    }
}

/// The LSN in the probe's one-column DataRow.
pub(super) fn probe_row(body: &[u8]) -> Option<u64> {
    let mut r = Reader::new(body, "DataRow");
    if r.i16().ok()? != 1 {
        return None;
    }
    let len = r.i32().ok()?;
    let text = std::str::from_utf8(r.bytes(usize::try_from(len).ok()?).ok()?).ok()?;
    crate::pool::checker::parse_record_end(text)
}

impl Session {
    fn consistency(&self) -> Consistency {
        self.shared.config.replication.consistency
    }

    /// What the server answering a read of these statements must have replayed.
    pub(super) fn read_need(&self, analyses: &[Option<Arc<Analysis>>]) -> ReadNeed {
        match self.consistency() {
            Consistency::None => ReadNeed::Any,
            // Known only from the primary, asked per request (`global_need`): a read that
            // would join an attached replica waits for a fresh position instead.
            Consistency::Global => ReadNeed::Primary,
            Consistency::Session => {
                let r = &self.ryw;
                if !r.written.is_empty() || r.probing.is_some() || r.session_lsn == u64::MAX {
                    ReadNeed::Primary
                } else if r.session_lsn > 0 {
                    ReadNeed::Lsn(r.session_lsn)
                } else {
                    ReadNeed::Any
                }
            }
            Consistency::TableLsn => {
                let lsns = &self.shared.pools.lsns;
                analyses
                    .iter()
                    .flatten()
                    .fold(ReadNeed::Any, |n, a| n.and(lsns.need(&a.tables_read)))
            }
        }
    }

    /// `read_need`, but a read that finds a table it reads with a write in flight (acknowledged,
    /// position not known yet) waits, up to `max_replica_wait_ms`, for the next position read
    /// of any session or poll, which covers that write, instead of going to the primary at once.
    /// When none comes within a fifth of the bound it also asks the primary (the position query
    /// shared by every read waiting at that moment, `pool::global`): any position read after the
    /// read arrived covers every write acknowledged before.
    pub(super) async fn read_need_settled(&self, analyses: &[Option<Arc<Analysis>>]) -> ReadNeed {
        let need = self.read_need(analyses);
        let wait = self.shared.config.replication.max_replica_wait;
        if need != ReadNeed::Primary
            || wait.is_zero()
            || self.consistency() != Consistency::TableLsn
        {
            return need;
        }
        let deadline = tokio::time::Instant::now() + wait;
        let lsns = &self.shared.pools.lsns;
        let since = lsns.now();
        let published = async {
            loop {
                let settled = lsns.settled.notified();
                tokio::pin!(settled);
                // Registered before the look, so a position published in between wakes it.
                settled.as_mut().enable();
                if let Some(lsn) = lsns.fresh_since(since) {
                    return ReadNeed::Lsn(lsn);
                }
                if tokio::time::timeout_at(deadline, settled).await.is_err() {
                    return ReadNeed::Primary;
                }
                // The pending writes' own positions may have arrived (their probes were sent
                // before this read came, so they are not fresh, but each covers its write).
                let now = self.read_need(analyses);
                if now != ReadNeed::Primary {
                    return now;
                }
            }
        };
        let asked = async {
            tokio::time::sleep(wait / 5).await;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            self.shared.pools.global.position(left).await
        };
        tokio::select! {
            need = published => need,
            Some(lsn) = asked => ReadNeed::Lsn(lsn),
        }
    }

    /// `consistency = "global"`: this request is a read of tables or functions about to get a
    /// server of its own, so it needs the primary's position first.
    pub(super) fn needs_global_position(
        &self,
        role: Role,
        analyses: &[Option<Arc<Analysis>>],
    ) -> bool {
        self.consistency() == Consistency::Global
            && role == Role::Replica
            && self.server.is_none()
            && analyses
                .iter()
                .flatten()
                .any(|a| !a.tables_read.is_empty() || !a.functions.is_empty())
    }

    /// The primary's WAL position, read after this request arrived (one query shared by every
    /// read arriving meanwhile, on any session): a replica that has replayed it shows every
    /// write acknowledged before, by this instance or any other. The primary when unknown.
    pub(super) async fn global_need(&self) -> ReadNeed {
        let wait = self.shared.config.health.check_timeout;
        match self.shared.pools.global.position(wait).await {
            Some(lsn) => ReadNeed::Lsn(lsn),
            None => ReadNeed::Primary,
        }
    }

    /// What a fresh read routed to a replica needs: under global the primary's position (the
    /// one the cache lookup read, if it did), otherwise `read_need_settled`.
    pub(super) async fn routed_need(
        &self,
        global: bool,
        learned: Option<ReadNeed>,
        analyses: &[Option<Arc<Analysis>>],
    ) -> ReadNeed {
        match learned {
            Some(need) if global => need,
            _ if global => self.global_need().await,
            _ => self.read_need_settled(analyses).await,
        }
    }

    /// Whether the attached replica may take one more read (pipelined after the one it serves).
    pub(super) fn replica_serves(&self, lease: &Lease, analyses: &[Option<Arc<Analysis>>]) -> bool {
        match self.read_need(analyses) {
            ReadNeed::Any => true,
            ReadNeed::Lsn(l) => lease.server.health.lsn() >= l,
            ReadNeed::Primary => false,
        }
    }

    /// The attached server only answers the WAL-position probe: for every other purpose (the
    /// result cache's lookup) the session is between requests.
    pub(super) fn server_held_only_for_probe(&self) -> bool {
        self.ryw.probing.is_some()
            && self.plan.only_probe_left()
            && self.ready_actions.is_empty()
            && self.tx == TxStatus::Idle
            && self.pin.is_none()
            && !self.unsynced
    }

    /// Marks what the request about to be sent writes as pending, before any reply can tell
    /// its client the write is done: the write sets of the actions queued from `first_new` on,
    /// and of the statements held for a later Sync (noted again there, harmlessly: only tables
    /// not yet pending are fresh).
    pub(super) fn note_writes(&mut self, first_new: usize) {
        let mode = self.consistency();
        // Global reads ask the primary for its position: nothing to track per write.
        if mode == Consistency::None || mode == Consistency::Global {
            return;
        }
        let sets = self
            .ready_actions
            .range(first_new.min(self.ready_actions.len())..)
            .chain(self.flushed.get())
            .map(|a| &a.writes);
        let mut fresh = WriteSet::default();
        for set in sets {
            for t in &set.tables {
                if self.ryw.written.add(t) {
                    fresh.add(t);
                }
            }
            fresh.unknown |= set.unknown;
        }
        fresh.unknown &= !self.ryw.written.unknown;
        self.ryw.written.unknown |= fresh.unknown;
        if mode == Consistency::TableLsn && !fresh.is_empty() {
            let u = &mut self.ryw.unannounced;
            for t in fresh.tables {
                u.add(&t);
            }
            u.unknown |= fresh.unknown;
        }
    }

    /// A reply that can tell the client its write is done is about to be forwarded: from now
    /// on reads of what it wrote wait for its position (see `unannounced`).
    pub(super) fn announce_writes(&mut self) {
        if self.ryw.unannounced.is_empty() {
            return;
        }
        let set = std::mem::take(&mut self.ryw.unannounced);
        self.shared.pools.lsns.begin(&set.tables, set.unknown);
    }

    /// After a ReadyForQuery: once the writes' transaction is over and nothing else is in
    /// flight, ask the same connection for the WAL position; when the probe answers, publish it.
    pub(super) fn after_ready(&mut self, probe_done: bool, probe_failed: bool) {
        if probe_done {
            if let Some(set) = self.ryw.probing.take() {
                match self.ryw.probe_lsn.take().filter(|_| !probe_failed) {
                    Some(lsn) => self.publish(set, lsn),
                    None => self.defer(set),
                }
            }
        }
        let due = !self.ryw.written.is_empty() && self.ryw.probing.is_none() && self.at_rest();
        if due && (self.server_dying || self.server.is_none()) {
            // The connection is closing and cannot be asked: the next primary poll answers.
            let set = std::mem::take(&mut self.ryw.written);
            self.defer(set);
        } else if due {
            self.send_probe();
        }
    }

    fn send_probe(&mut self) {
        let Some(lease) = self.server.as_mut() else {
            return;
        };
        Question::InsertPosition.ask(lease.conn(), &mut self.swbuf, &mut self.plan, Expect::Probe);
        self.ryw.probe_lsn = None;
        self.ryw.probe_at = self.shared.pools.lsns.now();
        self.ryw.probing = Some(std::mem::take(&mut self.ryw.written));
    }

    /// Right after a write request is written for the server: when it cannot leave a
    /// transaction open, its probe follows in the same write instead of a round trip after its
    /// ReadyForQuery. The server runs the probe after the request's commit, so the position
    /// covers it, and the write's tables wait for their position one round trip less.
    pub(super) fn probe_in_line(&mut self) {
        let Some(action) = self.ready_actions.back() else {
            return;
        };
        let ends_idle = self.ready_actions.len() == 1
            && self.tx == TxStatus::Idle
            && self.pin.is_none()
            && !self.unsynced
            && !self.server_dying
            && !self.plan.holds_sync()
            && !action.function_call
            && action.executed.first.is_some()
            && action.executed.iter().all(|(a, _)| ends_idle(a));
        if ends_idle && !self.ryw.written.is_empty() && self.ryw.probing.is_none() {
            self.send_probe();
        }
    }

    fn publish(&mut self, set: WriteSet, lsn: u64) {
        match self.consistency() {
            Consistency::TableLsn => {
                let lsns = &self.shared.pools.lsns;
                lsns.finish(&set, lsn);
                lsns.observed(self.ryw.probe_at, lsn);
            }
            Consistency::Session => {
                // A later probe covers every earlier commit, including one whose LSN was lost.
                self.ryw.session_lsn = if self.ryw.session_lsn == u64::MAX {
                    lsn
                } else {
                    self.ryw.session_lsn.max(lsn)
                };
            }
            Consistency::Global | Consistency::None => {}
        }
    }

    fn defer(&mut self, set: WriteSet) {
        // A deferred write stays pending until a primary poll: it must have been marked.
        self.announce_writes();
        match self.consistency() {
            Consistency::TableLsn => self.shared.pools.lsns.defer(set),
            Consistency::Session => self.ryw.session_lsn = u64::MAX,
            Consistency::Global | Consistency::None => {}
        }
    }

    /// The connection is gone (lost, or the session ended) with writes whose LSN is unknown:
    /// the next primary poll stands in for the probe.
    pub(super) fn writes_orphaned(&mut self) {
        // Two sets, deferred apart: each was marked pending on its own.
        let written = std::mem::take(&mut self.ryw.written);
        for set in [Some(written), self.ryw.probing.take()]
            .into_iter()
            .flatten()
        {
            if !set.is_empty() {
                self.defer(set);
            }
        }
        self.ryw.probe_lsn = None;
    }

    /// Before a freshly acquired read is sent: keep a copy if it could be re-sent elsewhere
    /// (after its server died, with `retry_reads`; or after a replay-position question in its
    /// round trip found the replica behind, frontend/verify.rs). A read already re-sent once
    /// is not kept again.
    pub(super) fn retry_snapshot(&mut self, role: Role) {
        self.ryw.retry_armed = false;
        self.ryw.verify = None;
        let eligible = !std::mem::take(&mut self.ryw.is_retry)
            && role == Role::Replica
            && self.server.is_none()
            && self.tx == TxStatus::Idle
            && self.pin.is_none()
            && matches!(self.pending.terminator, Some(tag::QUERY | tag::SYNC))
            && self.pending.messages.iter().all(retry_safe);
        self.ryw.retry_messages.clear();
        if eligible {
            self.ryw
                .retry_messages
                .extend(self.pending.messages.iter().cloned());
            self.ryw.retry_terminator = self.pending.terminator;
            self.ryw.retry_arrived = self.pending.arrived;
            self.ryw.retry_bytes = self.pending.bytes;
        }
    }

    /// After the read was written for the server: armed unless the proxy already answered part
    /// of it itself (`wbuf` grew), which a second attempt would answer again.
    pub(super) fn arm_retry(&mut self, wbuf_before: usize) {
        self.ryw.retry_armed = self.shared.config.health.retry_reads
            && !self.ryw.retry_messages.is_empty()
            && self.wbuf.len() == wbuf_before
            && self.ready_actions.len() == 1;
    }

    /// This attempt is the one the client sees: the notices held back for it go out first.
    pub(super) fn disarm_retry(&mut self) {
        self.ryw.disarm(&mut self.wbuf);
    }

    /// The server died under an armed read: keep reads off it until its next check, and queue
    /// the read again. False when the
    /// read is not retryable and the loss must be reported.
    pub(super) fn retry_read(&mut self, why: &str) -> bool {
        if !self.ryw.retry_armed
            || self.ready_actions.len() != 1
            || !self.pending.messages.is_empty()
            || self.tx != TxStatus::Idle
            || self.server.is_none()
        {
            self.disarm_retry();
            return false;
        }
        let Some(server) = self.release(Fate::Discard) else {
            return false;
        };
        self.ryw.retry_armed = false;
        self.ryw.verify = None;
        // What the failed attempt said is not the client's to see.
        self.ryw.held.clear();
        tracing::warn!(server = %server.addr, reason = why, "server lost under a read; retrying it elsewhere");
        server.health.suspect(why);
        self.swbuf.clear();
        self.plan.clear();
        self.ready_actions.clear();
        self.pending = Pending {
            messages: std::mem::take(&mut self.ryw.retry_messages),
            bytes: self.ryw.retry_bytes,
            terminator: self.ryw.retry_terminator,
            blocked: false,
            arrived: self.ryw.retry_arrived,
        };
        self.ryw.is_retry = true;
        true
    }
}

/// A statement that ends outside any transaction block and waits for nothing more from the
/// client (unlike COPY FROM STDIN, or anything opening or closing a transaction).
fn ends_idle(a: &Analysis) -> bool {
    a.statement_count == 1
        && !a.is_transaction_control
        && (a.route == crate::router::Route::Replica
            || matches!(a.reason, "insert" | "update" | "delete" | "merge"))
}

/// Messages a second attempt can send again without the client seeing a difference. A named
/// Parse or a Close changes the session's statement map on the first attempt.
fn retry_safe(m: &Message) -> bool {
    match m.tag() {
        tag::QUERY | tag::BIND | tag::EXECUTE | tag::DESCRIBE | tag::SYNC => true,
        tag::PARSE => m.parse().is_some_and(|p| p.name.is_empty()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    #[test]
    fn only_statements_that_end_outside_a_transaction_take_the_probe_in_line() {
        let router = crate::router::Router::new(Default::default(), 100);
        let idle = |sql: &str| ends_idle(&router.analyze(sql));
        assert!(idle("update t set v = v + 1 where id = 1"));
        assert!(idle("insert into t values (1) returning id"));
        assert!(idle("delete from t where id = 1"));
        for sql in [
            "begin",
            "commit",
            "start transaction",
            "savepoint a",
            "copy t from stdin",
            "update t set v = 1; begin",
            "select 1; copy t from stdin",
            "lock table t",
            "create table x (a int)",
        ] {
            assert!(!idle(sql), "{sql}");
        }
    }

    #[test]
    fn probe_row_is_parsed_and_normalized() {
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i32(9);
        b.put_slice(b"0/3002018");
        assert_eq!(probe_row(&b), Some(0x3002000));
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i32(-1);
        assert_eq!(probe_row(&b), None);
    }
}
