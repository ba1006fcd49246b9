//! Rust sqlx through pgsplit, cache off and on: binds of several types, streams, transactions, its statement cache over pooled server connections, SQLSTATEs and raw COPY.
//!
//! sqlx prepares every statement (Parse + Describe of the statement, then Bind/Execute) under
//! its own names (`sqlx_s_N`, the same on every client connection), describes unknown types
//! from pg_type, and closes statements its cache evicts: the pattern a pooling proxy must
//! translate per server connection. The pool has more sqlx connections than pgsplit has
//! server connections, so statements really move between them.

mod common;

use common::{unique, TestProxy};
use futures_util::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgPool, Row};
use std::str::FromStr;

/// id, name, score, data of the test table.
type ScoreRow = (i32, String, Option<f64>, Option<Vec<u8>>);

async fn pool(proxy: &TestProxy, cache_capacity: usize) -> PgPool {
    let opts = PgConnectOptions::from_str(&proxy.url("app", "app"))
        .expect("url")
        .statement_cache_capacity(cache_capacity)
        .disable_statement_logging();
    PgPoolOptions::new()
        .max_connections(8)
        .connect_with(opts)
        .await
        .expect("sqlx pool through pgsplit")
}

/// The SQLSTATE of a database error.
fn sqlstate(e: &sqlx::Error) -> String {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
        .unwrap_or_else(|| format!("not a database error: {e}"))
}

async fn binds_of_several_types(pool: &PgPool, t: &str) {
    let row = sqlx::query(
        "select $1::int2 + 1::int2, $2::int4 * 2, $3::int8 - 1, $4::float8 / 2, $5::text || '!', \
         not $6::bool, length($7::bytea), $8::int4 is null, array_length($9::int4[], 1), \
         $10::text[]",
    )
    .bind(1i16)
    .bind(21i32)
    .bind(1i64 << 40)
    .bind(5.0f64)
    .bind("héllo")
    .bind(false)
    .bind(vec![0u8, 1, 2, 255])
    .bind(None::<i32>)
    .bind(vec![1i32, 2, 3])
    .bind(vec!["a".to_string(), "b c".to_string()])
    .fetch_one(pool)
    .await
    .expect("binds");
    assert_eq!(row.get::<i16, _>(0), 2);
    assert_eq!(row.get::<i32, _>(1), 42);
    assert_eq!(row.get::<i64, _>(2), (1i64 << 40) - 1);
    assert_eq!(row.get::<f64, _>(3), 2.5);
    assert_eq!(row.get::<String, _>(4), "héllo!");
    assert!(row.get::<bool, _>(5));
    assert_eq!(row.get::<i32, _>(6), 4);
    assert!(row.get::<bool, _>(7));
    assert_eq!(row.get::<i32, _>(8), 3);
    assert_eq!(row.get::<Vec<String>, _>(9), ["a", "b c"]);

    for i in 0..50i32 {
        sqlx::query(&format!(
            "insert into {t} (id, name, score, data) values ($1, $2, $3, $4)"
        ))
        .bind(i)
        .bind(format!("n{i}"))
        .bind(f64::from(i) / 4.0)
        .bind(vec![i as u8; (i % 5) as usize])
        .execute(pool)
        .await
        .expect("insert");
    }
    let rows: Vec<ScoreRow> = sqlx::query_as(&format!(
        "select id, name, score, data from {t} where id between $1 and $2 order by id"
    ))
    .bind(3i32)
    .bind(6i32)
    .fetch_all(pool)
    .await
    .expect("query_as");
    assert_eq!(
        rows,
        vec![
            (3, "n3".into(), Some(0.75), Some(vec![3; 3])),
            (4, "n4".into(), Some(1.0), Some(vec![4; 4])),
            (5, "n5".into(), Some(1.25), Some(vec![])),
            (6, "n6".into(), Some(1.5), Some(vec![6])),
        ]
    );
    let (n, total): (i64, Option<i64>) =
        sqlx::query_as(&format!("select count(*), sum(id)::int8 from {t}"))
            .fetch_one(pool)
            .await
            .expect("aggregate");
    assert_eq!((n, total), (50, Some(49 * 50 / 2)));
    // The same statement again: sqlx's cached statement, only Bind/Execute.
    for _ in 0..3 {
        let name: String = sqlx::query_scalar(&format!("select name from {t} where id = $1"))
            .bind(7i32)
            .fetch_one(pool)
            .await
            .expect("cached statement");
        assert_eq!(name, "n7");
    }
}

