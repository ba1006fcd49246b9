//! Detector tests with injected time: every statement carries its own instant, so windows are exact.

use super::flow::{value_hash, Rows};
use super::*;
use std::time::{Duration, Instant};

/// The hashed wire value standing for key `v`.
fn key(v: u64) -> u32 {
    value_hash(&v.to_le_bytes())
}

/// A one-column result holding `values`, row after row.
fn result(values: impl IntoIterator<Item = u64>) -> Rows {
    let mut r = Rows::default();
    for v in values {
        let mut row = 1u16.to_be_bytes().to_vec();
        row.extend_from_slice(&8i32.to_be_bytes());
        row.extend_from_slice(&v.to_le_bytes());
        r.add_row(&row);
    }
    r
}

const PARENT: u64 = 0xaaaa;
const CHILD: u64 = 0xc0c0;
const SIBLING: u64 = 0x5151;

struct Harness {
    stream: Stream,
    settings: Settings,
    registry: Registry,
    t0: Instant,
    db: Arc<str>,
    text: Arc<str>,
}

impl Harness {
    fn new(settings: Settings) -> Harness {
        Harness {
            stream: Stream::default(),
            registry: Registry::new(settings.max_findings),
            settings,
            t0: Instant::now(),
            db: Arc::from("app"),
            text: Arc::from("SELECT * FROM notes WHERE lead_id = $1"),
        }
    }

    /// One statement with parameter value `params`; one returning several rows returns the
    /// keys 1..=rows.
    fn at(&mut self, ms: u64, fp: u64, class: Class, params: u64, rows: u64) -> Option<Detection> {
        let r = (rows >= 2).then(|| result(1..=rows));
        self.with_result(ms, fp, class, params, r)
    }

    fn with_result(
        &mut self,
        ms: u64,
        fp: u64,
        class: Class,
        params: u64,
        r: Option<Rows>,
    ) -> Option<Detection> {
        let values = [key(params)];
        let s = Statement {
            fingerprint: fp,
            normalized: &self.text,
            class,
            params,
            rows: r.as_ref().map_or(1, |r| u64::from(r.rows)),
            duration_us: 100,
            values: &values,
            cached: false,
            cache: CacheUse::On,
        };
        let origin = Origin {
            database: &self.db,
            user: "app",
            application_name: "test",
        };
        self.stream.observe(
            self.t0 + Duration::from_millis(ms),
            &s,
            r,
            &self.settings,
            &self.registry,
            origin,
        )
    }

    /// The parent returning `rows`, then `n` children 1 ms apart with params 1..=n; detections.
    fn classic(&mut self, start_ms: u64, rows: u64, n: u64) -> Vec<Detection> {
        let mut out: Vec<Detection> = self
            .at(start_ms, PARENT, Class::Read, 0, rows)
            .into_iter()
            .collect();
        for i in 1..=n {
            out.extend(self.at(start_ms + i, CHILD, Class::Read, i, 1));
        }
        out
    }
}

fn default() -> Harness {
    Harness::new(Settings::default())
}

#[test]
fn threshold_edge() {
    let mut h = default();
    assert!(h.classic(0, 50, 9).is_empty(), "9 < threshold 10");
    let d = h
        .at(10, CHILD, Class::Read, 10, 1)
        .expect("the 10th makes a burst");
    assert_eq!(d.kind, Kind::NPlusOne);
    assert_eq!(d.count, 10);
    assert_eq!(d.parent.as_ref().map(|p| p.0), Some(PARENT));
    assert!(
        d.suggestion.contains("lead_id = ANY($1)"),
        "{}",
        d.suggestion
    );
}

#[test]
fn window_edge() {
    // Ten children spanning exactly the window: a burst.
    let mut h = default();
    h.at(0, PARENT, Class::Read, 0, 50);
    let found: Vec<_> = (0..10)
        .filter_map(|i| h.at(1 + i * 111, CHILD, Class::Read, i + 1, 1))
        .collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].span_ms, 999);
    // One millisecond more between each: ten never fit in 1000 ms.
    let mut h = default();
    h.at(0, PARENT, Class::Read, 0, 50);
    assert!((0..30)
        .filter_map(|i| h.at(1 + i * 112, CHILD, Class::Read, i + 1, 1))
        .next()
        .is_none());
    // A pause longer than the window starts over.
    let mut h = default();
    assert!(h.classic(0, 50, 6).is_empty());
    assert!((0..6)
        .filter_map(|i| h.at(2000 + i, CHILD, Class::Read, 100 + i, 1))
        .next()
        .is_none());
}

