//! Server-connection pool families, one series per pool and role.

use super::{counters, gauges, Result};
use crate::admin::snapshot::{PoolSnapshot, StatsSnapshot};
use prometheus::Registry;

const POOL: [&str; 2] = ["pool", "role"];

fn pool(p: &PoolSnapshot) -> [&str; 2] {
    [p.name.as_str(), p.role]
}

pub(super) fn register(r: &Registry, s: &StatsSnapshot) -> Result<()> {
    let pools = &s.pools;
    gauges(
        r,
        "pgsplit_pool_connections",
        "Server connections open, by state.",
        ["pool", "role", "state"],
        pools.iter().flat_map(|p| {
            [("idle", p.idle), ("busy", p.busy)]
                .into_iter()
                .map(move |(state, n)| ([p.name.as_str(), p.role, state], n as f64))
        }),
    )?;
    gauges(
        r,
        "pgsplit_pool_max_connections",
        "Configured size of the pool.",
        POOL,
        pools.iter().map(|p| (pool(p), p.max_size as f64)),
    )?;
    gauges(
        r,
        "pgsplit_pool_waiting_clients",
        "Clients waiting for a server connection now.",
        POOL,
        pools.iter().map(|p| (pool(p), p.waiting as f64)),
    )?;
    counters(
        r,
        "pgsplit_pool_acquisitions_total",
        "Server connections handed to clients.",
        POOL,
        pools.iter().map(|p| (pool(p), p.acquisitions as f64)),
    )?;
    counters(
        r,
        "pgsplit_pool_timeouts_total",
        "Clients that gave up waiting for a connection.",
        POOL,
        pools.iter().map(|p| (pool(p), p.timeouts as f64)),
    )?;
    counters(
        r,
        "pgsplit_pool_connections_opened_total",
        "Server connections opened.",
        POOL,
        pools.iter().map(|p| (pool(p), p.connections_opened as f64)),
    )?;
    counters(
        r,
        "pgsplit_pool_connections_broken_total",
        "Server connections discarded as broken.",
        POOL,
        pools.iter().map(|p| (pool(p), p.connections_broken as f64)),
    )?;
    counters(
        r,
        "pgsplit_pool_connections_handed_over_total",
        "Idle connections of one data worker closed so that another could open one in a full pool.",
        POOL,
        pools
            .iter()
            .map(|p| (pool(p), p.connections_handed_over as f64)),
    )?;
    gauges(
        r,
        "pgsplit_pool_efficiency_ratio",
        "Share of acquisitions served within the fast-acquire target.",
        POOL,
        pools
            .iter()
            .filter_map(|p| p.efficiency.map(|v| (pool(p), v))),
    )?;
    gauges(
        r,
        "pgsplit_pool_acquire_seconds",
        "Time clients waited for a server connection, percentiles.",
        ["pool", "role", "percentile"],
        pools.iter().flat_map(|p| {
            [
                ("50", p.acquire_p50_ms),
                ("95", p.acquire_p95_ms),
                ("99", p.acquire_p99_ms),
            ]
            .into_iter()
            .map(move |(pct, v)| ([p.name.as_str(), p.role, pct], v / 1000.0))
        }),
    )
}
