//! Session effects, pins, DEALLOCATE/DISCARD, transaction control, tables, functions and cacheability.

use super::super::{Deallocate, PinReason, Route, SessionEffect};
use super::analyze;

fn set(name: &str, statement: &str) -> SessionEffect {
    SessionEffect::Set {
        name: name.into(),
        statement: statement.into(),
    }
}

#[test]
fn set_forms_become_replayable_effects() {
    let cases: &[(&str, Vec<SessionEffect>)] = &[
        ("SET x = 1", vec![set("x", "SET x = 1")]),
        ("SET x TO 'a';", vec![set("x", "SET x TO 'a'")]),
        ("SET SESSION x = 2", vec![set("x", "SET SESSION x = 2")]),
        (
            "set Statement_Timeout = 5000",
            vec![set("statement_timeout", "set Statement_Timeout = 5000")],
        ),
        (
            "SET TIME ZONE 'UTC'",
            vec![set("timezone", "SET TIME ZONE 'UTC'")],
        ),
        (
            "SET TIME ZONE LOCAL",
            vec![set("timezone", "SET TIME ZONE LOCAL")],
        ),
        (
            "SET search_path TO a, b",
            vec![set("search_path", "SET search_path TO a, b")],
        ),
        (
            "SET SCHEMA 'app'",
            vec![set("search_path", "SET SCHEMA 'app'")],
        ),
        ("SET ROLE r", vec![set("role", "SET ROLE r")]),
        (
            "SET SESSION AUTHORIZATION u",
            vec![set("session_authorization", "SET SESSION AUTHORIZATION u")],
        ),
        (
            "SET NAMES 'UTF8'",
            vec![set("client_encoding", "SET NAMES 'UTF8'")],
        ),
        (
            "SET application_name = DEFAULT",
            vec![set("application_name", "SET application_name = DEFAULT")],
        ),
        (
            "SET myapp.tenant = '42'",
            vec![set("myapp.tenant", "SET myapp.tenant = '42'")],
        ),
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            vec![set(
                "default_transaction_isolation",
                "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            )],
        ),
        ("RESET x", vec![SessionEffect::Reset { name: "x".into() }]),
        (
            "RESET TIME ZONE",
            vec![SessionEffect::Reset {
                name: "timezone".into(),
            }],
        ),
        (
            "RESET ROLE",
            vec![SessionEffect::Reset {
                name: "role".into(),
            }],
        ),
        ("RESET ALL", vec![SessionEffect::ResetAll]),
        ("DISCARD ALL", vec![SessionEffect::ResetAll]),
        ("SET LOCAL x = 1", vec![]),
        ("SET LOCAL search_path TO a", vec![]),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", vec![]),
        ("SET CONSTRAINTS ALL DEFERRED", vec![]),
        ("SELECT 1", vec![]),
    ];
    for (sql, expected) in cases {
        assert_eq!(&analyze(sql).session, expected, "{sql:?}");
    }
}

#[test]
fn each_set_keeps_its_own_text_in_a_multi_statement_query() {
    let sql = "SET x = 'a'; /* why */ SET TIME ZONE 'Europe/Paris' ;\n  SELECT 1; RESET y;";
    let a = analyze(sql);
    assert_eq!(
        a.session,
        vec![
            set("x", "SET x = 'a'"),
            set("timezone", "SET TIME ZONE 'Europe/Paris'"),
            SessionEffect::Reset { name: "y".into() },
        ]
    );
    assert_eq!(a.statement_count, 4);
}

#[test]
fn set_statements_are_not_reused_for_other_values() {
    let router = super::router();
    let first = router.analyze("SET search_path TO a");
    let second = router.analyze("SET search_path TO 'b'");
    let third = router.analyze("SET search_path TO 'c'");
    assert!(!first.reuse_by_shape);
    assert_eq!(
        second.session,
        vec![set("search_path", "SET search_path TO 'b'")]
    );
    assert_eq!(
        third.session,
        vec![set("search_path", "SET search_path TO 'c'")]
    );
    // set_config's third argument decides the pin, and it is a literal.
    let local = router.analyze("SELECT set_config('a', 'b', true)");
    let session = router.analyze("SELECT set_config('a', 'b', false)");
    assert_eq!(local.pin, None);
    assert_eq!(session.pin, Some(PinReason::SessionState));
    assert!(!local.reuse_by_shape && !session.reuse_by_shape);
}

#[test]
fn catalog_changes_make_user_functions_suspect_until_reloaded() {
    let router = super::router();
    assert_eq!(router.analyze("SELECT volatile_user_fn()").pin, None);
    let changes = router.catalog_changes();
    router.catalog_changed();
    assert_eq!(
        router.analyze("SELECT volatile_user_fn()").pin,
        Some(PinReason::SessionState)
    );
    // Built-in functions stay trusted.
    assert_eq!(router.analyze("SELECT lower('A')").pin, None);
    // A read that pins the session runs on the primary: the pinned session's writes follow
    // it to that server (the differential test found an ALTER TABLE sent to a replica).
    let pinning = router.analyze("SELECT immutable_user_fn()");
    assert_eq!(pinning.pin, Some(PinReason::SessionState));
    assert_eq!(pinning.route, Route::Primary);
    assert_eq!(pinning.reason, "pins the session");
    // A load that started before the change is not trusted either.
    router.set_catalog_loaded(super::catalog(), changes);
    assert_eq!(
        router.analyze("SELECT volatile_user_fn()").pin,
        Some(PinReason::SessionState)
    );
    router.set_catalog_loaded(super::catalog(), router.catalog_changes());
    assert_eq!(router.analyze("SELECT volatile_user_fn()").pin, None);
}

#[test]
fn privilege_and_function_ddl_write_everything_and_reload_the_catalog() {
    for sql in [
        "GRANT SELECT ON t TO r",
        "REVOKE SELECT ON t FROM r",
        "CREATE POLICY p ON t USING (true)",
        "ALTER POLICY p ON t USING (false)",
        "DROP POLICY p ON t",
        "ALTER ROLE r SET search_path = x",
        "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 1'",
        "DROP FUNCTION f()",
        "GRANT r TO app",
    ] {
        let a = analyze(sql);
        assert!(a.writes_unknown && a.reloads_catalog, "{sql}");
    }
    // Dropping a table changes reach (a partition, a view's base) but writes only itself.
    let a = analyze("DROP TABLE t");
    assert!(!a.writes_unknown && a.reloads_catalog);
    assert!(!analyze("CREATE TEMP TABLE t (a int)").reloads_catalog);
    assert!(analyze("CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1)").reloads_catalog);
    assert!(analyze("CREATE TRIGGER t AFTER INSERT ON a EXECUTE FUNCTION f()").reloads_catalog);
}

#[test]
fn pins() {
    let cases = [
        ("LISTEN ch", Some(PinReason::Listen)),
        ("SELECT pg_advisory_lock(1)", Some(PinReason::AdvisoryLock)),
        (
            "SELECT pg_advisory_lock_shared(1)",
            Some(PinReason::AdvisoryLock),
        ),
        (
            "SELECT pg_try_advisory_lock(1, 2)",
            Some(PinReason::AdvisoryLock),
        ),
        (
            "SELECT pg_try_advisory_lock_shared(1)",
            Some(PinReason::AdvisoryLock),
        ),
        (
            "SELECT id, pg_try_advisory_lock(id) FROM jobs",
            Some(PinReason::AdvisoryLock),
        ),
        ("SELECT pg_advisory_xact_lock(1)", None),
        ("SELECT pg_try_advisory_xact_lock(1)", None),
        ("SELECT pg_advisory_unlock(1)", None),
        ("EXPLAIN SELECT pg_advisory_lock(1)", None),
        ("CREATE TEMP TABLE t (a int)", Some(PinReason::TempTable)),
        (
            "CREATE TEMPORARY TABLE t (a int)",
            Some(PinReason::TempTable),
        ),
        ("CREATE TABLE pg_temp.t (a int)", Some(PinReason::TempTable)),
        (
            "CREATE TEMP TABLE t AS SELECT 1",
            Some(PinReason::TempTable),
        ),
        ("SELECT * INTO TEMP t FROM u", Some(PinReason::TempTable)),
        ("CREATE TEMP SEQUENCE s", Some(PinReason::TempTable)),
        ("CREATE TEMP VIEW v AS SELECT 1", Some(PinReason::TempTable)),
        ("CREATE TABLE t (a int)", None),
        ("SELECT * INTO t FROM u", None),
        ("PREPARE q AS SELECT 1", Some(PinReason::SqlPrepare)),
        (
            "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
            Some(PinReason::HoldCursor),
        ),
        ("DECLARE c CURSOR FOR SELECT 1", None),
        ("LOAD 'auto_explain'", Some(PinReason::Other)),
        (
            "SELECT set_config('search_path', 'x', false)",
            Some(PinReason::SessionState),
        ),
        (
            "SELECT set_config('search_path', 'x', $1)",
            Some(PinReason::SessionState),
        ),
        // Settings changed where the text does not show them.
        ("SELECT set_tenant(2)", Some(PinReason::SessionState)),
        ("CALL set_tenant_proc(2)", Some(PinReason::SessionState)),
        ("SELECT volatile_user_fn()", None),
        ("SELECT wraps_setter(1)", Some(PinReason::SessionState)),
        ("SELECT unknown_fn(1)", Some(PinReason::SessionState)),
        (
            "DO $$ BEGIN PERFORM set_config('app.tenant_id', '2', false); END $$",
            Some(PinReason::SessionState),
        ),
        (
            "DO $$ BEGIN EXECUTE 'SET role x'; END $$",
            Some(PinReason::SessionState),
        ),
        (
            "DO $$ BEGIN PERFORM set_tenant(3); END $$",
            Some(PinReason::SessionState),
        ),
        ("DO $$ BEGIN INSERT INTO t VALUES (1); END $$", None),
        (
            "DO LANGUAGE plpython3u $$ pass $$",
            Some(PinReason::SessionState),
        ),
        ("SELECT set_config('search_path', 'x', true)", None),
        ("SELECT 1", None),
        ("BEGIN", None),
        (
            "SELECT 1; LISTEN a; SELECT pg_advisory_lock(1)",
            Some(PinReason::Listen),
        ),
    ];
    for (sql, pin) in cases {
        assert_eq!(analyze(sql).pin, pin, "{sql:?}");
    }
}

#[test]
fn deallocate_discard_and_transaction_control() {
    assert_eq!(
        analyze("DEALLOCATE q").deallocate,
        Some(Deallocate::Name("q".into()))
    );
    assert_eq!(
        analyze("DEALLOCATE PREPARE q").deallocate,
        Some(Deallocate::Name("q".into()))
    );
    assert_eq!(
        analyze("DEALLOCATE \"Q\"").deallocate,
        Some(Deallocate::Name("Q".into()))
    );
    assert_eq!(analyze("DEALLOCATE ALL").deallocate, Some(Deallocate::All));
    assert_eq!(
        analyze("DEALLOCATE PREPARE ALL").deallocate,
        Some(Deallocate::All)
    );
    assert_eq!(analyze("SELECT 1").deallocate, None);
    assert!(analyze("DISCARD ALL").discard_all);
    assert!(!analyze("DISCARD PLANS").discard_all);
    assert!(!analyze("RESET ALL").discard_all);
    for sql in [
        "BEGIN",
        "START TRANSACTION READ ONLY",
        "COMMIT",
        "END",
        "ROLLBACK",
        "ABORT",
        "SAVEPOINT a",
        "RELEASE a",
        "ROLLBACK TO a",
        "PREPARE TRANSACTION 'x'",
        "COMMIT PREPARED 'x'",
        "ROLLBACK PREPARED 'x'",
        "BEGIN; UPDATE t SET a = 1; COMMIT",
        "SELECT 1; COMMIT",
    ] {
        assert!(analyze(sql).is_transaction_control, "{sql:?}");
    }
    for sql in ["SELECT 1", "SET x = 1", "PREPARE q AS SELECT 1", "garbage"] {
        assert!(!analyze(sql).is_transaction_control, "{sql:?}");
    }
}

fn tables(sql: &str) -> (Vec<String>, Vec<String>) {
    let a = analyze(sql);
    (a.tables_read.clone(), a.tables_written.clone())
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn tables_read_and_written() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("SELECT * FROM leads", &["leads"], &[]),
        ("SELECT * FROM public.leads", &["public.leads"], &[]),
        (
            "SELECT * FROM Public.Leads l JOIN \"Other\" o ON o.id = l.id",
            &["public.leads", "other"],
            &[],
        ),
        (
            "SELECT * FROM a WHERE id IN (SELECT a_id FROM b)",
            &["a", "b"],
            &[],
        ),
        ("SELECT * FROM a, a", &["a"], &[]),
        ("INSERT INTO t SELECT * FROM u", &["u"], &["t"]),
        ("INSERT INTO s.t (a) VALUES (1) RETURNING id", &[], &["s.t"]),
        (
            "UPDATE t SET a = u.a FROM u WHERE t.id = u.id",
            &["u"],
            &["t"],
        ),
        ("UPDATE t SET a = (SELECT max(a) FROM t)", &["t"], &["t"]),
        ("DELETE FROM t USING u WHERE t.id = u.id", &["u"], &["t"]),
        (
            "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE",
            &["u"],
            &["t"],
        ),
        ("TRUNCATE a, s.b", &[], &["a", "s.b"]),
        ("COPY t FROM STDIN", &[], &["t"]),
        ("COPY t TO STDOUT", &["t"], &[]),
        ("COPY (SELECT * FROM t) TO STDOUT", &["t"], &[]),
        ("SELECT * INTO n FROM t", &["t"], &["n"]),
        ("CREATE TABLE n AS SELECT * FROM t", &["t"], &["n"]),
        ("CREATE TABLE n (a int)", &[], &["n"]),
        ("ALTER TABLE s.n ADD COLUMN b int", &[], &["s.n"]),
        ("DROP TABLE a, s.b", &[], &["a", "s.b"]),
        ("DROP VIEW v", &[], &["v"]),
        ("DROP FUNCTION f()", &[], &[]),
        ("CREATE INDEX i ON t (a)", &[], &["t"]),
        ("REFRESH MATERIALIZED VIEW mv", &[], &["mv"]),
        ("WITH x AS (SELECT * FROM t) SELECT * FROM x", &["t"], &[]),
        (
            "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
            &[],
            &["t"],
        ),
        (
            "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
            &[],
            &["t"],
        ),
        (
            "WITH RECURSIVE r AS (SELECT 1 UNION SELECT n + 1 FROM r) SELECT * FROM r",
            &[],
            &[],
        ),
        // A non-recursive CTE cannot see itself: the inner `t` is the table.
        ("WITH t AS (SELECT * FROM t) SELECT * FROM t", &["t"], &[]),
        // Nor a later sibling: `b` inside `a` is the table.
        (
            "WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a, b",
            &["b"],
            &[],
        ),
        // A CTE is not visible outside its query.
        (
            "SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) s, x",
            &["x"],
            &[],
        ),
        (
            "SELECT 1; INSERT INTO a VALUES (1); SELECT * FROM b",
            &["b"],
            &["a"],
        ),
    ];
    for (sql, read, written) in cases {
        assert_eq!(tables(sql), (names(read), names(written)), "{sql:?}");
    }
}

