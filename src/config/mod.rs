//! Configuration: parse `proxy.toml` strictly, apply environment overrides, validate into a checked value.

mod access;
pub mod cache;
pub mod keys;
#[cfg(test)]
mod keys_tests;
mod observe;
mod pool;
mod render;
mod replication;
mod root;
mod servers;
mod source;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

pub use access::{AuthMethod, Database, User};
pub use cache::{CacheSettings, Invalidation, Rule, RuleTarget};
pub use keys::Reload;
pub use observe::{NPlusOneSettings, StatsConfig, StatsSettings, TargetThresholds};
pub use pool::PoolConfig;
pub use replication::{Consistency, ReplicationConfig};
pub use root::{Keepalive, Limits, RawConfig, ServerTlsConfig, SslMode, TlsConfig};
pub use servers::HealthConfig;
pub use source::ConfigSource;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for `{key}`: {message}")]
    Invalid { key: String, message: String },
}

/// A section's checked value when the file does not have the table: its declared defaults,
/// validated. The declarations' defaults always validate (the config tests build each one).
fn checked_default<R, T>(
    section: &str,
    absent: fn() -> Result<R, String>,
    check: fn(&R) -> Result<T, ConfigError>,
) -> T {
    match absent()
        .map_err(|e| invalid(section, e))
        .and_then(|r| check(&r))
    {
        Ok(t) => t,
        Err(e) => panic!("the [{section}] defaults do not validate: {e}"),
    }
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

/// A server address as `host:port`; hosts are resolved when connecting so names work too.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServerAddr {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl ServerAddr {
    pub fn parse(key: &str, s: &str) -> Result<ServerAddr, ConfigError> {
        let (host, port) = s
            .trim()
            .rsplit_once(':')
            .ok_or_else(|| invalid(key, format!("`{s}` is not host:port")))?;
        let port: u16 = port
            .parse()
            .map_err(|_| invalid(key, format!("`{port}` is not a port number")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || port == 0 {
            return Err(invalid(key, format!("`{s}` is not host:port")));
        }
        Ok(ServerAddr {
            host: host.to_string(),
            port,
        })
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub listen_backlog: u32,
    /// Data threads as configured; 0 means one per core (see [`Config::worker_count`]).
    pub workers: usize,
    pub max_client_connections: usize,
    pub max_message_bytes: usize,
    /// Unsent response bytes to one client beyond which its socket is not read.
    pub max_client_buffer_bytes: usize,
    pub startup_timeout: Duration,
    pub limits: Limits,
    pub tls: Option<TlsConfig>,
    /// TLS toward the primary and replicas.
    pub server_tls: ServerTlsConfig,
    pub primary: ServerAddr,
    pub replicas: Vec<ServerAddr>,
    pub pool: PoolConfig,
    pub users: Vec<User>,
    pub databases: Vec<Database>,
    pub stats: StatsConfig,
    pub analysis_cache_entries: u64,
    /// `role = "auto"` on `[primary]`: its role follows pg_is_in_recovery().
    pub primary_role_auto: bool,
    /// The same for each of `replicas`, in order.
    pub replica_role_auto: Vec<bool>,
    pub health: HealthConfig,
    pub replication: ReplicationConfig,
    pub cache: CacheSettings,
    pub n_plus_one: NPlusOneSettings,
}

/// Environment variables that override addresses, so one file serves every environment.
#[derive(Clone, Debug, Default)]
pub struct EnvOverrides {
    pub listen: Option<String>,
    pub primary: Option<String>,
    pub replicas: Option<String>,
    pub stats_listen: Option<String>,
}

impl EnvOverrides {
    pub fn from_env() -> EnvOverrides {
        EnvOverrides {
            listen: std::env::var("PGSPLIT_LISTEN").ok(),
            primary: std::env::var("PGSPLIT_PRIMARY").ok(),
            replicas: std::env::var("PGSPLIT_REPLICAS").ok(),
            stats_listen: std::env::var("PGSPLIT_STATS_LISTEN").ok(),
        }
    }
}

impl Config {
    /// How many data threads serve clients: `workers`, or with 0 one per core the process may
    /// use but one, which the control thread and the kernel's network work need (on 2 shared
    /// cores one worker cost 15-25 % less CPU per transaction than two: BENCHMARKS.md).
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => {
                std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
            }
            n => n,
        }
    }

    /// Reads, overrides from the process environment, and validates. A missing file is an error.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, &EnvOverrides::from_env())
    }

    pub fn load_with(path: &Path, env: &EnvOverrides) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Config::validate(raw, env)
    }

    pub fn from_toml(text: &str, env: &EnvOverrides) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<string>"),
            message: e.to_string(),
        })?;
        Config::validate(raw, env)
    }

    pub fn validate(raw: RawConfig, env: &EnvOverrides) -> Result<Config, ConfigError> {
        let listen = parse_socket("listen", env.listen.as_deref().unwrap_or(&raw.listen))?;
        let stats_listen = parse_socket(
            "stats.listen",
            env.stats_listen.as_deref().unwrap_or(&raw.stats.listen),
        )?;
        let servers = servers::servers(&raw.primary, &raw.replicas, env)?;
        let health = servers::health(&raw.health)?;
        let replication = replication::replication(&raw.replication)?;
        let pool = pool::pool(&raw.pool)?;
        root::check_sizes(&raw)?;
        let users = access::users(&raw.users)?;
        let databases = access::databases(&raw.databases)?;
        let tls = root::client_tls(&raw)?;
        Ok(Config {
            listen,
            listen_backlog: raw.listen_backlog.max(1),
            workers: raw.workers,
            max_client_connections: raw.max_client_connections,
            max_message_bytes: raw.max_message_bytes,
            max_client_buffer_bytes: raw.max_client_buffer_bytes,
            startup_timeout: millis("startup_timeout_ms", raw.startup_timeout_ms)?,
            limits: root::limits(&raw)?,
            tls,
            server_tls: root::server_tls(&raw)?,
            primary: servers.primary,
            replicas: servers.replicas,
            pool,
            users,
            databases,
            stats: StatsConfig {
                listen: stats_listen,
                token: raw.stats.token.clone().filter(|t| !t.is_empty()),
                settings: observe::stats_settings(&raw.stats)?,
            },
            analysis_cache_entries: raw.analysis_cache_entries.max(16),
            primary_role_auto: servers.primary_role_auto,
            replica_role_auto: servers.replica_role_auto,
            health,
            replication,
            cache: cache::settings(&raw.cache)?,
            n_plus_one: observe::n_plus_one_settings(&raw.n_plus_one)?,
        })
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    pub fn database(&self, name: &str) -> Option<&Database> {
        self.databases.iter().find(|d| d.name == name)
    }
}

/// The virtual database name of the admin console.
pub const ADMIN_DATABASE: &str = "pgsplit";

fn parse_socket(key: &str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.trim()
        .parse()
        .map_err(|_| invalid(key, format!("`{s}` is not an IP:port address")))
}

fn positive(key: &str, v: usize) -> Result<(), ConfigError> {
    if v == 0 {
        return Err(invalid(key, "must be at least 1"));
    }
    Ok(())
}

fn millis(key: &str, v: u64) -> Result<Duration, ConfigError> {
    if v == 0 {
        return Err(invalid(key, "must be at least 1 ms"));
    }
    Ok(Duration::from_millis(v))
}
