//! `pgsplit seed-data`: deterministic, realistic rows for the schema, loaded with COPY.
//!
//! Scale 1 is 10,000 leads, 5,000 properties, 20,000 conversations and 50,000 property
//! interactions (85,000 rows); every count grows linearly with --scale. The same --seed,
//! --scale and --anchor-date always produce the same rows (ChaCha8, one stream per table), so
//! the demo, the tests and the benchmarks share one workload.

mod gen;
mod words;

use std::time::Instant;

use bytes::BytesMut;
use futures_util::SinkExt;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio_postgres::Client;

use crate::control::db;
use crate::control::error::describe;
use crate::control::ControlError;

/// Rows per table at scale 1.
pub const LEADS_PER_SCALE: f64 = 10_000.0;
pub const PROPERTIES_PER_SCALE: f64 = 5_000.0;
pub const CONVERSATIONS_PER_SCALE: f64 = 20_000.0;
pub const INTERACTIONS_PER_SCALE: f64 = 50_000.0;

/// COPY data is sent in chunks of about this many bytes.
const CHUNK: usize = 256 * 1024;

const TABLES: [&str; 4] = [
    "leads",
    "properties",
    "conversations",
    "property_interactions",
];

/// Arguments of `pgsplit seed-data`.
#[derive(clap::Args, Debug, Clone)]
pub struct SeedArgs {
    /// URL of the database to fill (the primary), e.g. postgres://app:app@127.0.0.1:15432/app.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// Size multiplier: 1 = 10k leads, 5k properties, 20k conversations, 50k interactions.
    /// Fractions are allowed (0.1 = 1k leads).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,

    /// RNG seed; the same seed, scale and anchor date give the same rows.
    #[arg(long, default_value_t = 20260110)]
    pub seed: u64,

    /// Timestamps are spread over the two years before this date (YYYY-MM-DD, UTC), fixed by
    /// default so the data does not change from day to day.
    #[arg(long, default_value = "2026-01-10")]
    pub anchor_date: String,

    /// Empty the four tables first (TRUNCATE ... RESTART IDENTITY) instead of refusing when they hold rows.
    #[arg(long)]
    pub truncate: bool,
}

/// Runs `pgsplit seed-data`.
pub async fn run(args: &SeedArgs) -> Result<(), ControlError> {
    if !(args.scale > 0.0 && args.scale.is_finite()) {
        return Err(ControlError::Seed(format!(
            "--scale must be a positive number, got {}",
            args.scale
        )));
    }
    let anchor = parse_date(&args.anchor_date)?;
    let counts = [
        LEADS_PER_SCALE,
        PROPERTIES_PER_SCALE,
        CONVERSATIONS_PER_SCALE,
        INTERACTIONS_PER_SCALE,
    ]
    .map(|n| ((n * args.scale).round() as u64).max(1));
    let db = db::connect(&args.database_url, "pgsplit seed-data").await?;
    let c = &db.client;
    check_tables(c, args.truncate).await?;
    println!(
        "seeding {} (scale {}, seed {}, anchor {}): {} leads, {} properties, {} conversations, {} interactions",
        db.target, args.scale, args.seed, args.anchor_date, counts[0], counts[1], counts[2], counts[3]
    );

    let started = Instant::now();
    let q = |ctx: &'static str| move |e: tokio_postgres::Error| ControlError::query(ctx, &e);
    // One transaction: a failure leaves the tables as they were, never half loaded.
    c.batch_execute("BEGIN").await.map_err(q("BEGIN"))?;
    let loaded = load(c, args.seed, anchor, counts, args.truncate).await;
    let total = match loaded {
        Ok(total) => total,
        Err(e) => {
            let _ = c.batch_execute("ROLLBACK").await;
            return Err(e);
        }
    };
    c.batch_execute("COMMIT").await.map_err(q("COMMIT"))?;
    let copy_secs = started.elapsed().as_secs_f64();

    // VACUUM as well as ANALYZE: fresh statistics for the planner, and a visibility map so the
    // seed's covering indexes can answer with index-only scans right away.
    let t = Instant::now();
    c.batch_execute(&format!("VACUUM (ANALYZE) {}", TABLES.join(", ")))
        .await
        .map_err(q("VACUUM (ANALYZE)"))?;
    println!("  VACUUM (ANALYZE): {:.2} s", t.elapsed().as_secs_f64());
    println!(
        "seeded {total} rows in {copy_secs:.2} s ({:.0} rows/s over COPY), {:.2} s in all",
        total as f64 / copy_secs.max(1e-9),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Refuses clearly when the schema is missing, or when data is present without --truncate.
async fn check_tables(c: &Client, truncate: bool) -> Result<(), ControlError> {
    for t in TABLES {
        let row = c
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&t])
            .await
            .map_err(|e| ControlError::query("checking the schema", &e))?;
        let exists: bool = row
            .try_get(0)
            .map_err(|e| ControlError::query("checking the schema", &e))?;
        if !exists {
            return Err(ControlError::Seed(format!(
                "table {t} does not exist; run `pgsplit migrate` first"
            )));
        }
        if !truncate {
            let row = c
                .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {t})"), &[])
                .await
                .map_err(|e| ControlError::query(format!("checking whether {t} is empty"), &e))?;
            let has_rows: bool = row
                .try_get(0)
                .map_err(|e| ControlError::query("checking rows", &e))?;
            if has_rows {
                return Err(ControlError::Seed(format!(
                    "table {t} already holds rows; pass --truncate to replace all seed tables' contents"
                )));
            }
        }
    }
    Ok(())
}

