//! Routing sees what PostgreSQL will execute: an adversarial corpus in four protocol modes with no misroute, currval/lastval under pooling, and standard_conforming_strings = off.

mod common;
use common::*;

use futures_util::future::join_all;
use pgsplit::router::Route;
use tokio_postgres::{Client, SimpleQueryMessage};

/// The corpus's objects, in a schema of its own: writers reached through views, aggregates,
/// casts, domains, operators and attribute notation, and harmless twins of each.
fn setup_sql(s: &str) -> String {
    format!(
        "CREATE SCHEMA {s};
         CREATE TABLE {s}.t (id int PRIMARY KEY, v int);
         INSERT INTO {s}.t SELECT g, g FROM generate_series(1, 10) g;
         CREATE TABLE {s}.log (x int);
         CREATE SEQUENCE {s}.seq;
         CREATE FUNCTION {s}.w(x int) RETURNS int VOLATILE LANGUAGE sql
           AS 'INSERT INTO {s}.log VALUES (1); SELECT x';
         CREATE FUNCTION {s}.r(x int) RETURNS int STABLE LANGUAGE sql AS 'SELECT x + 1';
         CREATE VIEW {s}.v1 AS SELECT id, {s}.w(v) AS wv FROM {s}.t;
         CREATE VIEW {s}.v2 AS SELECT * FROM {s}.v1;
         CREATE VIEW {s}.pv AS SELECT id, {s}.r(v) AS rv FROM {s}.t;
         CREATE FUNCTION {s}.wstate(a int, b int) RETURNS int VOLATILE LANGUAGE sql
           AS 'INSERT INTO {s}.log VALUES (2); SELECT coalesce(a, 0) + b';
         CREATE AGGREGATE {s}.agg(int) (SFUNC = {s}.wstate, STYPE = int);
         CREATE FUNCTION {s}.rstate(a int, b int) RETURNS int IMMUTABLE LANGUAGE sql
           AS 'SELECT coalesce(a, 0) + b';
         CREATE AGGREGATE {s}.ragg(int) (SFUNC = {s}.rstate, STYPE = int);
         CREATE TYPE {s}.ct AS (x int);
         CREATE FUNCTION {s}.int_to_ct(int) RETURNS {s}.ct VOLATILE LANGUAGE sql
           AS 'INSERT INTO {s}.log VALUES (3); SELECT ROW($1)::{s}.ct';
         CREATE CAST (int AS {s}.ct) WITH FUNCTION {s}.int_to_ct(int);
         CREATE FUNCTION {s}.wcheck(int) RETURNS bool VOLATILE LANGUAGE sql
           AS 'INSERT INTO {s}.log VALUES (4); SELECT true';
         CREATE DOMAIN {s}.dom AS int CHECK ({s}.wcheck(VALUE));
         CREATE DOMAIN {s}.pos AS int CHECK (VALUE > 0);
         CREATE TABLE {s}.dt (id int, d {s}.dom, c {s}.ct);
         INSERT INTO {s}.dt VALUES (1, 1, ROW(1));
         CREATE FUNCTION {s}.weq(int, int) RETURNS bool VOLATILE LANGUAGE sql
           AS 'INSERT INTO {s}.log VALUES (5); SELECT $1 = $2';
         CREATE OPERATOR {s}.=== (LEFTARG = int, RIGHTARG = int, FUNCTION = {s}.weq);
         CREATE FUNCTION {s}.f({s}.t) RETURNS int VOLATILE LANGUAGE sql
           AS 'INSERT INTO {s}.log VALUES (6); SELECT $1.v';
         CREATE FUNCTION {s}.g({s}.t) RETURNS int STABLE LANGUAGE sql AS 'SELECT $1.v';"
    )
}

