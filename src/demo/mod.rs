//! `pgsplit workload`: several clients run the seed application's queries through pgsplit for a while, with a live progress line.
//!
//! Unlike the control-plane commands this one talks to the proxy, as an application would:
//! it exists to give the demo, the dashboard and the report real traffic to show.

mod freshness;
mod mix;
pub mod planted;
mod progress;

use crate::report::ReportError;
use mix::{Tally, Universe, KINDS};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio_postgres::NoTls;

#[derive(clap::Args, Debug, Clone)]
pub struct WorkloadArgs {
    /// Where to connect: pgsplit's address, as an application's DATABASE_URL would be.
    #[arg(long, default_value = "postgres://app:app@127.0.0.1:6432/app")]
    pub database_url: String,
    /// Seconds to run.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// pgsplit's stats endpoint, read once a second for the progress line.
    #[arg(long, default_value = "http://127.0.0.1:9930")]
    pub stats_url: String,
    /// Bearer token of the stats endpoint (`stats.token`).
    #[arg(long, env = "PGSPLIT_STATS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Random seed of the statement mix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// "mix": the seed application's statements for --duration seconds (the demo). "planted":
    /// a fixed script with three known N+1 loops among independent lookups, --rounds times,
    /// for checking the detector's findings.
    #[arg(long, value_enum, default_value_t = Mode::Mix)]
    pub mode: Mode,
    /// Rounds of the planted script (--mode planted).
    #[arg(long, default_value_t = 3)]
    pub rounds: u64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Mix,
    Planted,
}

#[derive(Debug, Error)]
pub enum WorkloadError {
    #[error("invalid --database-url: {0}")]
    BadUrl(String),
    #[error("cannot connect to {target}: {message} (is pgsplit running?)")]
    Connect { target: String, message: String },
    #[error(
        "cannot read the seeded data: {0} (run `pgsplit migrate` and `pgsplit seed-data` first)"
    )]
    NoData(String),
    #[error("--clients and --duration must be at least 1")]
    BadArgs,
    #[error("{failed} of {clients} clients lost their connection; first error: {first}")]
    ClientsFailed {
        failed: usize,
        clients: usize,
        first: String,
    },
    #[error(transparent)]
    Stats(#[from] ReportError),
}

pub async fn run(args: &WorkloadArgs) -> Result<(), WorkloadError> {
    if args.clients == 0 || args.duration == 0 {
        return Err(WorkloadError::BadArgs);
    }
    let config: tokio_postgres::Config = args
        .database_url
        .parse()
        .map_err(|e: tokio_postgres::Error| WorkloadError::BadUrl(e.to_string()))?;
    let target = target(&config);
    let connect = || async {
        let mut config = config.clone();
        config.application_name("pgsplit-workload");
        let (client, conn) = config
            .connect(NoTls)
            .await
            .map_err(|e| WorkloadError::Connect {
                target: target.clone(),
                message: e.to_string(),
            })?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok::<_, WorkloadError>(client)
    };
    if args.mode == Mode::Planted {
        return run_planted(args, &connect().await?, connect).await;
    }
    let universe = Arc::new(universe(&connect().await?).await?);
    let tally = Arc::new(Tally::default());
    println!(
        "workload: {} clients for {} s against {target} ({} leads, {} properties)",
        args.clients, args.duration, universe.max_lead_id, universe.property_count
    );
    let started = Instant::now();
    let until = started + Duration::from_secs(args.duration);
    let mut tasks = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let client = connect().await?;
        let (universe, tally) = (universe.clone(), tally.clone());
        let seed = args.seed.wrapping_mul(1000).wrapping_add(i as u64);
        tasks.push(tokio::spawn(async move {
            mix::client(client, &universe, &tally, until, seed).await
        }));
    }
    let freshness = Arc::new(freshness::Freshness::default());
    {
        let (writer, other) = (connect().await?, connect().await?);
        let (fresh, leads) = (freshness.clone(), universe.checked_leads());
        tasks.push(tokio::spawn(async move {
            freshness::run(writer, other, leads, until, &fresh).await
        }));
    }
    let progress = tokio::spawn(progress::run(
        args.stats_url.clone(),
        args.token.clone(),
        tally.clone(),
        started,
        until,
    ));
    let mut failures = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(describe(&e)),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let _ = progress.await;
    summary(&tally, started.elapsed());
    println!("{}", freshness::summary(&freshness));
    match failures.first() {
        None => Ok(()),
        Some(first) => Err(WorkloadError::ClientsFailed {
            failed: failures.len(),
            clients: args.clients,
            first: first.clone(),
        }),
    }
}

