//! Configuration: parse `proxy.toml` strictly, apply environment overrides, validate into a checked value.

pub mod cache;
mod limits;
mod observe;
mod raw;
mod render;
mod settings;
mod source;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

pub use limits::{Keepalive, Limits, ServerTlsConfig, SslMode};
pub use raw::RawConfig;
pub use settings::{
    CacheSettings, Invalidation, NPlusOneSettings, Rule, RuleTarget, StatsSettings,
    TargetThresholds,
};
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    ScramSha256,
    Md5,
}

#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    /// Plaintext password: checks clients (SCRAM verifier derived once at load) and logs in to servers.
    pub password: Option<String>,
    /// A PostgreSQL-style SCRAM verifier for checking clients without storing the password.
    pub scram_verifier: Option<String>,
    /// Password for logging in to servers when only a verifier is configured.
    pub server_password: Option<String>,
    pub auth: AuthMethod,
    /// May connect to the `pgsplit` admin database.
    pub admin: bool,
}

impl User {
    /// The password used to log in to the servers, if any (trust needs none).
    pub fn server_password(&self) -> Option<&str> {
        self.server_password.as_deref().or(self.password.as_deref())
    }
}

#[derive(Clone, Debug)]
pub struct Database {
    pub name: String,
    /// The database name on the servers.
    pub server_database: String,
}

#[derive(Clone, Debug)]
pub struct PoolConfig {
    pub primary_size: usize,
    pub replica_size: usize,
    pub connect_timeout: Duration,
    pub acquire_timeout: Duration,
    pub server_idle_timeout: Duration,
    pub server_lifetime: Duration,
    pub max_prepared_per_server: usize,
    /// A request unanswered this long is cancelled (then its server closed); `None`: off.
    pub query_timeout: Option<Duration>,
    /// Idle connections per pool that outlive `server_idle_timeout`.
    pub min_idle: usize,
}

/// How reads are kept from missing writes made through the proxy (`replication.consistency`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// A read goes to a replica only if it has replayed the last write to every table it reads.
    TableLsn,
    /// A session's reads go to a replica only if it has replayed that session's last write.
    Session,
    /// A read goes to a replica only if it has replayed the primary's WAL position read after
    /// the read arrived: it sees every write acknowledged before it, through any instance.
    Global,
    /// No tracking: reads may miss recent writes (replication lag).
    None,
}

impl Consistency {
    pub fn as_str(&self) -> &'static str {
        match self {
            Consistency::TableLsn => "table_lsn",
            Consistency::Session => "session",
            Consistency::Global => "global",
            Consistency::None => "none",
        }
    }

    /// A replica answers a read only once it has replayed what the read needs.
    pub fn routes_by_lsn(&self) -> bool {
        matches!(self, Consistency::TableLsn | Consistency::Global)
    }
}

#[derive(Clone, Debug)]
pub struct HealthConfig {
    /// A health check (connect or poll) slower than this counts as a failure.
    pub check_timeout: Duration,
    /// First ban of a failing server; doubled for each further ban while it flaps.
    pub ban: Duration,
    pub max_ban: Duration,
    /// Re-send a read whose server died before any of its answer reached the client.
    pub retry_reads: bool,
}

#[derive(Clone, Debug)]
pub struct ReplicationConfig {
    /// Interval of each server's health and replay-position poll.
    pub lag_poll: Duration,
    /// A replica further behind gets no reads; 0 means no limit.
    pub max_lag_bytes: u64,
    pub max_lag_ms: u64,
    pub consistency: Consistency,
    /// Tables whose last write LSN is remembered; older entries fold into one floor LSN.
    pub max_tracked_tables: usize,
    /// How long a read may wait for a replica to replay what it needs, asking the replica
    /// itself, before it goes to the primary; zero: no asking, the polled position decides.
    pub max_replica_wait: Duration,
}

