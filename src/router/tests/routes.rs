//! The routing table: statements in, replica or primary out.

use super::super::Route;
use super::router;

/// Certainly read-only: may run on a replica.
const REPLICA: &[&str] = &[
    "SELECT 1",
    "select 1",
    "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
    "SELECT * FROM t WHERE id = $1",
    "SELECT a, b FROM t ORDER BY a LIMIT 10 OFFSET 5",
    "SELECT count(*) FROM t",
    "SELECT DISTINCT a FROM t",
    "SELECT a, sum(b) FROM t GROUP BY a HAVING sum(b) > 10",
    "SELECT * FROM a JOIN b ON a.id = b.a_id LEFT JOIN c ON c.id = b.c_id",
    "SELECT * FROM a, b WHERE a.id = b.id",
    "SELECT * FROM t1 UNION SELECT * FROM t2",
    "SELECT * FROM t1 UNION ALL SELECT * FROM t2 EXCEPT SELECT * FROM t3",
    "SELECT * FROM t1 INTERSECT SELECT * FROM t2",
    "SELECT 1 UNION SELECT 2 ORDER BY 1",
    "SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t",
    "SELECT a, rank() OVER w, lag(a) OVER w FROM t WINDOW w AS (ORDER BY a)",
    "SELECT * FROM t, LATERAL (SELECT * FROM u WHERE u.t_id = t.id LIMIT 1) x",
    "SELECT * FROM t LEFT JOIN LATERAL unnest(t.tags) AS tag ON true",
    "SELECT * FROM ROWS FROM (generate_series(1, 3), unnest(ARRAY[1, 2])) AS x(a, b)",
    "SELECT * FROM unnest(ARRAY[1, 2]) WITH ORDINALITY",
    "SELECT data->>'name', data #> '{a,b}' FROM docs WHERE data @> '{\"a\": 1}'",
    "SELECT jsonb_build_object('a', 1), data->'x' ? 'y' FROM docs",
    "SELECT jsonb_path_query(data, '$.a[*]') FROM docs",
    "VALUES (1), (2)",
    "VALUES (1, 'a')",
    "TABLE t",
    "TABLE public.t",
    "SHOW search_path",
    "SHOW TIME ZONE",
    "show statement_timeout",
    "EXPLAIN SELECT * FROM t",
    "EXPLAIN (COSTS OFF) SELECT * FROM t WHERE a = 1",
    "EXPLAIN (FORMAT JSON, VERBOSE) SELECT 1",
    "SELECT 1; SELECT 2",
    "SELECT 1; SHOW work_mem; VALUES (3)",
    "WITH x AS (SELECT * FROM t) SELECT * FROM x",
    "WITH x AS MATERIALIZED (SELECT * FROM t), y AS (SELECT * FROM x) SELECT * FROM y",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r",
    "SELECT * FROM t WHERE id IN (SELECT t_id FROM u)",
    "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id)",
    "SELECT * FROM t WHERE a = ANY($1)",
    "SELECT * FROM t WHERE a IN (1, 2, 3) AND b NOT IN ('x', 'y')",
    "SELECT now()",
    "SELECT current_timestamp, localtimestamp, current_date",
    "SELECT current_user, session_user",
    "SELECT random()",
    "SELECT gen_random_uuid()",
    "SELECT clock_timestamp()",
    "SELECT pg_sleep(1)",
    "SELECT pg_is_in_recovery()",
    "SELECT txid_current_if_assigned()",
    "SELECT current_setting('search_path')",
    "SELECT lower(name) FROM users WHERE upper(email) LIKE 'A%'",
    "SELECT coalesce(a, b), greatest(a, b), least(a, b), nullif(a, 0) FROM t",
    "SELECT CASE WHEN a > 0 THEN 'pos' ELSE 'neg' END FROM t",
    "SELECT a::text, CAST(b AS int) FROM t",
    "SELECT * FROM t WHERE a BETWEEN 1 AND 10",
    "SELECT * FROM t WHERE name ILIKE '%x%' OR name NOT LIKE 'y%'",
    "SELECT * FROM t WHERE a SIMILAR TO 'x%'",
    "SELECT * FROM t WHERE a IS DISTINCT FROM b AND c IS NOT NULL",
    "SELECT ARRAY[1, 2, 3] && ARRAY[2], ARRAY[1] || 2",
    "SELECT * FROM t TABLESAMPLE SYSTEM (10)",
    "SELECT stable_user_fn(1)",
    "SELECT immutable_user_fn(a) FROM t",
    "SELECT E'it''s', $$dollar$$, U&'\\0041', B'101', X'FF', N'n'",
    "SELECT $tag$ ; DELETE FROM t; $tag$",
    "SELECT extract(epoch FROM now())",
    "SELECT date_trunc('day', created_at), created_at AT TIME ZONE 'UTC' FROM t",
    "SELECT substring(a FROM 2 FOR 3), position('x' IN a), trim(both ' ' FROM a), overlay(a PLACING 'b' FROM 1) FROM t",
    "SELECT * FROM \"Quoted Table\"",
    "SELECT * FROM generate_series(1, 10) g",
    "SELECT count(*) FILTER (WHERE a > 1) FROM t",
    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY a) FROM t",
    "SELECT * FROM t ORDER BY a NULLS FIRST FETCH FIRST 5 ROWS ONLY",
    "SELECT string_agg(a, ',' ORDER BY a), array_agg(DISTINCT b) FROM t",
    "SELECT json_agg(t) FROM t",
    "SELECT to_char(now(), 'YYYY')",
    "SELECT * FROM t WHERE ts > now() - interval '1 day'",
    "(SELECT 1)",
    "((SELECT 1) UNION (SELECT 2))",
    "SELECT 1 /* a comment */ -- another",
    "SELECT '/* pgsplit:primary */'",
    "SELECT \"for update\" FROM t",
    "SELECT * FROM t WHERE note = 'FOR UPDATE' AND x = 'nextval(1)'",
    "SELECT xmin, * FROM t",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM pg_stat_activity",
    "SELECT a FROM t GROUP BY ROLLUP (a)",
    "SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b",
    "SELECT * FROM t1 NATURAL JOIN t2",
    "SELECT * FROM t1 FULL OUTER JOIN t2 USING (id)",
    "SELECT length('abc') ; -- trailing comment",
    "SELECT num_nulls(a, b), hashtext(a) FROM t",
    "SELECT pg_collation_for(a) FROM t",
];

