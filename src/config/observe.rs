//! The observability sections, `[stats]`, `[stats.targets]` and `[n_plus_one]`: declared, validated into the settings their subsystems take.

use super::keys::{section, LIVE, RESTART};
use super::{invalid, positive, ConfigError};
use std::net::SocketAddr;

section! {
    stats: RawStats ["stats"], reported as "stats";
    keys {
        listen: String = "127.0.0.1:9930".into(), RESTART, |c| c.stats.listen;
        enabled: bool = true, RESTART, |c| c.stats.settings.enabled;
        token: Option<String> = None, RESTART.secret(), |c| c.stats.token;
        max_fingerprints: usize = 5_000, RESTART, |c| c.stats.settings.max_fingerprints;
        slow_query_ms: u64 = 50, RESTART, |c| c.stats.settings.slow_query_ms;
        log_parameters: bool = false, RESTART, |c| c.stats.settings.log_parameters;
    }
    tables {
        targets: RawTargets = RawTargets::absent()?;
    }
}

section! {
    targets: RawTargets ["stats.targets"], reported as "stats";
    keys {
        p90_ms: f64 = 50.0, RESTART, |c| c.stats.settings.thresholds.p90_ms;
        p95_ms: f64 = 100.0, RESTART, |c| c.stats.settings.thresholds.p95_ms;
        pool_efficiency: f64 = 0.9, RESTART, |c| c.stats.settings.thresholds.pool_efficiency;
        fast_acquire_ms: f64 = 5.0, RESTART, |c| c.stats.settings.thresholds.fast_acquire_ms;
        acquire_p95_ms: f64 = 5.0, RESTART, |c| c.stats.settings.thresholds.acquire_p95_ms;
        cache_hit_rate: f64 = 0.7, RESTART, |c| c.stats.settings.thresholds.cache_hit_rate;
        n_plus_one_bursts: u64 = 0, RESTART, |c| c.stats.settings.thresholds.n_plus_one_bursts;
    }
}

section! {
    n_plus_one: RawNPlusOne ["n_plus_one"];
    keys {
        enabled: bool = true, LIVE, |c| c.n_plus_one.enabled;
        threshold: u32 = 10, LIVE, |c| c.n_plus_one.threshold;
        window_ms: u32 = 1000, LIVE, |c| c.n_plus_one.window_ms;
        notify_client: bool = false, LIVE, |c| c.n_plus_one.notify_client;
        repeated_identical: bool = true, LIVE, |c| c.n_plus_one.repeated_identical;
        batchable_writes: bool = false, LIVE, |c| c.n_plus_one.batchable_writes;
        max_findings: usize = 1000, RESTART, |c| c.n_plus_one.max_findings;
        max_traces: usize = 1000, RESTART, |c| c.n_plus_one.max_traces;
    }
}

pub use n_plus_one::SECTION as N_PLUS_ONE;
pub use stats::SECTION as STATS;
pub use targets::SECTION as TARGETS;

#[derive(Clone, Debug)]
pub struct StatsConfig {
    pub listen: SocketAddr,
    /// Bearer token the endpoint requires, if set.
    pub token: Option<String>,
    pub settings: StatsSettings,
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

/// The defaults are the file's: an absent `[stats]` table, validated.
impl Default for StatsSettings {
    fn default() -> Self {
        super::checked_default("stats", RawStats::absent, stats_settings)
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

/// The defaults are the file's: an absent `[n_plus_one]` table, validated.
impl Default for NPlusOneSettings {
    fn default() -> Self {
        super::checked_default("n_plus_one", RawNPlusOne::absent, n_plus_one_settings)
    }
}

pub(super) fn stats_settings(r: &RawStats) -> Result<StatsSettings, ConfigError> {
    positive("stats.max_fingerprints", r.max_fingerprints)?;
    let t = &r.targets;
    for (key, v) in [
        ("stats.targets.p90_ms", t.p90_ms),
        ("stats.targets.p95_ms", t.p95_ms),
        ("stats.targets.fast_acquire_ms", t.fast_acquire_ms),
        ("stats.targets.acquire_p95_ms", t.acquire_p95_ms),
    ] {
        if !(v > 0.0 && v.is_finite()) {
            return Err(invalid(key, "must be a positive number of milliseconds"));
        }
    }
    for (key, v) in [
        ("stats.targets.pool_efficiency", t.pool_efficiency),
        ("stats.targets.cache_hit_rate", t.cache_hit_rate),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(invalid(key, "must be a share between 0 and 1"));
        }
    }
    Ok(StatsSettings {
        enabled: r.enabled,
        max_fingerprints: r.max_fingerprints,
        slow_query_ms: r.slow_query_ms,
        log_parameters: r.log_parameters,
        thresholds: TargetThresholds {
            p90_ms: t.p90_ms,
            p95_ms: t.p95_ms,
            pool_efficiency: t.pool_efficiency,
            fast_acquire_ms: t.fast_acquire_ms,
            acquire_p95_ms: t.acquire_p95_ms,
            cache_hit_rate: t.cache_hit_rate,
            n_plus_one_bursts: t.n_plus_one_bursts,
        },
    })
}

/// Largest `n_plus_one.threshold`: each session keeps up to 8 × threshold × 8 bytes of times.
pub const MAX_N_PLUS_ONE_THRESHOLD: u32 = 1000;
/// Largest `n_plus_one.window_ms`, which keeps every time span the detector compares in 32 bits.
pub const MAX_N_PLUS_ONE_WINDOW_MS: u32 = 60_000;

pub(super) fn n_plus_one_settings(r: &RawNPlusOne) -> Result<NPlusOneSettings, ConfigError> {
    if !(2..=MAX_N_PLUS_ONE_THRESHOLD).contains(&r.threshold) {
        return Err(invalid(
            "n_plus_one.threshold",
            format!("must be between 2 and {MAX_N_PLUS_ONE_THRESHOLD}"),
        ));
    }
    if !(1..=MAX_N_PLUS_ONE_WINDOW_MS).contains(&r.window_ms) {
        return Err(invalid(
            "n_plus_one.window_ms",
            format!("must be between 1 and {MAX_N_PLUS_ONE_WINDOW_MS} ms"),
        ));
    }
    positive("n_plus_one.max_findings", r.max_findings)?;
    positive("n_plus_one.max_traces", r.max_traces)?;
    Ok(NPlusOneSettings {
        enabled: r.enabled,
        threshold: r.threshold,
        window_ms: r.window_ms,
        notify_client: r.notify_client,
        repeated_identical: r.repeated_identical,
        batchable_writes: r.batchable_writes,
        max_findings: r.max_findings,
        max_traces: r.max_traces,
    })
}
