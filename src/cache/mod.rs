//! The result cache: raw server replies to cacheable reads, keyed by everything that changes them and invalidated by table generations.

pub mod decoding;
pub mod generations;
pub mod wal;
pub mod wal_status;

pub use crate::config::{CacheSettings, Invalidation, Rule, RuleTarget};
use crate::protocol::messages::command_rows;
use crate::router::relation_key;
use bytes::{Bytes, BytesMut};
use generations::{Generations, Snapshot};
use moka::notification::RemovalCause;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Everything a result depends on besides the data: who asks, with which settings, what.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct CacheKey {
    pub db: Arc<str>,
    /// None when entries are shared across users (`cache.share_across_users`).
    pub user: Option<Arc<str>>,
    /// Hash of the session settings that can change results (search_path, role, TimeZone...).
    pub settings: u64,
    /// The request as the client sent it: Query text, or statement text, parameter types,
    /// parameter values and formats, result formats, and which replies it asked for.
    pub request: Bytes,
}

/// A stored reply.
#[derive(Debug)]
pub struct Entry {
    /// From ParameterDescription / RowDescription (if asked) up to CommandComplete, exactly as the server sent it.
    pub reply: Bytes,
    pub rows: u64,
    snapshot: Snapshot,
    ttl: Duration,
    weight: u32,
    /// `consistency = "global"`: the primary's WAL position its server had replayed (0: unknown).
    position: u64,
    /// What a reader derived from `reply` on the first hit, so later hits need not derive it
    /// again (the N+1 detector's value hashes); the cache never looks inside.
    pub derived: std::sync::OnceLock<Arc<dyn std::any::Any + Send + Sync>>,
}

#[cfg(test)]
impl Entry {
    /// An entry holding `reply`, for tests of what readers do with a hit.
    pub fn for_reply(reply: Bytes, rows: u64) -> Entry {
        Entry {
            reply,
            rows,
            snapshot: Snapshot {
                tables: Box::new([]),
                global: 0,
            },
            ttl: Duration::ZERO,
            weight: 0,
            position: 0,
            derived: std::sync::OnceLock::new(),
        }
    }
}

/// What a hit must satisfy under `consistency = "global"`.
pub struct Fresh {
    /// The primary's WAL position read after the request arrived; None: not known.
    pub position: Option<u64>,
    /// Where the database's WAL follower has applied every commit (0: not following).
    pub applied: u64,
    /// Taken before `position` was read: a fill keeps it, so a write that the WAL follower
    /// reported before the snapshot is at or below `position`, which the filling server replayed.
    pub snapshot: Snapshot,
}

impl Fresh {
    /// Whether `e` shows every commit up to `position`: the follower has applied that far (so
    /// any later write to its tables changed their generations), or `e` was read at or after it.
    fn admits(&self, e: &Entry) -> bool {
        self.position
            .is_some_and(|p| self.applied >= p || (e.position > 0 && e.position >= p))
    }
}

/// What a lookup found.
pub enum Lookup {
    Hit(Arc<Entry>),
    /// Not cached: send to the server and capture the reply into this fill.
    Fill(Box<Fill>),
    /// An identical request is being answered for another client: wait for its entry.
    Wait(watch::Receiver<()>),
    /// A rule says never to cache this.
    Bypass,
}

/// A reply being captured for the cache.
pub struct Fill {
    key: CacheKey,
    snapshot: Snapshot,
    position: u64,
    ttl: Duration,
    buf: BytesMut,
    rows: u64,
    ok: bool,
    max: usize,
    _guard: Inflight,
}

impl std::fmt::Debug for Fill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fill")
            .field("bytes", &self.buf.len())
            .field("rows", &self.rows)
            .field("ok", &self.ok)
            .finish()
    }
}

impl Fill {
    /// One message the server sent for the request, header included.
    pub fn feed(&mut self, t: u8, msg: &[u8]) {
        use crate::protocol::tags::backend as tag;
        if !self.ok {
            return;
        }
        match t {
            // Synthesized on replay, as the client's messages ask.
            tag::PARSE_COMPLETE | tag::BIND_COMPLETE => {}
            tag::PARAMETER_DESCRIPTION
            | tag::ROW_DESCRIPTION
            | tag::NO_DATA
            | tag::DATA_ROW
            | tag::COMMAND_COMPLETE
            | tag::EMPTY_QUERY_RESPONSE => {
                if self.buf.len() + msg.len() > self.max {
                    self.abort();
                    return;
                }
                if t == tag::COMMAND_COMPLETE {
                    self.rows += command_rows(&msg[crate::protocol::frame::HEADER_LEN..]);
                }
                self.buf.extend_from_slice(msg);
            }
            // Errors, notices, parameter changes, COPY, a suspended portal: not a plain result.
            _ => self.abort(),
        }
    }

