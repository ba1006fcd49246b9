//! Read-your-writes bookkeeping: per table, the highest commit LSN of a write made through the proxy, or "pending".

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::router::relation_key;
pub use crate::router::WriteSet;

/// What a read needs from the server that answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadNeed {
    /// Any server: no tracked write touches what it reads.
    Any,
    /// A replica that has replayed WAL up to here (or the primary).
    Lsn(u64),
    /// A write to what it reads has committed but its LSN is not known yet: the primary.
    Primary,
}

impl ReadNeed {
    pub fn and(self, other: ReadNeed) -> ReadNeed {
        match (self, other) {
            (ReadNeed::Primary, _) | (_, ReadNeed::Primary) => ReadNeed::Primary,
            (ReadNeed::Lsn(a), ReadNeed::Lsn(b)) => ReadNeed::Lsn(a.max(b)),
            (ReadNeed::Lsn(a), ReadNeed::Any) | (ReadNeed::Any, ReadNeed::Lsn(a)) => {
                ReadNeed::Lsn(a)
            }
            (ReadNeed::Any, ReadNeed::Any) => ReadNeed::Any,
        }
    }

    fn of(e: &Entry) -> ReadNeed {
        // Pending first: `finish` raises the LSN before it drops the count, so a reader that
        // sees the count at zero sees the LSN that came with it.
        if e.pending.load(Ordering::Acquire) > 0 {
            ReadNeed::Primary
        } else {
            match e.lsn.load(Ordering::Acquire) {
                0 => ReadNeed::Any,
                lsn => ReadNeed::Lsn(lsn),
            }
        }
    }
}

/// One table's (or one class of writes') state, read without a lock.
#[derive(Default, Debug)]
struct Entry {
    lsn: AtomicU64,
    /// Writers whose LSN is not known yet.
    pending: AtomicU32,
}

impl Entry {
    fn add_pending(&self, n: u32) {
        self.pending.fetch_add(n, Ordering::AcqRel);
    }

    fn settle(&self, n: u32, lsn: u64) {
        self.lsn.fetch_max(lsn, Ordering::AcqRel);
        // Saturating: a count never goes below zero, whatever a caller does twice.
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_sub(n))
            });
    }

    fn is_settled(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }
}

type Entries = HashMap<Box<str>, Arc<Entry>>;

/// Shared by every session (`Pools::lsns`). Reads take no lock: the per-table entries and the
/// set of plain tables are immutable snapshots swapped whole, and each entry is two atomics.
/// Writes take `grow` only to add a table (copy on write, rare once the tables are known).
pub struct WriteLsns {
    entries: ArcSwap<Entries>,
    /// Serializes changes to `entries`, so no entry is evicted while a writer marks it.
    grow: Mutex<()>,
    max_tables: usize,
    /// Writes of unknown reach: every read needs this.
    everything: Entry,
    /// LSNs of tables forgotten to stay within `max_tables`: every read needs at least this.
    floor: AtomicU64,
    /// Writes whose LSN could not be read on their connection, waiting for the next primary
    /// poll that starts after them: (sequence, tables).
    deferred: Mutex<Vec<(u64, WriteSet)>>,
    seq: AtomicU64,
    /// Set when any entry exists, so reads skip the map entirely before the first write.
    used: std::sync::atomic::AtomicBool,
    /// Every write: what a read of a relation the proxy cannot see through needs.
    any: Entry,
    /// Plain tables (and materialized views, partitions, foreign tables) by unqualified name, from
    /// the primary's catalog. A read of anything else (a view, a table created since the last
    /// load) may read any table, so it needs every write.
    tables: ArcSwap<HashSet<Box<str>>>,
    /// Woken whenever a write's position becomes known, for reads waiting on a pending table.
    pub settled: tokio::sync::Notify,
    /// Orders reads that found a pending table against position reads (probes and primary
    /// polls): see [`WriteLsns::fresh_since`].
    clock: AtomicU64,
    /// The highest position read so far, and the latest clock reading taken before one.
    fresh_lsn: AtomicU64,
    fresh_at: AtomicU64,
}

