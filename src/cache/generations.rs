//! Per-table generation counters: a write bumps them, an entry is valid only while the counters it was read under are unchanged.

use crate::router::relation_key;
use ahash::AHashMap;
use parking_lot::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Table names kept before the map is cleared (every entry then becomes invalid through the
/// global counter), so a client creating endless temporary tables cannot grow it forever.
const MAX_TABLES: usize = 100_000;

/// One table's counter and when it was last bumped.
#[derive(Debug, Default)]
pub struct TableGen {
    gen: AtomicU64,
    /// Milliseconds since the cache started, at the last bump (0: never).
    bumped_ms: AtomicU64,
    /// The same, for bumps the WAL reported: writes made outside the proxy, whose positions
    /// read-your-writes does not track.
    logged_ms: AtomicU64,
}

impl TableGen {
    pub fn get(&self) -> u64 {
        self.gen.load(Ordering::Acquire)
    }
}

/// The counters one read depends on, taken before it was sent.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub tables: Box<[(Arc<TableGen>, u64)]>,
    pub global: u64,
}

/// A relation of one database: (database, unqualified lowercase name).
type TableKey = (Arc<str>, Box<str>);

/// Generation counters of one database's tables, plus one for "everything".
pub struct Generations {
    started: Instant,
    global: AtomicU64,
    /// Milliseconds since start at the last bump of everything (0: never).
    global_bumped_ms: AtomicU64,
    /// The same, for bumps of everything the WAL reported.
    global_logged_ms: AtomicU64,
    tables: RwLock<AHashMap<TableKey, Arc<TableGen>>>,
}

impl Default for Generations {
    fn default() -> Self {
        Generations {
            started: Instant::now(),
            global: AtomicU64::new(1),
            global_bumped_ms: AtomicU64::new(0),
            global_logged_ms: AtomicU64::new(0),
            tables: RwLock::new(AHashMap::new()),
        }
    }
}

impl Generations {
    fn table(&self, db: &Arc<str>, name: &str) -> Arc<TableGen> {
        if let Some(t) = self.tables.read().get(&(db.clone(), Box::from(name))) {
            return t.clone();
        }
        let mut map = self.tables.write();
        if map.len() >= MAX_TABLES {
            map.clear();
            self.bump_all(false);
        }
        map.entry((db.clone(), Box::from(name)))
            .or_default()
            .clone()
    }

    /// The counters a read of `tables` (relation names, keyed by `router::relation_key`) starts under.
    pub fn snapshot(&self, db: &Arc<str>, tables: &[String]) -> Snapshot {
        // Read the global counter first: a bump of everything between the two reads then
        // shows as a changed global counter at insert time.
        let global = self.global.load(Ordering::Acquire);
        let tables = tables
            .iter()
            .map(|t| {
                let g = self.table(db, &relation_key(t));
                let v = g.get();
                (g, v)
            })
            .collect();
        Snapshot { tables, global }
    }

    /// True while no table of the snapshot (nor everything) was written since it was taken.
    pub fn unchanged(&self, s: &Snapshot) -> bool {
        self.global.load(Ordering::Acquire) == s.global
            && s.tables.iter().all(|(g, v)| g.get() == *v)
    }

    /// The last write to any of the snapshot's tables happened within `window`; with
    /// `logged_only`, the last one the WAL reported.
    pub fn written_within(
        &self,
        s: &Snapshot,
        window: std::time::Duration,
        logged_only: bool,
    ) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        let w = window.as_millis() as u64;
        let recent = |b: &AtomicU64| {
            let b = b.load(Ordering::Acquire);
            b != 0 && now.saturating_sub(b) < w
        };
        if logged_only {
            recent(&self.global_logged_ms) || s.tables.iter().any(|(g, _)| recent(&g.logged_ms))
        } else {
            recent(&self.global_bumped_ms) || s.tables.iter().any(|(g, _)| recent(&g.bumped_ms))
        }
    }

    /// A write to `tables` is about to be acknowledged: every entry that read one is now stale.
    /// The names are the write's whole reach (the router's analysis, or `Router::logged_reach`
    /// for the WAL), so views, parents and cascades are among them already.
    /// `logged`: the WAL reported the write (see `logged_ms`).
    pub fn bump<T: AsRef<str>>(&self, db: &Arc<str>, tables: &[T], logged: bool) {
        let now = (self.started.elapsed().as_millis() as u64).max(1);
        for t in tables {
            let g = self.table(db, &relation_key(t.as_ref()));
            g.gen.fetch_add(1, Ordering::AcqRel);
            g.bumped_ms.store(now, Ordering::Release);
            if logged {
                g.logged_ms.store(now, Ordering::Release);
            }
        }
    }

    /// A write whose tables are unknown: every entry is stale.
    pub fn bump_all(&self, logged: bool) {
        self.global.fetch_add(1, Ordering::AcqRel);
        let now = (self.started.elapsed().as_millis() as u64).max(1);
        self.global_bumped_ms.store(now, Ordering::Release);
        if logged {
            self.global_logged_ms.store(now, Ordering::Release);
        }
    }

    pub fn tables_tracked(&self) -> usize {
        self.tables.read().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Arc<str> {
        Arc::from("app")
    }

    #[test]
    fn a_write_invalidates_only_its_tables() {
        let g = Generations::default();
        let leads = g.snapshot(&db(), &["leads".into()]);
        let props = g.snapshot(&db(), &["public.properties".into()]);
        g.bump(&db(), &["public.leads"], false);
        assert!(
            !g.unchanged(&leads),
            "schema-qualified write hits the unqualified read"
        );
        assert!(g.unchanged(&props));
        let other_db = g.snapshot(&Arc::from("other"), &["leads".into()]);
        g.bump(&db(), &["leads"], false);
        assert!(g.unchanged(&other_db));
    }

    #[test]
    fn unknown_writes_invalidate_everything() {
        let g = Generations::default();
        let s = g.snapshot(&db(), &["a".into()]);
        let none = g.snapshot(&db(), &[]);
        g.bump_all(false);
        assert!(!g.unchanged(&s));
        assert!(!g.unchanged(&none));
    }

    #[test]
    fn recent_writes_are_seen() {
        let g = Generations::default();
        let s = g.snapshot(&db(), &["a".into()]);
        assert!(!g.written_within(&s, std::time::Duration::from_secs(5), false));
        g.bump(&db(), &["a"], false);
        assert!(g.written_within(&s, std::time::Duration::from_secs(5), false));
        let other = g.snapshot(&db(), &["b".into()]);
        assert!(!g.written_within(&other, std::time::Duration::from_secs(5), false));
        g.bump_all(false);
        assert!(g.written_within(&other, std::time::Duration::from_secs(5), false));
    }
}
