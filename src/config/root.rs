//! The top-level keys: listener, per-client limits, shutdown drain, TCP keepalive and TLS on both sides, declared and validated.

use super::access::{RawDatabase, RawUser};
use super::cache::RawCache;
use super::keys::{section, words, Word, LIVE, RESTART};
use super::observe::{RawNPlusOne, RawStats};
use super::pool::RawPool;
use super::replication::RawReplication;
use super::servers::{self, RawHealth, RawPrimary, RawReplica};
use super::{invalid, positive, ConfigError};
use std::path::PathBuf;
use std::time::Duration;

section! {
    /// The configuration file as written.
    top: RawConfig [];
    keys {
        listen: String = "127.0.0.1:6432".into(), RESTART, |c| c.listen;
        listen_backlog: u32 = 4096, RESTART, |c| c.listen_backlog;
        workers: usize = 0, RESTART, |c| c.workers;
        max_client_connections: usize = 10_000, LIVE, |c| c.max_client_connections;
        max_client_connections_per_ip: usize = 0, LIVE,
            |c| c.limits.max_clients_per_ip.unwrap_or(0);
        max_message_bytes: usize = 64 << 20, LIVE, |c| c.max_message_bytes;
        max_client_buffer_bytes: usize = 1 << 20, LIVE, |c| c.max_client_buffer_bytes;
        startup_timeout_ms: u64 = 10_000, LIVE, |c| c.startup_timeout;
        client_idle_timeout_ms: u64 = 0, LIVE, |c| off(c.limits.client_idle_timeout);
        idle_in_transaction_timeout_ms: u64 = 300_000, LIVE,
            |c| off(c.limits.idle_in_transaction_timeout);
        shutdown_timeout_ms: u64 = 30_000, LIVE, |c| c.limits.shutdown_timeout;
        tcp_keepalive_idle_ms: u64 = 60_000, LIVE.reported_as("tcp_keepalive"),
            |c| off(c.limits.keepalive.map(|k| k.idle));
        tcp_keepalive_interval_ms: u64 = 10_000, LIVE.reported_as("tcp_keepalive"),
            |c| c.limits.keepalive.map(|k| k.interval);
        tcp_keepalive_count: u32 = 6, LIVE.reported_as("tcp_keepalive"),
            |c| c.limits.keepalive.map(|k| k.count);
        server_sslmode: Word<SslMode> = SslMode::Disable.into(), LIVE.reported_as("server_sslmode"),
            |c| c.server_tls.mode.as_str();
        server_ssl_ca_file: Option<String> = None, LIVE.reported_as("server_sslmode"),
            |c| c.server_tls.ca_file;
        analysis_cache_entries: u64 = 10_000, RESTART, |c| c.analysis_cache_entries;
        tls_cert_file: Option<String> = None, RESTART.reported_as("tls_cert_file"),
            |c| c.tls.as_ref().map(|t| &t.cert_file);
        tls_key_file: Option<String> = None, RESTART.reported_as("tls_cert_file"),
            |c| c.tls.as_ref().map(|t| &t.key_file);
    }
    tables {
        primary: RawPrimary = servers::default_primary()?;
        replicas: Vec<RawReplica> = vec![servers::default_replica()?];
        pool: RawPool = RawPool::absent()?;
        users: Vec<RawUser> = Vec::new();
        databases: Vec<RawDatabase> = Vec::new();
        stats: RawStats = RawStats::absent()?;
        cache: RawCache = RawCache::absent()?;
        n_plus_one: RawNPlusOne = RawNPlusOne::absent()?;
        health: RawHealth = RawHealth::absent()?;
        replication: RawReplication = RawReplication::absent()?;
    }
}

pub use top::SECTION;

/// An optional timeout as written: 0 is off.
fn off(d: Option<Duration>) -> u128 {
    d.map_or(0, |d| d.as_millis())
}

/// Limits that bound what one client can hold; all reloadable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Client connections from one IP address at once (None: no limit besides the total).
    pub max_clients_per_ip: Option<usize>,
    /// A client with no request in flight and no transaction open is closed after this (None: never).
    pub client_idle_timeout: Option<Duration>,
    /// A client inside a transaction that sends nothing for this long is closed and its
    /// transaction rolled back, so it cannot keep a server connection forever (None: never).
    pub idle_in_transaction_timeout: Option<Duration>,
    /// On SIGTERM, open transactions get this long to finish before their clients are closed.
    pub shutdown_timeout: Duration,
    /// TCP keepalive on client and server sockets (None: off).
    pub keepalive: Option<Keepalive>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive {
    pub idle: Duration,
    pub interval: Duration,
    pub count: u32,
}