#[test]
fn one_report_per_burst_and_it_keeps_counting() {
    let mut h = default();
    let found = h.classic(0, 50, 50);
    assert_eq!(found.len(), 1, "reported once, not per query");
    let rows = h.registry.snapshot();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!((r.occurrences, r.last_count, r.max_count), (1, 50, 50));
    assert_eq!(r.kind, Kind::NPlusOne);
    assert_eq!(r.parent_fingerprint.as_deref(), Some("000000000000aaaa"));
    assert!((r.total_ms - 5.0).abs() < 1e-9, "{}", r.total_ms);
    assert_eq!(h.registry.bursts().n_plus_one, 1);
    // The parent runs again: a new loop, a second occurrence of the same finding.
    assert_eq!(h.classic(100, 20, 20).len(), 1);
    let r = &h.registry.snapshot()[0];
    assert_eq!((r.occurrences, r.last_count, r.max_count), (2, 20, 50));
}

#[test]
fn identical_parameters_are_a_repeated_query_not_n_plus_one() {
    let mut h = default();
    let found: Vec<_> = (0..50)
        .filter_map(|i| h.at(i, CHILD, Class::Read, 7, 1))
        .collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].kind, Kind::RepeatedIdentical);
    assert!(found[0].parent.is_none());
    let r = &h.registry.snapshot()[0];
    assert_eq!((r.kind, r.last_count), (Kind::RepeatedIdentical, 50));
    assert_eq!(h.registry.bursts().n_plus_one, 0);
    // Switched off, identical runs are not reported at all (and not as N+1).
    let mut h = Harness::new(Settings {
        repeated_identical: false,
        ..Settings::default()
    });
    h.at(0, PARENT, Class::Read, 0, 50);
    assert!((1..50)
        .filter_map(|i| h.at(i, CHILD, Class::Read, 7, 1))
        .next()
        .is_none());
    // Mostly repeated keys with some differing (a column that is no key): still a loop.
    let mut h = default();
    h.with_result(
        0,
        PARENT,
        Class::Read,
        0,
        Some(result((1..=50).map(|r| r % 3))),
    );
    let found: Vec<_> = (1..=20)
        .filter_map(|i| h.at(i, CHILD, Class::Read, i % 3, 1))
        .collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].kind, Kind::NPlusOne);
}

#[test]
fn independent_lookups_are_not_n_plus_one() {
    // pgbench -S: one statement over and over, no parent.
    let mut h = default();
    assert!((0..200)
        .filter_map(|i| h.at(i, CHILD, Class::Read, i * 7919, 1))
        .next()
        .is_none());
    // Request after request on one connection: the would-be parent runs each time.
    let mut h = default();
    let found: Vec<_> = (0..100)
        .flat_map(|i| {
            let a = h.at(i * 2, PARENT, Class::Read, i, 5);
            let b = h.at(i * 2 + 1, CHILD, Class::Read, i, 1);
            [a, b]
        })
        .flatten()
        .collect();
    assert!(found.is_empty(), "{found:?}");
    // A parent of one row drove no loop.
    let mut h = default();
    assert!(h.classic(0, 1, 30).is_empty());
}

#[test]
fn interleaved_children_share_the_parent() {
    let mut h = default();
    h.at(0, PARENT, Class::Read, 0, 50);
    let mut found = Vec::new();
    for i in 1..=20 {
        found.extend(h.at(i * 2, CHILD, Class::Read, i, 1));
        found.extend(h.at(i * 2 + 1, SIBLING, Class::Read, i, 3));
    }
    assert_eq!(found.len(), 2, "{found:?}");
    for d in &found {
        assert_eq!(d.kind, Kind::NPlusOne);
        assert_eq!(d.parent.as_ref().map(|p| p.0), Some(PARENT), "{d:?}");
    }
    // An unrelated statement between children breaks neither the run nor the parent.
    let mut h = default();
    h.at(0, PARENT, Class::Read, 0, 50);
    let mut found = Vec::new();
    for i in 1..=12 {
        found.extend(h.at(i * 3, CHILD, Class::Read, i, 1));
        if i % 4 == 0 {
            found.extend(h.at(i * 3 + 1, 0x1234, Class::Other, 0, 0));
        }
    }
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].parent.as_ref().map(|p| p.0), Some(PARENT));
}

