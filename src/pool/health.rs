//! One server's published health: role, ban with backoff, replay position and lag, read lock-free on every request.

use super::role::Role;
use crate::config::Config;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Instant;
use tokio::sync::watch;

/// Limits a replica must meet to take reads, and ban lengths; copied from the config at start.
#[derive(Clone, Copy, Debug)]
pub struct HealthPolicy {
    pub ban_ms: u64,
    pub max_ban_ms: u64,
    /// 0: no limit.
    pub max_lag_bytes: u64,
    pub max_lag_ms: u64,
}

impl HealthPolicy {
    pub fn from_config(c: &Config) -> HealthPolicy {
        HealthPolicy {
            ban_ms: c.health.ban.as_millis() as u64,
            max_ban_ms: c.health.max_ban.as_millis() as u64,
            max_lag_bytes: c.replication.max_lag_bytes,
            max_lag_ms: c.replication.max_lag_ms,
        }
    }
}

const ROLE_PRIMARY: u8 = 0;
const ROLE_REPLICA: u8 = 1;

/// Written by the server's health task (and by requests that find it dead), read by routing.
#[derive(Debug)]
pub struct ServerHealth {
    pub policy: HealthPolicy,
    /// `role = "auto"`: the health task sets `role` from pg_is_in_recovery().
    pub auto_role: bool,
    role: AtomicU8,
    epoch: Instant,
    /// No new requests before this instant (ms since `epoch`).
    banned_until_ms: AtomicU64,
    /// Bans in a row without a long healthy spell between them; lengthens the next ban.
    strikes: AtomicU32,
    /// Set by every ban, cleared by the next passing check: a ban outlasts its length while the
    /// checks after it fail or hang, so a frozen server never looks healthy between two bans.
    unproven: AtomicBool,
    /// A health task checks this server; without one a ban ends on time alone.
    checked: AtomicBool,
    /// Bumped each time a check finds the server not answering at all (a timeout): sessions
    /// waiting on it, or connecting to it, watch this to give up instead of waiting out a freeze.
    stalls: watch::Sender<u64>,
    /// Since when (ms since `epoch`, plus one so that 0 means "not healthy") checks pass.
    healthy_since_ms: AtomicU64,
    /// Replicas: last replayed WAL position; primary: current insert position. 0 = unknown.
    lsn: AtomicU64,
    lag_bytes: AtomicU64,
    lag_ms: AtomicU64,
    /// A poll has published lag figures at least once.
    polled: AtomicBool,
    /// One connection was lost under a read: no reads until the next check passes.
    suspect: AtomicBool,
    pub bans: AtomicU64,
    pub checks_failed: AtomicU64,
    /// A fixed-role server reports the other role; logged once per occurrence.
    pub role_mismatch: AtomicBool,
    last_error: parking_lot::Mutex<Option<String>>,
}