impl Keepalive {
    /// Applies the settings to a connected socket; errors are harmless (the socket still works).
    pub fn apply(&self, socket: &tokio::net::TcpStream) {
        let ka = socket2::TcpKeepalive::new()
            .with_time(self.idle)
            .with_interval(self.interval)
            .with_retries(self.count);
        if let Err(e) = socket2::SockRef::from(socket).set_tcp_keepalive(&ka) {
            tracing::debug!(error = %e, "cannot set TCP keepalive");
        }
    }
}

words! {
    /// libpq's sslmode values that make sense for a proxy's server connections.
    pub enum SslMode {
        /// Plain TCP.
        Disable = "disable",
        /// TLS if the server offers it, plain TCP if it answers SSLRequest with 'N'; no certificate check.
        Prefer = "prefer",
        /// TLS or fail; any certificate accepted (encryption against eavesdroppers, no identity).
        Require = "require",
        /// TLS or fail; the chain must lead to `server_ssl_ca_file` and name the host.
        VerifyFull = "verify-full",
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTlsConfig {
    pub mode: SslMode,
    pub ca_file: Option<PathBuf>,
}

/// Client-facing TLS.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The sizes every client is held to.
pub(super) fn check_sizes(raw: &RawConfig) -> Result<(), ConfigError> {
    positive("max_client_connections", raw.max_client_connections)?;
    if raw.max_client_buffer_bytes < 8192 || raw.max_client_buffer_bytes > (1 << 30) {
        return Err(invalid(
            "max_client_buffer_bytes",
            "must be between 8192 and 1073741824",
        ));
    }
    if raw.max_message_bytes < 1024 || raw.max_message_bytes > (1 << 30) {
        return Err(invalid(
            "max_message_bytes",
            "must be between 1024 and 1073741824",
        ));
    }
    // Each worker is a thread with its own deadpool per pool: thousands would only cost memory.
    if raw.workers > 1024 {
        return Err(invalid(
            "workers",
            "must be between 0 (one per core less one) and 1024",
        ));
    }
    Ok(())
}

pub(super) fn limits(raw: &RawConfig) -> Result<Limits, ConfigError> {
    let optional = |v: u64| (v > 0).then(|| Duration::from_millis(v));
    if raw.shutdown_timeout_ms == 0 {
        return Err(invalid("shutdown_timeout_ms", "must be at least 1 ms"));
    }
    let keepalive = if raw.tcp_keepalive_idle_ms == 0 {
        None
    } else {
        if raw.tcp_keepalive_idle_ms < 1000 || raw.tcp_keepalive_interval_ms < 1000 {
            return Err(invalid(
                "tcp_keepalive_idle_ms",
                "keepalive idle and interval must be at least 1000 ms (the kernel counts seconds)",
            ));
        }
        if raw.tcp_keepalive_count == 0 {
            return Err(invalid("tcp_keepalive_count", "must be at least 1"));
        }
        Some(Keepalive {
            idle: Duration::from_millis(raw.tcp_keepalive_idle_ms),
            interval: Duration::from_millis(raw.tcp_keepalive_interval_ms),
            count: raw.tcp_keepalive_count,
        })
    };
    Ok(Limits {
        max_clients_per_ip: (raw.max_client_connections_per_ip > 0)
            .then_some(raw.max_client_connections_per_ip),
        client_idle_timeout: optional(raw.client_idle_timeout_ms),
        idle_in_transaction_timeout: optional(raw.idle_in_transaction_timeout_ms),
        shutdown_timeout: Duration::from_millis(raw.shutdown_timeout_ms),
        keepalive,
    })
}

pub(super) fn server_tls(raw: &RawConfig) -> Result<ServerTlsConfig, ConfigError> {
    let mode = raw.server_sslmode.get("server_sslmode")?;
    let ca_file = raw.server_ssl_ca_file.as_ref().map(PathBuf::from);
    if mode == SslMode::VerifyFull && ca_file.is_none() {
        return Err(invalid(
            "server_ssl_ca_file",
            "verify-full needs the CA certificate file that signed the servers' certificates",
        ));
    }
    Ok(ServerTlsConfig { mode, ca_file })
}

pub(super) fn client_tls(raw: &RawConfig) -> Result<Option<TlsConfig>, ConfigError> {
    match (&raw.tls_cert_file, &raw.tls_key_file) {
        (Some(c), Some(k)) => Ok(Some(TlsConfig {
            cert_file: c.into(),
            key_file: k.into(),
        })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(invalid("tls_key_file", "set together with tls_cert_file")),
        (None, Some(_)) => Err(invalid("tls_cert_file", "set together with tls_key_file")),
    }
}