#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Clone, Debug)]
pub struct StatsConfig {
    pub listen: SocketAddr,
    /// Bearer token the endpoint requires, if set.
    pub token: Option<String>,
    pub settings: StatsSettings,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub listen_backlog: u32,
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
        let primary = match &env.primary {
            Some(s) => ServerAddr::parse("PGSPLIT_PRIMARY", s)?,
            None => server_addr("primary", &raw.primary.host, raw.primary.port)?,
        };
        let replicas = match &env.replicas {
            Some(list) => list
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| ServerAddr::parse("PGSPLIT_REPLICAS", s))
                .collect::<Result<Vec<_>, _>>()?,
            None => raw
                .replicas
                .iter()
                .enumerate()
                .map(|(i, r)| server_addr(&format!("replicas[{i}]"), &r.host, r.port))
                .collect::<Result<Vec<_>, _>>()?,
        };
        let primary_role_auto = role_auto("primary.role", &raw.primary.role, "primary")?;
        // An address override replaces the address only: each overridden replica keeps the
        // other keys (role) of the file's entry at its position, and addresses beyond the
        // file's list those of its last entry, so one `[[replicas]] role = "auto"` template
        // covers every address PGSPLIT_REPLICAS lists.
        let file_roles = raw
            .replicas
            .iter()
            .enumerate()
            .map(|(i, r)| role_auto(&format!("replicas[{i}].role"), &r.role, "replica"))
            .collect::<Result<Vec<_>, _>>()?;
        let replica_role_auto = (0..replicas.len())
            .map(|i| {
                file_roles
                    .get(i)
                    .or(file_roles.last())
                    .copied()
                    .unwrap_or(false)
            })
            .collect();
        let health = HealthConfig {
            check_timeout: millis("health.check_timeout_ms", raw.health.check_timeout_ms)?,
            ban: millis("health.ban_ms", raw.health.ban_ms)?,
            max_ban: millis("health.max_ban_ms", raw.health.max_ban_ms)?,
            retry_reads: raw.health.retry_reads,
        };
        if health.max_ban < health.ban {
            return Err(invalid(
                "health.max_ban_ms",
                "must not be below health.ban_ms",
            ));
        }
        let r = &raw.replication;
        let replication = ReplicationConfig {
            lag_poll: millis("replication.lag_poll_ms", r.lag_poll_ms)?,
            max_lag_bytes: r.max_lag_bytes,
            max_lag_ms: r.max_lag_ms,
            consistency: match r.consistency.as_str() {
                "table_lsn" => Consistency::TableLsn,
                "session" => Consistency::Session,
                "global" => Consistency::Global,
                "none" => Consistency::None,
                other => {
                    return Err(invalid(
                        "replication.consistency",
                        format!("`{other}` is not one of table_lsn, global, session, none"),
                    ))
                }
            },
            max_tracked_tables: r.max_tracked_tables,
            max_replica_wait: Duration::from_millis(r.max_replica_wait_ms),
        };
        positive("replication.max_tracked_tables", r.max_tracked_tables)?;
        let p = &raw.pool;
        positive("pool.primary_size", p.primary_size)?;
        positive("pool.replica_size", p.replica_size)?;
        positive("pool.max_prepared_per_server", p.max_prepared_per_server)?;
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
        if p.min_idle > p.primary_size.max(p.replica_size) {
            return Err(invalid(
                "pool.min_idle",
                "must not exceed pool.primary_size or pool.replica_size",
            ));
        }
        let pool = PoolConfig {
            primary_size: p.primary_size,
            replica_size: p.replica_size,
            connect_timeout: millis("pool.connect_timeout_ms", p.connect_timeout_ms)?,
            acquire_timeout: millis("pool.acquire_timeout_ms", p.acquire_timeout_ms)?,
            server_idle_timeout: millis("pool.server_idle_timeout_ms", p.server_idle_timeout_ms)?,
            server_lifetime: millis("pool.server_lifetime_ms", p.server_lifetime_ms)?,
            max_prepared_per_server: p.max_prepared_per_server,
            query_timeout: (p.query_timeout_ms > 0)
                .then(|| Duration::from_millis(p.query_timeout_ms)),
            min_idle: p.min_idle,
        };
        if raw.users.is_empty() {
            return Err(invalid("users", "at least one [[users]] entry is required"));
        }
        let mut seen = HashMap::new();
        let mut users = Vec::new();
        for (i, u) in raw.users.iter().enumerate() {
            let key = format!("users[{i}]");
            if u.name.is_empty() {
                return Err(invalid(format!("{key}.name"), "must not be empty"));
            }
            if seen.insert(u.name.clone(), i).is_some() {
                return Err(invalid(
                    format!("{key}.name"),
                    format!("user `{}` is listed twice", u.name),
                ));
            }
            if u.password.is_none() && u.scram_verifier.is_none() {
                return Err(invalid(
                    format!("{key}.password"),
                    "set `password` or `scram_verifier`",
                ));
            }
            if let Some(v) = &u.scram_verifier {
                if !v.starts_with("SCRAM-SHA-256$") {
                    return Err(invalid(
                        format!("{key}.scram_verifier"),
                        "must look like SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>",
                    ));
                }
            }
            let auth = match u.auth.as_str() {
                "scram-sha-256" => AuthMethod::ScramSha256,
                "md5" => AuthMethod::Md5,
                other => {
                    return Err(invalid(
                        format!("{key}.auth"),
                        format!("`{other}` is not one of scram-sha-256, md5"),
                    ))
                }
            };
            if auth == AuthMethod::Md5 && u.password.is_none() {
                return Err(invalid(
                    format!("{key}.auth"),
                    "md5 needs the plaintext `password`",
                ));
            }
            users.push(User {
                name: u.name.clone(),
                password: u.password.clone(),
                scram_verifier: u.scram_verifier.clone(),
                server_password: u.server_password.clone(),
                auth,
                admin: u.admin,
            });
        }
        if raw.databases.is_empty() {
            return Err(invalid(
                "databases",
                "at least one [[databases]] entry is required",
            ));
        }
        let mut databases = Vec::new();
        for (i, d) in raw.databases.iter().enumerate() {
            if d.name.is_empty() {
                return Err(invalid(format!("databases[{i}].name"), "must not be empty"));
            }
            if d.name == ADMIN_DATABASE {
                return Err(invalid(
                    format!("databases[{i}].name"),
                    "`pgsplit` is reserved for the admin console",
                ));
            }
            databases.push(Database {
                name: d.name.clone(),
                server_database: d.server_database.clone().unwrap_or_else(|| d.name.clone()),
            });
        }
        let tls = match (&raw.tls_cert_file, &raw.tls_key_file) {
            (Some(c), Some(k)) => Some(TlsConfig {
                cert_file: c.into(),
                key_file: k.into(),
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(invalid("tls_key_file", "set together with tls_cert_file"))
            }
            (None, Some(_)) => {
                return Err(invalid("tls_cert_file", "set together with tls_key_file"))
            }
        };
        Ok(Config {
            listen,
            listen_backlog: raw.listen_backlog.max(1),
            max_client_connections: raw.max_client_connections,
            max_message_bytes: raw.max_message_bytes,
            max_client_buffer_bytes: raw.max_client_buffer_bytes,
            startup_timeout: millis("startup_timeout_ms", raw.startup_timeout_ms)?,
            limits: limits::limits(&raw)?,
            tls,
            server_tls: limits::server_tls(&raw)?,
            primary,
            replicas,
            pool,
            users,
            databases,
            stats: StatsConfig {
                listen: stats_listen,
                token: raw.stats.token.clone().filter(|t| !t.is_empty()),
                settings: observe::stats_settings(&raw.stats)?,
            },
            analysis_cache_entries: raw.analysis_cache_entries.max(16),
            primary_role_auto,
            replica_role_auto,
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

fn server_addr(key: &str, host: &str, port: u16) -> Result<ServerAddr, ConfigError> {
    if host.is_empty() {
        return Err(invalid(format!("{key}.host"), "must not be empty"));
    }
    if port == 0 {
        return Err(invalid(format!("{key}.port"), "must not be 0"));
    }
    Ok(ServerAddr {
        host: host.to_string(),
        port,
    })
}

/// `role` of a server entry: absent or the section's own role is fixed, "auto" follows the server.
fn role_auto(key: &str, role: &Option<String>, section: &str) -> Result<bool, ConfigError> {
    match role.as_deref() {
        None => Ok(false),
        Some("auto") => Ok(true),
        Some(r) if r == section => Ok(false),
        Some(other) => Err(invalid(
            key,
            format!("`{other}` is not one of \"{section}\", \"auto\""),
        )),
    }
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
