//! The primary's current WAL position, read on a control connection by one query at a time that every read arriving meanwhile shares: every read under `consistency = "global"`, and `table_lsn` reads whose tables have a write of unknown position.

use super::role::Role;
use super::set::Pools;
use crate::config::Config;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// The insert position, not `pg_current_wal_lsn()` (the write position): a commit acknowledged
/// with synchronous_commit = off may not be written yet, but it is inserted.
const POSITION_SQL: &str = "SELECT pg_current_wal_insert_lsn()::text";

/// One answer of the position query: it covers every read whose ticket is at most `covers`.
#[derive(Clone, Copy, Debug, Default)]
struct Answer {
    covers: u64,
    /// None: the query failed; those reads go to the primary.
    lsn: Option<u64>,
}

/// Shared by every session (`Pools::global`).
pub struct GlobalPosition {
    /// Tickets handed to reads; a query sent after ticket `n` was taken covers read `n`.
    tickets: AtomicU64,
    answers: watch::Sender<Answer>,
    demand: Notify,
    /// Position queries sent to the primary, and reads that waited for one.
    pub queries: AtomicU64,
    pub reads: AtomicU64,
    pub failures: AtomicU64,
}

impl Default for GlobalPosition {
    fn default() -> Self {
        GlobalPosition {
            tickets: AtomicU64::new(0),
            answers: watch::channel(Answer::default()).0,
            demand: Notify::new(),
            queries: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }
}

impl GlobalPosition {
    /// The primary's WAL position read after this call began, shared with the reads that asked
    /// at the same time; None when it could not be read within `wait`.
    pub async fn position(&self, wait: Duration) -> Option<u64> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let mut rx = self.answers.subscribe();
        // The ticket after subscribing, so no answer for it can be missed.
        let ticket = self.tickets.fetch_add(1, Ordering::AcqRel) + 1;
        self.demand.notify_one();
        let answered = tokio::time::timeout(wait, rx.wait_for(|a| a.covers >= ticket)).await;
        match answered {
            Ok(Ok(a)) => a.lsn,
            _ => None,
        }
    }

    /// The next batch: every ticket taken before this returns is covered by a query sent after.
    async fn next_batch(&self, shutdown: &mut watch::Receiver<bool>) -> Option<u64> {
        loop {
            let covered = self.answers.borrow().covers;
            let taken = self.tickets.load(Ordering::Acquire);
            if taken > covered {
                return Some(taken);
            }
            tokio::select! {
                _ = self.demand.notified() => {}
                _ = shutdown.changed() => return None,
            }
        }
    }

    fn answer(&self, covers: u64, lsn: Option<u64>) {
        if lsn.is_none() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.answers.send_replace(Answer { covers, lsn });
    }

    pub fn reset(&self) {
        self.queries.store(0, Ordering::Relaxed);
        self.reads.store(0, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
    }
}

/// Answers position questions until shutdown, on a connection to whichever server takes
/// writes now (reconnecting when that changes or the connection fails).
pub async fn run(pools: &Pools, config: Arc<Config>, mut shutdown: watch::Receiver<bool>) {
    let g = &pools.global;
    let timeout = config.health.check_timeout;
    let mut conn: Option<(String, tokio_postgres::Client)> = None;
    while let Some(covers) = g.next_batch(&mut shutdown).await {
        let writer = pools
            .servers()
            .filter(|s| s.role() == Role::Primary && s.is_up())
            .min_by_key(|s| s.health.banned_for_ms());
        let Some(writer) = writer else {
            g.answer(covers, None);
            continue;
        };
        let addr = writer.addr.to_string();
        if conn.as_ref().is_some_and(|(a, _)| *a != addr) {
            conn = None;
        }
        if conn.is_none() {
            conn = connect(&config, writer, timeout)
                .await
                .map(|c| (addr.clone(), c));
        }
        let Some((_, client)) = &conn else {
            g.answer(covers, None);
            continue;
        };
        g.queries.fetch_add(1, Ordering::Relaxed);
        let lsn = match tokio::time::timeout(timeout, client.simple_query(POSITION_SQL)).await {
            Ok(Ok(messages)) => messages.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    r.get(0).and_then(super::checker::parse_record_end)
                }
                _ => None,
            }),
            Ok(Err(e)) => {
                tracing::warn!(server = %addr, error = %e, "global consistency: the WAL position query failed; reads go to the primary");
                None
            }
            Err(_) => {
                tracing::warn!(server = %addr, ?timeout, "global consistency: the WAL position query timed out; reads go to the primary");
                None
            }
        };
        if lsn.is_none() {
            conn = None;
        }
        g.answer(covers, lsn);
    }
}

async fn connect(
    config: &Config,
    server: &super::set::ServerInfo,
    timeout: Duration,
) -> Option<tokio_postgres::Client> {
    let mut login = super::checker::control_login(config, &server.addr)?;
    login.application_name("pgsplit-position");
    match tokio::time::timeout(timeout, login.connect(tokio_postgres::NoTls)).await {
        Ok(Ok((client, connection))) => {
            tokio::spawn(async move {
                let _ = connection.await;
            });
            Some(client)
        }
        Ok(Err(e)) => {
            tracing::warn!(server = %server.addr, error = %e, "global consistency: cannot connect to read the WAL position; reads go to the primary");
            None
        }
        Err(_) => {
            tracing::warn!(server = %server.addr, ?timeout, "global consistency: connect timed out; reads go to the primary");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_arriving_while_a_query_is_in_flight_share_the_next_answer() {
        let g = Arc::new(GlobalPosition::default());
        let (_tx, mut shutdown) = watch::channel(false);
        // The first read takes ticket 1; the batch taken covers it.
        let first = tokio::spawn({
            let g = g.clone();
            async move { g.position(Duration::from_secs(1)).await }
        });
        tokio::task::yield_now().await;
        let batch = g.next_batch(&mut shutdown).await;
        assert_eq!(batch, Some(1));
        // Three reads arrive while that query is in flight: the answer to it does not cover
        // them (it may have been read before their writes were acknowledged).
        let later: Vec<_> = (0..3)
            .map(|_| {
                let g = g.clone();
                tokio::spawn(async move { g.position(Duration::from_secs(1)).await })
            })
            .collect();
        tokio::task::yield_now().await;
        g.answer(1, Some(100));
        assert_eq!(first.await.ok().flatten(), Some(100));
        tokio::task::yield_now().await;
        assert!(later.iter().all(|h| !h.is_finished()));
        // One more query serves all three.
        let batch = g.next_batch(&mut shutdown).await;
        assert_eq!(batch, Some(4));
        g.answer(4, Some(200));
        for h in later {
            assert_eq!(h.await.ok().flatten(), Some(200));
        }
        assert_eq!(g.reads.load(Ordering::Relaxed), 4);
    }

    #[tokio::test]
    async fn a_failed_query_sends_its_reads_to_the_primary() {
        let g = Arc::new(GlobalPosition::default());
        let (_tx, mut shutdown) = watch::channel(false);
        let read = tokio::spawn({
            let g = g.clone();
            async move { g.position(Duration::from_secs(60)).await }
        });
        tokio::task::yield_now().await;
        let batch = g.next_batch(&mut shutdown).await;
        assert_eq!(batch, Some(1));
        g.answer(1, None);
        assert_eq!(read.await.ok().flatten(), None);
        assert_eq!(g.failures.load(Ordering::Relaxed), 1);
    }
}
