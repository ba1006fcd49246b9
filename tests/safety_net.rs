//! The replica-refusal safety net through pgsplit on the real cluster: a function turned writer behind pgsplit's back, alone and inside pipelines of extended-protocol requests.

mod common;
use common::wire::{errors, read_ready, rows, show, Msg};
use common::*;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A schema `s` with a table `s.log` and a STABLE function `s.quiet_<s>()`, once the proxy's
/// catalog knows it read-only; returns (s, the function's name).
async fn stable_function(
    proxy: &TestProxy,
    c: &tokio_postgres::Client,
    prefix: &str,
) -> (String, String) {
    let router = &proxy.handle.shared.router;
    let s = unique(prefix);
    let loads = router.catalog_loads();
    // Volatility is known by name across schemas: a name of its own, so that no other
    // function (or a run that failed before its cleanup) decides what pgsplit thinks of it.
    let quiet = format!("quiet_{s}");
    c.batch_execute(&format!(
        "CREATE SCHEMA {s};
         CREATE TABLE {s}.log (x int);
         CREATE FUNCTION {s}.{quiet}() RETURNS int STABLE LANGUAGE sql AS 'SELECT 1';"
    ))
    .await
    .unwrap();
    wait_until("the catalog load after the DDL", || {
        router.catalog_loads() > loads && router.catalog().is_read_only(&quiet)
    })
    .await;
    (s, quiet)
}