async fn streams(pool: &PgPool) {
    let mut rows = sqlx::query("select g, repeat('x', g % 50) from generate_series(1, $1) g")
        .bind(20_000i32)
        .fetch(pool);
    let (mut n, mut sum, mut chars) = (0i64, 0i64, 0usize);
    while let Some(r) = rows.try_next().await.expect("stream row") {
        n += 1;
        sum += i64::from(r.get::<i32, _>(0));
        chars += r.get::<String, _>(1).len();
    }
    assert_eq!((n, sum), (20_000, 20_000 * 20_001 / 2));
    assert_eq!(chars, (1..=20_000).map(|g| g % 50).sum::<usize>());
    // A stream dropped after its first rows: the connection goes back to the pool usable.
    {
        let mut early = sqlx::query("select g from generate_series(1, 100000) g").fetch(pool);
        for _ in 0..3 {
            early.try_next().await.expect("first rows");
        }
    }
    for _ in 0..8 {
        let v: i32 = sqlx::query_scalar("select 1 + $1")
            .bind(1i32)
            .fetch_one(pool)
            .await
            .expect("after an early drop");
        assert_eq!(v, 2);
    }
}

async fn transactions(pool: &PgPool, t: &str) {
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(&format!("update {t} set name = 'rolled back' where id = 1"))
        .execute(&mut *tx)
        .await
        .expect("update in tx");
    let seen: String = sqlx::query_scalar(&format!("select name from {t} where id = 1"))
        .fetch_one(&mut *tx)
        .await
        .expect("read own write");
    assert_eq!(seen, "rolled back");
    tx.rollback().await.expect("rollback");
    let name: String = sqlx::query_scalar(&format!("select name from {t} where id = 1"))
        .fetch_one(pool)
        .await
        .expect("after rollback");
    assert_eq!(name, "n1");

    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(&format!("update {t} set name = 'outer' where id = 1"))
        .execute(&mut *tx)
        .await
        .expect("outer update");
    {
        let mut sp = tx.begin().await.expect("savepoint");
        sqlx::query(&format!("update {t} set name = 'inner' where id = 1"))
            .execute(&mut *sp)
            .await
            .expect("inner update");
        sp.rollback().await.expect("rollback to savepoint");
    }
    // An error inside the transaction: 25P02 until it ends.
    let e = sqlx::query("select 1 / $1")
        .bind(0i32)
        .execute(&mut *tx)
        .await
        .expect_err("division by zero");
    assert_eq!(sqlstate(&e), "22012");
    let e = sqlx::query("select 1")
        .execute(&mut *tx)
        .await
        .expect_err("failed transaction");
    assert_eq!(sqlstate(&e), "25P02");
    tx.rollback().await.expect("rollback failed tx");

    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(&format!("update {t} set name = 'committed' where id = 1"))
        .execute(&mut *tx)
        .await
        .expect("update");
    tx.commit().await.expect("commit");
    let name: String = sqlx::query_scalar(&format!("select name from {t} where id = 1"))
        .fetch_one(pool)
        .await
        .expect("after commit");
    assert_eq!(name, "committed");
}

/// Many statements on many sqlx connections, fewer server connections behind them; one pool
/// whose statement cache holds 4, so sqlx closes statements as it evicts them.
async fn statement_cache_pooled(proxy: &TestProxy, t: &str) {
    for capacity in [100, 4] {
        let pool = pool(proxy, capacity).await;
        let workers = (0..12).map(|k| {
            let pool = pool.clone();
            let t = t.to_string();
            async move {
                for i in 0..30i32 {
                    let q = i % 10;
                    let v: i64 = sqlx::query_scalar(&format!("select $1::int8 * {q} + $2"))
                        .bind(i64::from(i))
                        .bind(i64::from(k))
                        .fetch_one(&pool)
                        .await
                        .expect("computed");
                    assert_eq!(v, i64::from(i * q + k));
                    let (id, name): (i32, String) =
                        sqlx::query_as(&format!("select id, name from {t} where id = $1"))
                            .bind(i + 10)
                            .fetch_one(&pool)
                            .await
                            .expect("row");
                    assert_eq!((id, name), (i + 10, format!("n{}", i + 10)));
                    if i % 7 == 0 {
                        let mut tx = pool.begin().await.expect("begin");
                        let s: String = sqlx::query_scalar("select $1 || 'x'")
                            .bind("a")
                            .fetch_one(&mut *tx)
                            .await
                            .expect("in tx");
                        assert_eq!(s, "ax");
                        tx.commit().await.expect("commit");
                    }
                }
            }
        });
        futures_util::future::join_all(workers).await;
        pool.close().await;
    }
}

