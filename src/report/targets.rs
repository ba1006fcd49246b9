//! The seed's six targets in their fixed order, and how a target's numbers are written for people and for the export.

use super::model::Target;
use std::collections::BTreeMap;

/// How a target's threshold and measurement are expressed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unit {
    Ms,
    /// A 0..1 share, written as a percentage.
    Ratio,
    Count,
}

/// A target the seed names.
pub struct Known {
    /// Key in the stats endpoint's `targets` object.
    pub name: &'static str,
    pub label: &'static str,
    pub unit: Unit,
    /// The seed's (and the server's default) threshold, used only when the server sent no
    /// such target, so the export still has every key.
    pub fallback: (&'static str, f64),
}

pub const KNOWN: [Known; 6] = [
    Known {
        name: "p90_query_time_ms",
        label: "p90 query time",
        unit: Unit::Ms,
        fallback: ("<", 50.0),
    },
    Known {
        name: "p95_query_time_ms",
        label: "p95 query time",
        unit: Unit::Ms,
        fallback: ("<", 100.0),
    },
    Known {
        name: "connection_pool_efficiency",
        label: "pool efficiency",
        unit: Unit::Ratio,
        fallback: (">", 0.90),
    },
    Known {
        name: "connection_acquisition_p95_ms",
        label: "connection acquisition p95",
        unit: Unit::Ms,
        fallback: ("<", 5.0),
    },
    Known {
        name: "cache_hit_rate",
        label: "cache hit rate",
        unit: Unit::Ratio,
        fallback: (">", 0.70),
    },
    Known {
        name: "n_plus_one_bursts",
        label: "N+1 bursts",
        unit: Unit::Count,
        fallback: ("<=", 0.0),
    },
];

impl Known {
    /// The server's judgement of this target, or "no data" against the seed's threshold.
    pub fn pick(&self, targets: &BTreeMap<String, Target>) -> Target {
        targets.get(self.name).cloned().unwrap_or_else(|| Target {
            comparison: self.fallback.0.to_string(),
            target: self.fallback.1,
            actual: None,
            status: "no data".to_string(),
        })
    }
}

/// Guesses the unit of a target this client does not know from its name's suffix.
pub fn unit_of(name: &str) -> Unit {
    if let Some(k) = KNOWN.iter().find(|k| k.name == name) {
        k.unit
    } else if name.ends_with("_ms") {
        Unit::Ms
    } else if name.ends_with("_rate") || name.ends_with("_efficiency") {
        Unit::Ratio
    } else {
        Unit::Count
    }
}

/// Milliseconds with precision that shrinks as the value grows, so small latencies keep their digits.
pub fn ms(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_string();
    }
    let a = v.abs();
    if a < 10.0 {
        format!("{v:.2}")
    } else if a < 1000.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// A 0..1 share as a percentage with one decimal, e.g. 0.952 -> "95.2".
pub fn pct(ratio: f64) -> String {
    if !ratio.is_finite() {
        return "–".to_string();
    }
    format!("{:.1}", ratio * 100.0)
}

/// A threshold or count without trailing zeros, rounded to 3 decimals so that 0.57 × 100 is
/// "57", not "56.99999999999999".
fn count(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_string();
    }
    let r = (v * 1000.0).round() / 1000.0;
    let s = format!("{r:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A value with its unit; `spaced` puts a space before the unit ("12.3 ms") for the printed
/// report, none ("12.3ms") for the export, as the seed writes it.
pub fn value(unit: Unit, v: f64, spaced: bool) -> String {
    let sep = if spaced { " " } else { "" };
    match unit {
        Unit::Ms => format!("{}{sep}ms", ms(v)),
        Unit::Ratio => format!("{}{sep}%", pct(v)),
        Unit::Count => count(v),
    }
}

/// The threshold with its comparison: "< 50 ms" (spaced) or "<50ms".
pub fn threshold(unit: Unit, t: &Target, spaced: bool) -> String {
    let sep = if spaced { " " } else { "" };
    // Thresholds are round numbers: "50 ms" and "90 %" read better than "50.00 ms" and "90.0 %".
    let v = match unit {
        Unit::Ms => format!("{}{sep}ms", count(t.target)),
        Unit::Ratio => format!("{}{sep}%", count(t.target * 100.0)),
        Unit::Count => count(t.target),
    };
    format!("{}{sep}{v}", t.comparison)
}

/// The measurement, or "no data".
pub fn actual(unit: Unit, t: &Target, spaced: bool) -> String {
    match t.actual {
        Some(a) => value(unit, a, spaced),
        None => "no data".to_string(),
    }
}
