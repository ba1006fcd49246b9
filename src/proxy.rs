//! Wiring: starting the proxy and its background tasks on an already-bound listener.

use crate::config::Config;
use crate::router::FunctionCatalog;
pub use crate::shared::{Shared, StartError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

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
    // Sessions learn of a stop through their registry slot (clients.rs), not by each listening
    // on the channel; a dropped handle stops them too.
    {
        let (cancels, mut stop) = (shared.cancels.clone(), rx.clone());
        tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            cancels.stop_all();
        });
    }
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
    let workers = crate::frontend::workers::Workers::start(shared.pools.workers(), &shared, &rx)
        .map_err(StartError::Workers)?;
    let task = tokio::spawn(crate::frontend::serve(
        shared.clone(),
        listener,
        workers,
        rx,
    ));
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