/// Writes, locks, session changes, anything not certainly read-only: primary.
const PRIMARY: &[&str] = &[
    // DML, with and without RETURNING
    "INSERT INTO t VALUES (1)",
    "INSERT INTO t (a) VALUES (1) RETURNING id",
    "INSERT INTO t SELECT * FROM u",
    "INSERT INTO t DEFAULT VALUES",
    "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = excluded.a",
    "INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING",
    "UPDATE t SET a = 1 WHERE id = 2",
    "UPDATE t SET a = 1 RETURNING *",
    "UPDATE t SET a = u.a FROM u WHERE t.id = u.id",
    "DELETE FROM t WHERE id = 1",
    "DELETE FROM t USING u WHERE t.id = u.id RETURNING t.*",
    "MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN UPDATE SET a = u.a WHEN NOT MATCHED THEN INSERT VALUES (u.id, u.a)",
    "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
    "WITH x AS (SELECT 1) UPDATE t SET a = 1",
    "WITH x AS (SELECT 1) DELETE FROM t",
    "TRUNCATE t",
    "TRUNCATE TABLE a, b RESTART IDENTITY",
    // row locks, anywhere
    "SELECT * FROM t FOR UPDATE",
    "SELECT * FROM t FOR NO KEY UPDATE",
    "SELECT * FROM t FOR SHARE",
    "SELECT * FROM t FOR KEY SHARE",
    "SELECT * FROM t FOR UPDATE SKIP LOCKED",
    "SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED",
    "SELECT * FROM t FOR UPDATE NOWAIT",
    "SELECT * FROM t, u FOR UPDATE OF t",
    "SELECT * FROM t FOR SHARE OF t FOR UPDATE OF t",
    "select * from t for update",
    "SELECT * FROM jobs WHERE id = (SELECT id FROM jobs WHERE state = 'new' LIMIT 1 FOR UPDATE SKIP LOCKED)",
    "SELECT * FROM (SELECT * FROM t FOR SHARE) s",
    "WITH x AS (SELECT * FROM t FOR UPDATE) SELECT * FROM x",
    "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u FOR KEY SHARE)",
    "SELECT 1 UNION SELECT a FROM (SELECT a FROM t FOR UPDATE) s",
    "(SELECT * FROM t FOR UPDATE)",
    "SELECT (SELECT a FROM t LIMIT 1 FOR UPDATE)",
    "SELECT * FROM t JOIN LATERAL (SELECT * FROM u FOR SHARE) x ON true",
    // data-modifying CTEs
    "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
    "WITH x AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM x",
    "WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT count(*) FROM x",
    "WITH a AS (SELECT 1), b AS (DELETE FROM t) SELECT * FROM a",
    "WITH m AS (MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE RETURNING t.*) SELECT * FROM m",
    // functions that write, lock, or touch session state
    "SELECT nextval('s')",
    "SELECT nextval('s'), * FROM t",
    "SELECT setval('s', 10)",
    "SELECT setval('s', 10, false)",
    "SELECT currval('s')",
    "SELECT lastval()",
    "SELECT pg_advisory_lock(1)",
    "SELECT pg_advisory_lock_shared(1, 2)",
    "SELECT pg_try_advisory_lock(1)",
    "SELECT pg_advisory_xact_lock(1)",
    "SELECT pg_try_advisory_xact_lock(1)",
    "SELECT pg_advisory_unlock(1)",
    "SELECT pg_advisory_unlock_all()",
    "SELECT set_config('search_path', 'x', false)",
    "SELECT set_config('app.user', 'x', true)",
    "SELECT pg_notify('ch', 'x')",
    "SELECT lo_create(0)",
    "SELECT lo_unlink(1234)",
    "SELECT txid_current()",
    "SELECT pg_current_xact_id()",
    "SELECT pg_terminate_backend(123)",
    "SELECT pg_reload_conf()",
    "SELECT pg_current_wal_lsn()",
    "SELECT dblink_exec('conn', 'DELETE FROM t')",
    "SELECT * FROM dblink('conn', 'SELECT 1') AS t(a int)",
    "SELECT * FROM t LIMIT nextval('s')",
    "SELECT * FROM t OFFSET nextval('s')",
    "VALUES (nextval('s'))",
    "SELECT * FROM t ORDER BY nextval('s')",
    "SELECT (SELECT nextval('s'))",
    "SELECT * FROM t WHERE a = ANY(ARRAY[nextval('s')])",
    "SELECT * FROM t WHERE a = (SELECT setval('s', 1))",
    "SELECT * FROM t JOIN LATERAL (SELECT nextval('s')) x ON true",
    "SELECT count(*) FILTER (WHERE nextval('s') > 0) FROM t",
    "SELECT sum(a) OVER (ORDER BY nextval('s')) FROM t",
    "SELECT CASE WHEN a THEN nextval('s') END FROM t",
    "SELECT coalesce(a, nextval('s')) FROM t",
    "SELECT * FROM t WHERE a IN (SELECT nextval('s'))",
    "SELECT * FROM ROWS FROM (nextval('s'))",
    "SELECT pg_catalog.nextval('s')",
    "SELECT NEXTVAL('s')",
    "SELECT volatile_user_fn()",
    "SELECT unknown_user_fn()",
    "SELECT a FROM t WHERE unknown_user_fn(a)",
    "SELECT myschema.unknown_fn(1)",
    "SELECT a ### b FROM t",
    // SELECT INTO / CREATE TABLE AS
    "SELECT * INTO new_t FROM t",
    "SELECT * INTO TEMP tmp FROM t",
    "CREATE TABLE x AS SELECT * FROM t",
    "CREATE MATERIALIZED VIEW mv AS SELECT 1",
    // EXPLAIN: ANALYZE runs the statement; without it, route as the statement would
    "EXPLAIN ANALYZE SELECT 1",
    "EXPLAIN (ANALYZE) SELECT * FROM t",
    "EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM t",
    "EXPLAIN (ANALYZE false) SELECT 1",
    "EXPLAIN ANALYZE DELETE FROM t",
    "EXPLAIN DELETE FROM t",
    "EXPLAIN INSERT INTO t VALUES (1)",
    "EXPLAIN SELECT * FROM t FOR UPDATE",
    "EXPLAIN SELECT nextval('s')",
    "EXPLAIN EXECUTE p",
    "EXPLAIN CREATE TABLE x AS SELECT 1",
    // SHOW of settings that tell a primary from a standby
    "SHOW transaction_read_only",
    "SHOW default_transaction_read_only",
    "SHOW in_hot_standby",
    "SHOW ALL",
    // procedures, anonymous blocks, COPY
    "DO $$ BEGIN PERFORM 1; END $$",
    "DO LANGUAGE plpgsql $body$ BEGIN DELETE FROM t; END $body$",
    "CALL p()",
    "CALL myschema.proc(1, 'a')",
    "COPY t TO STDOUT",
    "COPY (SELECT * FROM t) TO STDOUT WITH CSV",
    "COPY t FROM STDIN",
    "COPY t (a, b) FROM STDIN WITH (FORMAT csv)",
    // notifications
    "LISTEN ch",
    "UNLISTEN *",
    "NOTIFY ch, 'payload'",
    // session settings
    "SET x = 1",
    "SET LOCAL statement_timeout = '5s'",
    "SET search_path TO a, b",
    "SET TIME ZONE 'UTC'",
    "SET ROLE admin",
    "SET SESSION AUTHORIZATION bob",
    "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
    "SET CONSTRAINTS ALL DEFERRED",
    "RESET ALL",
    "RESET search_path",
    // transaction control
    "BEGIN",
    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    "START TRANSACTION",
    "COMMIT",
    "END",
    "ROLLBACK",
    "ABORT",
    "SAVEPOINT s1",
    "RELEASE SAVEPOINT s1",
    "ROLLBACK TO SAVEPOINT s1",
    "PREPARE TRANSACTION 'gid'",
    "COMMIT PREPARED 'gid'",
    // SQL-level prepared statements and cursors live on one server connection
    "PREPARE q AS SELECT 1",
    "PREPARE q (int) AS SELECT * FROM t WHERE id = $1",
    "EXECUTE q(1)",
    "DEALLOCATE q",
    "DEALLOCATE ALL",
    "DEALLOCATE PREPARE q",
    "DISCARD ALL",
    "DISCARD PLANS",
    "DISCARD TEMP",
    "DECLARE c CURSOR FOR SELECT 1",
    "DECLARE c CURSOR WITH HOLD FOR SELECT * FROM t",
    "FETCH 10 FROM c",
    "MOVE NEXT IN c",
    "CLOSE c",
    // maintenance and locks
    "VACUUM",
    "VACUUM ANALYZE t",
    "ANALYZE t",
    "LOCK TABLE t IN ACCESS EXCLUSIVE MODE",
    "LOCK t",
    "CLUSTER t USING i",
    "REINDEX TABLE t",
    "CHECKPOINT",
    "LOAD 'auto_explain'",
    // DDL
    "CREATE TABLE t (id int PRIMARY KEY)",
    "CREATE TEMP TABLE tmp (id int)",
    "CREATE TEMPORARY TABLE tmp2 AS SELECT 1",
    "CREATE UNLOGGED TABLE u (a int)",
    "CREATE TABLE t2 (LIKE t)",
    "CREATE INDEX CONCURRENTLY i ON t (a)",
    "ALTER TABLE t ADD COLUMN b int",
    "DROP TABLE t",
    "DROP TABLE IF EXISTS a, b CASCADE",
    "CREATE VIEW v AS SELECT * FROM t",
    "CREATE TEMP VIEW tv AS SELECT 1",
    "CREATE SEQUENCE s",
    "CREATE TEMP SEQUENCE ts",
    "ALTER SEQUENCE s RESTART",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "CREATE EXTENSION IF NOT EXISTS pgcrypto",
    "CREATE SCHEMA s",
    "GRANT SELECT ON t TO r",
    "REVOKE ALL ON t FROM r",
    "COMMENT ON TABLE t IS 'x'",
    "REFRESH MATERIALIZED VIEW mv",
    "ALTER SYSTEM SET work_mem = '64MB'",
    "CREATE ROLE r LOGIN PASSWORD 'secret'",
    // multi-statement texts: primary unless every statement may go to a replica
    "SELECT 1; DELETE FROM t",
    "DELETE FROM t; SELECT 1",
    "SELECT 1; BEGIN",
    "SELECT 1; SET x = 1",
    "SELECT 1; SELECT nextval('s')",
    "BEGIN; SELECT 1; COMMIT",
    // routing hints
    "/* pgsplit:primary */ SELECT 1",
    "SELECT 1 -- pgsplit:primary",
    "SELECT /* PGSPLIT:PRIMARY */ * FROM t",
    "SELECT 1 /* outer /* pgsplit:primary */ nested */",
    "SELECT 1; /* pgsplit:primary */ SELECT 2",
    // not understood
    "garbage text",
    "SELEC 1",
    "SELECT FROM WHERE",
    "SELECT 'unterminated",
    "SELECT (1",
    "",
    "   ",
    ";",
    "-- only a comment",
    "/* only a comment */",
];

