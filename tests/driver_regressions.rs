//! Protocol-level reproductions of proxy bugs the driver suite (tests/drivers.rs) found, with hand-made messages so each runs without the drivers installed.

mod common;

use bytes::BytesMut;
use common::wire::{bind, first_column, read_until, show, tags};
use common::{raw_authenticated, unique, TestProxy};
use postgres_protocol::message::frontend;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

fn query(sql: &str, out: &mut BytesMut) {
    frontend::query(sql, out).unwrap();
}

/// pg-cursor: a named portal read with Execute(max rows) + Flush and no Sync, right after a
/// write. The write's ReadyForQuery (or the proxy's WAL-position probe after it) arriving in
/// the same read as the cursor's replies used to release the server connection with the
/// portal open, so the next Execute went to another server: 34000 portal "c1" does not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_read_with_flush_keeps_its_server_after_a_write() {
    let proxy = TestProxy::start_with("[pool]\nprimary_size = 2\nreplica_size = 2\n").await;
    let t = unique("drv_portal");
    let admin = proxy.connect().await;
    admin
        .batch_execute(&format!(
            "create table {t} (id int); insert into {t} values (1000), (1001)"
        ))
        .await
        .unwrap();
    let mut s = raw_authenticated(proxy.port(), "app", "app").await;
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    for i in 0..40 {
        out.clear();
        query(&format!("insert into {t} values ({i})"), &mut out);
        if i % 2 == 1 {
            // Waiting for the write's ReadyForQuery first: the cursor then races the probe.
            s.write_all(&out).await.unwrap();
            let r = read_until(&mut s, &mut buf, b'Z').await;
            assert_eq!(tags(&r), "CZ", "{}", show(&r));
            out.clear();
        }
        let sql = format!("select id from {t} where id >= 0 order by id");
        frontend::parse("", &sql, std::iter::empty(), &mut out).unwrap();
        bind("c1", "", &mut out);
        frontend::execute("c1", 1, &mut out).unwrap();
        frontend::flush(&mut out);
        s.write_all(&out).await.unwrap();
        let r = read_until(&mut s, &mut buf, b's').await;
        let want = if i % 2 == 1 { "12Ds" } else { "CZ12Ds" };
        assert_eq!(tags(&r), want, "iteration {i}: {}", show(&r));
        assert_eq!(first_column(&r), ["0"]);
        // The same portal again, still without a Sync, then to its end with one.
        out.clear();
        frontend::execute("c1", 1, &mut out).unwrap();
        frontend::flush(&mut out);
        s.write_all(&out).await.unwrap();
        let r = read_until(&mut s, &mut buf, b's').await;
        assert_eq!(tags(&r), "Ds", "iteration {i}: {}", show(&r));
        out.clear();
        frontend::execute("c1", 0, &mut out).unwrap();
        frontend::sync(&mut out);
        s.write_all(&out).await.unwrap();
        let r = read_until(&mut s, &mut buf, b'Z').await;
        // Rows 0..=i and the two first ones, less the two already read.
        let ids = first_column(&r);
        assert_eq!(ids.len(), i + 1, "iteration {i}: {}", show(&r));
        assert_eq!(ids.last().map(String::as_str), Some("1001"));
        assert_eq!(tags(&r[r.len() - 2..]), "CZ");
    }
    admin
        .batch_execute(&format!("drop table {t}"))
        .await
        .unwrap();
    proxy.handle.shutdown().await;
}

/// A write sent as Parse/Bind/Execute/Flush, its Sync in a later packet (node-postgres and
/// pg-cursor flush before they sync): the statement belongs to the request its Sync ends, so
/// the result cache is invalidated and the statement counted when that Sync's ReadyForQuery
/// comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_flushed_before_its_sync_invalidates_the_cache() {
    let proxy = TestProxy::start_with("[cache]\nenabled = true\n").await;
    let t = unique("drv_flushed_write");
    let admin = proxy.connect().await;
    admin
        .batch_execute(&format!(
            "create table {t} (id int primary key, v int); insert into {t} values (1, 0)"
        ))
        .await
        .unwrap();
    let mut s = raw_authenticated(proxy.port(), "app", "app").await;
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    let read = format!("select v from {t} where id = 1");
    for round in 1..=5 {
        // Twice, so the second is served from the cache when nothing invalidated it.
        for _ in 0..2 {
            out.clear();
            query(&read, &mut out);
            s.write_all(&out).await.unwrap();
            let r = read_until(&mut s, &mut buf, b'Z').await;
            assert_eq!(first_column(&r), [(round - 1).to_string()], "round {round}");
        }
        out.clear();
        let write = format!("update {t} set v = v + 1 where id = 1");
        frontend::parse("", &write, std::iter::empty(), &mut out).unwrap();
        bind("", "", &mut out);
        frontend::execute("", 0, &mut out).unwrap();
        frontend::flush(&mut out);
        s.write_all(&out).await.unwrap();
        let r = read_until(&mut s, &mut buf, b'C').await;
        assert_eq!(tags(&r), "12C", "{}", show(&r));
        out.clear();
        frontend::sync(&mut out);
        s.write_all(&out).await.unwrap();
        let r = read_until(&mut s, &mut buf, b'Z').await;
        assert_eq!(tags(&r), "Z", "{}", show(&r));
    }
    let queries = proxy.handle.shared.stats.queries.snapshot();
    let update = queries
        .iter()
        .find(|q| q.query.starts_with("update") && q.query.contains(&t))
        .expect("the flushed update is in the stats");
    assert_eq!(update.calls, 5, "{update:?}");
    let hits = queries
        .iter()
        .find(|q| q.query.starts_with("select") && q.query.contains(&t))
        .map_or(0, |q| q.cache_hits);
    assert_eq!(hits, 5, "the second read of each round was a hit");
    admin
        .batch_execute(&format!("drop table {t}"))
        .await
        .unwrap();
}

