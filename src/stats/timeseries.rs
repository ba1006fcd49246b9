//! Per-second aggregates (QPS, errors, p50/p90/p99, cache hits, N+1 bursts) for the last ten minutes, in a ring buffer.
//!
//! Each second a background task reads the cumulative counters and subtracts the previous
//! reading, so the per-query path records nothing extra: the per-fingerprint histograms it
//! already fills are merged here, once a second, off the data path. Subtracting two HDR
//! histograms gives the exact histogram of that second, so its percentiles are not estimates
//! of estimates.

use super::events::EventCounts;
use super::histogram::LatencyHistogram;
use super::Stats;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Seconds of history kept: ten minutes.
pub const CAPACITY: usize = 600;

/// One second of traffic. Fields without data (no statement, no cache lookup) are null, never 0.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Point {
    /// Unix seconds at the end of the interval.
    pub t: u64,
    /// Statements finished in the interval.
    pub queries: u64,
    /// `queries` divided by the interval's true length (about one second).
    pub qps: f64,
    pub errors: u64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// hits / (hits + misses); null without lookups in the interval.
    pub cache_hit_rate: Option<f64>,
    pub n_plus_one_bursts: u64,
}

/// The cumulative counters at one instant.
#[derive(Clone)]
pub struct Reading {
    pub latency: LatencyHistogram,
    pub errors: u64,
    /// Bumped by every stats reset; a different generation means the counters restarted.
    pub generation: u64,
    pub events: EventCounts,
    pub at: Instant,
}

impl Reading {
    pub fn empty(at: Instant) -> Reading {
        Reading {
            latency: LatencyHistogram::new(),
            errors: 0,
            generation: 0,
            events: EventCounts::default(),
            at,
        }
    }

    /// The interval from `prev` to `self` as a point stamped `t`.
    pub fn since(&self, prev: &Reading, t: u64) -> Point {
        let restarted = self.generation != prev.generation;
        let mut second = self.latency.clone();
        if !restarted && !second.subtract(&prev.latency) {
            // Counts went down without a reset generation (should not happen): everything
            // now recorded is newer than the previous reading at best, so report it as is.
            second = self.latency.clone();
        }
        let errors = if restarted {
            self.errors
        } else {
            self.errors.saturating_sub(prev.errors)
        };
        let ev = self.events.since(&prev.events);
        let queries = second.count();
        let secs = self.at.saturating_duration_since(prev.at).as_secs_f64();
        let some = |q: f64| (queries > 0).then(|| second.quantile_ms(q));
        let lookups = ev.cache_hits + ev.cache_misses;
        Point {
            t,
            queries,
            qps: if secs > 0.0 {
                queries as f64 / secs
            } else {
                0.0
            },
            errors,
            p50_ms: some(0.50),
            p90_ms: some(0.90),
            p99_ms: some(0.99),
            cache_hits: ev.cache_hits,
            cache_misses: ev.cache_misses,
            cache_hit_rate: (lookups > 0).then(|| ev.cache_hits as f64 / lookups as f64),
            n_plus_one_bursts: ev.n_plus_one_bursts,
        }
    }
}

/// The ring of points and the reading the next point is measured from.
pub struct TimeSeries {
    points: Mutex<VecDeque<Point>>,
    last: Mutex<Reading>,
    capacity: usize,
}

impl Default for TimeSeries {
    fn default() -> Self {
        TimeSeries::new(CAPACITY)
    }
}

impl TimeSeries {
    pub fn new(capacity: usize) -> TimeSeries {
        TimeSeries {
            points: Mutex::new(VecDeque::with_capacity(capacity)),
            last: Mutex::new(Reading::empty(Instant::now())),
            capacity: capacity.max(1),
        }
    }

    /// Appends the interval since the previous reading, dropping the oldest point when full.
    pub fn push(&self, now: Reading, t: u64) {
        let point = {
            let mut last = self.last.lock();
            let p = now.since(&last, t);
            *last = now;
            p
        };
        let mut points = self.points.lock();
        if points.len() == self.capacity {
            points.pop_front();
        }
        points.push_back(point);
    }