#[test]
fn parent_is_the_distinct_statement_before_the_run() {
    let mut h = default();
    h.at(0, 0x1111, Class::Read, 0, 100);
    h.at(1, PARENT, Class::Read, 0, 50);
    // Back-to-back repeats of the parent itself do not make it its own parent.
    h.at(2, PARENT, Class::Read, 0, 50);
    let found: Vec<_> = (3..20)
        .filter_map(|i| h.at(i, CHILD, Class::Read, i, 1))
        .collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].parent.as_ref().map(|p| p.0), Some(PARENT));
}

#[test]
fn batchable_writes_are_off_by_default_and_need_back_to_back_runs() {
    let mut h = default();
    assert!((0..50)
        .filter_map(|i| h.at(i, CHILD, Class::Write, i, 1))
        .next()
        .is_none());
    let mut h = Harness::new(Settings {
        batchable_writes: true,
        ..Settings::default()
    });
    let found: Vec<_> = (0..50)
        .filter_map(|i| h.at(i, CHILD, Class::Write, i, 1))
        .collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].kind, Kind::BatchableWrites);
    assert_eq!(h.registry.snapshot()[0].last_count, 50);
    // pgbench's TPC-B-like transactions: the same writes recur, but never back to back.
    let mut h = Harness::new(Settings {
        batchable_writes: true,
        ..Settings::default()
    });
    let mut found = Vec::new();
    for i in 0..100 {
        found.extend(h.at(i * 3, CHILD, Class::Write, i, 1));
        found.extend(h.at(i * 3 + 1, SIBLING, Class::Read, i, 1));
        found.extend(h.at(i * 3 + 2, 0x1234, Class::Write, i, 1));
    }
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn trace_groups_a_burst_spread_over_sessions() {
    let settings = Settings::default();
    let registry = Registry::new(100);
    let traces = Traces::new(100);
    let (db, q) = (Arc::<str>::from("app"), Arc::<str>::from("SELECT $1"));
    let t0 = Instant::now();
    let feed = |trace: u128, ms: u64, fp: u64, params: u64, rows: u64| {
        let values = [key(params)];
        let s = Statement {
            fingerprint: fp,
            normalized: &q,
            class: Class::Read,
            params,
            rows,
            duration_us: 10,
            values: &values,
            cached: false,
            cache: CacheUse::On,
        };
        let r = (rows >= 2).then(|| result(1..=rows));
        let origin = Origin {
            database: &db,
            user: "app",
            application_name: "five",
        };
        traces.observe(
            trace,
            t0 + Duration::from_millis(ms),
            &s,
            r,
            &settings,
            &registry,
            origin,
        )
    };
    // Trace 1: the parent, then 5 children from each of 5 "connections"; trace 2 has the
    // same children interleaved but only 5 of them.
    let mut found = Vec::new();
    found.extend(feed(1, 0, PARENT, 0, 50));
    found.extend(feed(2, 0, PARENT, 0, 50));
    for conn in 0..5u64 {
        for i in 0..5u64 {
            found.extend(feed(1, 1 + conn * 5 + i, CHILD, conn * 5 + i + 1, 1));
        }
        found.extend(feed(2, 1 + conn, CHILD, conn + 1, 1));
    }
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].count, 10);
    assert_eq!(found[0].parent.as_ref().map(|p| p.0), Some(PARENT));
    assert_eq!(registry.snapshot()[0].last_count, 25);
    assert_eq!(traces.len(), 2);
    // Bounded: many traces evict the idle ones.
    let small = Traces::new(16);
    for t in 1..=100u128 {
        let s = Statement {
            fingerprint: 1,
            normalized: &q,
            class: Class::Read,
            params: 0,
            rows: 1,
            duration_us: 1,
            values: &[],
            cached: false,
            cache: CacheUse::On,
        };
        let origin = Origin {
            database: &db,
            user: "app",
            application_name: "",
        };
        small.observe(t, t0, &s, None, &settings, &registry, origin);
    }
    assert!(small.len() <= 16);
}

