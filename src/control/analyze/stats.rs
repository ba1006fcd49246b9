//! Fetching pgsplit's `/stats` JSON over plain HTTP and reading it leniently.
//!
//! A hand-written GET over a TcpStream: the endpoint is local, plain HTTP and small, so a
//! client crate (and its TLS stack) would add more than it saves. Every field is optional,
//! because the endpoint is evolving alongside this command.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A stats document larger than this is refused rather than buffered.
const MAX_BODY: usize = 32 * 1024 * 1024;

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
    let body = get(url).await?;
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

async fn get(url: &str) -> Result<Vec<u8>, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only plain http:// URLs are supported for --stats-url"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) if &rest[i..] != "/" => (&rest[..i], &rest[i..]),
        Some(i) => (&rest[..i], "/stats"),
        None => (rest, "/stats"),
    };
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| format!("connecting to {addr} timed out"))?
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    let mut response = Vec::new();
    let io = async {
        stream.write_all(request.as_bytes()).await?;
        (&mut stream)
            .take(MAX_BODY as u64 + 1)
            .read_to_end(&mut response)
            .await
    };
    tokio::time::timeout(READ_TIMEOUT, io)
        .await
        .map_err(|_| format!("{url} did not answer within {READ_TIMEOUT:?}"))?
        .map_err(|e| format!("reading from {url}: {e}"))?;
    if response.len() > MAX_BODY {
        return Err(format!("{url} returned more than {MAX_BODY} bytes"));
    }
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("{url} sent no complete HTTP header"))?;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let body = &response[split + 4..];
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        let line = head.lines().next().unwrap_or("");
        return Err(format!("{url}{path} answered `{line}`"));
    }
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if chunked {
        dechunk(body).ok_or_else(|| format!("{url} sent a malformed chunked body"))
    } else {
        Ok(body.to_vec())
    }
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunks_a_two_chunk_body() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").as_deref(),
            Some(&b"abcde"[..])
        );
        assert_eq!(dechunk(b"5\r\nab"), None);
    }

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
