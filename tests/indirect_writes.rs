//! Writes that reach relations the statement does not name (triggers, rules, defaults, sequences, cascades, partitions, policies, views' functions, DDL just before, chained commits): the next read through pgsplit is never stale, cache on and off, replay running and paused, simple and extended protocol.

mod common;

use pgsplit::admin::snapshot::cache as cache_stats;
use pgsplit::config::{Config, EnvOverrides};
use std::sync::Arc;
use tokio_postgres::{Client, SimpleQueryMessage};

/// One indirect route. `{s}` in the SQL is the case's unique prefix.
struct Case {
    name: &'static str,
    /// Run directly on the primary as `app`, the owner of everything.
    setup: &'static str,
    /// A read whose one value the write changes.
    read: &'static str,
    /// Requests sent through pgsplit, one after the other.
    write: &'static [&'static str],
    /// Sent after the reads (ends a transaction the write left open).
    after: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        name: "row trigger",
        setup: "create table {s}_src (id int primary key, v text);
                create table {s}_dst (id int primary key, v text);
                insert into {s}_src values (1, 'old'); insert into {s}_dst values (1, 'old');
                create function {s}_copy() returns trigger language plpgsql as $$
                  begin update {s}_dst set v = new.v where id = new.id; return new; end $$;
                create trigger {s}_t after update on {s}_src for each row execute function {s}_copy();",
        read: "select v from {s}_dst where id = 1",
        write: &["update {s}_src set v = 'new' where id = 1"],
        after: None,
    },
    Case {
        name: "statement trigger",
        setup: "create table {s}_src (id int primary key, v text);
                create table {s}_dst (id int primary key, n int);
                insert into {s}_dst values (1, 0);
                create function {s}_count() returns trigger language plpgsql as $$
                  begin update {s}_dst set n = n + 1 where id = 1; return null; end $$;
                create trigger {s}_t after insert on {s}_src for each statement execute function {s}_count();",
        read: "select n::text from {s}_dst where id = 1",
        write: &["insert into {s}_src values (1, 'x')"],
        after: None,
    },
    Case {
        name: "trigger created just before the write",
        setup: "create table {s}_src (id int primary key, v text);
                create table {s}_dst (id int primary key, v text);
                insert into {s}_src values (1, 'old'); insert into {s}_dst values (1, 'old');
                create function {s}_copy() returns trigger language plpgsql as $$
                  begin update {s}_dst set v = new.v where id = new.id; return new; end $$;",
        read: "select v from {s}_dst where id = 1",
        write: &[
            "create trigger {s}_t after update on {s}_src for each row execute function {s}_copy()",
            "update {s}_src set v = 'new' where id = 1",
        ],
        after: None,
    },
    Case {
        name: "instead of trigger on a view",
        setup: "create table {s}_base (id int primary key, v text);
                create table {s}_log (n int);
                insert into {s}_log values (0);
                create view {s}_v as select * from {s}_base;
                create function {s}_ins() returns trigger language plpgsql as $$
                  begin update {s}_log set n = n + 1; return new; end $$;
                create trigger {s}_t instead of insert on {s}_v for each row execute function {s}_ins();",
        read: "select n::text from {s}_log",
        write: &["insert into {s}_v values (1, 'x')"],
        after: None,
    },
    Case {
        name: "rule",
        setup: "create table {s}_src (id int primary key, v text);
                create table {s}_dst (id int primary key, v text);
                insert into {s}_src values (1, 'old'); insert into {s}_dst values (1, 'old');
                create rule {s}_r as on update to {s}_src do also
                  update {s}_dst set v = new.v where id = new.id;",
        read: "select v from {s}_dst where id = 1",
        write: &["update {s}_src set v = 'new' where id = 1"],
        after: None,
    },
    Case {
        name: "column default calling a function that writes",
        setup: "create table {s}_dst (id int primary key, v text);
                insert into {s}_dst values (1, 'old');
                create function {s}_bump() returns int language plpgsql as $$
                  begin update {s}_dst set v = 'new' where id = 1; return 1; end $$;
                create table {s}_src (id int primary key, x int default {s}_bump());",
        read: "select v from {s}_dst where id = 1",
        write: &["insert into {s}_src (id) values (1)"],
        after: None,
    },
    Case {
        name: "default nextval writes the sequence",
        setup: "create table {s}_t (id serial primary key, v text);",
        read: "select last_value::text || is_called::text from {s}_t_id_seq",
        write: &["insert into {s}_t (v) values ('x')"],
        after: None,
    },
    Case {
        name: "identity column writes its sequence",
        setup: "create table {s}_t (id int generated always as identity primary key, v text);",
        read: "select last_value::text || is_called::text from {s}_t_id_seq",
        write: &["insert into {s}_t (v) values ('x')"],
        after: None,
    },
    Case {
        name: "foreign key cascade",
        setup: "create table {s}_p (id int primary key);
                create table {s}_c (id int primary key, p int references {s}_p on delete cascade);
                insert into {s}_p values (1); insert into {s}_c values (1, 1), (2, 1);",
        read: "select count(*)::text from {s}_c",
        write: &["delete from {s}_p where id = 1"],
        after: None,
    },
    Case {
        name: "truncate cascade through a plain foreign key",
        setup: "create table {s}_p (id int primary key);
                create table {s}_c (id int primary key, p int references {s}_p);
                insert into {s}_p values (1); insert into {s}_c values (1, 1), (2, 1);",
        read: "select count(*)::text from {s}_c",
        write: &["truncate {s}_p cascade"],
        after: None,
    },
    Case {
        name: "partition written, parent read",
        setup: "create table {s}_p (k int, v text) partition by list (k);
                create table {s}_p1 partition of {s}_p for values in (1);",
        read: "select count(*)::text from {s}_p",
        write: &["insert into {s}_p1 values (1, 'x')"],
        after: None,
    },
    Case {
        name: "parent written, partition read",
        setup: "create table {s}_p (k int, v text) partition by list (k);
                create table {s}_p1 partition of {s}_p for values in (1);",
        read: "select count(*)::text from {s}_p1",
        write: &["insert into {s}_p values (1, 'x')"],
        after: None,
    },
    Case {
        name: "partition created just before it is written",
        setup: "create table {s}_p (k int, v text) partition by list (k);
                create table {s}_p1 partition of {s}_p for values in (1);",
        read: "select count(*)::text from {s}_p",
        write: &[
            "create table {s}_p2 partition of {s}_p for values in (2)",
            "insert into {s}_p2 values (2, 'x')",
        ],
        after: None,
    },
    Case {
        name: "inheritance child written, parent read",
        setup: "create table {s}_parent (id int, v text);
                create table {s}_child () inherits ({s}_parent);",
        read: "select count(*)::text from {s}_parent",
        write: &["insert into {s}_child values (1, 'x')"],
        after: None,
    },
    Case {
        name: "view whose stable function reads another table",
        setup: "create table {s}_other (id int);
                create function {s}_n() returns bigint language sql stable as
                  'select count(*) from {s}_other';
                create view {s}_v as select {s}_n() as n;",
        read: "select n::text from {s}_v",
        write: &["insert into {s}_other values (1)"],
        after: None,
    },
    Case {
        name: "create or replace of an immutable function",
        setup: "create function {s}_f() returns text language sql immutable as $$select 'old'$$;",
        read: "select {s}_f()",
        write: &["create or replace function {s}_f() returns text language sql immutable as $$select 'new'$$"],
        after: None,
    },
    Case {
        name: "row-level security access list",
        setup: "create table {s}_docs (id int primary key, body text);
                create table {s}_acl (doc int, who text);
                insert into {s}_docs values (1, 'a'), (2, 'b');
                insert into {s}_acl values (1, 'app'), (2, 'app');
                alter table {s}_docs enable row level security;
                alter table {s}_docs force row level security;
                create policy {s}_p on {s}_docs using
                  (exists (select 1 from {s}_acl a where a.doc = id and a.who = current_user));",
        read: "select count(*)::text from {s}_docs",
        write: &["delete from {s}_acl where doc = 1"],
        after: None,
    },
    Case {
        name: "drop policy",
        setup: "create table {s}_docs (id int primary key, body text);
                insert into {s}_docs values (1, 'a'), (2, 'b');
                alter table {s}_docs enable row level security;
                alter table {s}_docs force row level security;
                create policy {s}_all on {s}_docs using (true);
                create policy {s}_hide on {s}_docs as restrictive using (id = 1);",
        read: "select count(*)::text from {s}_docs",
        write: &["drop policy {s}_hide on {s}_docs"],
        after: None,
    },
    Case {
        name: "commit and chain",
        setup: "create table {s}_t (id int primary key, v text); insert into {s}_t values (1, 'old');",
        read: "select v from {s}_t where id = 1",
        write: &["begin", "update {s}_t set v = 'new' where id = 1", "commit and chain"],
        after: Some("commit"),
    },
    Case {
        name: "comment ended by a carriage return hides a second table",
        setup: "create table {s}_a (id int primary key, v text); create table {s}_b (id int primary key, v text);
                insert into {s}_a values (1, 'old'); insert into {s}_b values (1, 'old');",
        read: "select v from {s}_b where id = 1",
        write: &[
            "update {s}_a set v = v -- note\r",
            "update {s}_a set v = v -- note\r; update {s}_b set v = 'new' where id = 1",
        ],
        after: None,
    },
    Case {
        name: "function called in a multi-statement implicit transaction",
        setup: "create table {s}_t (id int primary key, v text); insert into {s}_t values (1, 'old');
                create function {s}_w() returns int language plpgsql as $$
                  begin update {s}_t set v = 'new' where id = 1; return 1; end $$;",
        read: "select v from {s}_t where id = 1",
        write: &["select 1; select {s}_w()"],
        after: None,
    },
];

