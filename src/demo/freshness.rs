//! The workload's consistency check: a lead is written, then read back through pgsplit by its writer and by another client; a read older than the write is stale.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

const WRITE: &str =
    "UPDATE leads SET updated_at = now() WHERE id = $1::bigint RETURNING updated_at::text";
/// True when the row is at least as new as the write (the check is its only writer, so this is
/// the write itself or the check's next one).
const READ: &str = "SELECT updated_at >= $2::text::timestamptz FROM leads WHERE id = $1::bigint";

#[derive(Default)]
pub struct Freshness {
    pub reads: AtomicU64,
    pub stale: AtomicU64,
}

/// Until `until`: write one of `leads` (which nobody else writes), read it back on both
/// connections at once (the writer's and another client's), every 20 ms.
pub async fn run(
    writer: Client,
    other: Client,
    leads: RangeInclusive<i64>,
    until: Instant,
    tally: &Freshness,
) -> Result<(), tokio_postgres::Error> {
    let (first, count) = (*leads.start(), leads.count().max(1) as i64);
    let mut n: i64 = 0;
    while Instant::now() < until {
        n += 1;
        let id = first + (n * 7919) % count;
        let written: String = writer.query_one(WRITE, &[&id]).await?.try_get(0)?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&id, &written];
        let (mine, theirs) = tokio::join!(
            writer.query_opt(READ, &params),
            other.query_opt(READ, &params)
        );
        for row in [mine?, theirs?] {
            tally.reads.fetch_add(1, Ordering::Relaxed);
            let fresh = match row {
                Some(r) => r.try_get::<_, bool>(0)?,
                None => false,
            };
            if !fresh {
                tally.stale.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

pub fn summary(tally: &Freshness) -> String {
    format!(
        "consistency check: {} reads of just-written leads (by the writer and by another client), {} stale",
        tally.reads.load(Ordering::Relaxed),
        tally.stale.load(Ordering::Relaxed)
    )
}
