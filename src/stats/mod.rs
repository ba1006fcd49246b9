//! Measurements: per-fingerprint query latency and counts, latency histograms, the seed's targets and a per-second series.

mod events;
mod histogram;
mod queries;
mod targets;
pub mod timeseries;

pub use crate::config::{StatsSettings, TargetThresholds};
pub use events::{EventCounts, Events};
pub use histogram::{LatencyHistogram, Percentiles};
pub use queries::{AnsweredBy, QuerySnapshot, QueryStats, Sample};
pub use targets::{Measured, Target, Targets};
pub use timeseries::TimeSeries;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// All of the proxy's measurements, shared by sessions and read by the endpoint.
pub struct Stats {
    pub settings: StatsSettings,
    pub queries: QueryStats,
    /// Counters the cache and the N+1 detector bump; read by the per-second series.
    pub events: Events,
    /// The last ten minutes, one point a second (filled by `timeseries::run`).
    pub timeseries: TimeSeries,
    started: Instant,
}

impl Stats {
    pub fn new(settings: StatsSettings) -> Stats {
        Stats {
            queries: QueryStats::new(settings.max_fingerprints),
            events: Events::default(),
            timeseries: TimeSeries::default(),
            settings,
            started: Instant::now(),
        }
    }

    pub fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}

/// Seconds since the Unix epoch, for first/last-seen fields.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
