//! The configuration file as written: serde structs with defaults, unknown keys rejected.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default = "d_listen")]
    pub listen: String,
    #[serde(default = "d_backlog")]
    pub listen_backlog: u32,
    #[serde(default = "d_max_clients")]
    pub max_client_connections: usize,
    #[serde(default = "d_max_message")]
    pub max_message_bytes: usize,
    #[serde(default = "d_max_client_buffer")]
    pub max_client_buffer_bytes: usize,
    #[serde(default = "d_startup_timeout")]
    pub startup_timeout_ms: u64,
    #[serde(default)]
    pub max_client_connections_per_ip: usize,
    #[serde(default)]
    pub client_idle_timeout_ms: u64,
    #[serde(default = "d_idle_in_transaction")]
    pub idle_in_transaction_timeout_ms: u64,
    #[serde(default = "d_shutdown_timeout")]
    pub shutdown_timeout_ms: u64,
    #[serde(default = "d_keepalive_idle")]
    pub tcp_keepalive_idle_ms: u64,
    #[serde(default = "d_keepalive_interval")]
    pub tcp_keepalive_interval_ms: u64,
    #[serde(default = "d_keepalive_count")]
    pub tcp_keepalive_count: u32,
    #[serde(default = "d_server_sslmode")]
    pub server_sslmode: String,
    #[serde(default)]
    pub server_ssl_ca_file: Option<String>,
    #[serde(default = "d_analysis_cache")]
    pub analysis_cache_entries: u64,
    #[serde(default)]
    pub tls_cert_file: Option<String>,
    #[serde(default)]
    pub tls_key_file: Option<String>,
    #[serde(default)]
    pub primary: RawServer,
    #[serde(default = "d_replicas")]
    pub replicas: Vec<RawServer>,
    #[serde(default)]
    pub pool: RawPool,
    #[serde(default)]
    pub users: Vec<RawUser>,
    #[serde(default)]
    pub databases: Vec<RawDatabase>,
    #[serde(default)]
    pub stats: RawStats,
    #[serde(default)]
    pub cache: super::cache::RawCache,
    #[serde(default)]
    pub n_plus_one: RawNPlusOne,
    #[serde(default)]
    pub health: RawHealth,
    #[serde(default)]
    pub replication: RawReplication,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    #[serde(default = "d_check_timeout")]
    pub check_timeout_ms: u64,
    #[serde(default = "d_ban")]
    pub ban_ms: u64,
    #[serde(default = "d_max_ban")]
    pub max_ban_ms: u64,
    #[serde(default = "d_true")]
    pub retry_reads: bool,
}