/// `--mode planted`: the script over a pool of connections, then what was planted.
async fn run_planted<F, Fut>(
    args: &WorkloadArgs,
    first: &tokio_postgres::Client,
    connect: F,
) -> Result<(), WorkloadError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<tokio_postgres::Client, WorkloadError>>,
{
    let no_data = |e: tokio_postgres::Error| WorkloadError::NoData(describe(&e));
    let row = first
        .query_one(
            "SELECT (SELECT coalesce(max(id), 0) FROM leads), (SELECT coalesce(max(id), 0) FROM properties)",
            &[],
        )
        .await
        .map_err(no_data)?;
    let (max_lead_id, max_property_id): (i64, i64) = (row.get(0), row.get(1));
    if max_lead_id == 0 || max_property_id == 0 {
        return Err(WorkloadError::NoData(
            "leads or properties are empty".into(),
        ));
    }
    let mut clients = Vec::with_capacity(planted::POOL);
    for _ in 0..planted::POOL.max(args.clients) {
        clients.push(connect().await?);
    }
    let started = Instant::now();
    let sent = planted::run(
        &clients,
        args.rounds,
        max_lead_id,
        max_property_id,
        args.seed,
    )
    .await
    .map_err(|e| WorkloadError::ClientsFailed {
        failed: 1,
        clients: clients.len(),
        first: describe(&e),
    })?;
    println!(
        "workload done: {sent} statements in {:.1} s ({} rounds of the planted script)",
        started.elapsed().as_secs_f64(),
        args.rounds
    );
    println!("planted N+1 loops (the report should name these and nothing else):");
    for l in planted::LOOPS {
        println!("  {}: {} ({})", l.name, l.flow, l.fix);
    }
    Ok(())
}

/// The server's own message when there is one ("db error" alone says nothing).
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        ),
        None => e.to_string(),
    }
}

fn target(c: &tokio_postgres::Config) -> String {
    let host = match c.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "localhost".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        c.get_user().unwrap_or("?"),
        c.get_dbname().unwrap_or("?")
    )
}

async fn universe(c: &tokio_postgres::Client) -> Result<Universe, WorkloadError> {
    let no_data = |e: tokio_postgres::Error| WorkloadError::NoData(describe(&e));
    let row = c
        .query_one(
            "SELECT (SELECT coalesce(max(id), 0) FROM leads), (SELECT count(*) FROM properties)",
            &[],
        )
        .await
        .map_err(no_data)?;
    let (max_lead_id, property_count): (i64, i64) = (row.get(0), row.get(1));
    if max_lead_id == 0 || property_count == 0 {
        return Err(WorkloadError::NoData(
            "leads or properties are empty".into(),
        ));
    }
    let contact_ids = c
        .query("SELECT contact_id FROM leads ORDER BY id LIMIT 1000", &[])
        .await
        .map_err(no_data)?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    Ok(Universe {
        max_lead_id,
        contact_ids,
        property_count,
    })
}

fn summary(tally: &Tally, elapsed: Duration) {
    let secs = elapsed.as_secs_f64().max(0.001);
    let statements = tally.statements.load(Ordering::Relaxed);
    println!(
        "workload done: {statements} statements in {secs:.1} s ({:.0}/s)",
        statements as f64 / secs
    );
    for k in KINDS {
        let done = tally.done[k as usize].load(Ordering::Relaxed);
        let errors = tally.errors[k as usize].load(Ordering::Relaxed);
        let failed = if errors > 0 {
            format!(", {errors} failed")
        } else {
            String::new()
        };
        println!("  {done:>8} × {}{failed}", k.label());
    }
}