/// Parse of `sql` as `name` with no parameter types.
fn parse(name: &str, sql: &str, out: &mut BytesMut) {
    frontend::parse(name, sql, std::iter::empty(), out).unwrap();
}

/// asyncpg prepares with Parse, Describe, Flush; psycopg's pipeline flushes between
/// statements. After an error there PostgreSQL ignores every message up to a Sync, so the
/// client's next Bind/Execute/Sync get only ReadyForQuery. The proxy planned replies for them
/// and failed at that ReadyForQuery ("server sent 'Z' where the proxy expected a reply to
/// Bind"), or, when the next statement was a write and the server a replica, ran the write on
/// the primary although the client's server would have skipped it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_after_an_unsynced_error_are_skipped_to_the_sync() {
    for cache in [false, true] {
        let mut extra = String::from("[pool]\nprimary_size = 2\nreplica_size = 2\n");
        if cache {
            extra.push_str("[cache]\nenabled = true\n");
        }
        let proxy = TestProxy::start_with(&extra).await;
        let t = unique("drv_skip");
        let admin = proxy.connect().await;
        admin
            .batch_execute(&format!("create table {t} (id int)"))
            .await
            .unwrap();
        let mut s = raw_authenticated(proxy.port(), "app", "app").await;
        let mut buf = BytesMut::new();
        let mut out = BytesMut::new();
        parse("ok", "select 42", &mut out);
        parse("w", &format!("insert into {t} values (7)"), &mut out);
        frontend::sync(&mut out);
        s.write_all(&out).await.unwrap();
        let r = read_until(&mut s, &mut buf, b'Z').await;
        assert_eq!(tags(&r), "11Z", "{}", show(&r));
        for round in 0..6 {
            // A read that fails at Parse (on a replica), sent on with Flush.
            out.clear();
            parse("", &format!("select * from {t}_missing"), &mut out);
            frontend::describe(b'S', "", &mut out).unwrap();
            frontend::flush(&mut out);
            s.write_all(&out).await.unwrap();
            let r = read_until(&mut s, &mut buf, b'E').await;
            assert_eq!(tags(&r), "E", "round {round}: {}", show(&r));
            assert!(show(&r).contains("42P01"), "{}", show(&r));
            // Before the client's Sync: a read, then a write; both are skipped.
            out.clear();
            let stmt = if round % 2 == 0 { "ok" } else { "w" };
            bind("", stmt, &mut out);
            frontend::execute("", 0, &mut out).unwrap();
            if round >= 4 {
                // The Sync in the same write as the skipped messages.
                frontend::sync(&mut out);
            } else {
                frontend::flush(&mut out);
                s.write_all(&out).await.unwrap();
                out.clear();
                tokio::time::sleep(Duration::from_millis(20)).await;
                frontend::sync(&mut out);
            }
            s.write_all(&out).await.unwrap();
            let r = read_until(&mut s, &mut buf, b'Z').await;
            assert_eq!(tags(&r), "Z", "round {round} ({stmt}): {}", show(&r));
            assert_eq!(r[0].1, b"I");
            // The connection goes on in step.
            out.clear();
            bind("", "ok", &mut out);
            frontend::execute("", 0, &mut out).unwrap();
            frontend::sync(&mut out);
            s.write_all(&out).await.unwrap();
            let r = read_until(&mut s, &mut buf, b'Z').await;
            assert_eq!(tags(&r), "2DCZ", "round {round}: {}", show(&r));
            assert_eq!(first_column(&r), ["42"]);
        }
        // In a transaction block the error fails the transaction, as it would directly.
        out.clear();
        query("begin", &mut out);
        s.write_all(&out).await.unwrap();
        let r = read_until(&mut s, &mut buf, b'Z').await;
        assert_eq!(tags(&r), "CZ", "{}", show(&r));
        out.clear();
        parse("", &format!("select * from {t}_missing"), &mut out);
        frontend::describe(b'S', "", &mut out).unwrap();
        frontend::flush(&mut out);
        s.write_all(&out).await.unwrap();
        let r = read_until(&mut s, &mut buf, b'E').await;
        assert_eq!(tags(&r), "E", "{}", show(&r));
        out.clear();
        bind("", "w", &mut out);
        frontend::execute("", 0, &mut out).unwrap();
        frontend::sync(&mut out);
        s.write_all(&out).await.unwrap();
        let r = read_until(&mut s, &mut buf, b'Z').await;
        assert_eq!(tags(&r), "Z", "{}", show(&r));
        assert_eq!(r[0].1, b"E", "the transaction is failed");
        out.clear();
        query("rollback", &mut out);
        s.write_all(&out).await.unwrap();
        let r = read_until(&mut s, &mut buf, b'Z').await;
        assert_eq!(tags(&r), "CZ", "{}", show(&r));
        let n: i64 = admin
            .query_one(&format!("select count(*) from {t}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "no skipped write ran (cache {cache})");
        admin
            .batch_execute(&format!("drop table {t}"))
            .await
            .unwrap();
        proxy.handle.shutdown().await;
    }
}

/// asyncpg, sqlx and pgjdbc keep a statement's result columns from its Describe and decode
/// rows by them. After a column's type changes, a server connection that prepares the text
/// again returns the new type: unchecked, the client decoded text as int4. PostgreSQL fails
/// its own cached statement with 0A000 instead; so does pgsplit now, for reads and writes,
/// and a write that failed so is rolled back. One server connection per role, holding one
/// statement, so that every Bind of the first statement prepares it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_whose_result_columns_changed_fails_with_0a000_and_writes_nothing() {
    let proxy = TestProxy::start_with(
        "[pool]\nprimary_size = 1\nreplica_size = 1\nmax_prepared_per_server = 1\n",
    )
    .await;
    let t = unique("drv_columns");
    let admin = proxy.connect().await;
    admin
        .batch_execute(&format!(
            "create table {t} (id int primary key, v int); insert into {t} values (1, 10)"
        ))
        .await
        .unwrap();
    common::wait_for_replica().await;
    let c = proxy.connect().await;
    let read = c
        .prepare(&format!("select v from {t} where id = $1"))
        .await
        .unwrap();
    let write = c
        .prepare(&format!("insert into {t} values ($1, 7) returning v"))
        .await
        .unwrap();
    let other = c.prepare("select 1").await.unwrap();
    // Prepared again on each use (the other statements evicted it), with the same columns:
    // nothing to report.
    for _ in 0..2 {
        c.query_one(&other, &[]).await.unwrap();
        let v: i32 = c.query_one(&read, &[&1i32]).await.unwrap().get(0);
        assert_eq!(v, 10);
    }
    admin
        .batch_execute(&format!("alter table {t} alter column v type text"))
        .await
        .unwrap();
    common::wait_for_replica().await;
    c.query_one(&other, &[]).await.unwrap();
    let code = |e: tokio_postgres::Error| e.as_db_error().map(|d| d.code().code().to_string());
    let e = c.query_one(&read, &[&1i32]).await.unwrap_err();
    assert_eq!(code(e).as_deref(), Some("0A000"));
    // As PostgreSQL's own statement would, it keeps failing until prepared again.
    let e = c.query_one(&read, &[&1i32]).await.unwrap_err();
    assert_eq!(code(e).as_deref(), Some("0A000"));
    c.query_one(&other, &[]).await.unwrap();
    let e = c.query_one(&write, &[&2i32]).await.unwrap_err();
    assert_eq!(code(e).as_deref(), Some("0A000"));
    let rows: i64 = admin
        .query_one(&format!("select count(*) from {t}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1, "the failed insert was rolled back");
    // Prepared again, the statement has the new columns.
    let read = c
        .prepare(&format!("select v from {t} where id = $1"))
        .await
        .unwrap();
    let v: String = c.query_one(&read, &[&1i32]).await.unwrap().get(0);
    assert_eq!(v, "10");
    // The session is usable, inside a transaction too.
    c.batch_execute("begin").await.unwrap();
    let e = c.query_one(&write, &[&3i32]).await.unwrap_err();
    assert_eq!(code(e).as_deref(), Some("0A000"));
    c.batch_execute("rollback").await.unwrap();
    admin
        .batch_execute(&format!("drop table {t}"))
        .await
        .unwrap();
    proxy.handle.shutdown().await;
}