    /// Some table the read depends on was written so recently that a replica may not have
    /// replayed it: the fill must be read from the primary.
    pub fn needs_primary(&self, cache: &ResultCache) -> bool {
        cache.generations.written_within(
            &self.snapshot,
            cache.live.load().replica_fill_delay,
            false,
        )
    }

    fn abort(&mut self) {
        self.ok = false;
        self.buf = BytesMut::new();
    }
}

/// Marks a key as being filled; dropping it (insert, abort, or the session's end) wakes waiters.
struct Inflight {
    cache: Arc<ResultCache>,
    key: CacheKey,
    id: u64,
    _tx: watch::Sender<()>,
}

impl Drop for Inflight {
    fn drop(&mut self) {
        let mut map = self.cache.inflight.lock();
        if map.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            map.remove(&self.key);
        }
    }
}

/// Cumulative counters, read by the stats endpoint.
#[derive(Default, Debug)]
pub struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub coalesced: AtomicU64,
    pub bypassed: AtomicU64,
    pub fills: AtomicU64,
    pub fills_aborted: AtomicU64,
    pub fills_stale: AtomicU64,
    pub fills_lagging: AtomicU64,
    /// `consistency = "global"`: entries found but not served, their freshness unproven.
    pub unproven: AtomicU64,
    pub stale_dropped: AtomicU64,
    pub invalidations_write: AtomicU64,
    pub invalidations_unknown: AtomicU64,
    pub invalidations_wal: AtomicU64,
    pub evictions_size: AtomicU64,
    pub evictions_expired: AtomicU64,
}

pub struct ResultCache {
    /// As started: enabled, max_bytes, invalidation and the WAL keys need a restart.
    pub settings: CacheSettings,
    /// Replaced on reload: ttl, rules, max_entry_bytes, share_across_users, coalesce_wait and
    /// replica_fill_delay apply to the next lookup.
    pub live: arc_swap::ArcSwap<CacheSettings>,
    entries: moka::sync::Cache<CacheKey, Arc<Entry>>,
    pub generations: Generations,
    inflight: Mutex<HashMap<CacheKey, (u64, watch::Receiver<()>)>>,
    next_id: AtomicU64,
    pub counters: Arc<Counters>,
}

struct PerEntryTtl;

