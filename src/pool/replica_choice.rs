//! Choosing a replica for a read: the least busy one that has replayed what the read needs, else one to verify in the read's own round trip, else one asked for its position within `max_replica_wait_ms`, else the primary (each replica counting why).

use super::health::ServerHealth;
use super::lsn::ReadNeed;
use super::role::Role;
use super::routing::PrimaryReason;
use super::server_pool::ServerPool;
use super::set::{AcquireError, Lease, PoolSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What a read asks a replica when its polled position is behind.
pub const REPLAY_POSITION_SQL: &str = "SELECT pg_last_wal_replay_lsn()::text";

/// Position questions asked back to back before a read starts pausing between them.
const IMMEDIATE_ASKS: u32 = 3;

/// Why `h` could not take a read that its polled position alone did not allow (`behind`).
fn reason_not_serving(h: &ServerHealth, behind: PrimaryReason) -> PrimaryReason {
    if h.is_banned() || h.is_suspect() {
        PrimaryReason::Banned
    } else if !h.lag_ok() {
        PrimaryReason::LagLimit
    } else {
        behind
    }
}

impl PoolSet {
    /// A replica for a read, or `None` when the read must go to the primary (each replica then
    /// counts why).
    pub(super) async fn acquire_read(
        &self,
        need: ReadNeed,
        in_line: bool,
    ) -> Result<Option<Lease>, AcquireError> {
        let min_lsn = match need {
            ReadNeed::Any => 0,
            ReadNeed::Lsn(l) => l,
            ReadNeed::Primary => {
                self.count_primary_reads(|_| PrimaryReason::PositionUnknown);
                return Ok(None);
            }
        };
        if let Some(lease) = self.acquire_replica(min_lsn).await? {
            lease.server.routing.served(false);
            return Ok(Some(lease));
        }
        let wait = self.settings.load().replica_wait;
        if min_lsn == 0 || wait.is_zero() {
            self.count_primary_reads(|h| reason_not_serving(h, PrimaryReason::Behind));
            return Ok(None);
        }
        if in_line {
            if let Some(lease) = self.lease_to_verify(min_lsn).await {
                return Ok(Some(lease));
            }
        }
        if let Some(lease) = self.wait_for_replica(min_lsn, wait).await {
            lease.server.routing.served(true);
            return Ok(Some(lease));
        }
        self.count_primary_reads(|h| reason_not_serving(h, PrimaryReason::WaitTimedOut));
        Ok(None)
    }

    fn count_primary_reads(&self, why: impl Fn(&ServerHealth) -> PrimaryReason) {
        // By the role each server has now: with role = "auto" the configured primary may be
        // the one in recovery.
        for p in self.all().filter(|p| p.server.role() == Role::Replica) {
            p.server.routing.to_primary(why(&p.server.health));
        }
    }

    /// The most advanced healthy replica, leased to run the read with its position question in
    /// the same round trip ([`Lease::verify`]). Asking first costs the read a round trip and the
    /// replica a wakeup; most answers would say it has already replayed the write (replay on a
    /// local replica takes well under a millisecond). `None` when no replica qualifies or the
    /// best one was found behind on its last in-line questions.
    async fn lease_to_verify(&self, min_lsn: u64) -> Option<Lease> {
        let pool = self.most_advanced()?;
        if !pool.server.routing.in_line_ok() {
            return None;
        }
        let mut lease = self.acquire_from(pool).await.ok()?;
        pool.server.routing.checked_in_line();
        lease.verify = Some(min_lsn);
        Some(lease)
    }

    fn most_advanced(&self) -> Option<&ServerPool> {
        self.all()
            .filter(|p| p.server.health.can_read(0))
            .max_by_key(|p| p.server.health.lsn())
    }

    /// The polled position of every healthy replica is behind `min_lsn`: ask the most advanced
    /// one directly, again until `wait` has passed. The polls trail the replica by up to one
    /// `lag_poll_ms`, far more than a local replica's own lag, so without asking every read of a
    /// table written more often than that would go to the primary.
    async fn wait_for_replica(&self, min_lsn: u64, wait: Duration) -> Option<Lease> {
        let pool = self.most_advanced()?;
        // The connection is taken as any replica read takes one (a cold pool logs in first,
        // which alone can exceed the bound); the bound is on waiting for replay.
        let mut lease = self.acquire_from(pool).await.ok()?;
        let started = Instant::now();
        let deadline = started + wait;
        let routing = &pool.server.routing;
        let mut asked_at_once = 0;
        loop {
            routing.position_checks.fetch_add(1, Ordering::Relaxed);
            let left = deadline.saturating_duration_since(Instant::now());
            let asked = tokio::time::timeout(
                left.max(Duration::from_millis(1)),
                lease.conn().query_value(REPLAY_POSITION_SQL),
            )
            .await;
            let replayed = match asked {
                Ok(Ok(Some(text))) => crate::protocol::lsn::parse(&text),
                // No longer in recovery, or the connection failed: the health check decides.
                Ok(Ok(None)) | Ok(Err(_)) => None,
                Err(_) => {
                    // The question is still in flight: the connection's state is unknown.
                    lease.discard();
                    routing.record_wait(started.elapsed().as_micros() as u64);
                    return None;
                }
            };
            let Some(replayed) = replayed else {
                lease.discard();
                return None;
            };
            pool.server.health.advance_lsn(replayed);
            if replayed >= min_lsn {
                routing.caught_up();
                routing.record_wait(started.elapsed().as_micros() as u64);
                return Some(lease);
            }
            if Instant::now() >= deadline {
                routing.record_wait(started.elapsed().as_micros() as u64);
                return None;
            }
            // The first questions follow at once: replay on a local replica takes well under a
            // millisecond, and a timer would round any pause up to the runtime's 1 ms tick.
            // A replica still behind after that is lagging for real: ask once per tick.
            asked_at_once += 1;
            if asked_at_once > IMMEDIATE_ASKS {
                tokio::time::sleep(Duration::from_millis(1).min(left)).await;
            }
        }
    }

    async fn acquire_replica(&self, min_lsn: u64) -> Result<Option<Lease>, AcquireError> {
        // Least outstanding requests among eligible replicas; on connect failure try the next.
        let mut tried = 0u64;
        loop {
            let candidate = self
                .replicas
                .iter()
                .chain(std::iter::once(&self.primary))
                .enumerate()
                .filter(|(i, p)| tried & (1 << (i % 64)) == 0 && p.server.health.can_read(min_lsn))
                .min_by_key(|(_, p)| p.server.outstanding.load(Ordering::Relaxed));
            let Some((i, pool)) = candidate else {
                return Ok(None);
            };
            tried |= 1 << (i % 64);
            match self.acquire_from(pool).await {
                Ok(lease) => return Ok(Some(lease)),
                Err(AcquireError::Backend { source, .. }) => {
                    tracing::warn!(server = %pool.server.addr, error = %source, "replica unreachable; reads go elsewhere while it is banned");
                    pool.server.health.ban(&source.to_string());
                }
                Err(e) => return Err(e),
            }
        }
    }
}
