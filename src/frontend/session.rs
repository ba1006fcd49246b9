//! One client's session: the state it keeps between requests and the loop that drives client and server I/O.

use super::action::ReadyAction;
use super::attachment::Fate;
use super::plan::Plan;
use super::request::Pending;
use super::settings::Settings;
use super::statements::ClientStatement;
use super::stream::ClientStream;
use crate::backend::{ServerConn, ServerIo};
use crate::clients::Registration;
use crate::error::ClientError;
use crate::pool::{Lease, PoolSet};
use crate::protocol::build;
use crate::protocol::messages::TxStatus;
use crate::router::PinReason;
use crate::Shared;
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// Bytes read from a server at a time while a reply is streaming.
pub(super) const SERVER_READ_CHUNK: usize = 64 * 1024;

/// Proxy memory per request awaiting its ReadyForQuery: its entry, the deque slack behind it
/// (a deque doubles) and the allocator's header.
const IN_FLIGHT_REQUEST_BYTES: usize = 2 * std::mem::size_of::<ReadyAction>() + 16;
/// The same per server message a request still expects (a Parse, Bind, Execute...).
const IN_FLIGHT_MESSAGE_BYTES: usize = 2 * std::mem::size_of::<super::plan::Expect>();

/// Why a session ended.
#[derive(Debug)]
pub enum End {
    /// The client sent Terminate or closed its socket.
    ClientGone,
    /// The client's stream or state cannot continue; the error was sent to it.
    Fatal(ClientError),
    ShuttingDown,
    /// The server holding the client's transaction or pinned session ended it; the server's
    /// own error is already in the client's buffer, and the client is closed after it.
    ServerEnded,
}

impl From<ClientError> for End {
    fn from(e: ClientError) -> End {
        End::Fatal(e)
    }
}

impl From<crate::protocol::ProtocolError> for End {
    fn from(e: crate::protocol::ProtocolError) -> End {
        End::Fatal(ClientError::Protocol(e))
    }
}

