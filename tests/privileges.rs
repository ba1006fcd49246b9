//! Privileges, policies, role attributes and role defaults changed through pgsplit take effect on the very next read (cache on, the read before a hit); the clock reached through views, policies and function bodies is never cached; /stats says why a read is not cacheable.

mod common;

use common::{connect, http, superuser, unique, wait_for_replica, TestProxy};
use serde_json::Value;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage};

/// A superuser client of the proxy, for ALTER ROLE; small pools so server connections are
/// reused across the test's sessions.
fn config(share_across_users: bool) -> String {
    common::config_text(&format!(
        "[[users]]\nname = \"postgres\"\npassword = \"postgres\"\n\
         [pool]\nprimary_size = 4\nreplica_size = 2\n\
         [cache]\nenabled = true\nshare_across_users = {share_across_users}\n"
    ))
}

async fn start(share_across_users: bool) -> TestProxy {
    let proxy = TestProxy::start_with_text(&config(share_across_users)).await;
    wait_catalog(&proxy).await;
    proxy
}

/// Waits until the router's catalog is loaded and no DDL went through since (a catalog made
/// stale by DDL trusts no user function, which the warm-hit checks would see).
async fn wait_catalog(proxy: &TestProxy) {
    for _ in 0..500 {
        if !proxy.handle.shared.router.catalog().is_stale() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("catalog never loaded");
}

fn first(m: &[SimpleQueryMessage]) -> Option<String> {
    m.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    })
}

async fn read(c: &Client, sql: &str) -> Option<String> {
    first(
        &c.simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}")),
    )
}

