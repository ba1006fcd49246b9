//! Follows the primary's WAL through a temporary logical replication slot (test_decoding) and invalidates by relation at every commit.

use super::decoding::Decoder;
use super::ResultCache;
use crate::config::{Config, Database, User};
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
}

/// One follower per database; reconnects with backoff until shutdown.
pub async fn follow(
    config: Arc<Config>,
    cache: Arc<ResultCache>,
    progress: Arc<WalProgress>,
    shutdown: watch::Receiver<bool>,
) {
    let user = match &cache.settings.wal_user {
        Some(name) => config.user(name),
        None => config
            .users
            .iter()
            .find(|u| u.admin)
            .or(config.users.first()),
    };
    let Some(user) = user.cloned() else {
        tracing::error!("cache.invalidation = \"wal\" needs a configured user to read the WAL");
        return;
    };
    let mut tasks = Vec::new();
    for db in config.databases.clone() {
        tasks.push(tokio::spawn(follow_database(
            config.clone(),
            cache.clone(),
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
    cache: Arc<ResultCache>,
    progress: Arc<WalProgress>,
    db: Database,
    user: User,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match run(&config, &cache, &progress, &db, &user, &mut shutdown).await {
            Ok(()) => return,
            Err(e) => {
                // Writes made while detached are not seen: drop everything once back.
                cache.invalidate_all();
                tracing::warn!(database = %db.name, error = %e, retry_ms = backoff.as_millis() as u64,
                    "WAL invalidation stopped; the cache is bounded by its TTL until it resumes");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn run(
    config: &Config,
    cache: &ResultCache,
    progress: &WalProgress,
    db: &Database,
    user: &User,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let client = super::catalog::connect(config, db, user, "pgsplit-cache-wal").await?;
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
        .map_err(|e| format!("cannot create a logical replication slot: {e}"))?;
    let name: Arc<str> = Arc::from(db.name.as_str());
    // Writes before the slot existed are not in it.
    cache.invalidate_all();
    progress.attached.fetch_add(1, Ordering::Relaxed);
    let _detach = Detach(progress);
    tracing::info!(database = %db.name, slot = %slot, "following the WAL for cache invalidation");
    let read = client
        .prepare(
            "select lsn::text, data from pg_logical_slot_get_changes($1, NULL, 10000, \
             'include-xids', '0', 'skip-empty-xacts', '1')",
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut decoder = Decoder::default();
    loop {
        let rows = client
            .query(&read, &[&slot])
            .await
            .map_err(|e| e.to_string())?;
        let full = rows.len() >= 10000;
        for r in rows {
            let lsn: &str = r.get(0);
            let data: &str = r.get(1);
            match decoder.feed(data) {
                Ok(Some(tables)) => {
                    cache.invalidate_from_wal(&name, &tables);
                    progress.transactions.fetch_add(1, Ordering::Relaxed);
                    if let Some(lsn) = crate::protocol::lsn::parse(lsn) {
                        progress.lsn.fetch_max(lsn, Ordering::Relaxed);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    cache.invalidate_all();
                    return Err(e.to_string());
                }
            }
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(cache.settings.wal_poll) => {}
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

struct Detach<'a>(&'a WalProgress);

impl Drop for Detach<'_> {
    fn drop(&mut self) {
        self.0.attached.fetch_sub(1, Ordering::Relaxed);
    }
}
