//! Unit tests of the cache's bookkeeping (the wire behaviour is tested through the proxy in tests/cache.rs).

use super::*;
use crate::protocol::build;

fn key(q: &str) -> CacheKey {
    CacheKey {
        db: Arc::from("app"),
        user: Some(Arc::from("app")),
        settings: 0,
        request: Bytes::copy_from_slice(q.as_bytes()),
    }
}

fn reply(rows: usize) -> Vec<(u8, BytesMut)> {
    let mut out = Vec::new();
    let mut m = BytesMut::new();
    build::row_description(&mut m, &["v"]);
    out.push((b'T', m));
    for i in 0..rows {
        let mut m = BytesMut::new();
        build::data_row(&mut m, &[Some(&i.to_string())]);
        out.push((b'D', m));
    }
    let mut m = BytesMut::new();
    build::command_complete(&mut m, &format!("SELECT {rows}"));
    out.push((b'C', m));
    out
}

fn fill_with(cache: &Arc<ResultCache>, k: &CacheKey, tables: &[String], rows: usize) -> bool {
    match cache.lookup(k, 1, tables) {
        Lookup::Fill(mut f) => {
            for (t, m) in reply(rows) {
                f.feed(t, &m);
            }
            cache.finish(f, true, false, false);
            true
        }
        _ => false,
    }
}