async fn errors_with_sqlstate(pool: &PgPool, t: &str) {
    let e = sqlx::query(&format!("insert into {t} (id) values ($1)"))
        .bind(1i32)
        .execute(pool)
        .await
        .expect_err("duplicate key");
    assert_eq!(sqlstate(&e), "23505");
    let e = sqlx::query("select 1 / $1")
        .bind(0i32)
        .fetch_one(pool)
        .await
        .expect_err("division by zero");
    assert_eq!(sqlstate(&e), "22012");
    // Fails at Parse/Describe, before any Bind.
    let e = sqlx::query(&format!("select * from {t}_missing where id = $1"))
        .bind(1i32)
        .fetch_optional(pool)
        .await
        .expect_err("missing table");
    assert_eq!(sqlstate(&e), "42P01");
    let e = sqlx::query("selec 1")
        .execute(pool)
        .await
        .expect_err("syntax");
    assert_eq!(sqlstate(&e), "42601");
    let e = sqlx::query("select $1::int")
        .bind("not a number")
        .fetch_one(pool)
        .await
        .expect_err("bad input");
    // sqlx declares the parameter text; the explicit cast fails on the value.
    assert_eq!(sqlstate(&e), "22P02", "{e}");
    // The pool goes on: every connection answers correctly after the errors.
    for i in 0..16i32 {
        let v: i32 = sqlx::query_scalar("select $1 + 1")
            .bind(i)
            .fetch_one(pool)
            .await
            .expect("after errors");
        assert_eq!(v, i + 1);
    }
}

async fn raw_copy(pool: &PgPool, t: &str) {
    let dst = format!("{t}_copy");
    pool.execute(sqlx::raw_sql(&format!(
        "create table {dst} (id int not null, name text, v float8)"
    )))
    .await
    .expect("create copy table");
    let mut conn = pool.acquire().await.expect("acquire");
    // After a prepared statement on the same connection, as the asyncpg COPY fault had it.
    let one: i32 = sqlx::query_scalar("select $1")
        .bind(1i32)
        .fetch_one(&mut *conn)
        .await
        .expect("prepared first");
    assert_eq!(one, 1);
    let mut data = String::new();
    for i in 0..5000 {
        data.push_str(&format!("{i}\tname {i}\t{}\n", f64::from(i) / 8.0));
    }
    let mut copy = conn
        .copy_in_raw(&format!("copy {dst} from stdin"))
        .await
        .expect("copy in");
    for chunk in data.as_bytes().chunks(7000) {
        copy.send(chunk).await.expect("copy data");
    }
    assert_eq!(copy.finish().await.expect("copy done"), 5000);
    // A COPY that fails midway: its SQLSTATE, and the connection goes on.
    let mut copy = conn
        .copy_in_raw(&format!("copy {dst} from stdin"))
        .await
        .expect("copy in");
    copy.send(&b"1\tok\t1\nnot a number\tx\t1\n"[..])
        .await
        .expect("bad data sent");
    let e = copy.finish().await.expect_err("bad copy data");
    assert_eq!(sqlstate(&e), "22P02");
    let out: Vec<u8> = conn
        .copy_out_raw(&format!("copy (select * from {dst} order by id) to stdout"))
        .await
        .expect("copy out")
        .try_fold(Vec::new(), |mut acc, b| async move {
            acc.extend_from_slice(&b);
            Ok(acc)
        })
        .await
        .expect("copy out data");
    assert_eq!(String::from_utf8_lossy(&out), data);
    let n: i64 = sqlx::query_scalar(&format!("select count(*) from {dst}"))
        .fetch_one(&mut *conn)
        .await
        .expect("count");
    assert_eq!(n, 5000);
    drop(conn);
    pool.execute(sqlx::raw_sql(&format!("drop table {dst}")))
        .await
        .expect("drop copy table");
}

async fn conformance(cache: bool) {
    let mut extra = String::from("[pool]\nprimary_size = 4\nreplica_size = 4\n");
    if cache {
        extra.push_str("[cache]\nenabled = true\n");
    }
    let proxy = TestProxy::start_with(&extra).await;
    let t = unique(&format!("sqlx_{}", if cache { "on" } else { "off" }));
    let pool = pool(&proxy, 100).await;
    pool.execute(sqlx::raw_sql(&format!(
        "create table {t} (id int primary key, name text, score float8, data bytea)"
    )))
    .await
    .expect("create");
    binds_of_several_types(&pool, &t).await;
    streams(&pool).await;
    transactions(&pool, &t).await;
    statement_cache_pooled(&proxy, &t).await;
    errors_with_sqlstate(&pool, &t).await;
    raw_copy(&pool, &t).await;
    // A single connection outside the pool, closed cleanly.
    let mut c = PgConnectOptions::from_str(&proxy.url("app", "app"))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    c.ping().await.expect("ping");
    c.close().await.expect("close");
    pool.execute(sqlx::raw_sql(&format!("drop table {t}")))
        .await
        .expect("drop");
    pool.close().await;
    proxy.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_through_pgsplit_cache_off() {
    conformance(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlx_through_pgsplit_cache_on() {
    conformance(true).await;
}