/// Statements that must run on the primary: the issue's misroutes, the anchors' (FOR UPDATE
/// variants, writable CTEs, nextval, user functions), and lexer traps. Unqualified names
/// resolve through the session's search_path.
const WRITES: &[&str] = &[
    "SELECT * FROM v2",
    "SELECT * FROM v1 LIMIT 1",
    "SELECT count(*) FROM v2",
    "TABLE v2",
    "SELECT id FROM v2 WHERE id = 3",
    "SELECT * FROM t JOIN v1 USING (id) LIMIT 2",
    "WITH x AS (SELECT * FROM v2) SELECT count(*) FROM x",
    "SELECT (SELECT max(wv) FROM v1)",
    "SELECT agg(v) FROM t",
    "SELECT agg(v) FILTER (WHERE v > 5) FROM t",
    "SELECT 5::ct",
    "SELECT CAST(6 AS ct)",
    "SELECT id::ct FROM t WHERE id = 1",
    "SELECT 5::dom",
    "SELECT CAST(7 AS dom)",
    "SELECT * FROM t WHERE id = 5::dom",
    "SELECT t.f FROM t t",
    "SELECT x.f FROM t x WHERE x.id = 2",
    "SELECT (t).f FROM t",
    "SELECT 1 === 2",
    "SELECT id FROM t WHERE id === 3",
    "SELECT 1 OPERATOR(===) 1",
    "SELECT table_to_xml('v1', true, false, '')",
    "SELECT query_to_xml('SELECT 1', true, false, '')",
    "SELECT id FROM t WHERE id = 1 --\rFOR UPDATE",
    "SELECT 3 --\r, nextval('seq')",
    "SELECT * FROM t WHERE id = 1 FOR UPDATE",
    "SELECT * FROM t WHERE id = 1 FOR NO KEY UPDATE",
    "SELECT * FROM t WHERE id = 1 FOR SHARE",
    "SELECT * FROM t WHERE id = 1 FOR KEY SHARE",
    "SELECT * FROM t WHERE id = 1 FOR UPDATE SKIP LOCKED",
    "SELECT * FROM t WHERE id = 1 FOR UPDATE NOWAIT",
    "SELECT * FROM t x WHERE id = 1 FOR UPDATE OF x",
    "SELECT * FROM t WHERE id = 1 FOR NO KEY UPDATE SKIP LOCKED",
    "SELECT * FROM t WHERE id = 1 FOR SHARE NOWAIT",
    "select * from t where id = 1 for update",
    "SELECT * FROM t WHERE id = 1 FOR\nUPDATE",
    "SELECT * FROM t WHERE id = 1 /* c */ FOR /* d */ UPDATE",
    "SELECT * FROM t WHERE id = 1 --\r\nFOR UPDATE",
    "SELECT * FROM (SELECT * FROM t WHERE id = 1 FOR UPDATE) x",
    "WITH x AS (SELECT * FROM t WHERE id = 1 FOR UPDATE) SELECT * FROM x",
    "SELECT * FROM t WHERE id IN (SELECT id FROM t WHERE id = 2 FOR SHARE)",
    "SELECT * FROM t WHERE id = 1 LIMIT 1 FOR UPDATE",
    "(SELECT * FROM t WHERE id = 1 FOR UPDATE)",
    "WITH u AS (UPDATE t SET v = v WHERE id = 1 RETURNING *) SELECT * FROM u",
    "WITH i AS (INSERT INTO log VALUES (10) RETURNING x) SELECT * FROM i",
    "WITH d AS (DELETE FROM log WHERE x = 10 RETURNING x) SELECT count(*) FROM d",
    "WITH a AS (SELECT 1), b AS (INSERT INTO log VALUES (11) RETURNING x) SELECT * FROM a, b",
    "WITH m AS (MERGE INTO log USING (SELECT 12 AS x) s ON false WHEN NOT MATCHED THEN INSERT VALUES (s.x) RETURNING log.x) SELECT * FROM m",
    "SELECT nextval('seq')",
    "SELECT nextval('seq'::regclass)",
    "SELECT setval('seq', 100)",
    "VALUES (nextval('seq'))",
    "SELECT id, nextval('seq') FROM t WHERE id < 3",
    "SELECT * FROM t WHERE id = nextval('seq') % 10",
    "SELECT $$ -- $$, nextval('seq')",
    "SELECT '--', nextval('seq')",
    "SELECT 'it''s', nextval('seq')",
    "SELECT E'\\\\', nextval('seq')",
    "SELECT E'\\'', nextval('seq')",
    "SELECT U&'\\0041', nextval('seq')",
    "SELECT /* /* nested */ still */ nextval('seq')",
    "SELECT 'a'\n'b', nextval('seq')",
    "SELECT w(1)",
    "SELECT * FROM t WHERE v = w(1)",
    "SELECT w(v) FROM t LIMIT 1",
    "SELECT (SELECT w(1))",
    "VALUES (w(1))",
    "SELECT * FROM w(1)",
    "SELECT w(1) FROM generate_series(1, 2)",
    "SELECT coalesce(w(1), 0)",
    "SELECT CASE WHEN true THEN w(1) END",
    "SELECT ARRAY[w(1)]",
    "SELECT 1 WHERE EXISTS (SELECT w(1))",
    "SELECT 1 LIMIT w(1)",
    "SELECT 1 OFFSET w(0)",
    "SELECT * FROM t ORDER BY w(id) LIMIT 1",
    "SELECT max(w(v)) FROM t",
    "SELECT count(*) FILTER (WHERE w(v) > 0) FROM t",
    "SELECT row_number() OVER (ORDER BY w(v)) FROM t LIMIT 1",
    "SELECT w(1)::text",
    "SELECT W(1)",
    "SELECT \"w\"(1)",
    "EXPLAIN SELECT w(1)",
    "EXPLAIN ANALYZE SELECT 1",
    "INSERT INTO log VALUES (20)",
    "UPDATE t SET v = v WHERE id = 1",
    "DELETE FROM log WHERE x = 20",
    "MERGE INTO log USING (SELECT 21 AS x) s ON false WHEN NOT MATCHED THEN INSERT VALUES (s.x)",
    "SELECT txid_current()",
    "SELECT pg_current_xact_id()",
    "SELECT pg_notify('corpus', 'x')",
    "NOTIFY corpus",
    "SELECT lo_unlink(lo_create(0))",
    "SELECT pg_advisory_xact_lock(42)",
    "SELECT 2 --\r; UPDATE t SET v = v WHERE id = 1",
    // The anchors' reports as their users wrote them: pgcat 887 (FOR NO KEY UPDATE across a
    // line break, after STATEMENT_TIMESTAMP and NULLS FIRST), 750 (an aliased FOR UPDATE),
    // 829 (a writable CTE, Keycloak's DELETE ... IN (SELECT)), 489 (nextval in a transaction).
    "SELECT t.id, t.v FROM t WHERE (t.v = 1 OR (t.v < (t.id) AND now() <= (STATEMENT_TIMESTAMP()) AND t.v = 2)) ORDER BY t.v ASC NULLS FIRST, t.id ASC LIMIT 10 FOR NO KEY\nUPDATE OF t SKIP LOCKED",
    "SELECT * FROM t u WHERE u.id = 3 FOR UPDATE",
    "WITH things AS (UPDATE t SET v = v WHERE id = 1 RETURNING id) SELECT id FROM things WHERE id = 1",
    "DELETE FROM log WHERE x IN (SELECT x FROM log WHERE x = 30)",
    "BEGIN; SELECT nextval('seq'); COMMIT",
    "SELECT 1; INSERT INTO log VALUES (22)",
];