fn tables(t: &[&str]) -> Vec<String> {
    t.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_fill_is_hit_until_its_table_is_written() {
    let c = ResultCache::new(CacheSettings::default());
    let k = key("select v from t");
    assert!(fill_with(&c, &k, &tables(&["t"]), 3));
    match c.lookup(&k, 1, &tables(&["t"])) {
        Lookup::Hit(e) => assert_eq!(e.rows, 3),
        _ => panic!("expected a hit"),
    }
    c.invalidate_tables(&Arc::from("app"), &tables(&["public.t"]));
    assert!(matches!(c.lookup(&k, 1, &tables(&["t"])), Lookup::Fill(_)));
    assert_eq!(c.counters.stale_dropped.load(Ordering::Relaxed), 1);
}

#[test]
fn a_write_during_the_read_keeps_its_answer_out() {
    let c = ResultCache::new(CacheSettings::default());
    let k = key("select v from t");
    let Lookup::Fill(mut f) = c.lookup(&k, 1, &tables(&["t"])) else {
        panic!("expected a fill")
    };
    for (t, m) in reply(1) {
        f.feed(t, &m);
    }
    c.invalidate_tables(&Arc::from("app"), &tables(&["t"]));
    c.finish(f, true, false, false);
    assert_eq!(c.counters.fills_stale.load(Ordering::Relaxed), 1);
    assert!(matches!(c.lookup(&k, 1, &tables(&["t"])), Lookup::Fill(_)));
}

#[test]
fn errors_notices_and_oversized_replies_are_not_stored() {
    let c = ResultCache::new(CacheSettings {
        max_entry_bytes: 64,
        ..Default::default()
    });
    for (i, extra) in [b'E', b'N', b'D'].into_iter().enumerate() {
        let k = key(&format!("q{i}"));
        let Lookup::Fill(mut f) = c.lookup(&k, 1, &[]) else {
            panic!("expected a fill")
        };
        for (t, m) in reply(1) {
            f.feed(t, &m);
        }
        let mut m = BytesMut::new();
        build::message(&mut m, extra, |b| b.extend_from_slice(&[b'x'; 80]));
        f.feed(extra, &m);
        c.finish(f, true, false, false);
        assert!(
            matches!(c.lookup(&k, 1, &[]), Lookup::Fill(_)),
            "{}",
            extra as char
        );
    }
    assert_eq!(c.counters.fills.load(Ordering::Relaxed), 0);
}

#[test]
fn identical_misses_wait_for_one_fill() {
    let c = ResultCache::new(CacheSettings::default());
    let k = key("select 1 from t");
    let Lookup::Fill(mut f) = c.lookup(&k, 1, &tables(&["t"])) else {
        panic!("expected a fill")
    };
    let Lookup::Wait(mut rx) = c.lookup(&k, 1, &tables(&["t"])) else {
        panic!("expected to wait")
    };
    for (t, m) in reply(2) {
        f.feed(t, &m);
    }
    c.finish(f, true, false, false);
    // The filler's sender is gone: the waiter wakes and finds the entry.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert!(rt.block_on(rx.changed()).is_err());
    assert!(matches!(c.lookup(&k, 1, &tables(&["t"])), Lookup::Hit(_)));
    // An abandoned fill also wakes waiters, and the next lookup fills again.
    let k2 = key("other");
    let Lookup::Fill(f2) = c.lookup(&k2, 1, &[]) else {
        panic!("expected a fill")
    };
    let Lookup::Wait(mut rx2) = c.lookup(&k2, 1, &[]) else {
        panic!("expected to wait")
    };
    drop(f2);
    assert!(rt.block_on(rx2.changed()).is_err());
    assert!(matches!(c.lookup(&k2, 1, &[]), Lookup::Fill(_)));
}

#[test]
fn rules_shorten_or_forbid_caching() {
    let c = ResultCache::new(CacheSettings {
        rules: vec![
            Rule {
                target: RuleTarget::Table("audit".into()),
                ttl: None,
            },
            Rule {
                target: RuleTarget::Fingerprint(42),
                ttl: Some(Duration::from_millis(5)),
            },
        ],
        ..Default::default()
    });
    assert!(matches!(
        c.lookup(&key("a"), 1, &tables(&["public.audit"])),
        Lookup::Bypass
    ));
    assert_eq!(c.ttl_for(42, &[]), Some(Duration::from_millis(5)));
    assert_eq!(c.ttl_for(7, &[]), Some(Duration::from_secs(60)));
}

#[test]
fn the_byte_bound_evicts() {
    let c = ResultCache::new(CacheSettings {
        max_bytes: 20_000,
        ..Default::default()
    });
    for i in 0..200 {
        assert!(fill_with(&c, &key(&format!("q{i}")), &[], 20));
    }
    c.entries.run_pending_tasks();
    assert!(c.weighted_size() <= 20_000, "{}", c.weighted_size());
    assert!(c.entry_count() < 200);
    assert!(c.counters.evictions_size.load(Ordering::Relaxed) > 0);
}

#[test]
fn under_global_a_hit_needs_the_follower_or_its_own_fill_at_the_position() {
    let c = ResultCache::new(CacheSettings::default());
    let k = key("select v from t");
    let t = tables(&["t"]);
    let db: Arc<str> = Arc::from("app");
    let fresh = |position: Option<u64>, applied: u64| Fresh {
        position,
        applied,
        snapshot: c.generations.snapshot(&db, &t),
    };
    // Filled by a server that replayed position 100.
    let Lookup::Fill(mut f) = c.lookup_at(&k, 1, &t, Some(&fresh(Some(100), 0))) else {
        panic!("expected a fill")
    };
    for (tag, m) in reply(2) {
        f.feed(tag, &m);
    }
    c.finish(f, true, true, false);
    let hit = |p, a| matches!(c.lookup_at(&k, 1, &t, Some(&fresh(p, a))), Lookup::Hit(_));
    // No WAL since the fill: the entry itself covers the position.
    assert!(hit(Some(100), 0));
    // WAL moved on (another instance may have written t): unproven until the follower applied it.
    assert!(!hit(Some(150), 120));
    assert_eq!(c.counters.unproven.load(Ordering::Relaxed), 1);
    assert!(hit(Some(150), 150));
    // Position unknown: nothing can be proven.
    assert!(!hit(None, 500));
    // A write the follower reported after the fill's snapshot makes it stale as ever.
    c.invalidate_from_wal(&db, &t);
    assert!(!hit(Some(150), 200));
    assert_eq!(c.counters.stale_dropped.load(Ordering::Relaxed), 1);
}

/// Under LSN routing a replica answers only after replaying the proxy's own writes, so its
/// answer may be kept right after one; a write the WAL reported (made outside the proxy, its
/// position untracked) keeps a replica's answer out for the fill delay.
#[test]
fn a_replica_answer_is_kept_after_proxy_writes_but_not_after_logged_ones() {
    let c = ResultCache::new(CacheSettings::default());
    let db: Arc<str> = Arc::from("app");
    let t = tables(&["t"]);
    let fill_from_replica = |q: &str| {
        let k = key(q);
        let Lookup::Fill(mut f) = c.lookup(&k, 1, &t) else {
            panic!("expected a fill")
        };
        for (tag, m) in reply(1) {
            f.feed(tag, &m);
        }
        c.finish(f, true, true, true);
        matches!(c.lookup(&k, 1, &t), Lookup::Hit(_))
    };
    c.invalidate_tables(&db, &t);
    assert!(fill_from_replica("select 1 from t"));
    c.invalidate_from_wal(&db, &t);
    assert!(!fill_from_replica("select 2 from t"));
    assert_eq!(c.counters.fills_lagging.load(Ordering::Relaxed), 1);
    c.invalidate_all_from_wal();
    assert!(!fill_from_replica("select 3 from t"));
}