async fn load(
    c: &Client,
    seed: u64,
    anchor: i64,
    counts: [u64; 4],
    truncate: bool,
) -> Result<u64, ControlError> {
    if truncate {
        c.batch_execute(&format!("TRUNCATE {} RESTART IDENTITY", TABLES.join(", ")))
            .await
            .map_err(|e| ControlError::query("TRUNCATE", &e))?;
    }
    let [n_leads, n_props, n_convs, n_inter] = counts;
    // A separate stream per table: changing how one table is generated leaves the others alone.
    let rng =
        |table: u64| ChaCha8Rng::seed_from_u64(seed ^ table.wrapping_mul(0x9E37_79B9_7F4A_7C15));

    let mut contact_ids = Vec::with_capacity(n_leads as usize);
    let mut r = rng(1);
    let mut total = copy(c, "leads", gen::LEAD_COLUMNS, n_leads, |buf, id| {
        contact_ids.push(gen::lead(&mut r, id, anchor, buf));
    })
    .await?;
    let mut r = rng(2);
    total += copy(
        c,
        "properties",
        gen::PROPERTY_COLUMNS,
        n_props,
        |buf, id| gen::property(&mut r, id, anchor, buf),
    )
    .await?;
    let mut r = rng(3);
    total += copy(
        c,
        "conversations",
        gen::CONVERSATION_COLUMNS,
        n_convs,
        |buf, id| {
            use rand::Rng;
            let contact = &contact_ids[r.gen_range(0..contact_ids.len())];
            gen::conversation(&mut r, id, contact, anchor, buf)
        },
    )
    .await?;
    let mut r = rng(4);
    total += copy(
        c,
        "property_interactions",
        gen::INTERACTION_COLUMNS,
        n_inter,
        |buf, id| gen::interaction(&mut r, id, n_leads, n_props, anchor, buf),
    )
    .await?;
    // Explicit ids were loaded, so move each identity sequence past them.
    for t in TABLES {
        c.batch_execute(&format!(
            "SELECT setval(pg_get_serial_sequence('{t}', 'id'), max(id)) FROM {t}"
        ))
        .await
        .map_err(|e| ControlError::query(format!("resetting the id sequence of {t}"), &e))?;
    }
    Ok(total)
}

/// Streams `rows` generated rows into `table` with COPY FROM STDIN (text format).
async fn copy(
    c: &Client,
    table: &str,
    columns: &str,
    rows: u64,
    mut row: impl FnMut(&mut BytesMut, u64),
) -> Result<u64, ControlError> {
    let t = Instant::now();
    let fail = |e: tokio_postgres::Error| ControlError::Query {
        context: format!("COPY into {table}"),
        message: describe(&e),
    };
    let sink = c
        .copy_in::<_, bytes::Bytes>(&format!("COPY {table} ({columns}) FROM STDIN"))
        .await
        .map_err(fail)?;
    let mut sink = std::pin::pin!(sink);
    let mut buf = BytesMut::with_capacity(CHUNK + 4096);
    for id in 1..=rows {
        row(&mut buf, id);
        if buf.len() >= CHUNK {
            sink.send(buf.split().freeze()).await.map_err(fail)?;
        }
    }
    if !buf.is_empty() {
        sink.send(buf.split().freeze()).await.map_err(fail)?;
    }
    let n = sink.as_mut().finish().await.map_err(fail)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "  {table:<22} {n:>9} rows in {secs:>6.2} s ({:>8.0} rows/s)",
        n as f64 / secs.max(1e-9)
    );
    Ok(n)
}

fn parse_date(s: &str) -> Result<i64, ControlError> {
    let bad = || ControlError::Seed(format!("--anchor-date must be YYYY-MM-DD, got {s:?}"));
    let parts: Vec<i64> = s
        .split('-')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    match parts[..] {
        [y, m, d] if (1..=12).contains(&m) && (1..=31).contains(&d) => {
            Ok(gen::days_from_civil(y, m, d))
        }
        _ => Err(bad()),
    }
}
