//! The state every session shares, built once from the configuration; it sits below everything that uses it.

use crate::auth::UserSecret;
use crate::clients::{CancelRegistry, ClientSlots};
use crate::config::{Config, ConfigSource};
use crate::pool::Pools;
use crate::router::{FunctionCatalog, Router};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

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
    pub config_source: parking_lot::Mutex<Option<ConfigSource>>,
    /// Open client connections, against the live `max_client_connections`.
    pub clients: Arc<ClientSlots>,
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
    #[error("cannot start the data threads: {0}")]
    Workers(std::io::Error),
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
            clients: Arc::new(ClientSlots::default()),
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