/// Reads that may use the replica; they must succeed through pgsplit as directly.
const READS: &[&str] = &[
    "SELECT * FROM t",
    "SELECT id FROM t WHERE id = 1",
    "SELECT * FROM pv",
    "SELECT ragg(v) FROM t",
    "SELECT 5::pos",
    "SELECT r(1)",
    "SELECT t.v, t.g FROM t t",
    "SELECT count(*) FROM t",
    "SELECT now() IS NOT NULL",
    "SELECT random() < 2",
    "VALUES (1), (2)",
    "TABLE t",
    "EXPLAIN SELECT * FROM t",
    "SELECT 1 --\r",
    "SELECT 'a'\n'b'",
    "SELECT $$x$$",
    "WITH x AS (SELECT 1) SELECT * FROM x",
    "SELECT * FROM t ORDER BY id LIMIT 3",
    "SELECT 1 FROM t WHERE v IN (1, 2, 3)",
    "SELECT * FROM t WHERE id = 1 /* FOR UPDATE */",
    "SELECT * FROM t WHERE id = 1 -- FOR UPDATE",
    "SELECT 'FOR UPDATE', '; DELETE FROM t'",
    "SELECT $q$ nextval('seq') $q$",
    "SELECT 1 = 1",
    "SELECT id FROM t WHERE id = 1 --\n",
    // Reading a column of a domain runs no check, and of a composite only its output.
    "SELECT * FROM dt",
    "SELECT d FROM dt WHERE id = 1",
    // A cast out of int into ct writes; casts into int do not run it.
    "SELECT v::int, '5'::int FROM t WHERE id = 1",
];

