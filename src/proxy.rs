//! Wiring: the shared state every session uses, and starting the proxy on an already-bound listener.

use crate::auth::UserSecret;
use crate::clients::CancelRegistry;
use crate::config::Config;
use crate::pool::Pools;
use crate::router::{FunctionCatalog, Router};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// State shared by all sessions, passed explicitly (no process-wide globals, so tests run in parallel).
pub struct Shared {
    /// The configuration the proxy started with: authoritative for what needs a restart
    /// (listen addresses, users, databases, servers, client TLS).
    pub config: Arc<Config>,
    /// The latest accepted configuration, replaced whole by [`crate::reload::reload`]: read
    /// here the keys that change live (limits, timeouts, pool sizes). `ArcSwap` because it is
    /// read on every request and written only on reload: a load is a few atomic operations and
    /// never waits for a writer, unlike a lock or a watch channel's borrow.
    pub live: arc_swap::ArcSwap<Config>,
    /// Where `reload` reads the configuration again; unset for a proxy built from a string.
    pub config_source: parking_lot::Mutex<Option<crate::reload::ConfigSource>>,
    /// Open client connections, against the live `max_client_connections`.
    pub clients: Arc<crate::frontend::ClientSlots>,
    pub pools: Pools,
    pub router: Arc<Router>,
    pub cancels: Arc<CancelRegistry>,
    pub secrets: HashMap<String, UserSecret>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub stats: Arc<crate::stats::Stats>,
    pub cache: Arc<crate::cache::ResultCache>,
    /// Notified after DDL that changes functions, privileges or policies: the router's
    /// catalog is reloaded at once instead of at the next periodic refresh.
    pub router_catalog_changed: Arc<tokio::sync::Notify>,
    pub wal: Arc<crate::cache::wal::WalProgress>,
    pub n_plus_one: Arc<crate::nplusone::Detector>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("user {user}: {reason}")]
    Secret { user: String, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl Shared {
    pub fn new(config: Arc<Config>) -> Result<Shared, StartError> {
        let mut secrets = HashMap::new();
        for u in &config.users {
            // PBKDF2 runs here, once per user, never per login.
            let secret = match (&u.scram_verifier, &u.password) {
                (Some(v), pw) => {
                    let mut s = UserSecret::from_verifier(v).map_err(|e| StartError::Secret {
                        user: u.name.clone(),
                        reason: e.to_string(),
                    })?;
                    if let Some(pw) = pw {
                        s.md5 = Some(postgres_protocol::password::md5(pw.as_bytes(), &u.name));
                    }
                    s
                }
                (None, Some(pw)) => UserSecret::from_password(&u.name, pw),
                (None, None) => {
                    return Err(StartError::Secret {
                        user: u.name.clone(),
                        reason: "no password or verifier".into(),
                    })
                }
            };
            secrets.insert(u.name.clone(), secret);
        }
        let tls = match &config.tls {
            Some(t) => {
                let sc = crate::auth::tls::server_config(&t.cert_file, &t.key_file)
                    .map_err(|e| StartError::Tls(e.to_string()))?;
                Some(tokio_rustls::TlsAcceptor::from(sc))
            }
            None => None,
        };
        let server_tls = crate::backend::ServerTls::from_config(&config.server_tls)
            .map_err(|e| StartError::Tls(format!("toward servers: {e}")))?;
        Ok(Shared {
            live: arc_swap::ArcSwap::new(config.clone()),
            config_source: parking_lot::Mutex::new(None),
            clients: Arc::new(crate::frontend::ClientSlots::default()),
            pools: Pools::with_tls(config.clone(), server_tls),
            router: Arc::new(Router::new(
                {
                    // Until the server's catalog is read, no write's reach is known.
                    let mut c = FunctionCatalog::builtin();
                    c.mark_stale();
                    c
                },
                config.analysis_cache_entries,
            )),
            cancels: Arc::new(CancelRegistry::default()),
            secrets,
            tls,
            stats: Arc::new(crate::stats::Stats::new(config.stats.settings.clone())),
            cache: crate::cache::ResultCache::new(config.cache.clone()),
            router_catalog_changed: Arc::new(tokio::sync::Notify::new()),
            wal: Arc::new(Default::default()),
            n_plus_one: Arc::new(crate::nplusone::Detector::new(config.n_plus_one.clone())),
            config,
        })
    }
}

/// A running proxy; dropping the handle does not stop it, `shutdown` does.
pub struct ProxyHandle {
    pub addr: SocketAddr,
    /// Where the stats endpoint listens.
    pub stats_addr: SocketAddr,
    pub shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ProxyHandle {
    /// Stops accepting; idle sessions end at once, open transactions may finish within the
    /// live `shutdown_timeout_ms`, after which their clients are closed (and the server rolls
    /// them back). Returns when every client is gone.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        let grace = self.shared.live.load().limits.shutdown_timeout;
        let open = self.shared.clients.open();
        if open > 0 {
            tracing::info!(
                clients = open,
                grace_ms = grace.as_millis() as u64,
                "waiting for open transactions"
            );
        }
        // Sessions close themselves at the deadline; the extra second covers their last writes.
        if !self
            .shared
            .clients
            .drained(grace + Duration::from_secs(1))
            .await
        {
            tracing::warn!(
                clients = self.shared.clients.open(),
                "clients still open after shutdown_timeout_ms"
            );
        }
    }
}

/// Binds `config.listen` with a large backlog (bursts of logins queue instead of failing).
pub fn bind(addr: SocketAddr, backlog: u32) -> Result<TcpListener, StartError> {
    let listen_err = |source| StartError::Listen { addr, source };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(listen_err)?;
    socket.set_reuseaddr(true).map_err(listen_err)?;
    socket.bind(addr).map_err(listen_err)?;
    socket.listen(backlog).map_err(listen_err)
}

/// Starts the proxy on `listener` (tests bind port 0) and returns at once.
pub async fn start(config: Arc<Config>, listener: TcpListener) -> Result<ProxyHandle, StartError> {
    let shared = Arc::new(Shared::new(config)?);
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: shared.config.listen,
        source,
    })?;
    let stats_listen = shared.config.stats.listen;
    let stats_listener = bind(stats_listen, 128)?;
    let stats_addr = stats_listener
        .local_addr()
        .map_err(|source| StartError::Listen {
            addr: stats_listen,
            source,
        })?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(refresh_catalog(shared.clone(), rx.clone()));
    spawn_health_checks(&shared, &rx);
    // Global reads ask it for every read; table_lsn reads only when a pending write's
    // position is slow to arrive. No demand, no query.
    if shared.config.replication.consistency.routes_by_lsn() {
        let (shared, shutdown) = (shared.clone(), rx.clone());
        tokio::spawn(async move {
            let config = shared.config.clone();
            crate::pool::global::run(&shared.pools, config, shutdown).await
        });
    }
    if shared.cache.enabled()
        && shared.cache.settings.invalidation == crate::cache::Invalidation::Wal
    {
        let sink = crate::cache::wal::Sink {
            cache: shared.cache.clone(),
            router: shared.router.clone(),
        };
        tokio::spawn(crate::cache::wal::follow(
            shared.config.clone(),
            sink,
            shared.wal.clone(),
            rx.clone(),
        ));
    }
    tokio::spawn(crate::http::serve(
        shared.clone(),
        stats_listener,
        rx.clone(),
    ));
    let task = tokio::spawn(crate::frontend::serve(shared.clone(), listener, rx));
    Ok(ProxyHandle {
        addr,
        stats_addr,
        shared,
        shutdown: tx,
        task,
    })
}