/// Where the cases run.
struct Target {
    primary: String,
    replica: String,
}

impl Target {
    fn shared() -> Target {
        Target {
            primary: common::primary_addr(),
            replica: common::replica_addrs(),
        }
    }

    fn url(&self, addr: &str, user: &str, schema: &str) -> String {
        format!("postgres://{user}:{user}@{addr}/app?options=-c%20search_path%3D{schema}")
    }

    async fn superuser(&self, replica: bool) -> Client {
        let addr = if replica {
            self.replica.as_str()
        } else {
            self.primary.as_str()
        };
        common::connect(&format!("postgres://postgres:postgres@{addr}/app")).await
    }

    async fn wait_for_replica(&self) {
        let lsn: String = self
            .superuser(false)
            .await
            .query_one("select pg_current_wal_insert_lsn()::text", &[])
            .await
            .unwrap()
            .get(0);
        let replica = self.superuser(true).await;
        for _ in 0..500 {
            let ok: bool = replica
                .query_one(
                    "select coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)",
                    &[&lsn],
                )
                .await
                .unwrap()
                .get(0);
            if ok {
                tokio::time::sleep(std::time::Duration::from_millis(150)).await;
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("replica did not catch up");
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Protocol {
    Simple,
    Extended,
}

async fn start_proxy(t: &Target, cache: bool) -> pgsplit::ProxyHandle {
    let text = format!(
        "{}\n[cache]\nenabled = {cache}\n",
        common::config_text("[pool]\nprimary_size = 4\nreplica_size = 2\n")
    );
    let env = EnvOverrides {
        primary: Some(t.primary.clone()),
        replicas: Some(t.replica.clone()),
        ..Default::default()
    };
    let config = Config::from_toml(&text, &env).expect("config");
    let listener = pgsplit::bind(config.listen, 128).expect("bind");
    pgsplit::start(Arc::new(config), listener)
        .await
        .expect("start")
}

fn first_value(m: &[SimpleQueryMessage]) -> Option<String> {
    m.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    })
}

async fn read(c: &Client, sql: &str, proto: Protocol) -> Option<String> {
    match proto {
        Protocol::Simple => first_value(&c.simple_query(sql).await.unwrap()),
        Protocol::Extended => c
            .query(sql, &[])
            .await
            .unwrap()
            .first()
            .map(|r| r.get::<_, String>(0)),
    }
}

async fn send(c: &Client, sql: &str, proto: Protocol) {
    let single = !sql.contains(';') && !sql.contains('\r');
    let r = if proto == Protocol::Extended
        && single
        && !sql.starts_with("begin")
        && !sql.starts_with("commit")
    {
        c.execute(sql, &[]).await.map(drop)
    } else {
        c.simple_query(sql).await.map(drop)
    };
    r.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Waits until the router's catalog is loaded and no DDL went through since.
async fn wait_catalog(proxy: &pgsplit::ProxyHandle) {
    for _ in 0..500 {
        if !proxy.shared.router.catalog().is_stale() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("catalog never loaded");
}

/// Runs every case; returns the stale reads as messages. With `paused`, the replica's replay
/// is paused once the cases' tables reached it, and resumed at the end.
async fn run_cases(t: &Target, cache: bool, proto: Protocol, paused: bool) -> Vec<String> {
    let schema = common::unique("iw");
    let su = t.superuser(false).await;
    su.batch_execute(&format!("create schema {schema} authorization app"))
        .await
        .unwrap();
    let direct = common::connect(&t.url(&t.primary, "app", &schema)).await;
    // Everything exists before the proxy reads the catalog, as in production; objects made
    // through the proxy later are the "just before" cases.
    for (i, case) in CASES.iter().enumerate() {
        let s = format!("c{i}");
        direct
            .batch_execute(&case.setup.replace("{s}", &s))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    }
    t.wait_for_replica().await;
    let proxy = start_proxy(t, cache).await;
    wait_catalog(&proxy).await;
    let replica = t.superuser(true).await;
    if paused {
        replica
            .execute("select pg_wal_replay_pause()", &[])
            .await
            .unwrap();
    }
    let url = format!(
        "postgres://app:app@127.0.0.1:{}/app?options=-c%20search_path%3D{schema}",
        proxy.addr.port()
    );
    let mut stale = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let s = format!("c{i}");
        let sql = |q: &str| q.replace("{s}", &s);
        // DDL of an earlier case leaves the catalog pessimistic (no user function trusted, so
        // nothing of theirs cacheable) until its reload lands; the warm-hit check needs it.
        wait_catalog(&proxy).await;
        let c = common::connect(&url).await;
        let other = common::connect(&url).await;
        let before = read(&c, &sql(case.read), proto).await;
        let hits = cache_stats(&proxy.shared).hits;
        let again = read(&c, &sql(case.read), proto).await;
        if before != again {
            stale.push(format!("{}: warm reads differ", case.name));
        }
        // Sequences are read on the primary and never cached (a standby shows them ahead).
        if cache && !case.read.contains("_seq") && cache_stats(&proxy.shared).hits != hits + 1 {
            stale.push(format!(
                "{} ({proto:?}): the warm read was not a cache hit",
                case.name
            ));
        }
        for w in case.write {
            send(&c, &sql(w), proto).await;
        }
        // The truth, from the primary directly, inside the writer's view when it left a
        // transaction open (the chained one cannot see otherwise-uncommitted work anyway).
        let truth = read(&direct, &sql(case.read), Protocol::Simple).await;
        if truth == before {
            stale.push(format!("{}: the write changed nothing", case.name));
        }
        for (who, client) in [("writer", &c), ("other session", &other)] {
            let got = read(client, &sql(case.read), proto).await;
            if got != truth {
                stale.push(format!(
                    "{} ({who}, cache {cache}, {proto:?}): got {got:?}, want {truth:?}",
                    case.name
                ));
            }
        }
        if let Some(a) = case.after {
            send(&c, &sql(a), proto).await;
        }
    }
    drop(direct);
    if paused {
        replica
            .execute("select pg_wal_replay_resume()", &[])
            .await
            .unwrap();
    }
    su.batch_execute(&format!("drop schema {schema} cascade"))
        .await
        .unwrap();
    stale
}

async fn all_modes(t: &Target, paused: bool) {
    let mut stale = Vec::new();
    for cache in [true, false] {
        for proto in [Protocol::Simple, Protocol::Extended] {
            stale.extend(run_cases(t, cache, proto, paused).await);
        }
    }
    assert!(
        stale.is_empty(),
        "{} stale reads:\n{}",
        stale.len(),
        stale.join("\n")
    );
}

#[tokio::test]
async fn indirect_writes_replay_running() {
    all_modes(&Target::shared(), false).await;
}

/// The same cases with the replica's replay paused: a read that the write reached must go
/// to the primary. On a cluster of this binary's own: the shared one is never paused.
#[tokio::test]
async fn indirect_writes_replay_paused() {
    let own = common::own_cluster::OwnCluster::from_env(
        "PGSPLIT_TENANT",
        "/tmp/pgsplit-tenant",
        31936,
        31937,
    );
    own.ensure_running();
    // An interrupted earlier run may have left replay paused.
    own.replica_superuser()
        .await
        .execute("select pg_wal_replay_resume()", &[])
        .await
        .unwrap();
    let t = Target {
        primary: own.primary_addr(),
        replica: own.replica_addr(),
    };
    all_modes(&t, true).await;
}

#[tokio::test]
async fn time_literals_are_never_served_from_the_cache() {
    let t = Target::shared();
    let proxy = start_proxy(&t, true).await;
    let c = common::connect(&format!(
        "postgres://app:app@127.0.0.1:{}/app",
        proxy.addr.port()
    ))
    .await;
    let texts = [
        "select 'now'::timestamptz::text",
        "select cast('now' as timestamp)::text",
        "select 'now'::text::timestamptz::text",
        "select 'today'::date::text || 'x'",
    ];
    for q in texts {
        for _ in 0..3 {
            c.simple_query(q).await.unwrap();
            c.query(q, &[]).await.unwrap();
        }
    }
    // A parameter holding 'now' is the same thing.
    for _ in 0..3 {
        c.query("select $1::text::timestamptz::text", &[&"now"])
            .await
            .unwrap();
    }
    let s = cache_stats(&proxy.shared);
    assert_eq!(s.hits, 0, "{s:?}");
}