/// Text variants: the same statement as different clients write it.
fn variants(sql: &str) -> [String; 3] {
    [
        sql.to_owned(),
        format!("/* corpus */ {sql}"),
        format!("{sql}\n-- trailing comment"),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Simple,
    Named,
    Unnamed,
    Pipelined,
}

async fn run(c: &Client, mode: Mode, sql: &str) -> Result<(), String> {
    let r = match mode {
        Mode::Simple => c.simple_query(sql).await.map(drop),
        Mode::Named => match c.prepare(sql).await {
            Ok(st) => c.query(&st, &[]).await.map(drop),
            Err(e) => Err(e),
        },
        Mode::Unnamed | Mode::Pipelined => c.query_typed(sql, &[]).await.map(drop),
    };
    r.map_err(|e| match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    })
}

/// Whether the statement succeeds directly on the primary (rolled back, so the corpus's
/// state stays as it was); simple and extended protocol can differ (multi-statement texts).
async fn direct(c: &Client, mode: Mode, sql: &str) -> bool {
    c.batch_execute("BEGIN").await.expect("begin");
    let ok = run(c, mode, sql).await.is_ok();
    c.batch_execute("ROLLBACK").await.expect("rollback");
    ok
}

#[tokio::test]
async fn the_corpus_has_no_misroutes_in_any_mode() {
    let proxy = TestProxy::start().await;
    let router = proxy.handle.shared.router.clone();
    let s = unique("rc");
    let c = proxy.connect().await;
    let loads = router.catalog_loads();
    c.batch_execute(&setup_sql(&s)).await.expect("corpus setup");
    // The DDL went through pgsplit, so the catalog is read again at once.
    let view = format!("{s}.v2");
    wait_until("the catalog load after the DDL", || {
        router.catalog_loads() > loads && router.catalog().relation(&view).is_some()
    })
    .await;
    wait_for_replica().await;
    let path = format!("SET search_path = {s}, public");
    c.batch_execute(&path).await.unwrap();
    let plain = connect(&format!("postgres://app:app@{}/app", primary_addr())).await;
    plain.batch_execute(&path).await.unwrap();

    let mut statements = Vec::new();
    for (list, writes) in [(WRITES, true), (READS, false)] {
        for sql in list {
            for v in variants(sql) {
                statements.push((v, writes));
            }
        }
    }
    // What pgsplit decided for each text, with the catalog it loaded: every write on the
    // primary by analysis (not by the safety net, which the refusal count below watches).
    let misrouted: Vec<&str> = statements
        .iter()
        .filter(|(sql, writes)| *writes && router.analyze(sql).route != Route::Primary)
        .map(|(sql, _)| sql.as_str())
        .collect();
    let replica_routed = statements
        .iter()
        .filter(|(sql, writes)| !*writes && router.analyze(sql).route == Route::Replica)
        .count();
    let held_back: Vec<&str> = statements
        .iter()
        .filter(|(sql, writes)| !*writes && router.analyze(sql).route != Route::Replica)
        .map(|(sql, _)| sql.as_str())
        .collect();

    let mut checks = 0;
    let mut failures = Vec::new();
    let mut expected_failures = 0;
    for mode in [Mode::Simple, Mode::Named, Mode::Unnamed, Mode::Pipelined] {
        let mut baseline = Vec::new();
        for (sql, _) in &statements {
            baseline.push(direct(&plain, mode, sql).await);
        }
        let results: Vec<Result<(), String>> = if mode == Mode::Pipelined {
            let mut out = Vec::new();
            for chunk in statements.chunks(8) {
                out.extend(join_all(chunk.iter().map(|(sql, _)| run(&c, mode, sql))).await);
            }
            out
        } else {
            let mut out = Vec::new();
            for (sql, _) in &statements {
                out.push(run(&c, mode, sql).await);
            }
            out
        };
        for (((sql, _), ok_direct), result) in statements.iter().zip(baseline).zip(results) {
            checks += 1;
            match (ok_direct, result) {
                (true, Err(e)) => failures.push(format!("{mode:?} {sql:?}: {e}")),
                (false, _) => expected_failures += 1,
                _ => {}
            }
        }
    }
    let (forced, refusals) = router.forced_primary();
    let replica_reads = replica_answers(&proxy).await;
    println!(
        "corpus: {} statements ({} writes, {} reads) x 4 modes = {checks} checks; \
         {} fail directly too; {} fail only through pgsplit; {refusals} replica refusals (misroutes); \
         {replica_reads} statements answered by the replica; {replica_routed} of the reads \
         routed to replicas",
        statements.len(),
        statements.iter().filter(|s| s.1).count(),
        statements.iter().filter(|s| !s.1).count(),
        expected_failures,
        failures.len(),
    );
    superuser()
        .await
        .batch_execute(&format!("DROP SCHEMA {s} CASCADE"))
        .await
        .expect("drop corpus schema");
    assert!(statements.len() >= 300, "corpus too small");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(misrouted.is_empty(), "routed to a replica: {misrouted:#?}");
    // And no read is held back for fear of what it reaches: 0 misroutes by sending all to
    // the primary would be no result.
    assert!(
        held_back.is_empty(),
        "reads kept on the primary: {held_back:#?}"
    );
    assert_eq!(
        refusals, 0,
        "misroutes caught by the safety net: {forced:?}"
    );
    assert!(replica_reads > 0, "reads should use the replica");
    proxy.handle.shutdown().await;
}

