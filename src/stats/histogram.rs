//! A latency histogram in microseconds (HDR, 2 significant digits) with the percentiles operators read.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency recorded exactly: one hour. Longer values are clamped to it.
const MAX_US: u64 = 3_600_000_000;

#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    h: Histogram<u32>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        let h = match Histogram::new_with_bounds(1, MAX_US, 2) {
            Ok(h) => h,
            // The bounds are constants that hdrhistogram accepts.
            Err(e) => unreachable!("histogram bounds: {e}"),
        };
        LatencyHistogram { h }
    }

    pub fn record_us(&mut self, us: u64) {
        self.h.saturating_record(us.clamp(1, MAX_US));
    }

    pub fn count(&self) -> u64 {
        self.h.len()
    }

    /// A quantile in milliseconds (0 when empty).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.h.is_empty() {
            return 0.0;
        }
        self.h.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn percentiles(&self) -> Percentiles {
        Percentiles {
            p50_ms: self.quantile_ms(0.50),
            p90_ms: self.quantile_ms(0.90),
            p95_ms: self.quantile_ms(0.95),
            p99_ms: self.quantile_ms(0.99),
            p999_ms: self.quantile_ms(0.999),
        }
    }

    /// Share of recorded values at or below `us` (1.0 when empty: nothing was slow).
    pub fn share_at_or_below_us(&self, us: u64) -> Option<f64> {
        if self.h.is_empty() {
            return None;
        }
        let below: u64 = self
            .h
            .iter_recorded()
            .filter(|v| v.value_iterated_to() <= us)
            .map(|v| u64::from(v.count_at_value()))
            .sum();
        Some(below as f64 / self.h.len() as f64)
    }

    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.h.add(&other.h);
    }

    /// Removes `other`'s counts (an earlier reading of the same cumulative histogram); false,
    /// leaving `self` unusable, when `other` holds a count `self` lacks.
    pub fn subtract(&mut self, other: &LatencyHistogram) -> bool {
        self.h.subtract(&other.h).is_ok()
    }

    pub fn reset(&mut self) {
        self.h.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_a_uniform_distribution() {
        let mut h = LatencyHistogram::new();
        for us in 1..=10_000u64 {
            h.record_us(us * 10); // 10 µs .. 100 ms
        }
        let p = h.percentiles();
        let close = |got: f64, want: f64| (got - want).abs() / want < 0.02;
        assert!(close(p.p50_ms, 50.0), "{p:?}");
        assert!(close(p.p90_ms, 90.0), "{p:?}");
        assert!(close(p.p99_ms, 99.0), "{p:?}");
        assert!(
            p.p50_ms <= p.p90_ms
                && p.p90_ms <= p.p95_ms
                && p.p95_ms <= p.p99_ms
                && p.p99_ms <= p.p999_ms
        );
        let share = h.share_at_or_below_us(5_000).unwrap();
        assert!((share - 0.05).abs() < 0.01, "{share}");
    }

    #[test]
    fn bimodal_distribution() {
        let mut h = LatencyHistogram::new();
        for _ in 0..900 {
            h.record_us(1_000);
        }
        for _ in 0..100 {
            h.record_us(200_000);
        }
        let p = h.percentiles();
        assert!((p.p50_ms - 1.0).abs() < 0.02, "{p:?}");
        assert!((p.p90_ms - 1.0).abs() < 0.02, "{p:?}");
        assert!((p.p95_ms - 200.0).abs() < 2.0, "{p:?}");
    }

    #[test]
    fn empty_and_clamped() {
        let mut h = LatencyHistogram::new();
        assert_eq!(h.quantile_ms(0.99), 0.0);
        assert_eq!(h.share_at_or_below_us(1), None);
        h.record_us(0);
        h.record_us(u64::MAX);
        assert_eq!(h.count(), 2);
        let mut g = LatencyHistogram::new();
        g.merge(&h);
        assert_eq!(g.count(), 2);
    }
}