#[test]
fn routing_table() {
    let router = router();
    assert!(
        REPLICA.len() + PRIMARY.len() >= 150,
        "keep at least 150 statements"
    );
    let mut wrong = Vec::new();
    for (sql, expected) in REPLICA
        .iter()
        .map(|s| (s, Route::Replica))
        .chain(PRIMARY.iter().map(|s| (s, Route::Primary)))
    {
        let a = router.analyze(sql);
        if a.route != expected {
            wrong.push(format!(
                "{sql:?}: expected {expected:?}, got {:?} ({})",
                a.route, a.reason
            ));
        }
        // A second look comes from the cache and must agree.
        let again = router.analyze(sql);
        if again.route != a.route || again.reason != a.reason {
            wrong.push(format!("{sql:?}: cached analysis differs"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} misrouted:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn reasons() {
    let router = router();
    let cases = [
        ("SELECT 1", "read-only"),
        ("INSERT INTO t VALUES (1)", "insert"),
        ("UPDATE t SET a = 1", "update"),
        ("DELETE FROM t", "delete"),
        ("SELECT * FROM t FOR UPDATE", "for update"),
        ("SELECT * FROM t FOR NO KEY UPDATE", "for no key update"),
        ("SELECT * FROM t FOR SHARE", "for share"),
        ("SELECT * FROM t FOR KEY SHARE", "for key share"),
        ("SELECT nextval('s')", "volatile function nextval"),
        ("SELECT unknown_user_fn()", "unknown function"),
        (
            "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
            "data-modifying cte",
        ),
        ("SELECT * INTO x FROM t", "select into"),
        ("/* pgsplit:primary */ SELECT 1", "hint"),
        ("garbage text", "unparsed"),
        ("", "empty"),
        ("SHOW work_mem", "show"),
        ("EXPLAIN SELECT 1", "explain"),
        ("EXPLAIN ANALYZE SELECT 1", "explain analyze"),
        ("EXPLAIN DELETE FROM t", "delete"),
        ("SELECT 1; DELETE FROM t; BEGIN", "delete"),
        ("BEGIN", "begin"),
        ("SET x = 1", "set"),
    ];
    for (sql, reason) in cases {
        assert_eq!(router.analyze(sql).reason, reason, "{sql:?}");
    }
}

#[test]
fn an_empty_catalog_sends_every_call_to_the_primary() {
    let router = super::super::Router::new(super::FunctionCatalog::empty(), 100);
    assert_eq!(router.analyze("SELECT 1 FROM t").route, Route::Replica);
    assert_eq!(
        router.analyze("SELECT lower(a) FROM t").route,
        Route::Primary
    );
    assert_eq!(router.analyze("SELECT 1 + 1").route, Route::Primary);
}

#[test]
fn set_catalog_takes_effect_for_cached_shapes() {
    let router = super::super::Router::new(super::FunctionCatalog::builtin(), 100);
    assert_eq!(router.analyze("SELECT my_fn(1)").route, Route::Primary);
    let mut catalog = super::FunctionCatalog::builtin();
    catalog.insert_function("my_fn", super::Volatility::Stable);
    router.set_catalog(catalog);
    assert_eq!(router.analyze("SELECT my_fn(2)").route, Route::Replica);
    router.set_catalog(super::FunctionCatalog::builtin());
    assert_eq!(router.analyze("SELECT my_fn(3)").route, Route::Primary);
}

#[test]
fn a_reload_that_changes_nothing_keeps_the_salt_prepared_statements_were_analyzed_under() {
    let router = super::super::Router::new(super::FunctionCatalog::builtin(), 100);
    let salt = router.catalog_salt();
    let loads = router.catalog_loads();
    router.set_catalog_loaded(super::FunctionCatalog::builtin(), router.catalog_changes());
    assert_eq!(router.catalog_salt(), salt);
    assert_eq!(router.catalog_loads(), loads + 1);
    let mut catalog = super::FunctionCatalog::builtin();
    catalog.insert_function("my_fn", super::Volatility::Stable);
    router.set_catalog_loaded(catalog, router.catalog_changes());
    assert_ne!(router.catalog_salt(), salt);
    assert_eq!(router.analyze("SELECT my_fn(1)").route, Route::Replica);
}

#[test]
fn texts_that_may_run_but_are_not_understood_pin_and_count_as_writes() {
    // Deeper than pg_query's protobuf decoder allows, yet valid SQL for the server.
    let deep = format!("BEGIN; SELECT {}", vec!["a"; 300].join(" + "));
    let a = router().analyze(&deep);
    assert_eq!(a.route, Route::Primary);
    assert_eq!(a.reason, "too complex");
    assert!(a.is_transaction_control);
    assert!(a.writes_unknown);
    assert!(a.pin.is_some());
}
