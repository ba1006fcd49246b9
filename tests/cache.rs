//! The result cache through the real proxy: hits, invalidation by writes (simple, prepared, transactions), volatile functions, users, settings, TTL, WAL, bounds and coalescing.

mod common;

use common::cache::{cache_config, data_rows, read, start, stats, table};
use common::{connect, superuser, unique, wait_for_replica, TestProxy};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn repeated_reads_hit_and_the_next_read_after_a_write_is_fresh() {
    let p = start("").await;
    let t = unique("cache_rw");
    table(&t, 10).await;
    let c = p.connect().await;
    let other = p.connect().await;
    let q = format!("select v from {t} where id = 1");
    for _ in 0..5 {
        let rows = c.simple_query(&q).await.unwrap();
        assert_eq!(data_rows(&rows).len(), 1);
    }
    let s = stats(&p);
    assert_eq!(s.misses, 1);
    assert_eq!(s.hits, 4);
    // Simple protocol: a write, then the very next read, from the writer and from another client.
    for round in 0..20 {
        let value = format!("simple-{round}");
        c.execute(&format!("update {t} set v = $1 where id = 1"), &[&value])
            .await
            .unwrap();
        for client in [&c, &other] {
            let rows = client.simple_query(&q).await.unwrap();
            assert_eq!(
                data_rows(&rows)[0].get(0),
                Some(value.as_str()),
                "round {round} {:?}",
                stats(&p)
            );
        }
    }
    // Extended protocol with a named prepared statement, written through the other client.
    let stmt = c
        .prepare(&format!("select v from {t} where id = $1"))
        .await
        .unwrap();
    for round in 0..20 {
        let value = format!("prepared-{round}");
        other
            .execute(&format!("update {t} set v = $1 where id = 2"), &[&value])
            .await
            .unwrap();
        for _ in 0..2 {
            let row = c.query_one(&stmt, &[&2i32]).await.unwrap();
            assert_eq!(row.get::<_, String>(0), value, "round {round}");
        }
    }
    let s = stats(&p);
    assert!(s.hits >= 4 + 20 + 20, "{s:?}");
    // Writes made before the proxy's first catalog load (slow on a loaded machine) have no
    // known reach yet and invalidate everything instead of their table.
    assert!(
        s.invalidations.write + s.invalidations.unknown >= 40,
        "{s:?}"
    );
    // Per-fingerprint figures count hits and misses too.
    let queries = p.handle.shared.stats.queries.snapshot();
    let per = queries
        .iter()
        .find(|q| q.query.contains(&t) && q.query.contains("id = $1") && q.cache_hits > 0)
        .expect("per-fingerprint cache hits");
    assert!(per.cache_misses > 0);
}

#[tokio::test]
async fn unnamed_statements_answered_from_the_cache_stay_usable() {
    let p = start("").await;
    let t = unique("cache_unnamed");
    table(&t, 3).await;
    let c = p.connect().await;
    // tokio-postgres' query_typed uses the unnamed statement: Parse, Bind, Describe, Execute, Sync.
    let q = format!("select v from {t} where id = $1");
    for _ in 0..3 {
        let rows = c
            .query_typed(&q, &[(&1i32, tokio_postgres::types::Type::INT4)])
            .await
            .unwrap();
        assert_eq!(rows[0].get::<_, String>(0), "v1");
    }
    let other = format!("select id from {t} where v = $1");
    let rows = c
        .query_typed(&other, &[(&"v3", tokio_postgres::types::Type::TEXT)])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, i32>(0), 3);
    let s = stats(&p);
    assert!(s.hits >= 2, "{s:?}");
}

