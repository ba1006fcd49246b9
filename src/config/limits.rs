//! Per-client limits, shutdown drain, TCP keepalive and TLS toward servers: checked values and their rendering.

use super::{invalid, raw::RawConfig, ConfigError};
use std::path::PathBuf;
use std::time::Duration;

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

/// libpq's sslmode values that make sense for a proxy's server connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS if the server offers it, plain TCP if it answers SSLRequest with 'N'; no certificate check.
    Prefer,
    /// TLS or fail; any certificate accepted (encryption against eavesdroppers, no identity).
    Require,
    /// TLS or fail; the chain must lead to `server_ssl_ca_file` and name the host.
    VerifyFull,
}

impl SslMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTlsConfig {
    pub mode: SslMode,
    pub ca_file: Option<PathBuf>,
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
    let mode = match raw.server_sslmode.as_str() {
        "disable" => SslMode::Disable,
        "prefer" => SslMode::Prefer,
        "require" => SslMode::Require,
        "verify-full" => SslMode::VerifyFull,
        other => {
            return Err(invalid(
                "server_sslmode",
                format!("`{other}` is not one of disable, prefer, require, verify-full"),
            ))
        }
    };
    let ca_file = raw.server_ssl_ca_file.as_ref().map(PathBuf::from);
    if mode == SslMode::VerifyFull && ca_file.is_none() {
        return Err(invalid(
            "server_ssl_ca_file",
            "verify-full needs the CA certificate file that signed the servers' certificates",
        ));
    }
    Ok(ServerTlsConfig { mode, ca_file })
}

pub(super) fn render(s: &mut String, l: &Limits, t: &ServerTlsConfig) {
    use std::fmt::Write;
    let ms = |d: Option<Duration>| d.map_or(0, |d| d.as_millis());
    let _ = writeln!(
        s,
        "max_client_connections_per_ip = {}",
        l.max_clients_per_ip.unwrap_or(0)
    );
    let _ = writeln!(s, "client_idle_timeout_ms = {}", ms(l.client_idle_timeout));
    let _ = writeln!(
        s,
        "idle_in_transaction_timeout_ms = {}",
        ms(l.idle_in_transaction_timeout)
    );
    let _ = writeln!(
        s,
        "shutdown_timeout_ms = {}",
        l.shutdown_timeout.as_millis()
    );
    match &l.keepalive {
        Some(k) => {
            let _ = writeln!(
                s,
                "tcp_keepalive_idle_ms = {}\ntcp_keepalive_interval_ms = {}\ntcp_keepalive_count = {}",
                k.idle.as_millis(),
                k.interval.as_millis(),
                k.count
            );
        }
        None => {
            let _ = writeln!(s, "tcp_keepalive_idle_ms = 0");
        }
    }
    let _ = writeln!(s, "server_sslmode = \"{}\"", t.mode.as_str());
    if let Some(ca) = &t.ca_file {
        let _ = writeln!(s, "server_ssl_ca_file = {ca:?}");
    }
}
