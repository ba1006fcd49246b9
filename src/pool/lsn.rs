//! Read-your-writes bookkeeping: per table, the highest commit LSN of a write made through the proxy, or "pending".

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

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
        if e.pending > 0 {
            ReadNeed::Primary
        } else if e.lsn > 0 {
            ReadNeed::Lsn(e.lsn)
        } else {
            ReadNeed::Any
        }
    }
}

#[derive(Default, Clone, Copy, Debug)]
struct Entry {
    lsn: u64,
    /// Writers whose LSN is not known yet.
    pending: u32,
}

/// The tables one write touched; `unknown` when it may have written anything (CALL, DO, a
/// volatile function), which then counts for every table.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct WriteSet {
    pub tables: Vec<Box<str>>,
    pub unknown: bool,
}

impl WriteSet {
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty() && !self.unknown
    }

    /// Adds `table`; returns false if it was there already.
    pub fn add(&mut self, table: &str) -> bool {
        let key = table_key(table);
        if self.tables.iter().any(|t| &**t == key) {
            return false;
        }
        self.tables.push(key.into());
        true
    }
}

/// Tables are tracked by their unqualified name: `public.t` and `t` (and `s.t`) share one entry,
/// which is coarser than needed but never lets a differently qualified read miss a write.
fn table_key(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

const SHARDS: usize = 16;

/// Shared by every session (`Pools::lsns`).
pub struct WriteLsns {
    shards: [Mutex<HashMap<Box<str>, Entry>>; SHARDS],
    /// Writes of unknown reach: every read needs this.
    everything: Mutex<Entry>,
    /// LSNs of tables forgotten to stay within `max_tables`: every read needs at least this.
    floor: AtomicU64,
    per_shard: usize,
    /// Writes whose LSN could not be read on their connection, waiting for the next primary
    /// poll that starts after them: (sequence, tables).
    deferred: Mutex<Vec<(u64, WriteSet)>>,
    seq: AtomicU64,
    /// Set when any entry exists, so reads skip the map entirely before the first write.
    used: std::sync::atomic::AtomicBool,
    /// Every write: what a read of a relation the proxy cannot see through needs.
    any: Mutex<Entry>,
    /// Plain tables (and materialized views, partitions, foreign tables) by unqualified name, from
    /// the primary's catalog. A read of anything else (a view, a table created since the last
    /// load) may read any table, so it needs every write.
    tables: parking_lot::RwLock<std::collections::HashSet<Box<str>>>,
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
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            everything: Mutex::new(Entry::default()),
            floor: AtomicU64::new(0),
            per_shard: max_tables.div_ceil(SHARDS).max(1),
            deferred: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
            used: std::sync::atomic::AtomicBool::new(false),
            any: Mutex::new(Entry::default()),
            tables: Default::default(),
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

    fn shard(&self, key: &str) -> &Mutex<HashMap<Box<str>, Entry>> {
        let h = ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one(key);
        &self.shards[h as usize % SHARDS]
    }

    /// Marks the tables of a write about to run as pending, before its client can see it done.
    pub fn begin(&self, tables: &[Box<str>], unknown: bool) {
        self.used.store(true, Ordering::Relaxed);
        // One count per table and per unknown write, as `finish` takes them back.
        self.any.lock().pending += tables.len() as u32 + u32::from(unknown);
        if unknown {
            self.everything.lock().pending += 1;
        }
        for t in tables {
            let mut shard = self.shard(t).lock();
            if shard.len() >= self.per_shard && !shard.contains_key(t) {
                self.evict(&mut shard);
            }
            shard.entry(t.clone()).or_default().pending += 1;
        }
    }

    /// The write committed (or ended) at or before `lsn`: its tables need that much from now on.
    pub fn finish(&self, set: &WriteSet, lsn: u64) {
        {
            let mut e = self.any.lock();
            let n = set.tables.len() as u32 + u32::from(set.unknown);
            e.pending = e.pending.saturating_sub(n);
            e.lsn = e.lsn.max(lsn);
        }
        if set.unknown {
            let mut e = self.everything.lock();
            e.pending = e.pending.saturating_sub(1);
            e.lsn = e.lsn.max(lsn);
        }
        for t in &set.tables {
            let mut shard = self.shard(t).lock();
            let e = shard.entry(t.clone()).or_default();
            e.pending = e.pending.saturating_sub(1);
            e.lsn = e.lsn.max(lsn);
        }
        // Kept the highest of all, so a fresh position covers every settled entry.
        self.fresh_lsn.fetch_max(lsn, Ordering::Release);
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
        if !self.used.load(Ordering::Relaxed) {
            return ReadNeed::Any;
        }
        let mut need = ReadNeed::of(&self.everything.lock());
        let floor = self.floor.load(Ordering::Relaxed);
        if floor > 0 {
            need = need.and(ReadNeed::Lsn(floor));
        }
        let known = self.tables.read();
        for t in tables {
            let key = table_key(t);
            if !known.contains(key) {
                return need.and(ReadNeed::of(&self.any.lock()));
            }
            if let Some(e) = self.shard(key).lock().get(key) {
                need = need.and(ReadNeed::of(e));
            }
        }
        need
    }

    /// Whether reads of `table` are tracked by name (it was in the last catalog load).
    pub fn knows_table(&self, table: &str) -> bool {
        self.tables.read().contains(table_key(table))
    }

    /// Replaces the set of plain tables (see [`load_plain_tables`]).
    pub fn set_plain_tables(&self, names: Vec<String>) {
        let set = names
            .iter()
            .map(|n| Box::from(table_key(&n.to_lowercase())))
            .collect();
        *self.tables.write() = set;
    }

    /// Drops the settled entry with the lowest LSN, folding it into the floor.
    fn evict(&self, shard: &mut HashMap<Box<str>, Entry>) {
        let victim = shard
            .iter()
            .filter(|(_, e)| e.pending == 0)
            .min_by_key(|(_, e)| e.lsn)
            .map(|(k, e)| (k.clone(), e.lsn));
        if let Some((k, lsn)) = victim {
            shard.remove(&k);
            self.floor.fetch_max(lsn, Ordering::Relaxed);
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
        let total: usize = w.shards.iter().map(|s| s.lock().len()).sum();
        assert!(total <= 16, "{total} entries");
        // Whatever was forgotten still needs at least its own LSN through the floor.
        for i in 0..200u64 {
            match w.need(&[format!("t{i}")]) {
                ReadNeed::Lsn(l) => assert!(l > i, "t{i} needs {l}"),
                other => panic!("t{i}: {other:?}"),
            }
        }
    }
}
