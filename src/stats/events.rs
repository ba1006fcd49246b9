//! Counters other subsystems bump (cache lookups, N+1 bursts), read cumulatively by the per-second series.

use std::sync::atomic::{AtomicU64, Ordering};

/// Monotonic counters since start. They live in `Stats` so the result cache and the N+1
/// detector can feed the time series without the series knowing either of them: the cache
/// calls `cache_hit` / `cache_miss` per lookup, the detector `n_plus_one_burst` per burst found.
/// Until those exist the counters stay zero and the series reports "no data" for them.
#[derive(Default, Debug)]
pub struct Events {
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    n_plus_one_bursts: AtomicU64,
}

/// A reading of every counter at one instant.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct EventCounts {
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub n_plus_one_bursts: u64,
}

impl Events {
    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
    }

    pub fn n_plus_one_burst(&self) {
        self.n_plus_one_bursts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(&self) -> EventCounts {
        EventCounts {
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            cache_misses: self.cache_misses.load(Ordering::Relaxed),
            n_plus_one_bursts: self.n_plus_one_bursts.load(Ordering::Relaxed),
        }
    }
}

impl EventCounts {
    /// What happened between `earlier` and `self`; saturating, so a counter reset reads as zero.
    pub fn since(&self, earlier: &EventCounts) -> EventCounts {
        EventCounts {
            cache_hits: self.cache_hits.saturating_sub(earlier.cache_hits),
            cache_misses: self.cache_misses.saturating_sub(earlier.cache_misses),
            n_plus_one_bursts: self
                .n_plus_one_bursts
                .saturating_sub(earlier.n_plus_one_bursts),
        }
    }
}