pub struct Session {
    pub(super) shared: Arc<Shared>,
    /// What a reload replaces, as this session last saw it (frontend/live.rs).
    pub(super) live: super::live::Live,
    pub(super) client: ClientStream,
    /// Client bytes not yet handled.
    pub(super) rbuf: BytesMut,
    /// Bytes waiting to be written to the client.
    pub(super) wbuf: BytesMut,
    /// Bytes waiting to be written to the server.
    pub(super) swbuf: BytesMut,
    pub(super) pools: Arc<PoolSet>,
    pub(super) user: String,
    pub(super) database: String,
    /// The database name as the stats key it is, shared instead of copied per statement.
    pub(super) db: Arc<str>,
    pub(super) application_name: String,
    pub(super) settings: Settings,
    /// The client's named prepared statements, by the client's names.
    pub(super) statements: HashMap<Bytes, Arc<ClientStatement>>,
    /// The client's last unnamed statement, re-parsed when a later request binds it elsewhere.
    pub(super) unnamed: Option<Arc<ClientStatement>>,
    /// The router's catalog salt every statement above was last analyzed under.
    pub(super) statements_salt: u64,
    pub(super) pending: Pending,
    pub(super) server: Option<Lease>,
    pub(super) plan: Plan,
    /// One entry per Sync, Query or FunctionCall sent and not yet answered by ReadyForQuery.
    pub(super) ready_actions: VecDeque<ReadyAction>,
    /// Transaction status from the last ReadyForQuery.
    pub(super) tx: TxStatus,
    /// COPY FROM STDIN as the client's stream sees it.
    pub(super) copy: super::copy::CopyIn,
    /// Extended-protocol messages were sent with no Sync after them (a request ended by
    /// Flush): the server's implicit transaction and its portals exist only on this
    /// connection, so it is neither released nor given a query of the proxy's own.
    pub(super) unsynced: bool,
    pub(super) pin: Option<PinReason>,
    /// After a proxy-side error in an extended-protocol request, messages up to Sync are dropped.
    pub(super) skip_until_sync: bool,
    /// SETs run inside the current transaction, applied only if it commits.
    pub(super) tx_effects: Vec<crate::router::SessionEffect>,
    pub(super) tx_rolled_back: bool,
    /// Statements sent before a Flush, waiting for the Sync whose ReadyForQuery settles them.
    pub(super) flushed: super::action::Flushed,
    pub(super) cancel: Registration,
    /// The attached server sent FATAL: requests wait for a fresh connection instead.
    pub(super) server_dying: bool,
    pub(super) shutdown: tokio::sync::watch::Receiver<bool>,
    /// Read-your-writes and read-retry state (frontend/consistency.rs).
    pub(super) ryw: super::consistency::Ryw,
    /// A replica's refusal of a read that writes, hidden and re-sent (frontend/refusal.rs).
    pub(super) refusal: super::refusal::Refusal,
    /// The attached server connection ran a statement that may have set this session's
    /// sequence state since it was attached (frontend/sequences.rs).
    pub(super) sequences_here: bool,
    /// The user name as a result-cache key part, shared instead of copied per lookup.
    pub(super) user_key: Arc<str>,
    /// Writes of the open transaction, for the result cache when it ends.
    pub(super) tx_writes: crate::router::WriteSet,
    /// Identity of the client's current unnamed statement (see `statements::next_unnamed_id`).
    pub(super) unnamed_id: u64,
    /// This session's recent statements, for N+1 detection.
    pub(super) n_plus_one: crate::nplusone::Stream,
    /// Hashed values of the current request's multi-row results, for the detector.
    pub(super) n1_capture: super::n_plus_one::Capture,
    /// Set once shutdown began while a transaction was open: it may finish until then.
    pub(super) drain_deadline: Option<Instant>,
    /// How long the oldest request has waited for its server (`pool.query_timeout_ms`).
    pub(super) query_clock: super::deadline::QueryClock,
    /// The open transaction changed functions, privileges or policies.
    pub(super) catalog_changed_in_tx: bool,
    /// Role or database defaults changed in the open transaction.
    pub(super) defaults_changed_in_tx: bool,
}

/// Why the session's timer fired.
#[derive(Clone, Copy)]
enum Timer {
    ClientIdle(std::time::Duration),
    IdleInTransaction(std::time::Duration),
    Drain,
    Query(super::deadline::Due),
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        shared: Arc<Shared>,
        client: ClientStream,
        rbuf: BytesMut,
        pools: Arc<PoolSet>,
        user: String,
        database: String,
        application_name: String,
        settings: Settings,
        cancel: Registration,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Session {
        let capture = super::n_plus_one::Capture::new(&shared.n_plus_one.settings.load());
        let statements_salt = shared.router.catalog_salt();
        Session {
            live: super::live::Live::new(&shared),
            shared,
            client,
            rbuf,
            wbuf: BytesMut::new(),
            swbuf: BytesMut::new(),
            pools,
            user_key: Arc::from(user.as_str()),
            tx_writes: Default::default(),
            unnamed_id: u64::MAX,
            user,
            db: Arc::from(database.as_str()),
            database,
            application_name,
            settings,
            statements: HashMap::new(),
            unnamed: None,
            statements_salt,
            pending: Pending::default(),
            server: None,
            plan: Plan::default(),
            ready_actions: VecDeque::new(),
            tx: TxStatus::Idle,
            copy: Default::default(),
            unsynced: false,
            pin: None,
            skip_until_sync: false,
            tx_effects: Vec::new(),
            tx_rolled_back: false,
            flushed: Default::default(),
            cancel,
            shutdown,
            server_dying: false,
            ryw: Default::default(),
            refusal: Default::default(),
            sequences_here: false,
            n_plus_one: crate::nplusone::Stream::default(),
            n1_capture: capture,
            drain_deadline: None,
            query_clock: Default::default(),
            catalog_changed_in_tx: false,
            defaults_changed_in_tx: false,
        }
    }