#[tokio::test]
async fn transactions_invalidate_at_commit_and_not_at_rollback() {
    let p = start("").await;
    let t = unique("cache_tx");
    table(&t, 3).await;
    let mut c = p.connect().await;
    let reader = p.connect().await;
    let q = format!("select v from {t} where id = 1");
    assert_eq!(read(&reader, &q).await, "v1");
    assert_eq!(read(&reader, &q).await, "v1");
    // Rolled back: the entry stays valid and keeps answering.
    let before = stats(&p);
    let tx = c.transaction().await.unwrap();
    tx.execute(
        &format!("update {t} set v = 'rolled back' where id = 1"),
        &[],
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(read(&reader, &q).await, "v1");
    let after = stats(&p);
    assert_eq!(after.invalidations.write, before.invalidations.write);
    assert_eq!(after.hits, before.hits + 1);
    // Committed: invalidated before COMMIT's ReadyForQuery, so the next read is fresh.
    let tx = c.transaction().await.unwrap();
    tx.execute(&format!("update {t} set v = 'committed' where id = 1"), &[])
        .await
        .unwrap();
    // Inside the transaction, other clients still see the committed past.
    assert_eq!(read(&reader, &q).await, "v1");
    tx.commit().await.unwrap();
    assert_eq!(read(&reader, &q).await, "committed");
    // A failed transaction's COMMIT is a rollback too.
    let tx = c.transaction().await.unwrap();
    tx.execute(&format!("update {t} set v = 'failed' where id = 1"), &[])
        .await
        .unwrap();
    assert!(tx.execute("select 1/0", &[]).await.is_err());
    // The server answers COMMIT of a failed transaction with ROLLBACK.
    let _ = tx.commit().await;
    assert_eq!(read(&reader, &q).await, "committed");
    // A savepoint rolled back inside a committed transaction still invalidates.
    c.batch_execute(&format!(
        "begin; update {t} set v = 'kept' where id = 1; savepoint s; \
         update {t} set v = 'undone' where id = 2; rollback to savepoint s; commit"
    ))
    .await
    .unwrap();
    assert_eq!(read(&reader, &q).await, "kept");
}

#[tokio::test]
async fn volatile_and_time_dependent_results_are_never_cached() {
    let p = start("").await;
    let c = p.connect().await;
    for q in [
        "select now()::text",
        "select random()::text",
        "select gen_random_uuid()::text",
        "select clock_timestamp()::text",
        "select current_timestamp::text",
    ] {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            let v: String = c.query_one(q, &[]).await.unwrap().get(0);
            seen.insert(v);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(seen.len() > 1, "{q} returned one value three times");
    }
    let s = stats(&p);
    assert_eq!(s.hits + s.misses, 0, "{s:?}");
}

#[tokio::test]
async fn users_never_see_each_others_rows() {
    let p = start("").await;
    let t = unique("cache_owner");
    let v = format!("{t}_mine");
    let su = superuser().await;
    su.batch_execute(&format!(
        "create table {t} (owner text, secret text);
         insert into {t} values ('app', 'app-secret'), ('app_md5', 'md5-secret');
         create view {v} as select secret from {t} where owner = current_user;
         grant select on {v} to app, app_md5;"
    ))
    .await
    .unwrap();
    wait_for_replica().await;
    let app = p.connect().await;
    let md5 = connect(&p.url("app_md5", "app_md5")).await;
    let q = format!("select secret from {v}");
    for _ in 0..3 {
        let a: String = app.query_one(&q, &[]).await.unwrap().get(0);
        let m: String = md5.query_one(&q, &[]).await.unwrap().get(0);
        assert_eq!(a, "app-secret");
        assert_eq!(m, "md5-secret");
    }
    assert!(stats(&p).hits >= 4, "the view is cached, per user");
}

#[tokio::test]
async fn settings_that_change_results_are_part_of_the_key() {
    let p = start("").await;
    let a = unique("cache_sp_a");
    let b = unique("cache_sp_b");
    let su = superuser().await;
    su.batch_execute(&format!(
        "create schema {a}; create schema {b};
         create table {a}.t (v text); create table {b}.t (v text);
         insert into {a}.t values ('from a'); insert into {b}.t values ('from b');
         grant usage on schema {a}, {b} to app; grant select on {a}.t, {b}.t to app;"
    ))
    .await
    .unwrap();
    wait_for_replica().await;
    let c = p.connect().await;
    let other = p.connect().await;
    c.batch_execute(&format!("set search_path = {a}"))
        .await
        .unwrap();
    other
        .batch_execute(&format!("set search_path = {b}"))
        .await
        .unwrap();
    for _ in 0..2 {
        let x: String = c.query_one("select v from t", &[]).await.unwrap().get(0);
        let y: String = other
            .query_one("select v from t", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(x, "from a");
        assert_eq!(y, "from b");
    }
}

#[tokio::test]
async fn outside_writes_are_seen_after_the_ttl() {
    let p = start("ttl_ms = 1500").await;
    let t = unique("cache_ttl");
    table(&t, 1).await;
    let c = p.connect().await;
    let q = format!("select v from {t} where id = 1");
    assert_eq!(read(&c, &q).await, "v1");
    // The entry is stored before the reply is sent, so it expires at most ttl_ms from here.
    let filled = std::time::Instant::now();
    superuser()
        .await
        .execute(&format!("update {t} set v = 'outside' where id = 1"), &[])
        .await
        .unwrap();
    // Within the TTL the proxy cannot know (no WAL following): the entry still answers.
    let hits = stats(&p).hits;
    let cached = read(&c, &q).await;
    if filled.elapsed() < Duration::from_millis(1200) {
        assert_eq!(cached, "v1");
        assert_eq!(stats(&p).hits, hits + 1);
    }
    wait_for_replica().await;
    tokio::time::sleep(Duration::from_millis(1700).saturating_sub(filled.elapsed())).await;
    assert_eq!(read(&c, &q).await, "outside");
}

#[tokio::test]
async fn outside_writes_are_seen_at_once_with_wal_invalidation() {
    let text = common::config_text(&cache_config(
        "invalidation = \"wal\"\nwal_user = \"postgres\"\nttl_ms = 600000\nwal_poll_ms = 10",
    ))
    .replace(
        "[[databases]]",
        "[[users]]\nname = \"postgres\"\npassword = \"postgres\"\n\n[[databases]]",
    );
    let p = TestProxy::start_with_text(&text).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while stats(&p).wal_followers == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the WAL follower never attached"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = unique("cache_wal");
    table(&t, 1).await;
    let c = p.connect().await;
    let q = format!("select v from {t} where id = 1");
    for round in 0..5 {
        let _: String = c.query_one(&q, &[]).await.unwrap().get(0);
        let value = format!("outside-{round}");
        superuser()
            .await
            .execute(&format!("update {t} set v = $1 where id = 1"), &[&value])
            .await
            .unwrap();
        // The proxy learns of the commit within a poll or two; the TTL is ten minutes.
        let start = std::time::Instant::now();
        loop {
            let v: String = c.query_one(&q, &[]).await.unwrap().get(0);
            if v == value {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "round {round}: still {v} after {:?}",
                start.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // The last round's read may reach a server before the follower has applied that commit
    // (nothing was cached to be wrong meanwhile): its invalidation follows within a poll.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut s = stats(&p);
    while s.invalidations.wal < 5 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        s = stats(&p);
    }
    assert!(s.invalidations.wal >= 5, "{s:?}");
    assert_eq!(s.invalidation, "wal");
}

#[tokio::test]
async fn the_byte_bound_holds() {
    let p = start("max_bytes = 65536\nmax_entry_bytes = 16384").await;
    let t = unique("cache_bound");
    let su = superuser().await;
    su.batch_execute(&format!(
        "create table {t} (id int primary key, v text);
         insert into {t} select i, repeat('x', 2000) from generate_series(1, 300) i;
         grant select on {t} to app;"
    ))
    .await
    .unwrap();
    wait_for_replica().await;
    let c = p.connect().await;
    for i in 1..=300 {
        c.simple_query(&format!("select v from {t} where id = {i}"))
            .await
            .unwrap();
    }
    // Too large for one entry: answered, never stored.
    let big = c
        .simple_query(&format!("select v from {t} where id <= 20"))
        .await
        .unwrap();
    assert_eq!(data_rows(&big).len(), 20);
    let s = stats(&p);
    assert!(s.bytes <= 65536, "{s:?}");
    assert!(s.evictions_size > 0, "{s:?}");
    assert!(s.entries < 300, "{s:?}");
    assert!(s.fills_aborted >= 1, "{s:?}");
}

#[tokio::test]
async fn identical_concurrent_misses_send_one_query() {
    let p = start("").await;
    let t = unique("cache_coalesce");
    let su = superuser().await;
    let _ = su
        .batch_execute("create extension if not exists pg_stat_statements")
        .await;
    su.batch_execute(&format!(
        "create table {t} (id int);
         insert into {t} select generate_series(1, 3000);
         grant select on {t} to app;"
    ))
    .await
    .unwrap();
    wait_for_replica().await;
    // Slow enough (a few hundred ms) for all 50 to arrive while the first is running.
    let q = format!("select count(*) from {t} a, {t} b where a.id % 7 = b.id % 5");
    let mut clients = Vec::new();
    for _ in 0..50 {
        clients.push(p.connect().await);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for c in clients {
        let (q, barrier) = (q.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            data_rows(&c.simple_query(&q).await.unwrap()).len()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 1);
    }
    let s = stats(&p);
    assert_eq!(s.misses, 1, "{s:?}");
    assert_eq!(s.hits, 49, "{s:?}");
    assert!(s.coalesced >= 40, "{s:?}");
    let replica = common::replica_superuser().await;
    let calls: i64 = replica
        .query_one(
            "select coalesce(sum(calls), 0)::int8 from pg_stat_statements where query like $1",
            &[&format!("%{t} a, {t} b%")],
        )
        .await
        .unwrap()
        .get(0);
    let primary_calls: i64 = su
        .query_one(
            "select coalesce(sum(calls), 0)::int8 from pg_stat_statements where query like $1",
            &[&format!("%{t} a, {t} b%")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(calls + primary_calls, 1, "one server query for 50 clients");
}