/// Statements /stats counts as answered by the replica.
async fn replica_answers(proxy: &TestProxy) -> u64 {
    let (status, body) = http(proxy.handle.stats_addr, "GET", "/stats", None).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("stats json");
    v["queries"]
        .as_array()
        .map(|q| q.iter().filter_map(|r| r["replica_calls"].as_u64()).sum())
        .unwrap_or(0)
}

#[tokio::test]
async fn currval_never_returns_another_sessions_value() {
    // Two server connections for many clients: interleaving is certain.
    let proxy = TestProxy::start_with("[pool]\nprimary_size = 2\nreplica_size = 2").await;
    let s = unique("rq");
    let setup = superuser().await;
    setup
        .batch_execute(&format!(
            "CREATE SCHEMA {s}; CREATE SEQUENCE {s}.seq; GRANT USAGE ON SCHEMA {s} TO app;
             GRANT ALL ON SEQUENCE {s}.seq TO app;
             CREATE TABLE {s}.t (id serial PRIMARY KEY, v int); GRANT ALL ON {s}.t, {s}.t_id_seq TO app;"
        ))
        .await
        .unwrap();
    let me = proxy.connect().await;
    let others: Vec<Client> = join_all((0..4).map(|_| proxy.connect())).await;
    let mine: i64 = me
        .query_one(&format!("SELECT nextval('{s}.seq')"), &[])
        .await
        .unwrap()
        .get(0);
    // Other clients take sequence values on the pooled connections in between.
    join_all(others.iter().map(|o| {
        let sql = format!("SELECT nextval('{s}.seq')");
        async move { o.query_one(sql.as_str(), &[]).await.unwrap() }
    }))
    .await;
    for sql in [
        format!("SELECT currval('{s}.seq')"),
        "SELECT lastval()".to_owned(),
    ] {
        let e = me.query_one(sql.as_str(), &[]).await.expect_err(&sql);
        let db = e.as_db_error().expect("a server-style error");
        assert_eq!(db.code().code(), "0A000", "{sql}");
        assert!(db.message().contains("RETURNING"), "{}", db.message());
        let e = me.simple_query(&sql).await.expect_err(&sql);
        assert_eq!(e.as_db_error().map(|d| d.code().code()), Some("0A000"));
    }
    // In one transaction, or in one text, they see this session's own value.
    me.batch_execute("BEGIN").await.unwrap();
    let mine: i64 = me
        .query_one(&format!("SELECT nextval('{s}.seq')"), &[])
        .await
        .unwrap()
        .get::<_, i64>(0)
        .max(mine);
    join_all(others.iter().map(|o| {
        let sql = format!("SELECT nextval('{s}.seq')");
        async move { o.query_one(sql.as_str(), &[]).await.unwrap() }
    }))
    .await;
    let current: i64 = me
        .query_one(&format!("SELECT currval('{s}.seq')"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(current, mine, "currval in the nextval's transaction");
    me.batch_execute("COMMIT").await.unwrap();
    let text = format!("INSERT INTO {s}.t (v) VALUES (1); SELECT lastval()");
    let id = value(&me, &text).await;
    let max: i32 = setup
        .query_one(&format!("SELECT max(id) FROM {s}.t"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, max.to_string(), "lastval in the INSERT's own text");
    // RETURNING, the fix the error names, needs no session state at all.
    let returned: i32 = me
        .query_one(
            &format!("INSERT INTO {s}.t (v) VALUES (2) RETURNING id"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(returned > max);
    setup
        .batch_execute(&format!("DROP SCHEMA {s} CASCADE"))
        .await
        .unwrap();
    proxy.handle.shutdown().await;
}

#[tokio::test]
async fn standard_conforming_strings_off_is_read_as_the_server_reads_it() {
    let proxy = TestProxy::start().await;
    let s = unique("rb");
    let setup = superuser().await;
    setup
        .batch_execute(&format!(
            "CREATE SCHEMA {s}; CREATE SEQUENCE {s}.seq; GRANT USAGE ON SCHEMA {s} TO app;
             GRANT ALL ON SEQUENCE {s}.seq TO app;"
        ))
        .await
        .unwrap();
    wait_for_replica().await;
    let c = proxy.connect().await;
    c.batch_execute("SET standard_conforming_strings = off")
        .await
        .unwrap();
    // On, this is one read of two strings; off, the first string ends at `', '` and a
    // nextval() follows, which the replica would refuse.
    let sql = "SELECT 'x\\' , '; SELECT nextval($$SCHEMA.seq$$); --'".replace("SCHEMA", &s);
    c.simple_query(&sql).await.expect("runs on the primary");
    let (_, refusals) = proxy.handle.shared.router.forced_primary();
    assert_eq!(
        refusals, 0,
        "routed to the primary by analysis, not by the safety net"
    );
    let last: i64 = setup
        .query_one(&format!("SELECT last_value FROM {s}.seq"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(last, 1, "the nextval ran");
    // And the same text with the setting on is a plain read on the replica.
    c.batch_execute("SET standard_conforming_strings = on")
        .await
        .unwrap();
    let on = c.simple_query(&sql).await.expect("one read");
    assert!(on.iter().any(|m| matches!(m, SimpleQueryMessage::Row(_))));
    setup
        .batch_execute(&format!("DROP SCHEMA {s} CASCADE"))
        .await
        .unwrap();
    proxy.handle.shutdown().await;
}