/// One health task per configured server, for the life of the proxy.
fn spawn_health_checks(shared: &Arc<Shared>, shutdown: &watch::Receiver<bool>) {
    for server in shared.pools.servers() {
        let (shared, server, shutdown) = (shared.clone(), server.clone(), shutdown.clone());
        tokio::spawn(async move {
            let config = shared.config.clone();
            crate::pool::checker::run(&shared.pools, server, config, shutdown).await
        });
    }
}

/// Learns which functions are read-only from the primary's catalog, then keeps it fresh.
async fn refresh_catalog(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let every = Duration::from_secs(60);
    loop {
        let changes = shared.router.catalog_changes();
        match load_catalog(&shared).await {
            Ok(c) => shared.router.set_catalog_loaded(c, changes),
            Err(e) => {
                tracing::warn!(error = %e, "cannot load function volatility from the primary; using the built-in list")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shared.router_catalog_changed.notified() => {}
            // DDL through the proxy: views, casts, domains or functions may reach new things.
            _ = shared.router.ddl_noted() => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn load_catalog(shared: &Shared) -> Result<FunctionCatalog, String> {
    let c = &shared.config;
    let (Some(user), Some(db)) = (c.users.first(), c.databases.first()) else {
        return Err("no user or database configured".into());
    };
    let client = crate::backend::control::connect(c, db, user, "pgsplit-catalog")
        .await
        .map_err(|e| e.to_string())?;
    let mut catalog = FunctionCatalog::load(&client)
        .await
        .map_err(|e| e.to_string());
    if let Ok(cat) = catalog.as_mut() {
        match load_write_reach(c, user, &client).await {
            Ok(reach) => cat.set_write_reach(reach),
            // Without it no write's reach is known: every write counts as a write to all.
            Err(e) => {
                tracing::warn!(error = %e, "cannot read triggers, rules and defaults; every write invalidates everything");
                cat.mark_stale();
            }
        }
        match crate::router::setters::load(&client).await {
            Ok(setters) => cat.set_session_setters(setters),
            // Without bodies every user function is taken to set: correct, but it pins.
            Err(e) => {
                tracing::warn!(error = %e, "cannot read function bodies; calls of user functions pin the session");
                cat.mark_stale();
            }
        }
    }
    // Read-your-writes tracks reads of these by name; reads of anything else need every write.
    match crate::pool::load_plain_tables(&client).await {
        Ok(tables) => shared.pools.lsns.set_plain_tables(tables),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list tables; reads after writes lean on the primary")
        }
    }
    catalog
}

/// Write reach from every configured database, in one: routing and the cache share it, and a
/// relation's name means the same to both (router/write_reach.rs).
async fn load_write_reach(
    c: &Config,
    user: &crate::config::User,
    first: &tokio_postgres::Client,
) -> Result<crate::router::write_reach::WriteReach, String> {
    use crate::router::write_reach::WriteReach;
    let mut reach = WriteReach::load(first).await.map_err(|e| e.to_string())?;
    for db in c.databases.iter().skip(1) {
        let client = crate::backend::control::connect(c, db, user, "pgsplit-catalog")
            .await
            .map_err(|e| format!("database {}: {e}", db.name))?;
        reach = reach.merge(WriteReach::load(&client).await.map_err(|e| e.to_string())?);
    }
    Ok(reach)
}
