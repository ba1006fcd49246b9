//! `pgsplit report`: reads a running pgsplit's stats endpoint, prints a readable report and optionally exports the seed's JSON.

mod export;
pub mod fetch;
#[cfg(test)]
mod http_tests;
mod model;
mod render;
mod table;
mod targets;
#[cfg(test)]
mod tests;

use model::StatsDoc;
use std::io::Write;
use std::path::PathBuf;
use std::time::SystemTime;
use thiserror::Error;

#[derive(clap::Args, Clone)]
pub struct ReportArgs {
    /// Base URL of pgsplit's stats endpoint (`stats.listen`); `/stats` is appended.
    #[arg(long, default_value = "http://127.0.0.1:9930")]
    pub url: String,
    /// Bearer token the endpoint requires (`stats.token`).
    #[arg(long, env = "PGSPLIT_STATS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How many queries to show (and export), heaviest total time first.
    #[arg(long, default_value_t = 15)]
    pub limit: usize,
    /// Also write the seed's success-metrics JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub export: Option<PathBuf>,
}

/// Written by hand so the token never reaches a log line or a panic message.
impl std::fmt::Debug for ReportArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportArgs")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "********"))
            .field("limit", &self.limit)
            .field("export", &self.export)
            .finish()
    }
}

#[derive(Debug, Error)]
pub enum ReportError {
    #[error(
        "invalid --url {url}: {reason} (expected http://HOST:PORT, e.g. http://127.0.0.1:9930)"
    )]
    BadUrl { url: String, reason: String },
    #[error("invalid --token / PGSPLIT_STATS_TOKEN: it must be non-empty, without spaces or control characters")]
    BadToken,
    #[error("cannot reach pgsplit's stats endpoint at {url}: {source} (is pgsplit running? is stats.listen right?)")]
    Unreachable {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("lost the connection to pgsplit's stats endpoint at {url}: {source} (did pgsplit stop? try again)")]
    Lost {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("pgsplit's stats endpoint at {url} did not answer within {secs} s (is --url pointing at stats.listen, not at the proxy's PostgreSQL port?)")]
    Timeout { url: String, secs: u64 },
    #[error("unexpected HTTP response from {url}: {reason} (is --url pointing at pgsplit's stats endpoint?)")]
    BadResponse { url: String, reason: String },
    #[error("pgsplit's stats endpoint at {url} refused the request (HTTP {status}): {}", auth_hint(*.token_given))]
    Unauthorized {
        url: String,
        status: u16,
        token_given: bool,
    },
    #[error("pgsplit's stats endpoint at {url} answered HTTP {status}: {body} (is --url the stats endpoint's base URL, without /stats?)")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("cannot read the stats from {url}: {source} (is --url pointing at pgsplit's stats endpoint?)")]
    BadJson {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write the export to {path}: {source} (does the directory exist and is it writable?)")]
    Export {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the report to standard output: {0}")]
    Output(#[source] std::io::Error),
}

fn auth_hint(token_given: bool) -> &'static str {
    if token_given {
        "the token is wrong (check --token or PGSPLIT_STATS_TOKEN against stats.token)"
    } else {
        "it requires a token (pass --token or set PGSPLIT_STATS_TOKEN to stats.token)"
    }
}

/// Fetches the stats, prints the report to standard output and writes the export if asked.
pub async fn run(args: &ReportArgs) -> Result<(), ReportError> {
    // Not `lock()`: the lock is not Send and would make this future unusable in a spawned task.
    match run_to(args, &mut std::io::stdout()).await {
        // `pgsplit report | head` closing the pipe early is not a failure.
        Err(ReportError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// `run` with the printed report going to `out`, so tests can read it.
pub async fn run_to<W: Write + Send>(args: &ReportArgs, out: &mut W) -> Result<(), ReportError> {
    let body = fetch::get_stats(&args.url, args.token.as_deref()).await?;
    let bad_json = |source| ReportError::BadJson {
        url: args.url.clone(),
        source,
    };
    // Parsed twice: typed for the report, raw so the export keeps fields this client lacks.
    let raw: serde_json::Value = serde_json::from_slice(&body).map_err(bad_json)?;
    let doc: StatsDoc = serde_json::from_value(raw.clone()).map_err(bad_json)?;
    let now = export::rfc3339(SystemTime::now());
    let top = top_queries(&doc, args.limit);
    let text = render::render(&doc, &args.url, &now, &top);
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(ReportError::Output)?;
    if let Some(path) = &args.export {
        let export = export::build(&doc, &raw, &args.url, &now, &top);
        let write_err = |source| ReportError::Export {
            path: path.clone(),
            source,
        };
        let mut json =
            serde_json::to_vec_pretty(&export).map_err(|e| write_err(std::io::Error::other(e)))?;
        json.push(b'\n');
        tokio::fs::write(path, json).await.map_err(write_err)?;
        writeln!(out, "\nExported to {}", path.display()).map_err(ReportError::Output)?;
    }
    Ok(())
}

/// Indices of the `limit` queries with the most total time, heaviest first.
fn top_queries(doc: &StatsDoc, limit: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..doc.queries.len()).collect();
    order.sort_by(|&a, &b| {
        doc.queries[b]
            .total_ms
            .total_cmp(&doc.queries[a].total_ms)
            .then(a.cmp(&b))
    });
    order.truncate(limit);
    order
}
