//! Fingerprints a replica refused because they write: from then on they go to the primary, whatever their analysis said.
//!
//! The analysis can be wrong about what a statement runs (a function made VOLATILE and writing
//! behind the proxy's back, a view created outside it since the last catalog load). The session
//! that saw the refusal re-sends the statement to the primary; this registry makes the decision
//! stick for every session and shows it to the operator.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ahash::AHashMap;
use parking_lot::RwLock;

/// Most fingerprints remembered; a flood of distinct refused texts must not grow memory forever.
const MAX_FORCED: usize = 10_000;

/// One fingerprint pinned to the primary.
#[derive(Clone, Debug, PartialEq)]
pub struct ForcedPrimary {
    pub fingerprint: u64,
    /// The normalized text, safe to show.
    pub query: String,
    /// What the replica answered: SQLSTATE and message.
    pub reason: String,
    /// Refusals seen for it (the first marks it; later ones come from requests already in flight).
    pub refusals: u64,
    /// Unix seconds of the first refusal.
    pub since: f64,
}

#[derive(Default)]
pub(super) struct Forced {
    any: AtomicBool,
    map: RwLock<AHashMap<u64, ForcedPrimary>>,
    refusals: AtomicU64,
}

impl Forced {
    pub fn contains(&self, fingerprint: u64) -> bool {
        // Nearly always empty: one atomic load on the hot path.
        self.any.load(Ordering::Acquire) && self.map.read().contains_key(&fingerprint)
    }

    pub fn mark(&self, fingerprint: u64, query: &str, reason: String) {
        self.refusals.fetch_add(1, Ordering::Relaxed);
        let mut map = self.map.write();
        if let Some(entry) = map.get_mut(&fingerprint) {
            entry.refusals += 1;
            return;
        }
        if map.len() >= MAX_FORCED {
            return;
        }
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        map.insert(
            fingerprint,
            ForcedPrimary {
                fingerprint,
                query: query.to_owned(),
                reason,
                refusals: 1,
                since,
            },
        );
        self.any.store(true, Ordering::Release);
    }

    pub fn snapshot(&self) -> Vec<ForcedPrimary> {
        let mut out: Vec<ForcedPrimary> = self.map.read().values().cloned().collect();
        out.sort_by(|a, b| a.since.total_cmp(&b.since));
        out
    }

    pub fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_stick_and_count() {
        let f = Forced::default();
        assert!(!f.contains(7));
        f.mark(7, "SELECT w()", "25006 cannot execute INSERT".into());
        f.mark(7, "SELECT w()", "25006 cannot execute INSERT".into());
        assert!(f.contains(7) && !f.contains(8));
        let s = f.snapshot();
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].refusals, s[0].query.as_str()), (2, "SELECT w()"));
        assert_eq!(f.refusals(), 2);
    }
}
