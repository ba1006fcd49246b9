//! `--export`: the seed's "Success Metrics" JSON (performance_targets with target/actual/status strings) plus the raw tables.

use super::model::StatsDoc;
use super::targets::{self, Known, KNOWN};
use serde::Serialize;
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Serialize, PartialEq)]
pub struct ExportTarget {
    /// "<50ms", ">90%", "<=0".
    pub target: String,
    /// "12.3ms", "95.2%", "0" or "no data".
    pub actual: String,
    /// "met", "missed" or "no data", as the server judged it.
    pub status: String,
}

/// The seed's six targets, in its order (a struct, because a JSON map would be sorted).
#[derive(Debug, Serialize)]
pub struct PerformanceTargets {
    pub p90_query_time_ms: ExportTarget,
    pub p95_query_time_ms: ExportTarget,
    pub connection_pool_efficiency: ExportTarget,
    pub connection_acquisition_p95_ms: ExportTarget,
    pub cache_hit_rate: ExportTarget,
    pub n_plus_one_queries: ExportTarget,
}

#[derive(Debug, Serialize)]
pub struct Export {
    pub generated_at: String,
    pub source: String,
    pub performance_targets: PerformanceTargets,
    /// The server's query objects as served, heaviest first, up to `--limit`.
    pub top_queries: Vec<Value>,
    pub pools: Vec<Value>,
    pub n_plus_one: Vec<Value>,
}

fn judge(doc: &StatsDoc, k: &Known) -> ExportTarget {
    let t = k.pick(&doc.targets);
    ExportTarget {
        target: targets::threshold(k.unit, &t, false),
        actual: targets::actual(k.unit, &t, false),
        status: t.status,
    }
}

/// Builds the export from the parsed document (for the targets) and the raw one (so fields
/// this client does not know still reach the file).
pub fn build(
    doc: &StatsDoc,
    raw: &Value,
    source: &str,
    generated_at: &str,
    top: &[usize],
) -> Export {
    let [p90, p95, efficiency, acquire, cache, n_plus_one] = &KNOWN;
    let performance_targets = PerformanceTargets {
        p90_query_time_ms: judge(doc, p90),
        p95_query_time_ms: judge(doc, p95),
        connection_pool_efficiency: judge(doc, efficiency),
        connection_acquisition_p95_ms: judge(doc, acquire),
        cache_hit_rate: judge(doc, cache),
        n_plus_one_queries: judge(doc, n_plus_one),
    };
    let array = |key: &str| -> Vec<Value> {
        raw.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let queries = array("queries");
    Export {
        generated_at: generated_at.to_string(),
        source: source.to_string(),
        performance_targets,
        top_queries: top
            .iter()
            .filter_map(|&i| queries.get(i).cloned())
            .collect(),
        pools: array("pools"),
        n_plus_one: array("n_plus_one"),
    }
}

/// RFC 3339 in UTC with whole seconds, e.g. "2026-01-10T12:00:00Z", computed with the
/// civil-from-days algorithm (Howard Hinnant) rather than a date crate.
pub fn rfc3339(t: SystemTime) -> String {
    // A clock before 1970 is a broken clock; print the epoch rather than fail the report.
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = crate::civil::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}
