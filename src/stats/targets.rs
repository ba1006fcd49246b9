//! The seed's performance targets, each with its threshold, the measured value and met / missed / no data.

use super::TargetThresholds;
use serde::Serialize;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Target {
    /// "<" (actual must stay below) or ">" (actual must exceed) or "<=".
    pub comparison: &'static str,
    pub target: f64,
    /// Null when nothing has been measured yet.
    pub actual: Option<f64>,
    /// "met", "missed" or "no data".
    pub status: &'static str,
}

impl Target {
    fn below(target: f64, actual: Option<f64>) -> Target {
        Target::judge("<", target, actual, |a| a < target)
    }

    fn above(target: f64, actual: Option<f64>) -> Target {
        Target::judge(">", target, actual, |a| a > target)
    }

    fn at_most(target: f64, actual: Option<f64>) -> Target {
        Target::judge("<=", target, actual, |a| a <= target)
    }

    fn judge(
        comparison: &'static str,
        target: f64,
        actual: Option<f64>,
        ok: impl Fn(f64) -> bool,
    ) -> Target {
        let status = match actual {
            None => "no data",
            Some(a) if ok(a) => "met",
            Some(_) => "missed",
        };
        Target {
            comparison,
            target,
            actual,
            status,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Targets {
    pub p90_query_time_ms: Target,
    pub p95_query_time_ms: Target,
    pub connection_pool_efficiency: Target,
    pub connection_acquisition_p95_ms: Target,
    pub cache_hit_rate: Target,
    pub n_plus_one_bursts: Target,
}

/// What was measured; `None` where nothing has been seen yet.
#[derive(Default, Debug)]
pub struct Measured {
    pub p90_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub pool_efficiency: Option<f64>,
    pub acquire_p95_ms: Option<f64>,
    pub cache_hit_rate: Option<f64>,
    pub n_plus_one_bursts: Option<u64>,
}

impl Targets {
    pub fn judge(t: &TargetThresholds, m: &Measured) -> Targets {
        Targets {
            p90_query_time_ms: Target::below(t.p90_ms, m.p90_ms),
            p95_query_time_ms: Target::below(t.p95_ms, m.p95_ms),
            connection_pool_efficiency: Target::above(t.pool_efficiency, m.pool_efficiency),
            connection_acquisition_p95_ms: Target::below(t.acquire_p95_ms, m.acquire_p95_ms),
            cache_hit_rate: Target::above(t.cache_hit_rate, m.cache_hit_rate),
            n_plus_one_bursts: Target::at_most(
                t.n_plus_one_bursts as f64,
                m.n_plus_one_bursts.map(|n| n as f64),
            ),
        }
    }

    /// (name, target) pairs in a fixed order, for tables and metrics.
    pub fn rows(&self) -> [(&'static str, &Target); 6] {
        [
            ("p90_query_time_ms", &self.p90_query_time_ms),
            ("p95_query_time_ms", &self.p95_query_time_ms),
            (
                "connection_pool_efficiency",
                &self.connection_pool_efficiency,
            ),
            (
                "connection_acquisition_p95_ms",
                &self.connection_acquisition_p95_ms,
            ),
            ("cache_hit_rate", &self.cache_hit_rate),
            ("n_plus_one_bursts", &self.n_plus_one_bursts),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let t = TargetThresholds::default();
        let m = Measured {
            p90_ms: Some(12.0),
            p95_ms: Some(150.0),
            pool_efficiency: Some(0.95),
            acquire_p95_ms: None,
            cache_hit_rate: Some(0.5),
            n_plus_one_bursts: Some(0),
        };
        let r = Targets::judge(&t, &m);
        assert_eq!(r.p90_query_time_ms.status, "met");
        assert_eq!(r.p95_query_time_ms.status, "missed");
        assert_eq!(r.connection_pool_efficiency.status, "met");
        assert_eq!(r.connection_acquisition_p95_ms.status, "no data");
        assert_eq!(r.cache_hit_rate.status, "missed");
        assert_eq!(r.n_plus_one_bursts.status, "met");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["p90_query_time_ms"]["target"], 50.0);
        assert!(json["connection_acquisition_p95_ms"]["actual"].is_null());
    }
}
