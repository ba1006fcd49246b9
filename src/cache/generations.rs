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
    tables: RwLock<AHashMap<TableKey, Arc<TableGen>>>,
    /// Relation name → every relation a write to it changes (itself, views over it, partitions,
    /// inheritance relatives, tables its deletes cascade into), from the catalog.
    reach: RwLock<AHashMap<TableKey, Arc<[Box<str>]>>>,
    /// Tables with user triggers, whose writes may reach any table.
    triggered: RwLock<ahash::AHashSet<TableKey>>,
}

impl Default for Generations {
    fn default() -> Self {
        Generations {
            started: Instant::now(),
            global: AtomicU64::new(1),
            global_bumped_ms: AtomicU64::new(0),
            tables: RwLock::new(AHashMap::new()),
            reach: RwLock::new(AHashMap::new()),
            triggered: RwLock::new(ahash::AHashSet::new()),
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
            self.bump_all();
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

    /// The last write to any of the snapshot's tables happened within `window`.
    pub fn written_within(&self, s: &Snapshot, window: std::time::Duration) -> bool {
        let now = self.started.elapsed().as_millis() as u64;
        let w = window.as_millis() as u64;
        let recent = |b: u64| b != 0 && now.saturating_sub(b) < w;
        recent(self.global_bumped_ms.load(Ordering::Acquire))
            || s.tables
                .iter()
                .any(|(g, _)| recent(g.bumped_ms.load(Ordering::Acquire)))
    }

    /// A write to `tables` (names as the parser or the WAL report them) is about to be
    /// acknowledged: every entry that read them, or a relation sharing their rows, is now stale.
    pub fn bump<T: AsRef<str>>(&self, db: &Arc<str>, tables: &[T]) -> usize {
        let now = (self.started.elapsed().as_millis() as u64).max(1);
        let mut bumped = 0;
        for t in tables {
            let name = relation_key(t.as_ref());
            if self
                .triggered
                .read()
                .contains(&(db.clone(), Box::from(&*name)))
            {
                self.bump_all();
            }
            let group = self
                .reach
                .read()
                .get(&(db.clone(), Box::from(&*name)))
                .cloned();
            let mut one = |n: &str| {
                let g = self.table(db, n);
                g.gen.fetch_add(1, Ordering::AcqRel);
                g.bumped_ms.store(now, Ordering::Release);
                bumped += 1;
            };
            match group {
                Some(members) => members.iter().for_each(|m| one(m)),
                None => one(&name),
            }
        }
        bumped
    }

    /// A write whose tables are unknown: every entry is stale.
    pub fn bump_all(&self) {
        self.global.fetch_add(1, Ordering::AcqRel);
        let now = (self.started.elapsed().as_millis() as u64).max(1);
        self.global_bumped_ms.store(now, Ordering::Release);
    }

    /// Replaces one database's reach map and triggered tables (from `catalog::load`).
    pub fn set_relations(&self, db: &Arc<str>, r: super::catalog::Relations) {
        {
            let mut t = self.triggered.write();
            t.retain(|(d, _)| d != db);
            t.extend(
                r.triggered
                    .into_iter()
                    .map(|n| (db.clone(), n.into_boxed_str())),
            );
        }
        self.set_reach(db, r.reach);
    }

    /// Replaces one database's reach map: relation → every relation a write to it changes.
    pub fn set_reach(&self, db: &Arc<str>, reach: Vec<(String, Vec<String>)>) {
        let mut map = self.reach.write();
        map.retain(|(d, _), _| d != db);
        for (from, to) in reach {
            let members: Arc<[Box<str>]> = to.iter().map(|m| Box::from(m.as_str())).collect();
            map.insert((db.clone(), from.into_boxed_str()), members);
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
        g.bump(&db(), &["public.leads"]);
        assert!(
            !g.unchanged(&leads),
            "schema-qualified write hits the unqualified read"
        );
        assert!(g.unchanged(&props));
        let other_db = g.snapshot(&Arc::from("other"), &["leads".into()]);
        g.bump(&db(), &["leads"]);
        assert!(g.unchanged(&other_db));
    }

    #[test]
    fn a_write_reaches_what_it_changes_and_nothing_else() {
        let g = Generations::default();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
        g.set_reach(
            &db(),
            vec![
                (
                    "events_2024".into(),
                    s(&["events_2024", "events", "recent_events"]),
                ),
                ("leads".into(), s(&["leads", "showings"])),
            ],
        );
        let view = g.snapshot(&db(), &["recent_events".into()]);
        let parent = g.snapshot(&db(), &["events".into()]);
        let leads = g.snapshot(&db(), &["leads".into()]);
        g.bump(&db(), &["events_2024"]);
        assert!(!g.unchanged(&view));
        assert!(!g.unchanged(&parent));
        assert!(g.unchanged(&leads));
        // A write to the referencing table does not reach the referenced one.
        g.bump(&db(), &["showings"]);
        assert!(g.unchanged(&leads));
    }

    #[test]
    fn writes_to_tables_with_triggers_invalidate_everything() {
        let g = Generations::default();
        g.set_relations(
            &db(),
            crate::cache::catalog::Relations {
                reach: vec![],
                triggered: vec!["audited".into()],
            },
        );
        let other = g.snapshot(&db(), &["elsewhere".into()]);
        g.bump(&db(), &["plain"]);
        assert!(g.unchanged(&other));
        g.bump(&db(), &["public.audited"]);
        assert!(!g.unchanged(&other));
    }

    #[test]
    fn unknown_writes_invalidate_everything() {
        let g = Generations::default();
        let s = g.snapshot(&db(), &["a".into()]);
        let none = g.snapshot(&db(), &[]);
        g.bump_all();
        assert!(!g.unchanged(&s));
        assert!(!g.unchanged(&none));
    }

    #[test]
    fn recent_writes_are_seen() {
        let g = Generations::default();
        let s = g.snapshot(&db(), &["a".into()]);
        assert!(!g.written_within(&s, std::time::Duration::from_secs(5)));
        g.bump(&db(), &["a"]);
        assert!(g.written_within(&s, std::time::Duration::from_secs(5)));
        let other = g.snapshot(&db(), &["b".into()]);
        assert!(!g.written_within(&other, std::time::Duration::from_secs(5)));
        g.bump_all();
        assert!(g.written_within(&other, std::time::Duration::from_secs(5)));
    }
}
