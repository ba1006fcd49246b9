//! The workload's live line: elapsed time, and QPS, p90 and cache hit rate as pgsplit itself measured them (from /stats).

use super::mix::Tally;
use crate::report::fetch;
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Prints one line a second (rewritten in place on a terminal, every fifth second otherwise).
pub async fn run(
    url: String,
    token: Option<String>,
    tally: Arc<Tally>,
    started: Instant,
    until: Instant,
) {
    let tty = std::io::stdout().is_terminal();
    let total = until.saturating_duration_since(started).as_secs().max(1);
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.tick().await;
    loop {
        every.tick().await;
        let elapsed = started.elapsed().as_secs().min(total);
        let line = format!(
            "{} {elapsed:>3}/{total} s · {}",
            bar(elapsed, total),
            measured(&url, token.as_deref(), &tally).await
        );
        let done = Instant::now() >= until;
        let mut out = std::io::stdout().lock();
        if tty {
            let _ = write!(out, "\r\x1b[2K{line}");
            if done {
                let _ = writeln!(out);
            }
        } else if elapsed % 5 == 0 || done {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
        if done {
            return;
        }
    }
}

fn bar(done: u64, total: u64) -> String {
    const WIDTH: u64 = 20;
    let full = (done * WIDTH / total) as usize;
    format!(
        "[{}{}]",
        "#".repeat(full),
        "-".repeat(WIDTH as usize - full)
    )
}

async fn measured(url: &str, token: Option<&str>, tally: &Tally) -> String {
    let sent = tally.statements.load(Ordering::Relaxed);
    let (series, stats) = tokio::join!(
        fetch::get(url, "/stats/timeseries?last=1", token),
        fetch::get_stats(url, token)
    );
    let parse = |r: Result<Vec<u8>, _>| {
        r.ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    };
    let (Some(series), Some(stats)) = (parse(series), parse(stats)) else {
        return format!("{sent} statements sent · stats endpoint unavailable at {url}");
    };
    let point = &series["points"][0];
    let qps = point["qps"]
        .as_f64()
        .map_or("–".to_string(), |q| format!("{q:.0}"));
    let p90 = point["p90_ms"]
        .as_f64()
        .map_or("–".to_string(), |p| format!("{p:.2} ms"));
    let cache = stats["cache"]["hit_rate"]
        .as_f64()
        .map_or("no data yet".to_string(), |r| format!("{:.1}%", r * 100.0));
    let bursts = stats["n_plus_one"].as_array().map_or(0, Vec::len);
    format!("QPS {qps} · p90 {p90} · cache hit rate {cache} · N+1 patterns {bursts} · {sent} statements sent")
}
