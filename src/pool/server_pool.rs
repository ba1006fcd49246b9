//! One server's pool for one database/user: a deadpool per data worker under one cap, and its acquisition stats.
//!
//! Each worker leases from its own deadpool (pool/worker.rs), so a connection is only ever
//! used on the thread whose reactor it is registered with. The deadpools are not fixed
//! shares: any worker may use the whole pool. The cap bounds the connections in use across
//! them and `OpenSlots` the connections open; a worker that must open one while the pool has
//! all of its connections open closes an idle one of another worker's first, so the server
//! never sees more connections than the pool's size.

use super::cap::Cap;
use super::manager::{ChurnCounters, OpenSlots, ServerManager};
use super::set::ServerInfo;
use crate::stats::LatencyHistogram;
use deadpool::managed::Pool;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ACQUIRE_SHARDS: usize = 8;

pub struct ServerPool {
    pub name: String,
    pub server: Arc<ServerInfo>,
    /// One deadpool per data worker, indexed by `worker::current()`.
    pools: Box<[Pool<ServerManager>]>,
    churn: Arc<ChurnCounters>,
    /// The connections open across the deadpools, shared with their managers.
    slots: Arc<OpenSlots>,
    /// How many connections may be in use, across the workers; resized on reload.
    pub cap: Cap,
    pub timeouts: AtomicU64,
    /// Clients waiting for a connection right now (deadpool's own count misses those queued
    /// on the cap, which is where they wait).
    pub waiting: AtomicUsize,
    /// Time clients waited for a connection, successful acquisitions only; sharded so that
    /// concurrent acquisitions rarely meet on one lock.
    acquire_time: [parking_lot::Mutex<LatencyHistogram>; ACQUIRE_SHARDS],
    pub acquisitions: AtomicU64,
    /// Acquisitions served within the efficiency target (5 ms by default).
    pub fast_acquisitions: AtomicU64,
    /// Idle connections of one worker closed so that another could open one.
    pub handed_over: AtomicU64,
    fast_us: u64,
}

impl ServerPool {
    /// `pools` holds one deadpool per worker, each as large as the whole pool (`size`), whose
    /// managers share `churn` and `slots`.
    pub(super) fn new(
        name: String,
        server: Arc<ServerInfo>,
        pools: Box<[Pool<ServerManager>]>,
        (churn, slots): (Arc<ChurnCounters>, Arc<OpenSlots>),
        size: usize,
        fast_us: u64,
    ) -> ServerPool {
        ServerPool {
            name,
            server,
            pools,
            churn,
            slots,
            cap: Cap::new(size),
            timeouts: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            acquire_time: std::array::from_fn(|_| parking_lot::Mutex::new(LatencyHistogram::new())),
            acquisitions: AtomicU64::new(0),
            fast_acquisitions: AtomicU64::new(0),
            handed_over: AtomicU64::new(0),
            fast_us,
        }
    }

    pub fn churn(&self) -> &ChurnCounters {
        &self.churn
    }

    /// The deadpool of this thread's worker.
    pub(super) fn local(&self) -> &Pool<ServerManager> {
        &self.pools[super::worker::current() % self.pools.len()]
    }

    /// Every worker's deadpool, for sweeps.
    pub(super) fn shares(&self) -> &[Pool<ServerManager>] {
        &self.pools
    }

    /// Called when this worker's deadpool could not open a connection because the pool has
    /// all of its connections open: closes the least recently used idle connection of another
    /// worker's. The caller holds a place under the cap that is not in use, so some connection
    /// is idle or on its way back; if none is idle yet, waits a moment before the caller asks
    /// again (within its acquire timeout).
    pub(super) async fn make_room(&self) {
        let me = super::worker::current() % self.pools.len();
        for (i, p) in self.pools.iter().enumerate() {
            if i == me {
                continue;
            }
            // deadpool keeps idle connections least recently used first.
            let mut first = true;
            let removed = p.retain(|_, _| !std::mem::take(&mut first)).removed;
            if !removed.is_empty() {
                self.handed_over.fetch_add(1, Ordering::Relaxed);
                for conn in removed {
                    tokio::spawn(conn.terminate());
                }
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    /// The workers' deadpools summed; `max_size` is the cap, the limit that counts.
    pub fn status(&self) -> deadpool::Status {
        let mut all = deadpool::Status {
            max_size: self.cap.size(),
            size: 0,
            available: 0,
            waiting: 0,
        };
        for p in self.pools.iter() {
            let s = p.status();
            all.size += s.size;
            all.available += s.available;
            all.waiting += s.waiting;
        }
        all
    }

    pub(super) fn resize(&self, size: usize) {
        self.cap.resize(size);
        self.slots.set_limit(size);
        for p in self.pools.iter() {
            p.resize(size);
        }
    }

    pub(super) fn record_acquire(&self, waited: Duration) {
        let us = waited.as_micros() as u64;
        let n = self.acquisitions.fetch_add(1, Ordering::Relaxed);
        if us <= self.fast_us {
            self.fast_acquisitions.fetch_add(1, Ordering::Relaxed);
        }
        self.acquire_time[n as usize % ACQUIRE_SHARDS]
            .lock()
            .record_us(us);
    }

    /// Every acquisition's wait, merged from the shards.
    pub fn acquire_time(&self) -> LatencyHistogram {
        let mut all = LatencyHistogram::new();
        for shard in &self.acquire_time {
            all.merge(&shard.lock());
        }
        all
    }

    /// Share of acquisitions served within the target time; `None` before the first.
    pub fn efficiency(&self) -> Option<f64> {
        let all = self.acquisitions.load(Ordering::Relaxed);
        (all > 0).then(|| self.fast_acquisitions.load(Ordering::Relaxed) as f64 / all as f64)
    }

    pub fn reset_stats(&self) {
        self.acquisitions.store(0, Ordering::Relaxed);
        self.fast_acquisitions.store(0, Ordering::Relaxed);
        self.timeouts.store(0, Ordering::Relaxed);
        self.handed_over.store(0, Ordering::Relaxed);
        for shard in &self.acquire_time {
            shard.lock().reset();
        }
    }
}
