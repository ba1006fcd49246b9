//! Fingerprints and normalized text: stable across literals, distinct across tables, never holding a value.

use super::router;

#[test]
fn same_shape_same_fingerprint() {
    let r = router();
    let a = r.analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 1");
    let b = r.analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 99999");
    let c = r.analyze("select abalance\n  from pgbench_accounts where aid=3 -- note");
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_eq!(a.fingerprint, c.fingerprint);
    assert_ne!(a.fingerprint, 0);
}

#[test]
fn different_tables_different_fingerprints() {
    let r = router();
    let fp = |sql: &str| r.analyze(sql).fingerprint;
    assert_ne!(
        fp("SELECT * FROM a WHERE id = 1"),
        fp("SELECT * FROM b WHERE id = 1")
    );
    assert_ne!(fp("SELECT * FROM public.t"), fp("SELECT * FROM audit.t"));
    assert_ne!(
        fp("SELECT * FROM orders_2024"),
        fp("SELECT * FROM orders_2025")
    );
    assert_ne!(fp("SELECT * FROM users u"), fp("SELECT * FROM orders u"));
    assert_ne!(fp("SELECT a FROM t"), fp("SELECT b FROM t"));
}

#[test]
fn in_lists_of_any_length_share_a_fingerprint() {
    let r = router();
    let two = r.analyze("SELECT * FROM t WHERE id IN (1, 2)");
    let five = r.analyze("SELECT * FROM t WHERE id IN (1, 2, 3, 4, 5)");
    assert_eq!(two.fingerprint, five.fingerprint);
}

#[test]
fn unparsable_text_fingerprints_by_shape() {
    let r = router();
    let a = r.analyze("SELEKT 1 FROM t");
    let b = r.analyze("SELEKT 2 FROM t");
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_eq!(a.fingerprint, super::super::shape("SELEKT 3 FROM t").hash);
    assert_eq!(&*a.normalized, "SELEKT $1 FROM t");
}

#[test]
fn normalized_text_never_holds_a_literal() {
    let secrets = [
        (
            "SELECT * FROM users WHERE email = 'alice@example.com'",
            "alice",
        ),
        ("SELECT * FROM t WHERE id = 48213", "48213"),
        ("SET app.token = 'tok_live_123'", "tok_live"),
        ("CREATE TABLE t (a text DEFAULT 'hunter2')", "hunter2"),
        ("CREATE ROLE r PASSWORD 'hunter2'", "hunter2"),
        ("ALTER ROLE r PASSWORD 'hunter2'", "hunter2"),
        ("PREPARE p AS SELECT 'hunter2'", "hunter2"),
        ("COPY t FROM '/srv/hunter2.csv'", "hunter2"),
        ("COMMENT ON TABLE t IS 'hunter2'", "hunter2"),
        ("CREATE VIEW v AS SELECT 'hunter2' AS x", "hunter2"),
        ("SELECT 1 FROM t ORDER BY 31337", "31337"),
        ("SELECT $x$hunter2$x$", "hunter2"),
        ("SELECT E'hunter\\x32'", "hunter"),
        ("SELECT U&'hunter2'", "hunter2"),
        ("SELECT X'DEADBEEF'", "DEADBEEF"),
        ("SELECT 1 /* user=hunter2 */", "hunter2"),
        ("SELECT interval '31337 days'", "31337"),
        ("SELEKT 'hunter2'", "hunter2"),
        ("SELECT 'hunter2", "hunter2"),
        ("DO $$ BEGIN RAISE NOTICE 'hunter2'; END $$", "hunter2"),
        ("NOTIFY ch, 'hunter2'", "hunter2"),
        ("EXPLAIN (ANALYZE 31337) SELECT 1", "31337"),
    ];
    let r = router();
    for (sql, secret) in secrets {
        let a = r.analyze(sql);
        assert!(
            !a.normalized.contains(secret),
            "{sql:?} normalized to {:?}",
            a.normalized
        );
        assert!(
            !super::super::shape::has_literal(&a.normalized),
            "{:?}",
            a.normalized
        );
    }
}

#[test]
fn normalized_keeps_pg_query_form() {
    let a = router().analyze("SELECT * FROM t WHERE a = 1 AND b IN ('x', 'y')");
    assert_eq!(
        &*a.normalized,
        "SELECT * FROM t WHERE a = $1 AND b IN ($2, $3)"
    );
}

#[test]
fn cache_hands_one_analysis_to_every_text_of_a_shape() {
    let r = router();
    let a = r.analyze("SELECT * FROM t WHERE id = 1");
    let b = r.analyze("SELECT * FROM t WHERE id = 2");
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    assert_eq!(r.stats().misses, 1);
}

#[test]
fn huge_parameter_numbers_do_not_overflow() {
    // From the classifier fuzz target: the highest `$n` plus one overflowed u64.
    let r = router();
    let a = r.analyze("select $18446744073709551615, 'a', 'b'");
    assert!(!a.normalized.contains("'a'"), "{}", a.normalized);
    let _ = r.analyze("SEL*CT $ECT $x\u{1}$000000000000018446744073709551615pw=$\0 $x");
}