    /// The next deadline for this session, if it is idle (or draining at shutdown).
    fn timer(&mut self) -> Option<(Instant, Timer)> {
        let query = self
            .query_deadline()
            .map(|(at, due)| (at, Timer::Query(due)));
        if let Some(at) = self.drain_deadline {
            // Whichever comes first: a query timeout still applies while draining.
            return match query {
                Some(q) if q.0 < at => Some(q),
                _ => Some((at, Timer::Drain)),
            };
        }
        let quiet = !self.in_flight() && self.swbuf.is_empty();
        if !quiet || !self.rbuf.is_empty() {
            return query;
        }
        if self.server.is_some() && self.tx != TxStatus::Idle {
            if self.copy.active() {
                return None;
            }
            let t = self.live.config().limits.idle_in_transaction_timeout?;
            Some((Instant::now() + t, Timer::IdleInTransaction(t)))
        } else {
            // Also a pinned session holding a server outside a transaction.
            let t = self.live.config().limits.client_idle_timeout?;
            Some((Instant::now() + t, Timer::ClientIdle(t)))
        }
    }

    /// Drives the session until the client leaves or its stream is unusable.
    pub async fn run(mut self: Box<Self>) {
        let end = self.drive().await;
        match &end {
            End::Fatal(e) => {
                tracing::debug!(user = %self.user, error = %e, "closing client session");
                let mut out = BytesMut::new();
                e.write(&mut out);
                self.wbuf.extend_from_slice(&out);
                let _ = self.client.write_all_buf(&mut self.wbuf).await;
            }
            End::ShuttingDown => {
                ClientError::ShuttingDown.write(&mut self.wbuf);
                let _ = self.client.write_all_buf(&mut self.wbuf).await;
            }
            End::ServerEnded => {
                let _ = self.client.write_all_buf(&mut self.wbuf).await;
            }
            End::ClientGone => {}
        }
        self.finish_server();
    }

