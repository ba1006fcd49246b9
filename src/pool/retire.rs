//! Closes server connections left idle past `server_idle_timeout_ms` after a peak, down to `pool.min_idle`.
//!
//! With LIFO reuse the connections at the bottom of the idle stack are never checked out
//! again, so the checkout-time idle check never sees them: without this sweep a pool that grew
//! at a peak would hold its peak's backends (memory, slots on the server) for good.

use super::manager::ServerManager;
use super::set::PoolSet;
use super::worker::split;
use deadpool::managed::Pool;
use std::sync::Weak;
use std::time::Duration;

/// Idle connections of `pool` unused for longer than `idle_timeout`, least recently used first,
/// are closed until `min_idle` idle ones remain. Returns how many were closed.
pub fn retire_idle(pool: &Pool<ServerManager>, idle_timeout: Duration, min_idle: usize) -> usize {
    let idle = pool.status().available;
    let mut may_close = idle.saturating_sub(min_idle);
    // deadpool keeps idle connections oldest-used first under LIFO (it pops from the back).
    let removed = pool
        .retain(|_, metrics| {
            if may_close > 0 && metrics.last_used() > idle_timeout {
                may_close -= 1;
                false
            } else {
                true
            }
        })
        .removed;
    let n = removed.len();
    for conn in removed {
        tokio::spawn(conn.terminate());
    }
    n
}

/// Sweeps a pool set's pools until the set is dropped; started once per set.
pub fn spawn_sweeper(set: Weak<PoolSet>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        loop {
            let Some(set) = set.upgrade() else { return };
            let (idle_timeout, min_idle) = set.retire_settings();
            for p in set.all() {
                // `min_idle` is the pool's, so each worker's share keeps its part of it.
                let n = p.shares().len();
                let closed: usize = p
                    .shares()
                    .iter()
                    .enumerate()
                    .map(|(i, share)| retire_idle(share, idle_timeout, split(min_idle, i, n)))
                    .sum();
                if closed > 0 {
                    tracing::debug!(pool = %p.name, closed, "closed server connections idle past server_idle_timeout_ms");
                }
            }
            drop(set);
            // A quarter of the timeout keeps a connection's overstay under 25 %, within 1 s.
            let pause = (idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
            tokio::time::sleep(pause).await;
        }
    });
}
