//! The result cache through the real proxy, what writes reach: a soak of acknowledged writes, views, partitions, unknown tables, cascades and triggers, N+1 loops answered from the cache, and reloads.

mod common;

use common::cache::{cache_config, data_rows, read, start, stats, table};
use common::{superuser, unique, wait_for_replica};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