#[test]
fn functions_are_lowercased_unqualified_and_unique() {
    let a = analyze(
        "SELECT pg_catalog.LOWER(a), lower(b), count(*), now() FROM t WHERE x = ANY(my.f(1))",
    );
    assert_eq!(a.functions, names(&["lower", "count", "now", "f"]));
    assert_eq!(analyze("SELECT 1").functions, Vec::<String>::new());
}

#[test]
fn time_literals_do_not_share_a_shape_with_constants() {
    let router = super::router();
    assert!(router.analyze("SELECT 'epoch'::timestamptz").cacheable());
    assert!(!router.analyze("SELECT 'now'::timestamptz").cacheable());
    assert!(router
        .analyze("SELECT '2020-01-01'::timestamptz")
        .cacheable());
    assert!(!router.analyze("SELECT 'today'::date").cacheable());
}

#[test]
fn comments_end_at_a_carriage_return() {
    // The second line is SQL to PostgreSQL: it must not hide behind the comment.
    let router = super::router();
    let a = router.analyze("SELECT 1 FROM a -- note\r, b");
    assert_eq!(a.tables_read, vec!["a".to_owned(), "b".to_owned()]);
    let other = router.analyze("SELECT 1 FROM a -- note\r, c");
    assert_eq!(other.tables_read, vec!["a".to_owned(), "c".to_owned()]);
}

