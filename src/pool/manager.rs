//! The deadpool manager that opens, checks and discards raw server connections.

use crate::backend::{BackendError, LoginParams, ServerConn, ServerTls};
use crate::config::Keepalive;
use arc_swap::ArcSwap;
use deadpool::managed::{Manager, Metrics, RecycleError, RecycleResult};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The reloadable part of how server connections are opened and kept, shared by every pool.
#[derive(Debug)]
pub struct ServerSettings {
    pub connect_timeout: Duration,
    pub acquire_timeout: Duration,
    pub lifetime: Duration,
    pub idle_timeout: Duration,
    /// Idle connections a pool keeps past `idle_timeout`.
    pub min_idle: usize,
    pub keepalive: Option<Keepalive>,
    pub tls: ServerTls,
    /// `replication.max_replica_wait_ms`: how long a read may ask a replica to catch up.
    pub replica_wait: Duration,
}

/// Counters of connection churn, read by the stats endpoint.
#[derive(Default, Debug)]
pub struct ChurnCounters {
    pub opened: AtomicU64,
    pub closed: AtomicU64,
    pub broken: AtomicU64,
    pub connect_errors: AtomicU64,
}

/// The connections open to one server for one pool, across the workers' deadpools, against
/// the pool's size: a worker opens one only after taking a place here, so the server never
/// sees more than the pool's size however many workers open at once.
#[derive(Debug)]
pub struct OpenSlots {
    open: AtomicUsize,
    limit: AtomicUsize,
}

impl OpenSlots {
    pub fn new(limit: usize) -> OpenSlots {
        OpenSlots {
            open: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
        }
    }

    /// Takes a place for a connection about to be opened; false when the pool is full.
    fn reserve(&self) -> bool {
        let limit = self.limit.load(Ordering::Acquire);
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    fn release(&self) {
        let _ = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Release);
    }
}

/// When role or database defaults last changed (`ALTER ROLE/DATABASE ... SET` through the
/// proxy). A server session reads them once, at login, so a connection opened before the change
/// would give its next client the old defaults, which PostgreSQL gives no new session.
#[derive(Debug)]
pub struct DefaultsClock {
    epoch: std::time::Instant,
    /// Microseconds after `epoch`, plus one; 0 when they never changed.
    changed: AtomicU64,
}

impl Default for DefaultsClock {
    fn default() -> Self {
        DefaultsClock {
            epoch: std::time::Instant::now(),
            changed: AtomicU64::new(0),
        }
    }
}

impl DefaultsClock {
    /// Defaults changed now: connections opened until now are not reused.
    pub fn changed(&self) {
        let us = self.epoch.elapsed().as_micros() as u64 + 1;
        self.changed.fetch_max(us, Ordering::AcqRel);
    }

    /// Whether a connection opened at `created` predates the last change.
    pub fn outdates(&self, created: std::time::Instant) -> bool {
        let changed = self.changed.load(Ordering::Acquire);
        changed != 0 && (created.saturating_duration_since(self.epoch).as_micros() as u64) < changed
    }
}

/// Idle time after which a connection is probed for a server-side close before reuse.
const PROBE_AFTER_IDLE: Duration = Duration::from_secs(1);

pub struct ServerManager {
    pub login: LoginParams,
    pub max_prepared: usize,
    pub settings: Arc<ArcSwap<ServerSettings>>,
    /// Shared by the workers' deadpools of one pool, as `slots` is.
    pub churn: Arc<ChurnCounters>,
    pub slots: Arc<OpenSlots>,
    pub defaults: Arc<DefaultsClock>,
}

impl Manager for ServerManager {
    // Boxed: deadpool moves its objects in and out of the idle queue at every checkout and
    // return, and a session holds its lease inline, so the connection's few hundred bytes
    // would be copied per transaction and sit in every idle client.
    type Type = Box<ServerConn>;
    type Error = BackendError;

    async fn create(&self) -> Result<Box<ServerConn>, BackendError> {
        let login = {
            let s = self.settings.load();
            LoginParams {
                connect_timeout: s.connect_timeout,
                tls: s.tls.clone(),
                keepalive: s.keepalive,
                ..self.login.clone()
            }
        };
        if !self.slots.reserve() {
            // The caller makes room on another worker and asks again (ServerPool::make_room).
            return Err(BackendError::PoolFull);
        }
        // Boxed: a login's state (TLS handshake, SCRAM) would otherwise sit inline in every
        // checkout's future, which is built and moved per request though it rarely connects.
        match Box::pin(ServerConn::connect(&login, self.max_prepared)).await {
            Ok(c) => {
                self.churn.opened.fetch_add(1, Ordering::Relaxed);
                Ok(Box::new(c))
            }
            Err(e) => {
                self.slots.release();
                self.churn.connect_errors.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Runs at checkout, so it only makes cheap local checks: a flag, one clock and one
    /// non-blocking read that notices a server which closed the connection while idle.
    async fn recycle(
        &self,
        conn: &mut Box<ServerConn>,
        metrics: &Metrics,
    ) -> RecycleResult<BackendError> {
        if conn.broken {
            self.churn.broken.fetch_add(1, Ordering::Relaxed);
            return Err(RecycleError::message("connection marked broken"));
        }
        let (lifetime, idle_timeout) = {
            let s = self.settings.load();
            (s.lifetime, s.idle_timeout)
        };
        // One clock read for both ages (`elapsed` and `last_used` each read it).
        let now = std::time::Instant::now();
        if now.saturating_duration_since(conn.created) > lifetime {
            return Err(RecycleError::message("server lifetime reached"));
        }
        if self.defaults.outdates(conn.created) {
            return Err(RecycleError::message("role or database defaults changed"));
        }
        let idle = now.saturating_duration_since(metrics.recycled.unwrap_or(metrics.created));
        if idle > idle_timeout {
            return Err(RecycleError::message("idle too long"));
        }
        // A connection reused within the last second is almost surely alive; skipping the
        // probe there saves a syscall per request. One that died in that second fails its
        // request with a clean 08006 (or the server's FATAL) and is discarded.
        if idle < PROBE_AFTER_IDLE {
            return Ok(());
        }
        let mut probe = [0u8; 1];
        match conn.stream.try_read(&mut probe) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            Ok(0) => {
                self.churn.broken.fetch_add(1, Ordering::Relaxed);
                Err(RecycleError::message("server closed the connection"))
            }
            // Unsolicited bytes (a FATAL before close, usually) mean the connection is done.
            Ok(_) | Err(_) => {
                self.churn.broken.fetch_add(1, Ordering::Relaxed);
                Err(RecycleError::message("server sent data while idle"))
            }
        }
    }

    // deadpool detaches every connection it created and then lets go of (recycle failures,
    // discards, `retain`, returns above a shrunk size), so each place taken in `create` comes back.
    fn detach(&self, _conn: &mut Box<ServerConn>) {
        self.slots.release();
        self.churn.closed.fetch_add(1, Ordering::Relaxed);
    }
}