async fn run(c: &Client, sql: &str) {
    c.batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The /stats rows whose normalized text contains `needle`.
async fn stats_rows(proxy: &TestProxy, needle: &str) -> Vec<Value> {
    let (status, body) = http(proxy.handle.stats_addr, "GET", "/stats", None).await;
    assert_eq!(status, 200, "{body}");
    let stats: Value = serde_json::from_str(&body).expect("stats json");
    stats["queries"]
        .as_array()
        .expect("queries")
        .iter()
        .filter(|q| q["query"].as_str().unwrap_or("").contains(needle))
        .cloned()
        .collect()
}

/// Cache hits of the fingerprints whose text contains `needle`, once /stats shows `calls`
/// calls of them (a statement is recorded as its ReadyForQuery goes out).
async fn hits_after(proxy: &TestProxy, needle: &str, calls: u64) -> u64 {
    let sum = |rows: &[Value], field: &str| -> u64 {
        rows.iter().map(|r| r[field].as_u64().unwrap_or(0)).sum()
    };
    for _ in 0..200 {
        let rows = stats_rows(proxy, needle).await;
        if sum(&rows, "calls") >= calls {
            return sum(&rows, "cache_hits");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("/stats never showed {calls} calls of {needle}");
}

/// Why /stats says the statement containing `needle` is not cacheable.
async fn not_cacheable(proxy: &TestProxy, needle: &str) -> Option<String> {
    let rows = stats_rows(proxy, needle).await;
    assert!(!rows.is_empty(), "no /stats row for {needle}");
    rows[0]["not_cacheable"].as_str().map(str::to_owned)
}

/// Reads `sql` twice through `c`; the second must be a cache hit. Returns the value.
async fn warm(proxy: &TestProxy, c: &Client, sql: &str, needle: &str) -> Option<String> {
    let before = stats_rows(proxy, needle)
        .await
        .iter()
        .map(|r| {
            (
                r["calls"].as_u64().unwrap_or(0),
                r["cache_hits"].as_u64().unwrap_or(0),
            )
        })
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let v = read(c, sql).await;
    assert_eq!(read(c, sql).await, v, "{sql}: warm reads differ");
    let hits = hits_after(proxy, needle, before.0 + 2).await;
    assert_eq!(
        hits,
        before.1 + 1,
        "{sql}: the warm read was not a cache hit"
    );
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privilege_policy_and_role_changes_take_effect_on_the_next_read() {
    let p = unique("priv");
    let (reader_role, bypass_role) = (format!("{p}_r"), format!("{p}_b"));
    let su = superuser().await;
    run(
        &su,
        &format!(
            "create role {reader_role}; create role {bypass_role};
             grant {reader_role}, {bypass_role} to app;
             create table {p}_docs (id int primary key, body text);
             insert into {p}_docs values (1, 'a'), (2, 'b');
             grant select on {p}_docs to {reader_role};
             create table {p}_rls (id int primary key);
             insert into {p}_rls values (1), (2);
             alter table {p}_rls enable row level security;
             create policy {p}_all on {p}_rls using (true);
             create policy {p}_hide on {p}_rls as restrictive using (id = 1);
             grant select on {p}_rls to {reader_role}, {bypass_role};
             create table {p}_acl (doc int, who text);
             insert into {p}_acl values (1, '{reader_role}'), (2, '{reader_role}');
             grant select on {p}_acl to {reader_role};
             create table {p}_shared (id int primary key);
             insert into {p}_shared values (1), (2);
             alter table {p}_shared enable row level security;
             create policy {p}_by_acl on {p}_shared using
               (exists (select 1 from {p}_acl a where a.doc = id and a.who = current_user));
             grant select on {p}_shared to {reader_role};
             alter table {p}_docs owner to app; alter table {p}_rls owner to app;
             alter table {p}_acl owner to app; alter table {p}_shared owner to app;"
        ),
    )
    .await;
    wait_for_replica().await;
    let proxy = start(false).await;
    let owner = proxy.connect().await;
    let reader = proxy.connect().await;
    let other_reader = proxy.connect().await;
    for c in [&reader, &other_reader] {
        run(c, &format!("set role {reader_role}")).await;
    }

    // REVOKE: the next read is refused, in the revoked session and in another.
    let docs = format!("select string_agg(body, ',' order by id) from {p}_docs");
    assert_eq!(
        warm(&proxy, &reader, &docs, &format!("{p}_docs")).await,
        Some("a,b".into())
    );
    run(
        &owner,
        &format!("revoke select on {p}_docs from {reader_role}"),
    )
    .await;
    for c in [&reader, &other_reader] {
        let e = c.simple_query(&docs).await.expect_err("REVOKE ignored");
        assert_eq!(e.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{e}");
    }

    // DROP POLICY: the rows it hid are seen at once.
    wait_catalog(&proxy).await;
    let rls = format!("select count(*)::text from {p}_rls");
    assert_eq!(
        warm(&proxy, &reader, &rls, &format!("{p}_rls")).await,
        Some("1".into())
    );
    run(&owner, &format!("drop policy {p}_hide on {p}_rls")).await;
    assert_eq!(
        read(&reader, &rls).await,
        Some("2".into()),
        "DROP POLICY ignored"
    );
    assert_eq!(read(&other_reader, &rls).await, Some("2".into()));

    // A change to the table a policy reads.
    wait_catalog(&proxy).await;
    let shared = format!("select count(*)::text from {p}_shared");
    assert_eq!(
        warm(&proxy, &reader, &shared, &format!("{p}_shared")).await,
        Some("2".into())
    );
    run(&owner, &format!("delete from {p}_acl where doc = 1")).await;
    assert_eq!(
        read(&reader, &shared).await,
        Some("1".into()),
        "access list ignored"
    );
    assert_eq!(read(&other_reader, &shared).await, Some("1".into()));

    // ALTER ROLE ... BYPASSRLS through pgsplit, as a superuser.
    run(
        &owner,
        &format!("create policy {p}_hide2 on {p}_rls as restrictive using (id = 1)"),
    )
    .await;
    wait_catalog(&proxy).await;
    let bypasser = proxy.connect().await;
    run(&bypasser, &format!("set role {bypass_role}")).await;
    assert_eq!(
        warm(&proxy, &bypasser, &rls, &format!("{p}_rls")).await,
        Some("1".into())
    );
    let admin = connect(&proxy.url("postgres", "postgres")).await;
    run(&admin, &format!("alter role {bypass_role} bypassrls")).await;
    assert_eq!(
        read(&bypasser, &rls).await,
        Some("2".into()),
        "BYPASSRLS ignored"
    );

    // ALTER ROLE ... SET: a session that starts after it gets the new default, on the
    // primary and on a replica, although both pools hold connections opened before.
    let guc = format!("pgsplit_test.{p}");
    let show = format!("select coalesce(current_setting('{guc}', true), '')");
    let show_primary = format!("/* pgsplit:primary */ {show}");
    let md5_url = proxy.url("app_md5", "app_md5");
    {
        let before = connect(&md5_url).await;
        assert_eq!(read(&before, &show).await, Some(String::new()));
        assert_eq!(read(&before, &show_primary).await, Some(String::new()));
    }
    run(&admin, &format!("alter role app_md5 set {guc} = 'new'")).await;
    wait_for_replica().await;
    let after = connect(&md5_url).await;
    let on_replica = read(&after, &show).await;
    let on_primary = read(&after, &show_primary).await;
    run(&su, &format!("alter role app_md5 reset {guc}")).await;
    assert_eq!(
        on_replica.as_deref(),
        Some("new"),
        "old default on a replica connection"
    );
    assert_eq!(
        on_primary.as_deref(),
        Some("new"),
        "old default on a primary connection"
    );

    drop((owner, reader, other_reader, bypasser, admin, after));
    run(
        &su,
        &format!(
            "drop table {p}_docs, {p}_rls, {p}_acl, {p}_shared;
             drop role {reader_role}; drop role {bypass_role};"
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clock_reached_through_views_policies_and_functions_is_never_cached() {
    let p = unique("clock");
    let su = superuser().await;
    run(
        &su,
        &format!(
            "create table {p}_ev (id int primary key);
             insert into {p}_ev values (1);
             create view {p}_now_v as select id, now()::text as t from {p}_ev;
             create view {p}_cts_v as select id, current_timestamp::text as t from {p}_ev;
             create view {p}_outer_v as select * from {p}_cts_v;
             create function {p}_stamp() returns text language plpgsql stable as
               $$ begin return now()::text; end $$;
             create view {p}_fn_v as select id, {p}_stamp() as t from {p}_ev;
             create table {p}_pol (id int primary key, until timestamptz);
             insert into {p}_pol values (1, now() + interval '1 day'), (2, now() + interval '1 day');
             alter table {p}_pol enable row level security;
             create policy {p}_live on {p}_pol using (until > now());
             create sequence {p}_seq;
             grant select on {p}_ev, {p}_now_v, {p}_cts_v, {p}_outer_v, {p}_fn_v, {p}_pol,
               {p}_seq to app;"
        ),
    )
    .await;
    wait_for_replica().await;
    let proxy = start(false).await;
    let c = proxy.connect().await;

    // Each read of a clock-reaching view is the server's, never an earlier answer.
    let views = [
        (format!("{p}_now_v"), "reads now".to_owned()),
        (format!("{p}_cts_v"), "reads CURRENT_TIMESTAMP".to_owned()),
        (format!("{p}_outer_v"), "through".to_owned()),
        (format!("{p}_fn_v"), format!("now in {p}_stamp")),
    ];
    for (view, why) in &views {
        let sql = format!("select t from {view} where id = 1");
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(read(&c, &sql).await);
        }
        seen.dedup();
        assert_eq!(seen.len(), 3, "{view}: a read was served stale: {seen:?}");
        assert_eq!(
            hits_after(&proxy, &format!("from {view} "), 3).await,
            0,
            "{view}"
        );
        let reason = not_cacheable(&proxy, &format!("from {view} ")).await;
        assert!(
            reason.as_deref().is_some_and(|r| r.contains(why)),
            "{view}: /stats says {reason:?}, want {why:?}"
        );
    }

    // A policy comparing with now(): the row whose time passes disappears, though the
    // reads before could have been cached. The server's clock decides, so the test waits
    // for it (1.5 s) rather than for pgsplit.
    run(
        &su,
        &format!("update {p}_pol set until = now() + interval '1500 milliseconds' where id = 1"),
    )
    .await;
    wait_for_replica().await;
    let pol = format!("select count(*)::text from {p}_pol");
    assert_eq!(read(&c, &pol).await, Some("2".into()));
    let mut reads = 1;
    let mut now = Some("2".into());
    while now.as_deref() == Some("2") && reads < 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        now = read(&c, &pol).await;
        reads += 1;
    }
    assert_eq!(
        now.as_deref(),
        Some("1"),
        "the policy's now() was served stale"
    );
    assert_eq!(hits_after(&proxy, &format!("{p}_pol"), reads).await, 0);
    let reason = not_cacheable(&proxy, &format!("{p}_pol")).await;
    assert!(
        reason.as_deref().is_some_and(|r| r.contains("reads now")),
        "{reason:?}"
    );

    // The reasons of the one place that decides, per fingerprint.
    let marker = format!("{p}_m");
    for (sql, why) in [
        (
            format!("select current_setting('app.{marker}', true) as {marker}"),
            "stable function current_setting",
        ),
        (
            format!("select 'now'::timestamptz::text as {marker}"),
            "time literal",
        ),
        (format!("select last_value::text from {p}_seq"), "sequence"),
    ] {
        read(&c, &sql).await;
        read(&c, &sql).await;
        let needle = if sql.contains("_seq") {
            format!("{p}_seq")
        } else {
            marker.clone()
        };
        let rows = stats_rows(&proxy, &needle).await;
        let reason = rows
            .iter()
            .find_map(|r| r["not_cacheable"].as_str().map(str::to_owned));
        assert!(
            reason
                .as_deref()
                .is_some_and(|r| r.starts_with("not cacheable: ") && r.contains(why)),
            "{sql}: /stats says {reason:?}, want {why:?}"
        );
    }
    // A plain read is cacheable: no reason.
    let plain = format!("select count(*)::text from {p}_ev");
    warm(&proxy, &c, &plain, &format!("from {p}_ev")).await;
    assert_eq!(not_cacheable(&proxy, &format!("from {p}_ev")).await, None);

    drop(c);
    run(
        &su,
        &format!(
            "drop view {p}_outer_v, {p}_cts_v, {p}_now_v, {p}_fn_v; drop function {p}_stamp();
             drop table {p}_ev, {p}_pol; drop sequence {p}_seq;"
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_is_not_cached_when_entries_are_shared_across_users() {
    let p = unique("shared");
    let su = superuser().await;
    run(
        &su,
        &format!(
            "create table {p}_own (id int primary key, owner text);
             insert into {p}_own values (1, 'app'), (2, 'app_md5');
             alter table {p}_own enable row level security;
             create policy {p}_mine on {p}_own using (owner = current_user);
             create table {p}_plain (id int primary key); insert into {p}_plain values (1);
             grant select on {p}_own, {p}_plain to app, app_md5;"
        ),
    )
    .await;
    wait_for_replica().await;
    let proxy = start(true).await;
    let app = proxy.connect().await;
    let md5 = connect(&proxy.url("app_md5", "app_md5")).await;
    let own = format!("select string_agg(id::text, ',') from {p}_own");
    for _ in 0..2 {
        assert_eq!(read(&app, &own).await, Some("1".into()));
        assert_eq!(
            read(&md5, &own).await,
            Some("2".into()),
            "another user's rows"
        );
    }
    assert_eq!(hits_after(&proxy, &format!("{p}_own"), 4).await, 0);
    let reason = not_cacheable(&proxy, &format!("{p}_own")).await;
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("row-level security") && r.contains("share_across_users")),
        "{reason:?}"
    );
    // A table without row-level security is still shared.
    let plain = format!("select count(*)::text from {p}_plain");
    warm(&proxy, &app, &plain, &format!("{p}_plain")).await;
    drop((app, md5));
    run(&su, &format!("drop table {p}_own, {p}_plain")).await;
}
