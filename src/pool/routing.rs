//! Why reads went where they went: per replica, reads served and reads sent to the primary by reason, and the on-demand position waits.

use crate::stats::LatencyHistogram;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a read that could have gone to this replica went to the primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrimaryReason {
    /// A write to what the read reads has committed, but its WAL position is not known yet.
    PositionUnknown,
    /// The replica had not replayed what the read needs and asking was off (`max_replica_wait_ms = 0`).
    Behind,
    /// The replica was asked for its replay position and did not reach the read's need in time.
    WaitTimedOut,
    /// Beyond `max_lag_bytes` / `max_lag_ms`.
    LagLimit,
    /// Banned, or suspect after a lost connection until its next health check.
    Banned,
}

impl PrimaryReason {
    pub const ALL: [PrimaryReason; 5] = [
        PrimaryReason::PositionUnknown,
        PrimaryReason::Behind,
        PrimaryReason::WaitTimedOut,
        PrimaryReason::LagLimit,
        PrimaryReason::Banned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PrimaryReason::PositionUnknown => "position_unknown",
            PrimaryReason::Behind => "replica_behind",
            PrimaryReason::WaitTimedOut => "wait_timed_out",
            PrimaryReason::LagLimit => "lag_limit",
            PrimaryReason::Banned => "banned",
        }
    }

    fn index(self) -> usize {
        match self {
            PrimaryReason::PositionUnknown => 0,
            PrimaryReason::Behind => 1,
            PrimaryReason::WaitTimedOut => 2,
            PrimaryReason::LagLimit => 3,
            PrimaryReason::Banned => 4,
        }
    }
}

/// In-line questions found behind in a row before a replica is asked first again.
const IN_LINE_MISSES: u64 = 3;

/// One replica's routing counters (kept on every server; a primary's stay zero).
#[derive(Default)]
pub struct RouteStats {
    /// Reads this replica served.
    pub served: AtomicU64,
    /// Of those, reads it served only after being asked for its replay position.
    pub served_after_wait: AtomicU64,
    /// Replay-position questions sent (`pg_last_wal_replay_lsn()` on a pooled connection).
    pub position_checks: AtomicU64,
    /// Of those, questions sent in the same round trip as the read they decide.
    pub checked_in_line: AtomicU64,
    /// In-line questions that found the replica behind: the read's answer was dropped unseen
    /// and the read routed again (asking first, then the primary).
    pub sent_again: AtomicU64,
    /// In-line questions found behind in a row: a replica lagging for real (replay paused) is
    /// asked first again, so reads stop running twice.
    behind_streak: AtomicU64,
    to_primary: [AtomicU64; 5],
    /// Time from the first question to the answer that let the read through (or to giving up).
    wait: parking_lot::Mutex<LatencyHistogram>,
}

impl std::fmt::Debug for RouteStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteStats")
            .field("served", &self.served)
            .field("position_checks", &self.position_checks)
            .finish_non_exhaustive()
    }
}

impl RouteStats {
    pub fn served(&self, after_wait: bool) {
        self.served.fetch_add(1, Ordering::Relaxed);
        if after_wait {
            self.served_after_wait.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether a read may run with its position question in line (see `behind_streak`).
    pub fn in_line_ok(&self) -> bool {
        self.behind_streak.load(Ordering::Relaxed) < IN_LINE_MISSES
    }

    /// An in-line question was sent with a read.
    pub fn checked_in_line(&self) {
        self.position_checks.fetch_add(1, Ordering::Relaxed);
        self.checked_in_line.fetch_add(1, Ordering::Relaxed);
    }

    /// The answer to an in-line question: the read's own answer stands, or it is sent again.
    pub fn in_line_verdict(&self, passed: bool) {
        if passed {
            self.served(true);
            self.behind_streak.store(0, Ordering::Relaxed);
        } else {
            self.sent_again.fetch_add(1, Ordering::Relaxed);
            self.behind_streak.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A replica asked first reached a read's need: it keeps up again.
    pub fn caught_up(&self) {
        self.behind_streak.store(0, Ordering::Relaxed);
    }

    pub fn to_primary(&self, why: PrimaryReason) {
        self.to_primary[why.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn to_primary_count(&self, why: PrimaryReason) -> u64 {
        self.to_primary[why.index()].load(Ordering::Relaxed)
    }

    pub fn record_wait(&self, us: u64) {
        self.wait.lock().record_us(us);
    }

    pub fn wait_histogram(&self) -> LatencyHistogram {
        let mut h = LatencyHistogram::new();
        h.merge(&self.wait.lock());
        h
    }

    pub fn reset(&self) {
        self.served.store(0, Ordering::Relaxed);
        self.served_after_wait.store(0, Ordering::Relaxed);
        self.position_checks.store(0, Ordering::Relaxed);
        self.checked_in_line.store(0, Ordering::Relaxed);
        self.sent_again.store(0, Ordering::Relaxed);
        for c in &self.to_primary {
            c.store(0, Ordering::Relaxed);
        }
        self.wait.lock().reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_count_apart_and_reset() {
        let r = RouteStats::default();
        r.served(false);
        r.served(true);
        r.to_primary(PrimaryReason::WaitTimedOut);
        r.to_primary(PrimaryReason::WaitTimedOut);
        r.to_primary(PrimaryReason::Banned);
        r.record_wait(700);
        assert_eq!(r.served.load(Ordering::Relaxed), 2);
        assert_eq!(r.served_after_wait.load(Ordering::Relaxed), 1);
        assert_eq!(r.to_primary_count(PrimaryReason::WaitTimedOut), 2);
        assert_eq!(r.to_primary_count(PrimaryReason::Banned), 1);
        assert_eq!(r.to_primary_count(PrimaryReason::LagLimit), 0);
        assert_eq!(r.wait_histogram().count(), 1);
        let names: Vec<_> = PrimaryReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), 5);
        r.reset();
        assert_eq!(r.served.load(Ordering::Relaxed), 0);
        assert_eq!(r.wait_histogram().count(), 0);
    }
}
