//! The checked settings the result cache, the stats and the N+1 detector take; built here, so those folders need not be known to config.

use std::time::Duration;

/// How writes made outside this proxy are noticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// Only writes through this proxy invalidate; the TTL bounds staleness for others.
    Proxy,
    /// Also follow the primary's WAL through a logical replication slot.
    Wal,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleTarget {
    /// Unqualified, lowercased relation name.
    Table(String),
    Fingerprint(u64),
}

/// A per-table or per-fingerprint exception to the default TTL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub target: RuleTarget,
    /// None: never cache.
    pub ttl: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct CacheSettings {
    pub enabled: bool,
    pub max_bytes: u64,
    pub max_entry_bytes: usize,
    pub ttl: Duration,
    pub share_across_users: bool,
    pub coalesce_wait: Duration,
    /// A replica's answer for a table written through the proxy this recently is not stored:
    /// the replica may not have replayed that write yet.
    pub replica_fill_delay: Duration,
    pub invalidation: Invalidation,
    pub wal_poll: Duration,
    pub wal_user: Option<String>,
    pub rules: Vec<Rule>,
}

/// The defaults are the file's: an absent `[cache]` section, validated.
impl Default for CacheSettings {
    fn default() -> Self {
        super::cache::settings(&super::cache::RawCache::default())
            .expect("the [cache] defaults validate")
    }
}

/// Settings the stats need.
#[derive(Clone, Debug)]
pub struct StatsSettings {
    pub enabled: bool,
    pub max_fingerprints: usize,
    pub slow_query_ms: u64,
    pub log_parameters: bool,
    pub thresholds: TargetThresholds,
}

impl Default for StatsSettings {
    fn default() -> Self {
        super::observe::stats_settings(&super::raw::RawStats::default())
            .expect("the [stats] defaults validate")
    }
}

/// Thresholds of the seed's performance targets, configurable under `[stats.targets]`.
#[derive(Clone, Debug)]
pub struct TargetThresholds {
    pub p90_ms: f64,
    pub p95_ms: f64,
    /// Share of pool acquisitions served within `fast_acquire_ms`.
    pub pool_efficiency: f64,
    pub fast_acquire_ms: f64,
    pub acquire_p95_ms: f64,
    pub cache_hit_rate: f64,
    pub n_plus_one_bursts: u64,
}

impl Default for TargetThresholds {
    fn default() -> Self {
        StatsSettings::default().thresholds
    }
}

/// Checked `[n_plus_one]` settings.
#[derive(Clone, Debug)]
pub struct NPlusOneSettings {
    pub enabled: bool,
    /// Executions of one fingerprint within `window_ms` that make a burst.
    pub threshold: u32,
    pub window_ms: u32,
    /// Send the client a NoticeResponse (WARNING, 01000) when its statement completes a burst.
    pub notify_client: bool,
    /// Report runs of the same statement with the same parameters.
    pub repeated_identical: bool,
    /// Report back-to-back runs of one INSERT/UPDATE/DELETE with differing parameters.
    pub batchable_writes: bool,
    pub max_findings: usize,
    pub max_traces: usize,
}

impl Default for NPlusOneSettings {
    fn default() -> Self {
        super::observe::n_plus_one_settings(&super::raw::RawNPlusOne::default())
            .expect("the [n_plus_one] defaults validate")
    }
}
