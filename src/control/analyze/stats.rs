//! Fetching pgsplit's `/stats` JSON (with `pgsplit report`'s HTTP client) and reading it leniently.
//!
//! Every field is optional, because the endpoint is evolving alongside this command.

use serde_json::Value;

/// One `queries[]` entry.
#[derive(Debug, Clone, Default)]
pub struct QueryStat {
    pub fingerprint: String,
    pub query: String,
    pub calls: f64,
    pub errors: f64,
    pub rows: f64,
    pub total_ms: f64,
    pub mean_ms: f64,
    pub p90_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    /// Parameter lists pgsplit sampled for this fingerprint (`stats.sample_parameters`).
    pub sample_parameters: Vec<Vec<Value>>,
}

/// One `n_plus_one[]` entry.
#[derive(Debug, Clone, Default)]
pub struct NPlusOne {
    pub query: String,
    pub parent_query: Option<String>,
    pub kind: Option<String>,
    pub last_count: Option<f64>,
    pub suggestion: Option<String>,
}

/// What analyze uses from `/stats`.
#[derive(Debug, Clone, Default)]
pub struct PgsplitStats {
    pub queries: Vec<QueryStat>,
    /// The worst pool's efficiency (0..1).
    pub pool_efficiency: Option<f64>,
    pub acquire_p95_ms: Option<f64>,
    pub cache_hit_rate: Option<f64>,
    pub n_plus_one: Vec<NPlusOne>,
    /// `targets` as sent, for values pgsplit computes itself (e.g. an overall p90).
    pub targets: Value,
}

/// GETs `url` (a bare `http://host:port` means `/stats`) and parses the JSON.
pub async fn fetch(url: &str) -> Result<PgsplitStats, String> {
    // `report` appends /stats itself; this command has always accepted either form.
    let base = url.trim_end_matches('/').trim_end_matches("/stats");
    let body = crate::report::fetch::get_stats(base, None)
        .await
        .map_err(|e| e.to_string())?;
    let json: Value =
        serde_json::from_slice(&body).map_err(|e| format!("{url} did not return JSON: {e}"))?;
    Ok(parse(&json))
}

/// Reads the fields leniently: missing or mistyped ones are simply absent.
pub fn parse(json: &Value) -> PgsplitStats {
    let f = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let list = |k: &str| {
        json.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let queries = list("queries")
        .iter()
        .map(|q| QueryStat {
            fingerprint: s(q, "fingerprint").unwrap_or_default(),
            query: s(q, "query").unwrap_or_default(),
            calls: f(q, "calls").unwrap_or(0.0),
            errors: f(q, "errors").unwrap_or(0.0),
            rows: f(q, "rows").unwrap_or(0.0),
            total_ms: f(q, "total_ms").unwrap_or(0.0),
            mean_ms: f(q, "mean_ms").unwrap_or(0.0),
            p90_ms: f(q, "p90_ms"),
            p95_ms: f(q, "p95_ms"),
            sample_parameters: q
                .get("sample_parameters")
                .and_then(Value::as_array)
                .map(|sets| sets.iter().filter_map(|p| p.as_array().cloned()).collect())
                .unwrap_or_default(),
        })
        .collect();
    let pools = list("pools");
    let min = |vals: Vec<f64>| vals.into_iter().reduce(f64::min);
    let max = |vals: Vec<f64>| vals.into_iter().reduce(f64::max);
    let n_plus_one = list("n_plus_one")
        .iter()
        .map(|n| NPlusOne {
            query: s(n, "query").unwrap_or_default(),
            parent_query: s(n, "parent_query"),
            kind: s(n, "kind"),
            last_count: f(n, "last_count"),
            suggestion: s(n, "suggestion"),
        })
        .collect();
    PgsplitStats {
        queries,
        pool_efficiency: min(pools.iter().filter_map(|p| f(p, "efficiency")).collect()),
        acquire_p95_ms: max(pools
            .iter()
            .filter_map(|p| f(p, "acquire_p95_ms"))
            .collect()),
        cache_hit_rate: json.get("cache").and_then(|c| f(c, "hit_rate")),
        n_plus_one,
        targets: json.get("targets").cloned().unwrap_or(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_leniently_and_takes_the_worst_pool() {
        let json = serde_json::json!({
            "queries": [{"fingerprint": "ab", "query": "SELECT 1", "calls": 10, "mean_ms": 2.5, "p90_ms": 4,
                         "sample_parameters": [[1, "x"], "not a list"]}],
            "pools": [{"efficiency": 0.95, "acquire_p95_ms": 1.0}, {"efficiency": 0.8}],
            "cache": {"hit_rate": 0.75},
            "n_plus_one": [{"query": "SELECT * FROM t WHERE id = $1", "last_count": 40}],
            "unexpected": true
        });
        let s = parse(&json);
        assert_eq!(s.queries.len(), 1);
        assert_eq!(s.queries[0].p90_ms, Some(4.0));
        assert_eq!(s.queries[0].sample_parameters.len(), 1);
        assert_eq!(s.pool_efficiency, Some(0.8));
        assert_eq!(s.cache_hit_rate, Some(0.75));
        assert_eq!(s.n_plus_one[0].last_count, Some(40.0));
        assert!(parse(&serde_json::json!([])).queries.is_empty());
    }
}
