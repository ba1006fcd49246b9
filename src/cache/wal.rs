//! Follows the primary's WAL through a temporary logical replication slot (test_decoding) and invalidates by relation at every commit.

use super::decoding::Decoder;
use super::wal_status::{Follower, Followers, WalError};
use super::ResultCache;
use crate::config::{Config, Database, User};
use crate::router::Router;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Progress of the WAL followers, for the stats endpoint.
#[derive(Default, Debug)]
pub struct WalProgress {
    /// Transactions decoded that changed at least one relation.
    pub transactions: AtomicU64,
    /// Highest commit LSN seen.
    pub lsn: AtomicU64,
    /// Followers currently attached to their slot.
    pub attached: AtomicU64,
    /// Per database: running or why not, and how far the WAL is applied.
    pub followers: Followers,
}

/// Where decoded commits go: the cache, through the write reach routing uses.
#[derive(Clone)]
pub struct Sink {
    pub cache: Arc<ResultCache>,
    pub router: Arc<Router>,
}

impl Sink {
    /// A commit changed `tables`: entries that read them, or a relation their rows show
    /// through, are stale; all are when a write to one of them has unknown reach.
    fn commit<T: AsRef<str>>(&self, db: &Arc<str>, tables: &[T]) {
        match self.router.logged_reach(tables) {
            Some(reach) => self.cache.invalidate_from_wal(db, &reach),
            None => self.cache.invalidate_all_from_wal(),
        }
    }
}

/// One follower per database; reconnects with backoff until shutdown.
pub async fn follow(
    config: Arc<Config>,
    sink: Sink,
    progress: Arc<WalProgress>,
    shutdown: watch::Receiver<bool>,
) {
    let user = match &sink.cache.settings.wal_user {
        Some(name) => config.user(name),
        None => config
            .users
            .iter()
            .find(|u| u.admin)
            .or(config.users.first()),
    };
    let Some(user) = user.cloned() else {
        let e = WalError::NoUser;
        tracing::error!(error = %e, "WAL invalidation cannot start");
        for db in &config.databases {
            progress.followers.get(&db.name).stopped("", e.clone());
        }
        return;
    };
    let mut tasks = Vec::new();
    for db in config.databases.clone() {
        tasks.push(tokio::spawn(follow_database(
            config.clone(),
            sink.clone(),
            progress.clone(),
            db,
            user.clone(),
            shutdown.clone(),
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn follow_database(
    config: Arc<Config>,
    sink: Sink,
    progress: Arc<WalProgress>,
    db: Database,
    user: User,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    let follower = progress.followers.get(&db.name);
    loop {
        match run(
            &config,
            &sink,
            &progress,
            &follower,
            &db,
            &user,
            &mut shutdown,
        )
        .await
        {
            Ok(()) => return,
            Err(e) => {
                // Writes made while detached are not seen: drop everything once back.
                sink.cache.invalidate_all();
                tracing::warn!(database = %db.name, user = %user.name, error = %e, sqlstate = e.sqlstate().unwrap_or(""),
                    retry_ms = backoff.as_millis() as u64,
                    "WAL invalidation stopped; the cache is bounded by its TTL until it resumes");
                follower.stopped(&user.name, e);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Where the primary has flushed its WAL: a slot read that starts after this decodes every
/// commit up to it (logical decoding reads up to the flush position at its start).
const FLUSH_SQL: &str = "select pg_current_wal_flush_lsn()::text";

async fn run(
    config: &Config,
    sink: &Sink,
    progress: &WalProgress,
    follower: &Follower,
    db: &Database,
    user: &User,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), WalError> {
    let pg = |step| move |e: tokio_postgres::Error| WalError::from_pg(step, &user.name, &e);
    let client = crate::backend::control::connect(config, db, user, "pgsplit-cache-wal")
        .await
        .map_err(pg("connecting to the primary"))?;
    let slot = format!(
        "pgsplit_cache_{}_{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    // Temporary: the server drops it when this connection ends, so a dead proxy never
    // holds WAL back.
    client
        .query_one(
            "select lsn::text from pg_create_logical_replication_slot($1, 'test_decoding', true)",
            &[&slot],
        )
        .await
        .map_err(pg("creating a temporary logical replication slot"))?;
    let name: Arc<str> = Arc::from(db.name.as_str());
    // Writes before the slot existed are not in it.
    sink.cache.invalidate_all();
    progress.attached.fetch_add(1, Ordering::Relaxed);
    let _detach = Detach(progress, follower);
    follower.running(&user.name);
    tracing::info!(database = %db.name, slot = %slot, "following the WAL for cache invalidation");
    let read = client
        .prepare(
            "select lsn::text, data from pg_logical_slot_get_changes($1, NULL, 10000, \
             'include-xids', '0', 'skip-empty-xacts', '1')",
        )
        .await
        .map_err(pg("preparing the slot read"))?;
    let flush = client
        .prepare(FLUSH_SQL)
        .await
        .map_err(pg("preparing the flush position read"))?;
    let mut decoder = Decoder::default();
    loop {
        let flushed: Option<String> = client
            .query_one(&flush, &[])
            .await
            .and_then(|r| r.try_get(0))
            .map_err(pg("reading the flush position"))?;
        let rows = client
            .query(&read, &[&slot])
            .await
            .map_err(pg("reading the slot"))?;
        let full = rows.len() >= 10000;
        for r in rows {
            let (Ok(lsn), Ok(data)) = (r.try_get::<_, &str>(0), r.try_get::<_, &str>(1)) else {
                sink.cache.invalidate_all();
                return Err(WalError::Decode("a slot row without lsn or data".into()));
            };
            match decoder.feed(data) {
                Ok(Some(tables)) => {
                    sink.commit(&name, &tables);
                    progress.transactions.fetch_add(1, Ordering::Relaxed);
                    if let Some(lsn) = crate::protocol::lsn::parse(lsn) {
                        progress.lsn.fetch_max(lsn, Ordering::Relaxed);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    sink.cache.invalidate_all();
                    return Err(WalError::Decode(e.to_string()));
                }
            }
        }
        if full {
            continue;
        }
        // Every commit flushed before this read has now invalidated what it wrote.
        if let Some(lsn) = flushed.as_deref().and_then(crate::protocol::lsn::parse) {
            follower.applied_to(lsn);
        }
        tokio::select! {
            _ = tokio::time::sleep(sink.cache.settings.wal_poll) => {}
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

struct Detach<'a>(&'a WalProgress, &'a Follower);

impl Drop for Detach<'_> {
    fn drop(&mut self) {
        self.0.attached.fetch_sub(1, Ordering::Relaxed);
        // Detached: commits from now on are not seen, so nothing is applied.
        self.1.applied.store(0, Ordering::Release);
    }
}