#[tokio::test]
async fn a_function_turned_writer_behind_pgsplits_back_is_re_sent_to_the_primary() {
    let proxy = TestProxy::start().await;
    let router = proxy.handle.shared.router.clone();
    let c = proxy.connect().await;
    let (s, quiet) = stable_function(&proxy, &c, "rs").await;
    wait_for_replica().await;
    let sql = format!("SELECT {s}.{quiet}() AS one, pg_is_in_recovery() AS replica");
    assert_eq!(value(&c, &sql).await, "1");
    let row = c.query_one(&sql, &[]).await.unwrap();
    assert!(
        row.get::<_, bool>("replica"),
        "a stable function's read uses the replica"
    );

    // Behind pgsplit's back: the same function now writes, and the replica has it too.
    let primary = superuser().await;
    primary
        .batch_execute(&format!(
            "CREATE OR REPLACE FUNCTION {s}.{quiet}() RETURNS int VOLATILE LANGUAGE sql
               AS 'SELECT pg_sleep(0.1); INSERT INTO {s}.log VALUES (1); SELECT 1';"
        ))
        .await
        .unwrap();
    wait_for_replica().await;
    assert!(
        router.catalog().is_read_only(&quiet),
        "pgsplit must not know yet"
    );

    // Simple and extended: the client's statement succeeds, on the primary.
    let row = c
        .query_one(&sql, &[])
        .await
        .expect("re-sent to the primary");
    assert!(!row.get::<_, bool>("replica"));
    assert_eq!(value(&c, &sql).await, "1");
    // A refusal at row 600, after the replica flushed its first 8 KiB of rows and slept:
    // those rows must not have reached the client either.
    let late = format!(
        "SELECT CASE WHEN g = 600 THEN {s}.{quiet}() ELSE g END AS n, pg_is_in_recovery() AS replica
           FROM generate_series(1, 700) g"
    );
    let rows = c.query(&late, &[]).await.expect("re-sent after 599 rows");
    assert_eq!(rows.len(), 700);
    assert!(rows.iter().all(|r| !r.get::<_, bool>("replica")));
    let written: i64 = primary
        .query_one(&format!("SELECT count(*) FROM {s}.log"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(written, 3, "each statement ran once, on the primary");

    let (forced, refusals) = router.forced_primary();
    assert_eq!(
        refusals, 2,
        "one refusal each; a fingerprint stays on the primary after it"
    );
    assert_eq!(forced.len(), 2);
    assert!(forced[0].reason.contains("25006"), "{}", forced[0].reason);
    let (_, stats) = http(proxy.handle.stats_addr, "GET", "/stats", None).await;
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let row = &v["primary_only"][0];
    assert_eq!(
        row["fingerprint"],
        format!("{:016x}", forced[0].fingerprint)
    );
    assert!(row["reason"]
        .as_str()
        .unwrap_or("")
        .contains("read-only transaction"));
    let (_, metrics) = http(proxy.handle.stats_addr, "GET", "/metrics", None).await;
    assert!(
        metrics.contains("pgsplit_replica_refusals_total 2"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("refusal"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(metrics.contains("pgsplit_primary_only_fingerprints 2"));
    primary
        .batch_execute(&format!("DROP SCHEMA {s} CASCADE"))
        .await
        .unwrap();
    proxy.handle.shutdown().await;
}

/// Whether each row's last column (`pg_is_in_recovery()`) says it ran on the replica.
fn on_replica(msgs: &[Msg]) -> Vec<bool> {
    rows(msgs)
        .iter()
        .map(|r| r.last().is_some_and(|c| c == "t"))
        .collect()
}

/// Parse (into `name`), Bind of it, Describe of the portal and Execute, as drivers pipeline them.
fn statement(name: &str, sql: &str, out: &mut BytesMut) {
    frontend::parse(name, sql, std::iter::empty(), out).unwrap();
    bind(name, out);
}

/// Bind of `statement` to the unnamed portal (no parameters, text), Describe and Execute.
fn bind(statement: &str, out: &mut BytesMut) {
    wire::bind("", statement, out);
    frontend::describe(b'P', "", out).unwrap();
    frontend::execute("", 0, out).unwrap();
}

/// Sends a plain read until the replica answers it (right after a write the primary may
/// answer while the replica catches up); every answer must be exactly that read's.
async fn until_on_replica(sock: &mut TcpStream, buf: &mut BytesMut) {
    for _ in 0..50 {
        let mut out = BytesMut::new();
        statement("", "SELECT 41 AS e, pg_is_in_recovery()", &mut out);
        frontend::sync(&mut out);
        sock.write_all(&out).await.unwrap();
        let msgs = read_ready(sock, buf, 1).await;
        assert_eq!(show(&msgs), "12TDCZ");
        if on_replica(&msgs) == [true] {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("plain reads no longer use the replica");
}

#[tokio::test]
async fn a_refusal_inside_a_pipeline_is_re_sent_before_the_client_sees_its_answer() {
    let proxy = TestProxy::start().await;
    let router = proxy.handle.shared.router.clone();
    let c = proxy.connect().await;
    let (s, quiet) = stable_function(&proxy, &c, "rp").await;
    // A second load the DDL woke may still be on its way; it must not see the change below.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let primary = superuser().await;
    primary
        .batch_execute(&format!(
            "CREATE OR REPLACE FUNCTION {s}.{quiet}() RETURNS int VOLATILE LANGUAGE sql
               AS 'INSERT INTO {s}.log VALUES (1); SELECT 1';"
        ))
        .await
        .unwrap();
    wait_for_replica().await;
    assert!(
        router.catalog().is_read_only(&quiet),
        "pgsplit must not know yet"
    );
    // Each case's writer has a fingerprint of its own (a different select list), so none
    // is on the primary before its case pins it (constants would not do: a fingerprint
    // ignores them).
    let writer = |extra: usize| {
        let other = ["now()", "current_user", "version()"][extra - 1];
        format!("SELECT {s}.{quiet}() AS w, {other} AS o, pg_is_in_recovery()")
    };
    let mut sock = raw_authenticated(proxy.port(), "app", "app").await;
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();

    until_on_replica(&mut sock, &mut buf).await;
    assert_eq!(router.forced_primary().1, 0, "refusals before case 1");
    // 1. pgjdbc's batch: three statements before one Sync, the second refused. They share an
    // implicit transaction, so all three run again on the primary.
    statement("", "SELECT 11 AS a, pg_is_in_recovery()", &mut out);
    statement("", &writer(1), &mut out);
    statement("", "SELECT 13 AS a, pg_is_in_recovery()", &mut out);
    frontend::sync(&mut out);
    sock.write_all(&out).await.unwrap();
    let msgs = read_ready(&mut sock, &mut buf, 1).await;
    assert_eq!(show(&msgs), "12TDC12TDC12TDCZ", "one Sync batch");
    assert_eq!(on_replica(&msgs), [false; 3]);

    until_on_replica(&mut sock, &mut buf).await;
    assert_eq!(router.forced_primary().1, 1, "refusals before case 2");
    // 2. Three Syncs pipelined in one write, the second a named statement (pgjdbc once it
    // prepares): the first was answered by the replica; the second and third go to the primary.
    out.clear();
    statement("", "SELECT 21 AS b, pg_is_in_recovery()", &mut out);
    frontend::sync(&mut out);
    statement("s2", &writer(2), &mut out);
    frontend::sync(&mut out);
    statement("", "SELECT 23 AS b, pg_is_in_recovery()", &mut out);
    frontend::sync(&mut out);
    sock.write_all(&out).await.unwrap();
    let msgs = read_ready(&mut sock, &mut buf, 3).await;
    assert_eq!(show(&msgs), "12TDCZ12TDCZ12TDCZ", "three Syncs");
    let where_ran = on_replica(&msgs);
    assert_eq!(where_ran[1..], [false, false], "{where_ran:?}");
    // The named statement exists once: binding it again works, on the primary.
    out.clear();
    bind("s2", &mut out);
    frontend::sync(&mut out);
    sock.write_all(&out).await.unwrap();
    let msgs = read_ready(&mut sock, &mut buf, 1).await;
    assert_eq!(show(&msgs), "2TDCZ");
    assert_eq!(on_replica(&msgs), [false]);

    until_on_replica(&mut sock, &mut buf).await;
    assert_eq!(router.forced_primary().1, 2, "refusals before case 3");
    // 3. libpq's pipeline mode: the refused request's Sync is sent, the next request only in
    // part, and the client waits for the first answer before it sends that Sync.
    out.clear();
    statement("", &writer(3), &mut out);
    frontend::sync(&mut out);
    statement("", "SELECT 32 AS d, pg_is_in_recovery()", &mut out);
    sock.write_all(&out).await.unwrap();
    let msgs = read_ready(&mut sock, &mut buf, 1).await;
    assert_eq!(
        show(&msgs),
        "12TDCZ",
        "the refused request, answered before the next Sync"
    );
    assert_eq!(on_replica(&msgs), [false]);
    out.clear();
    frontend::sync(&mut out);
    sock.write_all(&out).await.unwrap();
    let msgs = read_ready(&mut sock, &mut buf, 1).await;
    assert_eq!(show(&msgs), "12TDCZ");

    // Nothing of a dropped attempt is left over for the next read on a replica.
    until_on_replica(&mut sock, &mut buf).await;

    until_on_replica(&mut sock, &mut buf).await;
    assert_eq!(router.forced_primary().1, 3, "refusals before case 4");
    // 4. Too late to hide: the refused statement follows 3,000 rows (about 60 KiB) that the
    // replica sent while the writer slept, past the 16 KiB held back. The client gets those
    // rows, then the refusal as one ordinary error and the Sync's ReadyForQuery; the
    // fingerprint is pinned, so the same batch sent again runs on the primary.
    let big =
        "SELECT g AS f, repeat('x', 8) AS pad, pg_is_in_recovery() FROM generate_series(1, 3000) g";
    let late = format!("SELECT pg_sleep(0.5), {s}.{quiet}() AS w, 1, 2, 3, 4, pg_is_in_recovery()");
    for attempt in 0..2 {
        out.clear();
        statement("", big, &mut out);
        statement("", &late, &mut out);
        frontend::sync(&mut out);
        sock.write_all(&out).await.unwrap();
        let msgs = read_ready(&mut sock, &mut buf, 1).await;
        let shown = show(&msgs);
        if attempt == 0 {
            assert_eq!(
                errors(&msgs),
                1,
                "{}",
                &shown[shown.len().saturating_sub(300)..]
            );
            assert!(shown.contains("C12TE("), "{}", &shown[shown.len() - 200..]);
            assert!(shown.contains("25006"), "{}", &shown[shown.len() - 200..]);
            assert!(shown.ends_with(")Z"));
            assert_eq!(rows(&msgs).len(), 3000);
        } else {
            assert_eq!(
                errors(&msgs),
                0,
                "{}",
                &shown[shown.len().saturating_sub(300)..]
            );
            assert_eq!(on_replica(&msgs), vec![false; 3001]);
        }
    }

    // Each refused statement ran once, on the primary (s2 twice: bound again), the too-late
    // one only when sent again.
    let written: i64 = primary
        .query_one(&format!("SELECT count(*) FROM {s}.log"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(written, 5);
    let (forced, refusals) = router.forced_primary();
    assert_eq!(refusals, 4, "{forced:?}");
    primary
        .batch_execute(&format!("DROP SCHEMA {s} CASCADE"))
        .await
        .unwrap();
    proxy.handle.shutdown().await;
}