impl WriteLsns {
    pub fn new(max_tables: usize) -> WriteLsns {
        WriteLsns {
            entries: ArcSwap::from_pointee(HashMap::new()),
            grow: Mutex::new(()),
            max_tables: max_tables.max(1),
            everything: Entry::default(),
            floor: AtomicU64::new(0),
            deferred: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
            used: std::sync::atomic::AtomicBool::new(false),
            any: Entry::default(),
            tables: ArcSwap::from_pointee(HashSet::new()),
            settled: tokio::sync::Notify::new(),
            clock: AtomicU64::new(1),
            fresh_lsn: AtomicU64::new(0),
            fresh_at: AtomicU64::new(0),
        }
    }

    /// A reading of the clock, for a position read about to be sent or a read about to wait.
    pub fn now(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::AcqRel)
    }

    /// A position read taken at clock `at` returned `lsn`.
    pub fn observed(&self, at: u64, lsn: u64) {
        // The position first: a reader that sees the new `fresh_at` then sees a position at
        // least as high as the one read at that time.
        self.fresh_lsn.fetch_max(lsn, Ordering::Release);
        self.fresh_at.fetch_max(at, Ordering::Release);
        self.settled.notify_waiters();
    }

    /// A position that covers every write acknowledged before clock `since`, once a position
    /// read taken after `since` has answered. Any write acknowledged before `since` committed
    /// before that read ran, whichever table and session it was: so a read that found its
    /// tables pending needs only that position, not the end of every write in flight, which
    /// on a table written without pause would never come.
    pub fn fresh_since(&self, since: u64) -> Option<u64> {
        if self.fresh_at.load(Ordering::Acquire) > since {
            Some(self.fresh_lsn.load(Ordering::Acquire))
        } else {
            None
        }
    }

    /// Marks the tables of a write about to run as pending, before its client can see it done.
    pub fn begin(&self, tables: &[Box<str>], unknown: bool) {
        self.used.store(true, Ordering::Release);
        // One count per table and per unknown write, as `finish` takes them back.
        self.any
            .add_pending(tables.len() as u32 + u32::from(unknown));
        if unknown {
            self.everything.add_pending(1);
        }
        if tables.is_empty() {
            return;
        }
        let _grow = self.grow.lock();
        let mut entries = self.entries.load_full();
        let missing: Vec<&Box<str>> = tables
            .iter()
            .filter(|t| !entries.contains_key(&***t))
            .collect();
        if !missing.is_empty() {
            let mut next = Entries::clone(&entries);
            for t in missing {
                if next.len() >= self.max_tables {
                    self.evict(&mut next);
                }
                next.insert((*t).clone(), Arc::default());
            }
            entries = Arc::new(next);
            self.entries.store(entries.clone());
        }
        for t in tables {
            if let Some(e) = entries.get(t) {
                e.add_pending(1);
            }
        }
    }

    /// The write committed (or ended) at or before `lsn`: its tables need that much from now on.
    pub fn finish(&self, set: &WriteSet, lsn: u64) {
        // Kept the highest of all, so a fresh position covers every settled entry.
        self.fresh_lsn.fetch_max(lsn, Ordering::AcqRel);
        // The tables before the totals, so no read sees `any` settled with a table pending.
        let entries = self.entries.load();
        for t in &set.tables {
            // A pending entry is never evicted, so it is there.
            if let Some(e) = entries.get(t) {
                e.settle(1, lsn);
            }
        }
        if set.unknown {
            self.everything.settle(1, lsn);
        }
        self.any
            .settle(set.tables.len() as u32 + u32::from(set.unknown), lsn);
        self.settled.notify_waiters();
    }

    /// The write's LSN could not be learned on its connection: it stays pending until a primary
    /// poll that starts after this call reports a position, which covers its commit.
    pub fn defer(&self, set: WriteSet) {
        let seq = self.seq.fetch_add(1, Ordering::AcqRel);
        self.deferred.lock().push((seq, set));
    }

    /// Sequence to pass to [`WriteLsns::resolve_deferred`], taken before a primary poll starts.
    pub fn poll_ticket(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// A primary poll that began at `ticket` read `lsn`: writes deferred before it are resolved.
    pub fn resolve_deferred(&self, ticket: u64, lsn: u64) {
        let done: Vec<WriteSet> = {
            let mut d = self.deferred.lock();
            if d.is_empty() {
                return;
            }
            let (done, keep) = std::mem::take(&mut *d)
                .into_iter()
                .partition(|(seq, _)| *seq < ticket);
            *d = keep;
            done.into_iter().map(|(_, s)| s).collect()
        };
        for set in &done {
            self.finish(set, lsn);
        }
    }

    /// What a read of `tables` needs.
    pub fn need(&self, tables: &[String]) -> ReadNeed {
        if !self.used.load(Ordering::Acquire) {
            return ReadNeed::Any;
        }
        let mut need = ReadNeed::of(&self.everything);
        // The snapshot before the floor: an entry missing from it was evicted before it was
        // stored, and its LSN went into the floor before that.
        let entries = self.entries.load();
        let floor = self.floor.load(Ordering::Acquire);
        if floor > 0 {
            need = need.and(ReadNeed::Lsn(floor));
        }
        let known = self.tables.load();
        for t in tables {
            let key = relation_key(t);
            if !known.contains(&*key) {
                return need.and(ReadNeed::of(&self.any));
            }
            if let Some(e) = entries.get(&*key) {
                need = need.and(ReadNeed::of(e));
            }
        }
        need
    }

    /// Whether reads of `table` are tracked by name (it was in the last catalog load).
    pub fn knows_table(&self, table: &str) -> bool {
        self.tables.load().contains(&*relation_key(table))
    }

    /// Replaces the set of plain tables (see [`load_plain_tables`]).
    pub fn set_plain_tables(&self, names: Vec<String>) {
        let set = names
            .iter()
            .map(|n| Box::from(relation_key(n).as_ref()))
            .collect();
        self.tables.store(Arc::new(set));
    }

    /// Drops the settled entry with the lowest LSN, folding it into the floor (under `grow`).
    fn evict(&self, entries: &mut Entries) {
        let victim = entries
            .iter()
            .filter(|(_, e)| e.is_settled())
            .min_by_key(|(_, e)| e.lsn.load(Ordering::Acquire))
            .map(|(k, e)| (k.clone(), e.lsn.load(Ordering::Acquire)));
        if let Some((k, lsn)) = victim {
            entries.remove(&k);
            self.floor.fetch_max(lsn, Ordering::AcqRel);
        }
    }
}

