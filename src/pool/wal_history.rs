//! The primary's recent WAL positions, written by its health task and read to tell a replica's lag in time.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Recent WAL insert positions of the primary with when each was first seen, to tell how long
/// ago the primary was where a replica is now (its lag in time, measured by the proxy's clock).
#[derive(Default)]
pub struct WalHistory {
    samples: Mutex<VecDeque<(Instant, u64)>>,
}

/// Samples older than this are dropped; a replica further behind reports at least this lag.
const HISTORY_SPAN: Duration = Duration::from_secs(120);
const HISTORY_MAX: usize = 8192;

impl WalHistory {
    pub fn record(&self, at: Instant, lsn: u64) {
        let mut s = self.samples.lock();
        if s.back().is_some_and(|&(_, last)| last >= lsn) {
            return;
        }
        s.push_back((at, lsn));
        while s.len() > HISTORY_MAX || s.front().is_some_and(|(t, _)| at - *t > HISTORY_SPAN) {
            s.pop_front();
        }
    }

    pub fn latest(&self) -> Option<u64> {
        self.samples.lock().back().map(|&(_, l)| l)
    }

    /// (bytes, ms) a replica at `replay` is behind, as of `now`; `None` before any primary sample.
    pub fn lag(&self, replay: u64, now: Instant) -> Option<(u64, u64)> {
        let s = self.samples.lock();
        let &(_, latest) = s.back()?;
        if replay >= latest {
            return Some((0, 0));
        }
        // The first position the replica lacks has existed since that sample.
        let since = s
            .iter()
            .find(|&&(_, l)| l > replay)
            .map(|&(t, _)| t)
            .unwrap_or(now);
        Some((
            latest - replay,
            now.saturating_duration_since(since).as_millis() as u64,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_in_bytes_and_time_since_the_missing_wal_appeared() {
        let h = WalHistory::default();
        let t0 = Instant::now();
        assert_eq!(h.lag(0, t0), None);
        h.record(t0, 100);
        h.record(t0 + Duration::from_millis(10), 100);
        h.record(t0 + Duration::from_millis(20), 200);
        h.record(t0 + Duration::from_millis(30), 300);
        let now = t0 + Duration::from_millis(50);
        assert_eq!(h.lag(300, now), Some((0, 0)));
        assert_eq!(h.lag(250, now), Some((50, 20)));
        assert_eq!(h.lag(150, now), Some((150, 30)));
        assert_eq!(h.lag(50, now), Some((250, 50)));
        assert_eq!(h.latest(), Some(300));
    }
}
