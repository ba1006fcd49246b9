//! The pools of one database/user (primary and replicas) and the choice of a server for a request.

use super::cap::CapPermit;
use super::health::{HealthPolicy, ServerHealth};
use super::lsn::{ReadNeed, WriteLsns};
use super::manager::{ChurnCounters, OpenSlots, ServerManager, ServerSettings};
use super::role::Role;
use super::routing::RouteStats;
use super::server_pool::ServerPool;
use super::wal_history::WalHistory;
use crate::backend::{BackendError, LoginParams, ServerConn, ServerTls};
use crate::config::{Config, ServerAddr};
use arc_swap::ArcSwap;
use deadpool::managed::{Object, Pool, PoolError, QueueMode, TimeoutType, Timeouts};
use deadpool::Runtime;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::watch;

/// One PostgreSQL server, shared by the pools of every database/user on it.
#[derive(Debug)]
pub struct ServerInfo {
    pub addr: ServerAddr,
    /// `addr.host` once more, shareable without a copy (cancel targets take it per request).
    pub host: Arc<str>,
    /// The role the configuration gives it; with `role = "auto"` only the starting point.
    pub configured_role: Role,
    /// Requests holding a connection to this server right now, for least-outstanding balancing.
    pub outstanding: AtomicUsize,
    /// Published by the server's health task: role, ban, replay position, lag.
    pub health: ServerHealth,
    /// Reads served here and reads sent to the primary instead, by reason.
    pub routing: RouteStats,
}

impl ServerInfo {
    fn new(addr: ServerAddr, role: Role, auto: bool, policy: HealthPolicy, epoch: Instant) -> Self {
        ServerInfo {
            host: Arc::from(addr.host.as_str()),
            addr,
            configured_role: role,
            outstanding: AtomicUsize::new(0),
            health: ServerHealth::new(role, auto, policy, epoch),
            routing: RouteStats::default(),
        }
    }

    /// The role routing uses now (follows the server with `role = "auto"`).
    pub fn role(&self) -> Role {
        self.health.role()
    }

    pub fn is_up(&self) -> bool {
        !self.health.is_banned()
    }
}

#[derive(Debug, Error)]
pub enum AcquireError {
    #[error("pool {pool}: timed out after {waited:?}")]
    Timeout {
        pool: String,
        waited: Duration,
        size: usize,
    },
    #[error("pool {pool}: {source}")]
    Backend { pool: String, source: BackendError },
    /// Known down or not accepting writes: refused at once instead of waiting for a timeout.
    #[error("{0}")]
    PrimaryDown(String),
}

/// A place under the cap and the connection it holds.
type Taken = (CapPermit, Object<ServerManager>);

/// A server connection held by one client for one request or transaction.
///
/// Dropping it returns the connection to its pool, where `recycle` discards it if the
/// session marked it broken (not idle, state unknown).
pub struct Lease {
    // Always Some until `discard` takes it out.
    conn: Option<Object<ServerManager>>,
    // Dropped after `conn`, so the connection is back in the pool before its place is free.
    _cap: CapPermit,
    pub server: Arc<ServerInfo>,
    pub waited: Duration,
    /// The server's stall signal (see `ServerHealth::stalls`), for the session to select on
    /// while it waits for an answer.
    pub stalls: watch::Receiver<u64>,
    /// A replica leased before it was known to have replayed this position: the read may run
    /// only if the replica, asked in the same round trip, has (pool/replica_choice.rs).
    pub verify: Option<u64>,
}

impl Lease {
    pub fn conn(&mut self) -> &mut ServerConn {
        match self.conn.as_mut() {
            Some(c) => c,
            None => unreachable!("lease used after discard"),
        }
    }

    /// The connection and the stall signal at once, for one `select!` over both.
    pub fn conn_and_stalls(&mut self) -> (&mut ServerConn, &mut watch::Receiver<u64>) {
        match self.conn.as_mut() {
            Some(c) => (c, &mut self.stalls),
            None => unreachable!("lease used after discard"),
        }
    }

    pub fn conn_ref(&self) -> &ServerConn {
        match self.conn.as_ref() {
            Some(c) => c,
            None => unreachable!("lease used after discard"),
        }
    }

