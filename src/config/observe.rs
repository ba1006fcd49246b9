//! Validation of the observability sections, `[stats]` and `[n_plus_one]`, into the settings their subsystems take.

use super::{
    invalid, positive, raw, ConfigError, NPlusOneSettings, StatsSettings, TargetThresholds,
};

pub(super) fn stats_settings(r: &raw::RawStats) -> Result<StatsSettings, ConfigError> {
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

pub(super) fn n_plus_one_settings(r: &raw::RawNPlusOne) -> Result<NPlusOneSettings, ConfigError> {
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