    /// The newest `last` points (all when `None`), oldest first.
    pub fn points(&self, last: Option<usize>) -> Vec<Point> {
        let points = self.points.lock();
        let skip = last.map_or(0, |n| points.len().saturating_sub(n));
        points.iter().skip(skip).cloned().collect()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Takes the cumulative reading of `stats` now.
pub fn read(stats: &Stats) -> Reading {
    let (latency, errors, generation) = stats.queries.cumulative();
    Reading {
        latency,
        errors,
        generation,
        events: stats.events.read(),
        at: Instant::now(),
    }
}

/// Adds one point a second until `shutdown` turns true.
pub async fn run(stats: Arc<Stats>, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    // A stalled runtime yields one longer interval (qps divides by its true length), not a burst.
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.wait_for(|v| *v) => return,
        }
        let began = Instant::now();
        let reading = read(&stats);
        stats
            .timeseries
            .push(reading, super::unix_now().floor() as u64);
        // What the series costs, off the data path: RUST_LOG=pgsplit::stats::timeseries=debug.
        tracing::debug!(
            took_us = began.elapsed().as_micros() as u64,
            "time series tick"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(latencies_us: &[u64], errors: u64, generation: u64, at: Instant) -> Reading {
        let mut latency = LatencyHistogram::new();
        for &us in latencies_us {
            latency.record_us(us);
        }
        Reading {
            latency,
            errors,
            generation,
            events: EventCounts::default(),
            at,
        }
    }

    #[test]
    fn a_second_is_the_difference_of_two_readings() {
        let t0 = Instant::now();
        let first: Vec<u64> = (0..100).map(|_| 100_000).collect(); // 100 slow statements
        let mut second = first.clone();
        second.extend((0..200).map(|i| 1_000 + i)); // then 200 fast ones
        let a = reading(&first, 1, 0, t0);
        let mut b = reading(&second, 4, 0, t0 + Duration::from_secs(2));
        b.events = EventCounts {
            cache_hits: 30,
            cache_misses: 10,
            n_plus_one_bursts: 2,
        };
        let p = b.since(&a, 42);
        assert_eq!(p.t, 42);
        assert_eq!(p.queries, 200);
        assert!((p.qps - 100.0).abs() < 1e-6, "{p:?}");
        assert_eq!(p.errors, 3);
        // Only the fast statements are in this interval: the slow ones were before it.
        let p99 = p.p99_ms.unwrap();
        assert!((1.0..1.3).contains(&p99), "{p:?}");
        assert_eq!(p.cache_hit_rate, Some(0.75));
        assert_eq!(p.n_plus_one_bursts, 2);
    }

    #[test]
    fn an_empty_second_has_no_percentiles_and_no_hit_rate() {
        let t0 = Instant::now();
        let a = reading(&[500, 700], 0, 0, t0);
        let b = reading(&[500, 700], 0, 0, t0 + Duration::from_secs(1));
        let p = b.since(&a, 1);
        assert_eq!(p.queries, 0);
        assert_eq!((p.p50_ms, p.p90_ms, p.p99_ms), (None, None, None));
        assert_eq!(p.cache_hit_rate, None);
    }

    #[test]
    fn after_a_reset_the_new_counts_are_the_interval() {
        let t0 = Instant::now();
        let a = reading(&[1_000; 50], 5, 0, t0);
        let b = reading(&[2_000; 60], 1, 1, t0 + Duration::from_secs(1));
        let p = b.since(&a, 1);
        assert_eq!(p.queries, 60);
        assert_eq!(p.errors, 1);
        assert!((p.p50_ms.unwrap() - 2.0).abs() < 0.05);
    }

    #[test]
    fn the_ring_keeps_the_newest() {
        let ts = TimeSeries::new(3);
        let t0 = Instant::now();
        for i in 0..5u64 {
            let lat: Vec<u64> = (0..i).map(|_| 1_000).collect();
            ts.push(reading(&lat, 0, 0, t0 + Duration::from_secs(i + 1)), i);
        }
        let all = ts.points(None);
        assert_eq!(all.iter().map(|p| p.t).collect::<Vec<_>>(), [2, 3, 4]);
        assert!(all.iter().all(|p| p.queries == 1));
        assert_eq!(ts.points(Some(1))[0].t, 4);
        assert_eq!(ts.points(Some(10)).len(), 3);
    }
}