    pub(super) async fn drive(&mut self) -> End {
        loop {
            if *self.shutdown.borrow() && self.can_close_now() {
                return End::ShuttingDown;
            }
            if let Err(end) = self.pump_client().await {
                return end;
            }
            let flushable = self.refusal_flushable();
            if flushable > 0 {
                self.refusal_flushing(flushable);
                let written = if flushable == self.wbuf.len() {
                    self.client.write_all_buf(&mut self.wbuf).await
                } else {
                    // The answers before a read the safety net may still take back go out now.
                    let mut out = self.wbuf.split_to(flushable);
                    self.client.write_all_buf(&mut out).await
                };
                if written.is_err() {
                    return End::ClientGone;
                }
                // Keep the buffer small between requests: most clients sit idle most of the time.
                if self.wbuf.is_empty() && self.wbuf.capacity() > 64 * 1024 {
                    self.wbuf = BytesMut::new();
                }
                // A request the pump left for the budget may go now that its answers are out;
                // its client, having sent everything, would otherwise wait here forever.
                if self.pending.terminator.is_some() && !self.pending.blocked && !self.over_budget()
                {
                    continue;
                }
            }
            if self.server.is_none() {
                self.shed_idle();
            }
            // A client whose answers pile up is not read until they drain, as PostgreSQL stops
            // reading a client it cannot write to; only with a server attached, which is what
            // drains them (COPY data is exempt: its server waits for exactly those bytes).
            let read_client =
                !(self.pending.blocked || self.server.is_some() && self.over_budget());
            let want_write = !self.swbuf.is_empty();
            let has_server = self.server.is_some();
            // Only a session waiting on its server cares that the server stalled.
            let awaiting = has_server && self.in_flight();
            self.observe_query_clock();
            let timer = self.timer();
            let draining = self.drain_deadline.is_some();
            // Split borrows: the connection's buffer fills while the session's write buffer
            // drains into the same connection, in one select.
            let (server_io, stalls) = match self.server.as_mut() {
                Some(lease) => {
                    let (ServerConn { stream, rbuf, .. }, stalls) = lease.conn_and_stalls();
                    rbuf.reserve(SERVER_READ_CHUNK);
                    (Some((stream, rbuf)), Some(stalls))
                }
                None => (None, None),
            };
            let out = &self.swbuf;
            let stop = (&*self.shared.cancels, &*self.cancel.slot);
            tokio::select! {
                r = self.client.read_into(&mut self.rbuf), if read_client => {
                    match r {
                        Ok(0) | Err(_) => return End::ClientGone,
                        Ok(_) => {}
                    }
                }
                r = async move {
                    match server_io {
                        Some((stream, buf)) => stream.io(buf, out, want_write).await,
                        None => std::future::pending().await,
                    }
                }, if has_server => {
                    let step = match r {
                        ServerIo::Read(0) => self.server_lost("server closed the connection"),
                        ServerIo::ReadFailed(_) => self.server_lost("read failed"),
                        ServerIo::WriteFailed(_) => self.server_lost("write failed"),
                        ServerIo::Read(_) => self.handle_server_messages(),
                        ServerIo::Wrote(n) => {
                            self.wrote_server(n);
                            Ok(())
                        }
                    };
                    if let Err(end) = step {
                        return end;
                    }
                }
                Ok(()) = async move {
                    match stalls {
                        Some(w) => w.changed().await,
                        None => std::future::pending().await,
                    }
                }, if awaiting => {
                    if let Err(end) = self.server_stalled() {
                        return end;
                    }
                }
                _ = async move {
                    match timer {
                        Some((at, _)) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some((_, Timer::Query(due))) = timer {
                        if let Err(end) = self.query_deadline_passed(due) {
                            return end;
                        }
                        continue;
                    }
                    return match timer {
                        Some((_, Timer::ClientIdle(t))) => {
                            End::Fatal(ClientError::IdleTimeout(t.as_millis()))
                        }
                        Some((_, Timer::IdleInTransaction(t))) => {
                            End::Fatal(ClientError::IdleInTransactionTimeout(t.as_millis()))
                        }
                        Some((_, Timer::Drain | Timer::Query(_))) | None => End::ShuttingDown,
                    };
                }
                // After shutdown began the signal has nothing more to say (and stays ready).
                _ = std::future::poll_fn(|cx| stop.0.poll_stop(stop.1, cx)), if !draining => {
                    if self.can_close_now() {
                        return End::ShuttingDown;
                    }
                    let grace = self.live.config().limits.shutdown_timeout;
                    self.drain_deadline = Some(Instant::now() + grace);
                }
            }
        }
    }

    /// Idle between requests: hold no buffer and no per-request container's capacity, so an
    /// idle client costs its session and nothing more (frontend/shed.rs).
    fn shed_idle(&mut self) {
        use super::shed::Shed;
        for buf in [&mut self.rbuf, &mut self.wbuf, &mut self.swbuf] {
            buf.shed();
        }
        self.ready_actions.shed();
        self.tx_effects.shed();
        self.flushed.shed();
        self.plan.shed_idle();
        self.pending.shed_idle();
        self.ryw.shed_idle();
        self.n1_capture.shed_idle();
    }

    /// Memory held for this client's requests in flight and their unsent answers, beyond
    /// `max_client_buffer_bytes`. Counted: answers not yet written, requests not yet sent to the
    /// server, and the bookkeeping of each request the server has not answered yet (which is
    /// what a client pipelining without reading makes grow). Each drains without the client
    /// sending anything, so pausing the client's reads on it cannot deadlock; COPY IN, whose
    /// server waits for the client, never counts as over.
    pub(super) fn over_budget(&mut self) -> bool {
        if self.copy.active() {
            return false;
        }
        let held = self.wbuf.len()
            + self.swbuf.len()
            + self.ready_actions.len() * IN_FLIGHT_REQUEST_BYTES
            + self.plan.len() * IN_FLIGHT_MESSAGE_BYTES;
        held > self.live.config().max_client_buffer_bytes
    }

    /// Writes as much of the server buffer as the socket takes now.
    pub(super) fn write_server(&mut self) -> Result<(), End> {
        let Some(lease) = self.server.as_mut() else {
            return Ok(());
        };
        match lease.conn().stream.try_write(&self.swbuf) {
            Ok(n) => {
                self.wrote_server(n);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            Err(_) => self.server_lost("write failed"),
        }
    }

    /// The client's unnamed statement changes without a server seeing it.
    pub(super) fn next_unnamed_id(&mut self) {
        self.unnamed_id = super::statements::next_unnamed_id(self.unnamed_id);
    }

    fn wrote_server(&mut self, n: usize) {
        let _ = self.swbuf.split_to(n);
        if self.swbuf.is_empty() && self.swbuf.capacity() > 64 * 1024 {
            self.swbuf = BytesMut::new();
        }
    }

    /// The server connection died: tell the client and carry on if no transaction was lost.
    pub(super) fn server_lost(&mut self, why: &str) -> Result<(), End> {
        if self.retry_read(why) {
            return Ok(());
        }
        self.writes_orphaned();
        let was_in_tx = self.tx != TxStatus::Idle || self.pin.is_some();
        // The server's FATAL already reached the client.
        let fatal_forwarded = self.server_dying;
        if let Some(server) = self.release(Fate::Discard) {
            tracing::warn!(server = %server.addr, reason = why, "server connection lost");
        }
        self.swbuf.clear();
        self.copy = Default::default();
        self.unsynced = false;
        let mut cut: Vec<ReadyAction> = self.ready_actions.drain(..).collect();
        // One ReadyForQuery per request the client waits on; statements sent before a Flush
        // have none of their own (the unsynced branch below answers them), but their writes
        // may have landed.
        let waiting: Vec<bool> = cut.iter().map(|a| a.failed).collect();
        cut.push(self.flushed.take());
        self.cache_writes_unknown_outcome(&cut);
        tracing::debug!(
            ?waiting,
            plan = self.plan.len(),
            "requests cut short by the lost server"
        );
        if was_in_tx {
            // The transaction's state is gone with its server: no later statement of it may
            // run anywhere, so the client is closed, as a direct connection would be.
            self.plan.clear();
            if fatal_forwarded {
                return Err(End::ServerEnded);
            }
            return Err(End::Fatal(ClientError::ServerLostInTransaction(
                why.to_string(),
            )));
        }
        self.tx = TxStatus::Idle;
        // Each unanswered request gets one error (unless the server's own FATAL already
        // reached the client for it) and its ReadyForQuery; with none waiting (the server was
        // held only for the proxy's own probe or Sync) the client hears nothing, since a
        // ReadyForQuery nobody asked for breaks its protocol state.
        let unsynced = self.plan.awaits_unsynced_reply();
        for already_failed in waiting {
            if !already_failed {
                ClientError::ServerLost(why.to_string()).write(&mut self.wbuf);
            }
            build::ready_for_query(&mut self.wbuf, TxStatus::Idle);
        }
        if unsynced {
            // Messages sent on with Flush: they hear the error now, and their Sync its
            // ReadyForQuery, as after any extended-protocol error.
            if !fatal_forwarded {
                ClientError::ServerLost(why.to_string()).write(&mut self.wbuf);
            }
            self.skip_until_sync = true;
        }
        self.plan.clear();
        Ok(())
    }

    /// At the end of the session: a server still held is mid-transaction or pinned, so close it.
    fn finish_server(&mut self) {
        self.writes_orphaned();
        let clean = self.between_transactions();
        // Writes still in flight or in an unfinished transaction may have landed (a COMMIT
        // the client did not wait for): invalidate as if they did.
        let mut cut: Vec<ReadyAction> = self.ready_actions.drain(..).collect();
        cut.push(self.flushed.take());
        self.cache_writes_unknown_outcome(&cut);
        self.release(if clean { Fate::Return } else { Fate::Discard });
    }
}
