//! The result cache through the real proxy: hits, invalidation by writes (simple, prepared, transactions), volatile functions, users, TTL, WAL, bounds, coalescing and a soak.

mod common;

use common::{connect, superuser, unique, wait_for_replica, TestProxy};
use pgsplit::admin::snapshot::{cache as cache_stats, CacheSnapshot};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn cache_config(extra: &str) -> String {
    format!("[cache]\nenabled = true\n{extra}\n")
}

async fn start(extra: &str) -> TestProxy {
    TestProxy::start_with(&cache_config(extra)).await
}

fn stats(p: &TestProxy) -> CacheSnapshot {
    cache_stats(&p.handle.shared)
}

/// A table `name(id int primary key, v text)` with rows 1..=n, readable by every test role.
async fn table(name: &str, n: i32) {
    let su = superuser().await;
    su.batch_execute(&format!(
        "create table {name} (id int primary key, v text);
         insert into {name} select i, 'v' || i from generate_series(1, {n}) i;
         grant select, insert, update, delete, truncate on {name} to app, app_md5;"
    ))
    .await
    .unwrap();
    wait_for_replica().await;
}

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

fn data_rows(m: &[tokio_postgres::SimpleQueryMessage]) -> Vec<&tokio_postgres::SimpleQueryRow> {
    m.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect()
}