#[test]
fn findings_are_bounded() {
    let mut h = Harness::new(Settings {
        max_findings: 16,
        ..Settings::default()
    });
    // 40 distinct repeated statements, each its own finding.
    for f in 0..40u64 {
        for i in 0..10 {
            h.at(f * 2000 + i, 1000 + f, Class::Read, 1, 1);
        }
    }
    assert_eq!(h.registry.bursts().repeated_identical, 40);
    let n = h.registry.snapshot().len();
    assert!((1..=16).contains(&n), "{n}");
    assert!(h.registry.evicted() >= 24);
    h.registry.reset();
    assert!(h.registry.snapshot().is_empty());
    assert_eq!(h.registry.bursts(), BurstCounts::default());
}

#[test]
fn many_fingerprints_do_not_grow_a_stream() {
    let mut h = default();
    for i in 0..1000u64 {
        h.at(i, i, Class::Read, i, 1);
    }
    assert!(h.stream_slots() <= 8);
}

impl Harness {
    fn stream_slots(&self) -> usize {
        self.stream.slot_count()
    }
}

#[test]
fn lookups_whose_values_never_came_from_the_parent_are_no_loop() {
    // The demo's false alarm: a list query, then searches with their own values, as regular
    // as any loop.
    let mut h = default();
    h.at(0, PARENT, Class::Read, 0, 50);
    let found: Vec<_> = (1..=100)
        .filter_map(|i| h.at(i, CHILD, Class::Read, 1000 + i * 7919, 1))
        .collect();
    assert!(found.is_empty(), "{found:?}");
    // Values that do occur among the parent's, but not row after row (random ids).
    let mut h = default();
    h.at(0, PARENT, Class::Read, 0, 50);
    let found: Vec<_> = (1..=100u64)
        .filter_map(|i| h.at(i, CHILD, Class::Read, (i * 37) % 50 + 1, 1))
        .collect();
    assert!(found.is_empty(), "{found:?}");
    assert!(h.registry.snapshot().is_empty());
}

#[test]
fn a_loop_interleaved_with_other_multi_row_statements_is_still_found() {
    let mut h = default();
    h.at(0, PARENT, Class::Read, 0, 30);
    let mut found = Vec::new();
    for i in 1..=30 {
        // Unrelated list queries between the children, each returning rows of its own.
        found.extend(h.with_result(i * 3, 0x7001, Class::Read, 5000 + i, Some(result(500..520))));
        found.extend(h.at(i * 3 + 1, CHILD, Class::Read, i, 1));
        found.extend(h.with_result(
            i * 3 + 2,
            0x7002,
            Class::Read,
            7000 + i,
            Some(result(900..905)),
        ));
    }
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].kind, Kind::NPlusOne);
    assert_eq!(found[0].parent.as_ref().map(|p| p.0), Some(PARENT));
    let r = &h.registry.snapshot()[0];
    assert_eq!(r.last_count, 30);
    assert!(r.flow.is_some(), "{r:?}");
}

#[test]
fn repeated_findings_tell_the_cache_share() {
    let mut h = default();
    for i in 0..40u64 {
        let values = [key(7)];
        let s = Statement {
            fingerprint: CHILD,
            normalized: &h.text,
            class: Class::Read,
            params: 7,
            rows: 1,
            duration_us: 10,
            values: &values,
            cached: i % 4 != 0,
            cache: CacheUse::On,
        };
        let origin = Origin {
            database: &h.db,
            user: "app",
            application_name: "",
        };
        let t = h.t0 + Duration::from_millis(i);
        h.stream
            .observe(t, &s, None, &h.settings, &h.registry, origin);
    }
    let r = &h.registry.snapshot()[0];
    assert_eq!(r.kind, Kind::RepeatedIdentical);
    assert_eq!(r.cached_share, Some(0.75));
    assert!(
        r.suggestion.contains("already answers 75%"),
        "{}",
        r.suggestion
    );
}