#[test]
fn commit_prepared_writes_everything() {
    assert!(analyze("COMMIT PREPARED 'x'").writes_unknown);
    assert!(!analyze("COMMIT").writes_unknown);
}

#[test]
fn cacheable() {
    let cacheable = [
        "SELECT * FROM t WHERE id = 1",
        "SELECT lower(a), count(*) FROM t GROUP BY 1",
        "SELECT immutable_user_fn(a) FROM t",
        "SELECT 1",
        "VALUES (1)",
        "SELECT 1; SELECT a FROM t",
    ];
    let not_cacheable = [
        "SELECT now()",
        "SELECT current_timestamp",
        "SELECT localtimestamp",
        "SELECT current_date",
        "SELECT current_user",
        "SELECT session_user",
        "SELECT current_setting('x')",
        "SELECT random()",
        "SELECT * FROM t ORDER BY random() LIMIT 1",
        "SELECT clock_timestamp()",
        "SELECT gen_random_uuid()",
        "SELECT pg_backend_pid()",
        "SELECT inet_client_addr()",
        "SELECT stable_user_fn(a) FROM t",
        "SELECT date_trunc('day', ts) FROM t",
        "SELECT * FROM t TABLESAMPLE BERNOULLI (5)",
        "SELECT * FROM pg_stat_activity",
        "SELECT * FROM pg_catalog.pg_class",
        "SELECT * FROM information_schema.columns",
        "SHOW work_mem",
        "EXPLAIN SELECT 1",
        "SELECT nextval('s')",
        "SELECT txid_current()",
        "SELECT * FROM t FOR UPDATE",
        "INSERT INTO t VALUES (1)",
        "/* pgsplit:primary */ SELECT 1",
        "SELECT 1; SELECT now()",
        "SELECT 'now'::timestamptz",
        "SELECT CAST('now' AS timestamp)",
        "SELECT 'now'::text::timestamptz",
        "SELECT date 'today'",
        "SELECT * FROM t WHERE d > 'yesterday'",
        "SELECT ' Tomorrow '::date",
        "garbage",
        "",
    ];
    for sql in cacheable {
        assert!(analyze(sql).cacheable(), "{sql:?} should be cacheable");
    }
    for sql in not_cacheable {
        assert!(!analyze(sql).cacheable(), "{sql:?} should not be cacheable");
    }
}

#[test]
fn writes_unknown() {
    for sql in [
        "CALL p()",
        "DO $$ BEGIN END $$",
        "EXECUTE q",
        "SELECT volatile_user_fn()",
        "SELECT unknown_user_fn()",
        "INSERT INTO t VALUES (unknown_user_fn())",
    ] {
        assert!(analyze(sql).writes_unknown, "{sql:?}");
    }
    for sql in [
        "SELECT 1",
        "INSERT INTO t VALUES (1)",
        "SELECT stable_user_fn()",
        "garbage text",
    ] {
        assert!(!analyze(sql).writes_unknown, "{sql:?}");
    }
}