impl moka::Expiry<CacheKey, Arc<Entry>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<Entry>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl ResultCache {
    pub fn new(settings: CacheSettings) -> Arc<ResultCache> {
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let entries = moka::sync::Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(|_k: &CacheKey, v: &Arc<Entry>| v.weight)
            .expire_after(PerEntryTtl)
            .eviction_listener(move |_k, _v, cause| match cause {
                RemovalCause::Size => {
                    c.evictions_size.fetch_add(1, Ordering::Relaxed);
                }
                RemovalCause::Expired => {
                    c.evictions_expired.fetch_add(1, Ordering::Relaxed);
                }
                RemovalCause::Explicit | RemovalCause::Replaced => {}
            })
            .build();
        Arc::new(ResultCache {
            live: arc_swap::ArcSwap::from_pointee(settings.clone()),
            settings,
            entries,
            generations: Generations::default(),
            inflight: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            counters,
        })
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// The TTL for a statement, or None when a rule says never to cache it.
    fn ttl_for(&self, fingerprint: u64, tables: &[String]) -> Option<Duration> {
        let live = self.live.load();
        let mut ttl = live.ttl;
        for r in &live.rules {
            let applies = match &r.target {
                RuleTarget::Fingerprint(f) => *f == fingerprint,
                RuleTarget::Table(t) => tables.iter().any(|x| relation_key(x) == t.as_str()),
            };
            if applies {
                ttl = ttl.min(r.ttl?);
            }
        }
        Some(ttl)
    }

    /// Finds a valid entry, or registers the caller as the one filling it.
    pub fn lookup(self: &Arc<Self>, key: &CacheKey, fingerprint: u64, tables: &[String]) -> Lookup {
        self.lookup_at(key, fingerprint, tables, None)
    }

    /// `lookup`, where under `consistency = "global"` a hit must also pass `fresh`.
    pub fn lookup_at(
        self: &Arc<Self>,
        key: &CacheKey,
        fingerprint: u64,
        tables: &[String],
        fresh: Option<&Fresh>,
    ) -> Lookup {
        // Rules first: a `never` rule added by a reload also stops entries already held.
        let Some(ttl) = self.ttl_for(fingerprint, tables) else {
            self.counters.bypassed.fetch_add(1, Ordering::Relaxed);
            return Lookup::Bypass;
        };
        if let Some(e) = self.entries.get(key) {
            if !self.generations.unchanged(&e.snapshot) {
                self.entries.invalidate(key);
                self.counters.stale_dropped.fetch_add(1, Ordering::Relaxed);
            } else if fresh.is_none_or(|f| f.admits(&e)) {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                return Lookup::Hit(e);
            } else {
                // Kept: it may be proven fresh for a later read; this one fills it anew.
                self.counters.unproven.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut map = self.inflight.lock();
        if let Some((_, rx)) = map.get(key) {
            return Lookup::Wait(rx.clone());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(());
        map.insert(key.clone(), (id, rx));
        drop(map);
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        Lookup::Fill(Box::new(Fill {
            key: key.clone(),
            snapshot: match fresh {
                Some(f) => f.snapshot.clone(),
                None => self.generations.snapshot(&key.db, tables),
            },
            position: fresh.and_then(|f| f.position).unwrap_or(0),
            ttl,
            buf: BytesMut::new(),
            rows: 0,
            ok: true,
            max: self.live.load().max_entry_bytes,
            _guard: Inflight {
                cache: self.clone(),
                key: key.clone(),
                id,
                _tx: tx,
            },
        }))
    }

    /// The request that a fill captured completed: store its reply if it is still current.
    /// `from_replica`: a replica answered, which may not have replayed the latest writes. With
    /// `lsn_routed` it had replayed every write the proxy acknowledged to the tables read, so
    /// only writes the WAL reported (made outside the proxy, their positions untracked) keep
    /// its answer out.
    pub fn finish(&self, fill: Box<Fill>, succeeded: bool, from_replica: bool, lsn_routed: bool) {
        let Fill {
            key,
            snapshot,
            position,
            ttl,
            buf,
            rows,
            ok,
            _guard,
            ..
        } = *fill;
        let c = &self.counters;
        if !ok || !succeeded || buf.is_empty() {
            c.fills_aborted.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if !self.generations.unchanged(&snapshot) {
            // A write landed while the read ran: its answer may predate it.
            c.fills_stale.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if from_replica
            && self.generations.written_within(
                &snapshot,
                self.live.load().replica_fill_delay,
                lsn_routed,
            )
        {
            c.fills_lagging.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let reply = buf.freeze();
        let weight = (reply.len() + key.request.len() + 160).min(u32::MAX as usize) as u32;
        self.entries.insert(
            key,
            Arc::new(Entry {
                reply,
                rows,
                snapshot,
                ttl,
                weight,
                position,
                derived: std::sync::OnceLock::new(),
            }),
        );
        c.fills.fetch_add(1, Ordering::Relaxed);
        // `_guard` drops here, after the insert, so woken waiters find the entry.
    }

    /// A write to these tables is about to be acknowledged.
    pub fn invalidate_tables<T: AsRef<str>>(&self, db: &Arc<str>, tables: &[T]) {
        if tables.is_empty() {
            return;
        }
        self.generations.bump(db, tables, false);
        self.counters
            .invalidations_write
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A write to unknown tables is about to be acknowledged.
    pub fn invalidate_all(&self) {
        self.generations.bump_all(false);
        self.counters
            .invalidations_unknown
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A transaction committed on the primary changed what reads of these relations return
    /// (from the WAL, with the relations they show through: `Router::logged_reach`).
    pub fn invalidate_from_wal<T: AsRef<str>>(&self, db: &Arc<str>, tables: &[T]) {
        self.generations.bump(db, tables, true);
        self.counters
            .invalidations_wal
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A transaction committed on the primary wrote something of unknown reach (from the WAL).
    pub fn invalidate_all_from_wal(&self) {
        self.generations.bump_all(true);
        self.counters
            .invalidations_wal
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn entry_count(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    pub fn weighted_size(&self) -> u64 {
        self.entries.weighted_size()
    }

    /// Drops every entry (the stats reset does not; this is for the admin console).
    pub fn clear(&self) {
        self.entries.invalidate_all();
        self.generations.bump_all(false);
    }
}

#[cfg(test)]
mod tests;
