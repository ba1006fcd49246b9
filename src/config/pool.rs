//! The `[pool]` section: server connection pools per database/user.

use super::keys::{section, LIVE, RESTART};
use super::{invalid, millis, positive, ConfigError};
use std::time::Duration;

section! {
    pool: RawPool ["pool"];
    keys {
        primary_size: usize = 50, LIVE, |c| c.pool.primary_size;
        replica_size: usize = 100, LIVE, |c| c.pool.replica_size;
        connect_timeout_ms: u64 = 5_000, LIVE, |c| c.pool.connect_timeout;
        acquire_timeout_ms: u64 = 5_000, LIVE, |c| c.pool.acquire_timeout;
        server_idle_timeout_ms: u64 = 600_000, LIVE, |c| c.pool.server_idle_timeout;
        min_idle: usize = 0, LIVE, |c| c.pool.min_idle;
        server_lifetime_ms: u64 = 3_600_000, LIVE, |c| c.pool.server_lifetime;
        max_prepared_per_server: usize = 500, RESTART, |c| c.pool.max_prepared_per_server;
        /// 0: off.
        query_timeout_ms: u64 = 0, LIVE, |c| c.pool.query_timeout.map_or(0, |d| d.as_millis());
    }
}

pub use pool::SECTION;

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

pub(super) fn pool(p: &RawPool) -> Result<PoolConfig, ConfigError> {
    positive("pool.primary_size", p.primary_size)?;
    positive("pool.replica_size", p.replica_size)?;
    positive("pool.max_prepared_per_server", p.max_prepared_per_server)?;
    if p.min_idle > p.primary_size.max(p.replica_size) {
        return Err(invalid(
            "pool.min_idle",
            "must not exceed pool.primary_size or pool.replica_size",
        ));
    }
    Ok(PoolConfig {
        primary_size: p.primary_size,
        replica_size: p.replica_size,
        connect_timeout: millis("pool.connect_timeout_ms", p.connect_timeout_ms)?,
        acquire_timeout: millis("pool.acquire_timeout_ms", p.acquire_timeout_ms)?,
        server_idle_timeout: millis("pool.server_idle_timeout_ms", p.server_idle_timeout_ms)?,
        server_lifetime: millis("pool.server_lifetime_ms", p.server_lifetime_ms)?,
        max_prepared_per_server: p.max_prepared_per_server,
        query_timeout: (p.query_timeout_ms > 0).then(|| Duration::from_millis(p.query_timeout_ms)),
        min_idle: p.min_idle,
    })
}