impl Default for RawHealth {
    fn default() -> Self {
        RawHealth {
            check_timeout_ms: d_check_timeout(),
            ban_ms: d_ban(),
            max_ban_ms: d_max_ban(),
            retry_reads: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplication {
    #[serde(default = "d_lag_poll")]
    pub lag_poll_ms: u64,
    #[serde(default = "d_max_lag_bytes")]
    pub max_lag_bytes: u64,
    #[serde(default = "d_max_lag_ms")]
    pub max_lag_ms: u64,
    #[serde(default = "d_consistency")]
    pub consistency: String,
    #[serde(default = "d_tracked_tables")]
    pub max_tracked_tables: usize,
    #[serde(default = "d_max_replica_wait_ms")]
    pub max_replica_wait_ms: u64,
}

impl Default for RawReplication {
    fn default() -> Self {
        RawReplication {
            lag_poll_ms: d_lag_poll(),
            max_lag_bytes: d_max_lag_bytes(),
            max_lag_ms: d_max_lag_ms(),
            consistency: d_consistency(),
            max_tracked_tables: d_tracked_tables(),
            max_replica_wait_ms: d_max_replica_wait_ms(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    #[serde(default = "d_host")]
    pub host: String,
    pub port: u16,
    /// "auto": the health check decides from pg_is_in_recovery(); otherwise the section's role.
    #[serde(default)]
    pub role: Option<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            host: d_host(),
            port: 15432,
            role: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    #[serde(default = "d_primary_size")]
    pub primary_size: usize,
    #[serde(default = "d_replica_size")]
    pub replica_size: usize,
    #[serde(default = "d_connect_timeout")]
    pub connect_timeout_ms: u64,
    #[serde(default = "d_acquire_timeout")]
    pub acquire_timeout_ms: u64,
    #[serde(default = "d_idle_timeout")]
    pub server_idle_timeout_ms: u64,
    #[serde(default = "d_lifetime")]
    pub server_lifetime_ms: u64,
    #[serde(default = "d_max_prepared")]
    pub max_prepared_per_server: usize,
    /// 0: off.
    #[serde(default)]
    pub query_timeout_ms: u64,
    #[serde(default)]
    pub min_idle: usize,
}

impl Default for RawPool {
    fn default() -> Self {
        RawPool {
            primary_size: d_primary_size(),
            replica_size: d_replica_size(),
            connect_timeout_ms: d_connect_timeout(),
            acquire_timeout_ms: d_acquire_timeout(),
            server_idle_timeout_ms: d_idle_timeout(),
            server_lifetime_ms: d_lifetime(),
            max_prepared_per_server: d_max_prepared(),
            query_timeout_ms: 0,
            min_idle: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: String,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub scram_verifier: Option<String>,
    #[serde(default)]
    pub server_password: Option<String>,
    #[serde(default = "d_auth")]
    pub auth: String,
    #[serde(default)]
    pub admin: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    pub name: String,
    #[serde(default)]
    pub server_database: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStats {
    #[serde(default = "d_stats_listen")]
    pub listen: String,
    #[serde(default = "d_true")]
    pub enabled: bool,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default = "d_max_fingerprints")]
    pub max_fingerprints: usize,
    #[serde(default = "d_slow_query")]
    pub slow_query_ms: u64,
    #[serde(default)]
    pub log_parameters: bool,
    #[serde(default)]
    pub targets: RawTargets,
}

impl Default for RawStats {
    fn default() -> Self {
        RawStats {
            listen: d_stats_listen(),
            enabled: true,
            token: None,
            max_fingerprints: d_max_fingerprints(),
            slow_query_ms: d_slow_query(),
            log_parameters: false,
            targets: RawTargets::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTargets {
    #[serde(default = "d_p90")]
    pub p90_ms: f64,
    #[serde(default = "d_p95")]
    pub p95_ms: f64,
    #[serde(default = "d_pool_efficiency")]
    pub pool_efficiency: f64,
    #[serde(default = "d_fast_acquire")]
    pub fast_acquire_ms: f64,
    #[serde(default = "d_fast_acquire")]
    pub acquire_p95_ms: f64,
    #[serde(default = "d_cache_hit")]
    pub cache_hit_rate: f64,
    #[serde(default)]
    pub n_plus_one_bursts: u64,
}

impl Default for RawTargets {
    fn default() -> Self {
        RawTargets {
            p90_ms: d_p90(),
            p95_ms: d_p95(),
            pool_efficiency: d_pool_efficiency(),
            fast_acquire_ms: d_fast_acquire(),
            acquire_p95_ms: d_fast_acquire(),
            cache_hit_rate: d_cache_hit(),
            n_plus_one_bursts: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNPlusOne {
    #[serde(default = "d_true")]
    pub enabled: bool,
    #[serde(default = "d_n1_threshold")]
    pub threshold: u32,
    #[serde(default = "d_n1_window")]
    pub window_ms: u32,
    #[serde(default)]
    pub notify_client: bool,
    #[serde(default = "d_true")]
    pub repeated_identical: bool,
    #[serde(default)]
    pub batchable_writes: bool,
    #[serde(default = "d_n1_max")]
    pub max_findings: usize,
    #[serde(default = "d_n1_max")]
    pub max_traces: usize,
}

impl Default for RawNPlusOne {
    fn default() -> Self {
        RawNPlusOne {
            enabled: true,
            threshold: d_n1_threshold(),
            window_ms: d_n1_window(),
            notify_client: false,
            repeated_identical: true,
            batchable_writes: false,
            max_findings: d_n1_max(),
            max_traces: d_n1_max(),
        }
    }
}

fn d_n1_threshold() -> u32 {
    10
}
fn d_n1_window() -> u32 {
    1000
}
fn d_n1_max() -> usize {
    1000
}

fn d_true() -> bool {
    true
}
fn d_max_fingerprints() -> usize {
    5_000
}
fn d_slow_query() -> u64 {
    50
}
fn d_p90() -> f64 {
    50.0
}
fn d_p95() -> f64 {
    100.0
}
fn d_pool_efficiency() -> f64 {
    0.9
}
fn d_fast_acquire() -> f64 {
    5.0
}
fn d_cache_hit() -> f64 {
    0.7
}

fn d_listen() -> String {
    "127.0.0.1:6432".into()
}
fn d_backlog() -> u32 {
    4096
}
fn d_max_clients() -> usize {
    10_000
}
fn d_max_client_buffer() -> usize {
    1 << 20
}
fn d_max_message() -> usize {
    64 << 20
}
fn d_startup_timeout() -> u64 {
    10_000
}
fn d_idle_in_transaction() -> u64 {
    300_000
}
fn d_shutdown_timeout() -> u64 {
    30_000
}
fn d_keepalive_idle() -> u64 {
    60_000
}
fn d_keepalive_interval() -> u64 {
    10_000
}
fn d_keepalive_count() -> u32 {
    6
}
fn d_server_sslmode() -> String {
    "disable".into()
}
fn d_analysis_cache() -> u64 {
    10_000
}
fn d_host() -> String {
    "127.0.0.1".into()
}
fn d_replicas() -> Vec<RawServer> {
    vec![RawServer {
        host: d_host(),
        port: 15433,
        role: None,
    }]
}
fn d_primary_size() -> usize {
    50
}
fn d_replica_size() -> usize {
    100
}
fn d_connect_timeout() -> u64 {
    5_000
}
fn d_acquire_timeout() -> u64 {
    5_000
}
fn d_idle_timeout() -> u64 {
    600_000
}
fn d_lifetime() -> u64 {
    3_600_000
}
fn d_max_prepared() -> usize {
    500
}
fn d_auth() -> String {
    "scram-sha-256".into()
}
fn d_stats_listen() -> String {
    "127.0.0.1:9930".into()
}
fn d_check_timeout() -> u64 {
    2_000
}
fn d_ban() -> u64 {
    1_000
}
fn d_max_ban() -> u64 {
    30_000
}
fn d_lag_poll() -> u64 {
    50
}
fn d_max_lag_bytes() -> u64 {
    16 << 20
}
fn d_max_replica_wait_ms() -> u64 {
    5
}

fn d_max_lag_ms() -> u64 {
    5_000
}
fn d_consistency() -> String {
    "table_lsn".into()
}
fn d_tracked_tables() -> usize {
    10_000
}