/// Relations whose reads the proxy can track by name: everything with storage of its own.
pub async fn load_plain_tables(
    client: &tokio_postgres::Client,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client
        .query(
            "select relname::text from pg_class where relkind in ('r', 'p', 'm', 'f')",
            &[],
        )
        .await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(tables: &[&str], unknown: bool) -> WriteSet {
        let mut s = WriteSet {
            unknown,
            ..Default::default()
        };
        for t in tables {
            s.add(t);
        }
        s
    }

    fn tracker() -> WriteLsns {
        let w = WriteLsns::new(100);
        w.set_plain_tables(["a", "b", "t", "x"].iter().map(|s| s.to_string()).collect());
        w
    }

    #[test]
    fn a_position_read_after_a_read_arrived_covers_every_earlier_write() {
        let w = tracker();
        let before = w.now();
        w.begin(&set(&["t"], false).tables, false);
        let since = w.now();
        // A probe sent before the read found the table pending does not cover it...
        w.observed(before, 7);
        assert_eq!(w.fresh_since(since), None);
        // ...one sent after does, though the write in flight never finished.
        let after = w.now();
        w.observed(after, 9);
        assert_eq!(w.fresh_since(since), Some(9));
        assert_eq!(w.need(&["t".to_string()]), ReadNeed::Primary);
        // A settled write's position is never above the fresh one.
        w.finish(&set(&["a"], false), 12);
        assert_eq!(w.fresh_since(since), Some(12));
    }

    #[test]
    fn reads_of_views_and_unknown_relations_need_every_write() {
        let w = tracker();
        let s = set(&["a"], false);
        w.begin(&s.tables, false);
        assert_eq!(w.need(&["b".to_string()]), ReadNeed::Any);
        assert_eq!(w.need(&["a_view".to_string()]), ReadNeed::Primary);
        w.finish(&s, 40);
        assert_eq!(w.need(&["a_view".to_string()]), ReadNeed::Lsn(40));
        assert_eq!(w.need(&["b".to_string()]), ReadNeed::Any);
        // Written in two steps (two statements of one transaction), finished once.
        let mut s = set(&["a"], false);
        w.begin(&s.tables, false);
        s.add("b");
        w.begin(&[Box::from("b")], false);
        w.finish(&s, 50);
        assert_eq!(w.need(&["v".to_string()]), ReadNeed::Lsn(50));
    }

    #[test]
    fn pending_then_lsn_per_table() {
        let w = tracker();
        let reads = |t: &str| w.need(&[t.to_string()]);
        assert_eq!(reads("a"), ReadNeed::Any);
        let s = set(&["public.a"], false);
        w.begin(&s.tables, false);
        assert_eq!(
            reads("a"),
            ReadNeed::Primary,
            "qualified and bare names share"
        );
        assert_eq!(reads("b"), ReadNeed::Any);
        w.finish(&s, 70);
        assert_eq!(reads("public.a"), ReadNeed::Lsn(70));
        w.begin(&s.tables, false);
        w.finish(&s, 50);
        assert_eq!(reads("a"), ReadNeed::Lsn(70), "never lowered");
        assert_eq!(
            w.need(&["a".to_string(), "b".to_string()]),
            ReadNeed::Lsn(70)
        );
    }

    #[test]
    fn unknown_writes_count_for_every_table() {
        let w = tracker();
        let s = set(&[], true);
        w.begin(&s.tables, true);
        assert_eq!(w.need(&["x".to_string()]), ReadNeed::Primary);
        w.finish(&s, 9);
        assert_eq!(w.need(&["x".to_string()]), ReadNeed::Lsn(9));
    }

    #[test]
    fn deferred_writes_wait_for_a_later_poll() {
        let w = tracker();
        let early = w.poll_ticket();
        let s = set(&["t"], false);
        w.begin(&s.tables, false);
        w.defer(s);
        w.resolve_deferred(early, 5);
        assert_eq!(
            w.need(&["t".to_string()]),
            ReadNeed::Primary,
            "poll began before"
        );
        let later = w.poll_ticket();
        w.resolve_deferred(later, 6);
        assert_eq!(w.need(&["t".to_string()]), ReadNeed::Lsn(6));
    }

    #[test]
    fn bounded_by_folding_old_tables_into_a_floor() {
        let w = WriteLsns::new(16);
        w.set_plain_tables((0..200).map(|i| format!("t{i}")).collect());
        for i in 0..200u64 {
            let s = set(&[&format!("t{i}")], false);
            w.begin(&s.tables, false);
            w.finish(&s, i + 1);
        }
        let total = w.entries.load().len();
        assert!(total <= 16, "{total} entries");
        // Whatever was forgotten still needs at least its own LSN through the floor.
        for i in 0..200u64 {
            match w.need(&[format!("t{i}")]) {
                ReadNeed::Lsn(l) => assert!(l > i, "t{i} needs {l}"),
                other => panic!("t{i}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_read_after_an_acknowledged_write_never_needs_less_than_it() {
        // Writers on many tables (evicting) against readers, with no lock on the read path: a
        // read that starts after a write was marked sees it pending or at its LSN or above.
        let w = Arc::new(WriteLsns::new(4));
        w.set_plain_tables((0..8).map(|i| format!("t{i}")).collect());
        let acked: Arc<Vec<AtomicU64>> = Arc::new((0..8).map(|_| AtomicU64::new(0)).collect());
        let writers: Vec<_> = (0..2u64)
            .map(|k| {
                let (w, acked) = (w.clone(), acked.clone());
                std::thread::spawn(move || {
                    for n in 1..20_000u64 {
                        let t = ((n + k) % 8) as usize;
                        let s = set(&[&format!("t{t}")], false);
                        w.begin(&s.tables, false);
                        let lsn = n * 2 + k;
                        acked[t].fetch_max(lsn, Ordering::SeqCst);
                        w.finish(&s, lsn);
                    }
                })
            })
            .collect();
        let mut checked = 0u64;
        while writers.iter().any(|h| !h.is_finished()) {
            for t in 0..8 {
                let seen = acked[t].load(Ordering::SeqCst);
                match w.need(&[format!("t{t}")]) {
                    ReadNeed::Primary => {}
                    ReadNeed::Lsn(l) => assert!(l >= seen, "t{t} needs {l} < {seen}"),
                    ReadNeed::Any => assert_eq!(seen, 0, "t{t} forgot {seen}"),
                }
                checked += 1;
            }
        }
        for h in writers {
            assert!(h.join().is_ok());
        }
        assert!(checked > 0);
    }
}