impl ServerHealth {
    pub fn new(role: Role, auto_role: bool, policy: HealthPolicy, epoch: Instant) -> ServerHealth {
        ServerHealth {
            policy,
            auto_role,
            role: AtomicU8::new(encode(role)),
            epoch,
            banned_until_ms: AtomicU64::new(0),
            strikes: AtomicU32::new(0),
            unproven: AtomicBool::new(false),
            checked: AtomicBool::new(false),
            stalls: watch::Sender::new(0),
            healthy_since_ms: AtomicU64::new(1),
            lsn: AtomicU64::new(0),
            lag_bytes: AtomicU64::new(0),
            lag_ms: AtomicU64::new(0),
            polled: AtomicBool::new(false),
            suspect: AtomicBool::new(false),
            bans: AtomicU64::new(0),
            checks_failed: AtomicU64::new(0),
            role_mismatch: AtomicBool::new(false),
            last_error: parking_lot::Mutex::new(None),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn role(&self) -> Role {
        match self.role.load(Ordering::Relaxed) {
            ROLE_PRIMARY => Role::Primary,
            _ => Role::Replica,
        }
    }

    pub fn set_role(&self, role: Role) {
        self.role.store(encode(role), Ordering::Relaxed);
    }

    /// Remaining ban in ms, 0 when the server takes requests; at least 1 while a ban waits
    /// for a passing check.
    pub fn banned_for_ms(&self) -> u64 {
        // Never banned: no clock read, on every read routed.
        if self.banned_until_ms.load(Ordering::Relaxed) == 0 && !self.awaits_check() {
            return 0;
        }
        self.banned_for_ms_at(self.now_ms())
    }

    fn banned_for_ms_at(&self, now: u64) -> u64 {
        let left = self
            .banned_until_ms
            .load(Ordering::Relaxed)
            .saturating_sub(now);
        if self.awaits_check() {
            left.max(1)
        } else {
            left
        }
    }

    /// Banned, and no check has passed since: the ban lasts at least until one does.
    pub fn awaits_check(&self) -> bool {
        self.unproven.load(Ordering::Relaxed) && self.checked.load(Ordering::Relaxed)
    }

    /// The health task runs for this server from now on, so bans wait for its checks.
    pub fn set_checked(&self) {
        self.checked.store(true, Ordering::Relaxed);
    }

    pub fn is_banned(&self) -> bool {
        self.banned_for_ms() > 0
    }

    /// Keeps requests away after a failure. A server banned again soon after its last ban
    /// (flapping) is banned twice as long each time, up to `max_ban_ms`; a server that stays down
    /// is kept banned by its failing checks, one `ban_ms` at a time, so it returns quickly once up.
    pub fn ban(&self, reason: &str) {
        self.ban_at(self.now_ms(), reason)
    }

    fn ban_at(&self, now: u64, reason: &str) {
        self.healthy_since_ms.store(0, Ordering::Relaxed);
        *self.last_error.lock() = Some(reason.to_string());
        let until = self.banned_until_ms.load(Ordering::Relaxed);
        // Still banned, or no check has passed since the last ban: the same outage goes on
        // (a frozen server's checks time out longer than a ban lasts), not a new flap, so it
        // is not lengthened and the server returns one `ban_ms` after its checks pass.
        let ongoing = until > now || self.awaits_check();
        self.unproven.store(true, Ordering::Relaxed);
        let length = if ongoing {
            self.policy.ban_ms
        } else {
            let strikes = self.strikes.fetch_add(1, Ordering::Relaxed).min(16);
            self.bans.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(reason, strikes = strikes + 1, "server banned");
            self.policy
                .ban_ms
                .saturating_mul(1 << strikes)
                .min(self.policy.max_ban_ms)
        };
        self.banned_until_ms
            .fetch_max(now + length, Ordering::Relaxed);
    }

    /// A health check passed. After `max_ban_ms` of passing checks, past flapping is forgiven.
    pub fn check_passed(&self) {
        self.check_passed_at(self.now_ms())
    }

    fn check_passed_at(&self, now: u64) {
        self.suspect.store(false, Ordering::Relaxed);
        self.unproven.store(false, Ordering::Relaxed);
        let since = self.healthy_since_ms.load(Ordering::Relaxed);
        if since == 0 {
            self.healthy_since_ms.store(now + 1, Ordering::Relaxed);
        } else if now + 1 - since >= self.policy.max_ban_ms
            && self.banned_for_ms_at(now) == 0
            && self.strikes.load(Ordering::Relaxed) > 0
        {
            self.strikes.store(0, Ordering::Relaxed);
            *self.last_error.lock() = None;
        }
    }

    /// One server connection was lost under a read. One lost backend (`pg_terminate_backend`,
    /// a crash of one process) says little about the server, and banning it would stop every
    /// write when it is the primary; so reads avoid it only until the next health check (one
    /// `lag_poll_ms`) says whether it is really down, and that check bans it if so.
    pub fn suspect(&self, reason: &str) {
        *self.last_error.lock() = Some(reason.to_string());
        self.suspect.store(true, Ordering::Relaxed);
    }

    pub fn check_failed(&self, reason: &str) {
        self.checks_failed.fetch_add(1, Ordering::Relaxed);
        self.ban(reason);
    }

    /// A check got no answer within `check_timeout_ms`: banned, and everyone waiting on the
    /// server is told, since its answers may be as late as the check's.
    pub fn check_stalled(&self, reason: &str) {
        self.check_failed(reason);
        self.stalls.send_modify(|n| *n += 1);
    }

    /// The server answered the check but refused its login: it is up, so a ban it has runs
    /// out on time rather than waiting for a check that cannot pass.
    pub fn check_answered(&self) {
        self.unproven.store(false, Ordering::Relaxed);
    }

    /// Resolves (`changed()`) at the server's next stall.
    pub fn stalls(&self) -> watch::Receiver<u64> {
        self.stalls.subscribe()
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    pub fn lsn(&self) -> u64 {
        self.lsn.load(Ordering::Acquire)
    }

    pub fn set_lsn(&self, lsn: u64) {
        self.lsn.store(lsn, Ordering::Release);
    }

    /// A replay position learned outside the poll; replay only moves forward.
    pub fn advance_lsn(&self, lsn: u64) {
        self.lsn.fetch_max(lsn, Ordering::AcqRel);
    }

    pub fn is_suspect(&self) -> bool {
        self.suspect.load(Ordering::Relaxed)
    }

    pub fn set_lag(&self, bytes: u64, ms: u64) {
        self.lag_bytes.store(bytes, Ordering::Relaxed);
        self.lag_ms.store(ms, Ordering::Relaxed);
        self.polled.store(true, Ordering::Relaxed);
    }

    /// (bytes, ms) behind the primary, `None` before the first poll.
    pub fn lag(&self) -> Option<(u64, u64)> {
        self.polled.load(Ordering::Relaxed).then(|| {
            (
                self.lag_bytes.load(Ordering::Relaxed),
                self.lag_ms.load(Ordering::Relaxed),
            )
        })
    }

    /// Within `max_lag_bytes` / `max_lag_ms` (a server never polled yet counts as within).
    pub fn lag_ok(&self) -> bool {
        let p = &self.policy;
        (p.max_lag_bytes == 0 || self.lag_bytes.load(Ordering::Relaxed) <= p.max_lag_bytes)
            && (p.max_lag_ms == 0 || self.lag_ms.load(Ordering::Relaxed) <= p.max_lag_ms)
    }

    /// May serve a read that needs WAL up to `min_lsn` (0: any).
    pub fn can_read(&self, min_lsn: u64) -> bool {
        self.role() == Role::Replica
            && !self.is_banned()
            && !self.suspect.load(Ordering::Relaxed)
            && self.lag_ok()
            && (min_lsn == 0 || self.lsn() >= min_lsn)
    }
}

fn encode(role: Role) -> u8 {
    match role {
        Role::Primary => ROLE_PRIMARY,
        Role::Replica => ROLE_REPLICA,
    }
}

/// The WAL page size and page-header sizes of a default PostgreSQL build.
const WAL_PAGE: u64 = 8192;
const SHORT_PAGE_HEADER: u64 = 24;
const LONG_PAGE_HEADER: u64 = 40;

/// `pg_current_wal_insert_lsn()` on a fresh page points just past the page header, where no
/// record ends; a replica that replayed everything reports the page's start. Map the former to
/// the latter so a caught-up replica compares as caught up.
pub fn record_end(insert_lsn: u64) -> u64 {
    match insert_lsn % WAL_PAGE {
        SHORT_PAGE_HEADER => insert_lsn - SHORT_PAGE_HEADER,
        LONG_PAGE_HEADER => insert_lsn - LONG_PAGE_HEADER,
        _ => insert_lsn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> ServerHealth {
        ServerHealth::new(
            Role::Replica,
            false,
            HealthPolicy {
                ban_ms: 1000,
                max_ban_ms: 8000,
                max_lag_bytes: 100,
                max_lag_ms: 50,
            },
            Instant::now(),
        )
    }

    #[test]
    fn flapping_doubles_the_ban_and_a_long_healthy_spell_forgives_it() {
        let h = health();
        h.ban_at(0, "down");
        assert_eq!(h.banned_for_ms_at(0), 1000);
        // Failing checks while banned extend by one ban_ms, never escalating.
        h.ban_at(900, "still down");
        assert_eq!(h.banned_for_ms_at(900), 1000);
        h.check_passed_at(1500);
        assert_eq!(h.banned_for_ms_at(1900), 0);
        h.ban_at(2000, "down again");
        assert_eq!(h.banned_for_ms_at(2000), 2000);
        h.check_passed_at(4000);
        h.ban_at(4100, "and again");
        assert_eq!(h.banned_for_ms_at(4100), 4000);
        h.ban_at(8200, "and again");
        assert_eq!(h.banned_for_ms_at(8200), 8000, "capped at max_ban_ms");
        h.check_passed_at(16_300);
        h.check_passed_at(24_400);
        h.ban_at(24_500, "once more");
        assert_eq!(
            h.banned_for_ms_at(24_500),
            1000,
            "forgiven after max_ban_ms healthy"
        );
        assert_eq!(h.bans.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn a_ban_ends_only_after_a_passing_check() {
        let h = health();
        h.set_checked();
        h.ban_at(0, "timed out");
        assert_eq!(h.banned_for_ms_at(500), 500);
        // The ban's length is over, but the check in flight has not answered: still banned.
        assert_eq!(h.banned_for_ms_at(1500), 1);
        assert!(h.awaits_check());
        h.check_passed_at(2500);
        assert_eq!(h.banned_for_ms_at(2500), 0);
        // A pass before the ban's length is over does not cut it short.
        h.ban_at(3000, "again");
        h.check_passed_at(3100);
        assert_eq!(h.banned_for_ms_at(3100), 1900);
        assert_eq!(h.banned_for_ms_at(5000), 0);
        // A server that answers but refuses the control login: the ban runs out on time.
        h.ban_at(6000, "refused");
        h.check_answered();
        assert_eq!(h.banned_for_ms_at(20_000), 0);
    }

    #[test]
    fn checks_failing_slower_than_a_ban_lasts_do_not_lengthen_it() {
        let h = health();
        h.set_checked();
        // A frozen server: each check times out after 2 s, longer than the 1 s ban.
        for i in 0..10 {
            h.ban_at(i * 2100, "health check timed out");
        }
        assert_eq!(h.bans.load(Ordering::Relaxed), 1, "one outage, one ban");
        h.check_passed_at(21_500);
        assert_eq!(h.banned_for_ms_at(21_500), 0, "back once a check passes");
    }

    #[test]
    fn without_a_health_task_a_ban_ends_on_time() {
        let h = health();
        h.ban_at(0, "down");
        assert_eq!(h.banned_for_ms_at(999), 1);
        assert_eq!(h.banned_for_ms_at(1000), 0);
    }

    #[test]
    fn stalls_wake_their_watchers_and_ban() {
        let h = health();
        let mut w = h.stalls();
        assert!(!w.has_changed().unwrap_or(true));
        h.check_failed("refused");
        assert!(!w.has_changed().unwrap_or(true), "only a stall wakes");
        h.check_stalled("timed out");
        assert!(w.has_changed().unwrap_or(false));
        w.mark_unchanged();
        assert!(h.is_banned());
    }

    #[test]
    fn reads_need_role_lag_and_lsn() {
        let h = health();
        h.set_lsn(500);
        assert!(h.can_read(0));
        assert!(h.can_read(500));
        assert!(!h.can_read(501));
        h.set_lag(101, 0);
        assert!(!h.can_read(0));
        h.set_lag(0, 51);
        assert!(!h.can_read(0));
        h.set_lag(0, 0);
        h.set_role(Role::Primary);
        assert!(!h.can_read(0));
    }

    #[test]
    fn a_suspect_server_takes_no_reads_until_a_check_passes_and_is_not_banned() {
        let h = health();
        h.suspect("one backend terminated");
        assert!(!h.can_read(0));
        assert!(!h.is_banned(), "writes to a suspect primary go on");
        assert_eq!(h.bans.load(Ordering::Relaxed), 0, "no strike");
        h.check_passed_at(10);
        assert!(h.can_read(0));
    }

    #[test]
    fn record_ends_skip_page_headers() {
        assert_eq!(record_end(0x3002018), 0x3002000);
        assert_eq!(record_end(0x3000028), 0x3000000);
        assert_eq!(record_end(0x3002060), 0x3002060);
    }
}