    /// Closes the connection instead of returning it (pinned sessions, unknown state).
    pub fn discard(mut self) {
        if let Some(obj) = self.conn.take() {
            let mut c = Object::take(obj);
            c.broken = true;
            tokio::spawn(c.terminate());
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.server.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts one client in a pool's `waiting` for as long as it lives, however the wait ends
/// (a client that disconnects drops the future mid-wait).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The primary's and the replicas' pools for one database/user.
pub struct PoolSet {
    pub database: String,
    pub user: String,
    pub primary: ServerPool,
    pub replicas: Vec<ServerPool>,
    pub(super) settings: Arc<ArcSwap<ServerSettings>>,
    /// ParameterStatus values of the first server login, replayed to clients at their startup.
    pub server_params: tokio::sync::OnceCell<Arc<Vec<(bytes::Bytes, bytes::Bytes)>>>,
}

impl PoolSet {
    /// A connection for a request routed to `role`. Reads go to the least busy replica that
    /// is healthy, within the lag limits and has replayed what `need` asks; otherwise to the
    /// primary. A server that refuses a connection is banned and the next one tried. With
    /// `in_line`, the caller can send a replay-position check ahead of the read and re-send the
    /// read if it fails: a replica not yet known to have replayed `need` may be leased with
    /// [`Lease::verify`] set instead of being asked first.
    pub async fn acquire(
        &self,
        role: Role,
        need: ReadNeed,
        in_line: bool,
    ) -> Result<Lease, AcquireError> {
        if role == Role::Replica {
            if let Some(lease) = self.acquire_read(need, in_line).await? {
                return Ok(lease);
            }
        }
        let writer = self.writer()?;
        match self.acquire_from(writer).await {
            Err(AcquireError::Backend { pool, source }) => {
                writer.server.health.ban(&source.to_string());
                Err(AcquireError::Backend { pool, source })
            }
            other => other,
        }
    }

    /// The pool of the server that takes writes now, unless it is known to be down.
    fn writer(&self) -> Result<&ServerPool, AcquireError> {
        // Two servers may both claim the role for a moment after a promotion: prefer the one up.
        let candidate = self
            .all()
            .filter(|p| p.server.role() == Role::Primary)
            .min_by_key(|p| p.server.health.banned_for_ms());
        let Some(pool) = candidate else {
            return Err(AcquireError::PrimaryDown(
                "no server accepts writes: every server is in recovery".into(),
            ));
        };
        let h = &pool.server.health;
        let banned = h.banned_for_ms();
        if banned > 0 {
            let until = if banned == 1 && h.awaits_check() {
                "banned until a health check passes".to_string()
            } else {
                format!("retrying in {banned} ms")
            };
            return Err(AcquireError::PrimaryDown(format!(
                "primary {} is down ({}); {until}",
                pool.server.addr,
                h.last_error().unwrap_or_else(|| "failed".into())
            )));
        }
        Ok(pool)
    }

    pub(super) async fn acquire_from(&self, pool: &ServerPool) -> Result<Lease, AcquireError> {
        pool.server.outstanding.fetch_add(1, Ordering::Relaxed);
        let connect_timeout = self.settings.load().connect_timeout;
        // Boxed: the wait's futures (cap queue, deadpool, timeout, stall watch) are large and
        // are only built when no idle connection is there to take. An idle connection taken at
        // once counts as no wait, so the common case reads no clock.
        let (result, waited) = match Self::take_idle(pool, connect_timeout).await {
            Some(r) => (r, Duration::ZERO),
            None => {
                let started = Instant::now();
                let r = Box::pin(self.wait_for(pool)).await;
                (r, started.elapsed())
            }
        };
        match result {
            Ok((place, conn)) => {
                pool.record_acquire(waited);
                let mut stalls = pool.server.health.stalls();
                stalls.mark_unchanged();
                Ok(Lease {
                    conn: Some(conn),
                    _cap: place,
                    server: pool.server.clone(),
                    waited,
                    stalls,
                    verify: None,
                })
            }
            Err(e) => {
                pool.server.outstanding.fetch_sub(1, Ordering::Relaxed);
                Err(self.acquire_error(pool, e))
            }
        }
    }

    /// The common case, with no timer armed and nothing queued: a place under the cap is free
    /// and the worker's share holds an idle connection. None when either is missing, so the
    /// caller waits. An idle connection that fails its recycle check makes deadpool open a
    /// new one, bounded by the connect timeout.
    async fn take_idle(
        pool: &ServerPool,
        connect_timeout: Duration,
    ) -> Option<Result<Taken, PoolError<BackendError>>> {
        let share = pool.local();
        if share.status().available == 0 {
            return None;
        }
        let place = pool.cap.try_acquire()?;
        let now = Timeouts {
            wait: Some(Duration::ZERO),
            create: Some(connect_timeout),
            // Recycling only inspects the connection; it never waits on the server.
            recycle: None,
        };
        match share.timeout_get(&now).await {
            Ok(conn) => Some(Ok((place, conn))),
            Err(
                PoolError::Timeout(TimeoutType::Wait) | PoolError::Backend(BackendError::PoolFull),
            ) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// Waits for a place and a connection, within `acquire_timeout`, giving up at once if the
    /// server stops answering meanwhile.
    async fn wait_for(&self, pool: &ServerPool) -> Result<Taken, PoolError<BackendError>> {
        let (wait, timeouts) = {
            let s = self.settings.load();
            let t = Timeouts {
                // The whole wait is bounded below, around the cap and the pool together.
                wait: None,
                create: Some(s.connect_timeout),
                recycle: Some(Duration::from_secs(1)),
            };
            (s.acquire_timeout, t)
        };
        let _waiting = Waiting::new(&pool.waiting);
        // A server that stops answering while we connect to it (or wait for one of its
        // connections) is given up at once, so the caller can try another node.
        let mut stalls = pool.server.health.stalls();
        let got = tokio::time::timeout(wait, async {
            let place = pool.cap.acquire().await;
            loop {
                match pool.local().timeout_get(&timeouts).await {
                    Err(PoolError::Backend(BackendError::PoolFull)) => pool.make_room().await,
                    r => break (place, r),
                }
            }
        });
        tokio::select! {
            r = got => match r {
                Ok((place, r)) => r.map(|conn| (place, conn)),
                Err(_) => Err(PoolError::Timeout(TimeoutType::Wait)),
            },
            Ok(()) = stalls.changed() => Err(PoolError::Backend(BackendError::Stalled {
                addr: pool.server.addr.to_string(),
            })),
        }
    }

    fn acquire_error(&self, pool: &ServerPool, e: PoolError<BackendError>) -> AcquireError {
        match e {
            PoolError::Backend(source) => AcquireError::Backend {
                pool: pool.name.clone(),
                source,
            },
            PoolError::Timeout(TimeoutType::Create) => AcquireError::Backend {
                pool: pool.name.clone(),
                source: BackendError::ConnectTimeout {
                    addr: pool.server.addr.to_string(),
                },
            },
            PoolError::Timeout(_)
            | PoolError::Closed
            | PoolError::NoRuntimeSpecified
            | PoolError::PostCreateHook(_) => {
                pool.timeouts.fetch_add(1, Ordering::Relaxed);
                AcquireError::Timeout {
                    pool: pool.name.clone(),
                    waited: self.settings.load().acquire_timeout,
                    size: pool.cap.size(),
                }
            }
        }
    }

    pub fn all(&self) -> impl Iterator<Item = &ServerPool> {
        std::iter::once(&self.primary).chain(self.replicas.iter())
    }

    /// `server_idle_timeout_ms` and `pool.min_idle` as last reloaded.
    pub(super) fn retire_settings(&self) -> (Duration, usize) {
        let s = self.settings.load();
        (s.idle_timeout, s.min_idle)
    }
}

/// Every pool set, created on first use of a database/user.
pub struct Pools {
    /// Read-your-writes: the last write LSN per table, shared by every session.
    pub lsns: WriteLsns,
    /// `consistency = "global"`: the primary's current WAL position, one query at a time.
    pub global: super::global::GlobalPosition,
    /// The primary's recent WAL positions, for replica lag in time.
    pub wal_history: WalHistory,
    /// The configuration new pool sets are built from; replaced on reload.
    config: ArcSwap<Config>,
    pub(super) settings: Arc<ArcSwap<ServerSettings>>,
    pub primary: Arc<ServerInfo>,
    pub replicas: Vec<Arc<ServerInfo>>,
    sets: RwLock<HashMap<(String, String), Arc<PoolSet>>>,
    /// Data threads the proxy started with, one deadpool each per pool: fixed at start, as the
    /// threads are, whatever a reload says.
    workers: usize,
    /// Role and database defaults' last change, for every pool's recycle check.
    pub defaults: Arc<super::manager::DefaultsClock>,
}

fn server_settings(c: &Config, tls: ServerTls) -> ServerSettings {
    ServerSettings {
        connect_timeout: c.pool.connect_timeout,
        acquire_timeout: c.pool.acquire_timeout,
        lifetime: c.pool.server_lifetime,
        idle_timeout: c.pool.server_idle_timeout,
        min_idle: c.pool.min_idle,
        keepalive: c.limits.keepalive,
        tls,
        replica_wait: c.replication.max_replica_wait,
    }
}

impl Pools {
    /// Pools with plain TCP to the servers.
    pub fn new(config: Arc<Config>) -> Pools {
        Pools::with_tls(config, ServerTls::disabled())
    }

    pub fn with_tls(config: Arc<Config>, tls: ServerTls) -> Pools {
        let epoch = Instant::now();
        let policy = HealthPolicy::from_config(&config);
        let primary = Arc::new(ServerInfo::new(
            config.primary.clone(),
            Role::Primary,
            config.primary_role_auto,
            policy,
            epoch,
        ));
        let replicas = config
            .replicas
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let auto = config.replica_role_auto.get(i).copied().unwrap_or(false);
                Arc::new(ServerInfo::new(
                    a.clone(),
                    Role::Replica,
                    auto,
                    policy,
                    epoch,
                ))
            })
            .collect();
        let workers = config.worker_count();
        Pools {
            lsns: WriteLsns::new(config.replication.max_tracked_tables),
            global: Default::default(),
            wal_history: Default::default(),
            settings: Arc::new(ArcSwap::from_pointee(server_settings(&config, tls))),
            config: ArcSwap::new(config),
            primary,
            replicas,
            sets: RwLock::new(HashMap::new()),
            workers,
            defaults: Arc::default(),
        }
    }

    /// Applies a reloaded configuration: pool sizes now (a smaller pool closes connections as
    /// they come back), timeouts, keepalive and TLS for connections opened from now on.
    pub fn apply(&self, config: Arc<Config>, tls: ServerTls) {
        self.settings.store(Arc::new(server_settings(&config, tls)));
        let per_replica = self.per_replica(&config);
        for set in self.sets() {
            set.primary.resize(config.pool.primary_size);
            for r in &set.replicas {
                r.resize(per_replica);
            }
        }
        self.config.store(config);
    }

    fn per_replica(&self, c: &Config) -> usize {
        if self.replicas.is_empty() {
            0
        } else {
            (c.pool.replica_size / self.replicas.len()).max(1)
        }
    }

    /// The pool set for a configured database and user (both already validated by the caller).
    pub fn get(&self, database: &str, user: &str) -> Arc<PoolSet> {
        let key = (database.to_string(), user.to_string());
        if let Some(s) = self.sets.read().get(&key) {
            return s.clone();
        }
        let mut sets = self.sets.write();
        sets.entry(key)
            .or_insert_with(|| {
                let set = Arc::new(self.build(database, user));
                super::retire::spawn_sweeper(Arc::downgrade(&set));
                set
            })
            .clone()
    }

    /// How many data threads the pools were built for (the proxy starts that many).
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Every configured server, primary first.
    pub fn servers(&self) -> impl Iterator<Item = &Arc<ServerInfo>> {
        std::iter::once(&self.primary).chain(self.replicas.iter())
    }

    pub fn sets(&self) -> Vec<Arc<PoolSet>> {
        self.sets.read().values().cloned().collect()
    }

    fn build(&self, database: &str, user: &str) -> PoolSet {
        let c = self.config.load_full();
        let server_database = c
            .database(database)
            .map(|d| d.server_database.clone())
            .unwrap_or_else(|| database.to_string());
        let password = c
            .user(user)
            .and_then(|u| u.server_password().map(str::to_string));
        let workers = self.workers;
        let make = |server: &Arc<ServerInfo>, size: usize| {
            let login = LoginParams {
                host: server.addr.host.clone(),
                port: server.addr.port,
                user: user.to_string(),
                password: password.clone(),
                database: server_database.clone(),
                // Filled from the live settings at each connect.
                connect_timeout: c.pool.connect_timeout,
                tls: ServerTls::disabled(),
                keepalive: None,
            };
            let churn = Arc::new(ChurnCounters::default());
            let slots = Arc::new(OpenSlots::new(size));
            let pools = (0..workers)
                .map(|_| {
                    let manager = ServerManager {
                        login: login.clone(),
                        max_prepared: c.pool.max_prepared_per_server,
                        settings: self.settings.clone(),
                        churn: churn.clone(),
                        slots: slots.clone(),
                        defaults: self.defaults.clone(),
                    };
                    // Last in, first out: a light load after a peak keeps reusing the few warm
                    // connections (caches, prepared statements) while the rest age out idle, as
                    // PgBouncer does; FIFO would spread it over every cold backend the peak opened.
                    let pool = Pool::builder(manager)
                        .queue_mode(QueueMode::Lifo)
                        .max_size(size)
                        .runtime(Runtime::Tokio1)
                        .build();
                    match pool {
                        Ok(p) => p,
                        // Only fails without a runtime, which is always set above.
                        Err(e) => unreachable!("pool builder: {e}"),
                    }
                })
                .collect();
            let name = format!(
                "{}@{}/{} ({})",
                user,
                server.addr,
                database,
                server.configured_role.as_str()
            );
            let fast_us = (c.stats.settings.thresholds.fast_acquire_ms * 1000.0) as u64;
            ServerPool::new(name, server.clone(), pools, (churn, slots), size, fast_us)
        };
        let per_replica = self.per_replica(&c);
        PoolSet {
            database: database.to_string(),
            user: user.to_string(),
            primary: make(&self.primary, c.pool.primary_size),
            replicas: self.replicas.iter().map(|r| make(r, per_replica)).collect(),
            settings: self.settings.clone(),
            server_params: tokio::sync::OnceCell::new(),
        }
    }
}