async fn read(client: &tokio_postgres::Client, q: &str) -> String {
    client.query_one(q, &[]).await.unwrap().get(0)
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
    let s = stats(&p);
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

#[tokio::test]
async fn soak_no_read_misses_an_acknowledged_write() {
    let p = start("").await;
    let t = unique("cache_soak");
    table(&t, 8).await;
    let su = superuser().await;
    su.batch_execute(&format!("update {t} set v = '0'"))
        .await
        .unwrap();
    wait_for_replica().await;
    // acked[i]: the highest value acknowledged for row i. Writers only increase values.
    let acked: Arc<Vec<AtomicI64>> = Arc::new((0..=8).map(|_| AtomicI64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let stale = Arc::new(AtomicI64::new(0));
    let reads = Arc::new(AtomicI64::new(0));
    let mut tasks = Vec::new();
    for w in 0..2 {
        let (c, acked, stop, t) = (p.connect().await, acked.clone(), stop.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0i64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let id = (n % 4) as i32 * 2 + 1 + w;
                let value = n * 10 + i64::from(w);
                c.execute(
                    &format!("update {t} set v = $1::text where id = $2"),
                    &[&value.to_string(), &id],
                )
                .await
                .unwrap();
                acked[id as usize].fetch_max(value, Ordering::SeqCst);
            }
        }));
    }
    for _ in 0..4 {
        let (c, acked, stop, t, stale, reads) = (
            p.connect().await,
            acked.clone(),
            stop.clone(),
            t.clone(),
            stale.clone(),
            reads.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let stmt = c
                .prepare(&format!("select v::int8 from {t} where id = $1"))
                .await
                .unwrap();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let id = (i % 8 + 1) as i32;
                let floor = acked[id as usize].load(Ordering::SeqCst);
                let v: i64 = if i % 2 == 0 {
                    c.query_one(&stmt, &[&id]).await.unwrap().get(0)
                } else {
                    let rows = c
                        .simple_query(&format!("select v from {t} where id = {id}"))
                        .await
                        .unwrap();
                    data_rows(&rows)[0].get(0).unwrap().parse().unwrap()
                };
                // Values per row only grow, so anything below the floor is a missed write.
                if v < floor {
                    stale.fetch_add(1, Ordering::SeqCst);
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let s = stats(&p);
    assert!(reads.load(Ordering::Relaxed) > 500, "too few reads");
    assert_eq!(stale.load(Ordering::SeqCst), 0, "stale reads; cache {s:?}");
    assert!(s.hits > 0, "{s:?}");
}

#[tokio::test]
async fn writes_reach_reads_through_views_and_partitions() {
    let p = start("").await;
    let base = unique("cache_part");
    let c = p.connect().await;
    // DDL through the proxy makes it reload the catalog's views and partitions.
    c.batch_execute(&format!(
        "create table {base} (id int, v text) partition by range (id);
         create table {base}_a partition of {base} for values from (0) to (100);
         create table {base}_b partition of {base} for values from (100) to (200);
         create view {base}_view as select id, v from {base}_b;
         insert into {base} values (1, 'a1'), (150, 'b1');"
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_for_replica().await;
    let parent = format!("select v from {base} where id = 150");
    let view = format!("select v from {base}_view where id = 150");
    for _ in 0..2 {
        assert_eq!(read(&c, &parent).await, "b1");
        assert_eq!(read(&c, &view).await, "b1");
    }
    // A write naming only the partition reaches the parent's and the view's entries.
    c.execute(&format!("update {base}_b set v = 'b2' where id = 150"), &[])
        .await
        .unwrap();
    assert_eq!(read(&c, &parent).await, "b2");
    assert_eq!(read(&c, &view).await, "b2");
    // A write through the parent reaches reads of the partition.
    let part = format!("select v from {base}_b where id = 150");
    assert_eq!(read(&c, &part).await, "b2");
    assert_eq!(read(&c, &part).await, "b2");
    c.execute(&format!("update {base} set v = 'b3' where id = 150"), &[])
        .await
        .unwrap();
    assert_eq!(read(&c, &part).await, "b3");
    assert_eq!(read(&c, &view).await, "b3");
}

#[tokio::test]
async fn writes_to_unknown_tables_invalidate_everything() {
    let p = start("").await;
    let t = unique("cache_fn");
    table(&t, 1).await;
    let su = superuser().await;
    su.batch_execute(&format!(
        "create function {t}_touch(val text) returns void language sql as
           $$ update {t} set v = val where id = 1 $$;
         grant execute on function {t}_touch(text) to app;"
    ))
    .await
    .unwrap();
    wait_for_replica().await;
    let c = p.connect().await;
    let q = format!("select v from {t} where id = 1");
    assert_eq!(read(&c, &q).await, "v1");
    assert_eq!(read(&c, &q).await, "v1");
    // The router cannot see which tables a function writes: everything is invalidated.
    c.execute(&format!("select {t}_touch('by function')"), &[])
        .await
        .unwrap();
    assert_eq!(read(&c, &q).await, "by function");
    assert!(stats(&p).invalidations.unknown >= 1);
}

#[tokio::test]
async fn cascades_and_triggers_reach_the_tables_they_change() {
    let p = start("").await;
    let t = unique("cache_fk");
    let c = p.connect().await;
    c.batch_execute(&format!(
        "create table {t}_lead (id int primary key);
         create table {t}_conv (id int primary key,
                                lead_id int references {t}_lead on delete cascade);
         create table {t}_log (n int);
         create table {t}_src (id int);
         create function {t}_f() returns trigger language plpgsql as
           $$ begin insert into {t}_log values (new.id); return new; end $$;
         create trigger {t}_trg after insert on {t}_src for each row execute function {t}_f();
         insert into {t}_lead values (1); insert into {t}_conv values (10, 1);"
    ))
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    wait_for_replica().await;
    let conv = format!("select count(*)::text from {t}_conv where lead_id = 1");
    let log = format!("select count(*)::text from {t}_log");
    for _ in 0..2 {
        assert_eq!(read(&c, &conv).await, "1");
        assert_eq!(read(&c, &log).await, "0");
    }
    // The DELETE names only the parent; the cascade empties the child.
    c.execute(&format!("delete from {t}_lead where id = 1"), &[])
        .await
        .unwrap();
    assert_eq!(read(&c, &conv).await, "0");
    // The INSERT names only the source; its trigger writes the log.
    c.execute(&format!("insert into {t}_src values (5)"), &[])
        .await
        .unwrap();
    assert_eq!(read(&c, &log).await, "1");
}

#[tokio::test]
async fn an_n_plus_one_loop_answered_from_the_cache_is_still_reported() {
    let p = start("[n_plus_one]\nenabled = true").await;
    let t = unique("cache_n1");
    let su = superuser().await;
    su.batch_execute(&format!(
        "create table {t}_parent (id int primary key);
         create table {t}_child (id serial primary key, parent_id int, note text);
         insert into {t}_parent select generate_series(1, 30);
         insert into {t}_child (parent_id, note) select i % 30 + 1, 'n' || i from generate_series(1, 90) i;
         grant select on {t}_parent, {t}_child to app;"
    ))
    .await
    .unwrap();
    wait_for_replica().await;
    let c = p.connect().await;
    let child = c
        .prepare(&format!("select note from {t}_child where parent_id = $1"))
        .await
        .unwrap();
    for round in 0..2 {
        let parents = c
            .query(&format!("select id from {t}_parent order by id"), &[])
            .await
            .unwrap();
        for r in &parents {
            let id: i32 = r.get(0);
            assert_eq!(c.query(&child, &[&id]).await.unwrap().len(), 3);
        }
        // Let the second loop be a new burst.
        if round == 0 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
    let s = stats(&p);
    assert!(s.hits >= 30, "the second loop came from the cache: {s:?}");
    let findings = p.handle.shared.n_plus_one.registry.snapshot();
    let f = findings
        .iter()
        .find(|f| f.query.contains(&format!("{t}_child")))
        .expect("the loop is reported");
    assert_eq!(f.occurrences, 2, "{f:?}");
}

#[tokio::test]
async fn a_reload_changes_rules_and_detection_at_once() {
    let p = start("").await;
    let t = unique("cache_reload");
    table(&t, 1).await;
    let c = p.connect().await;
    let q = format!("select v from {t} where id = 1");
    read(&c, &q).await;
    read(&c, &q).await;
    assert_eq!(stats(&p).hits, 1);
    // The same configuration plus a rule keeping the table out, and N+1 detection off.
    let text = common::config_text(&cache_config(&format!(
        "[[cache.rules]]\ntable = \"{t}\"\nnever = true\n[n_plus_one]\nenabled = false"
    )));
    let env = pgsplit::config::EnvOverrides {
        primary: Some(common::primary_addr()),
        replicas: Some(common::replica_addrs()),
        ..Default::default()
    };
    let new = pgsplit::config::Config::from_toml(&text, &env).unwrap();
    let summary = pgsplit::reload::apply(&p.handle.shared, new).unwrap();
    let applied = summary.to_string();
    assert!(applied.contains("cache.rules"), "{applied}");
    assert!(applied.contains("n_plus_one.enabled"), "{applied}");
    read(&c, &q).await;
    let s = stats(&p);
    assert_eq!(s.hits, 1, "{s:?}");
    assert_eq!(s.bypassed, 1, "{s:?}");
    assert!(!p.handle.shared.n_plus_one.settings.load().enabled);
}
