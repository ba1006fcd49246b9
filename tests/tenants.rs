//! Multi-tenant isolation through pgsplit: row-level security keyed by a custom setting and by current_user, the tenant set in every way a client can, three sessions interleaved, cache on and off: no session ever reads another tenant's rows.

mod common;

use common::{connect, superuser, unique, wait_for_replica, TestProxy};
use pgsplit::admin::snapshot::cache as cache_stats;
use tokio_postgres::{Client, SimpleQueryMessage};

/// Small pools, so the three sessions share server connections and a setting left on one
/// would reach another session.
const POOL: &str = "[pool]\nprimary_size = 5\nreplica_size = 2\n";

fn config(cache: bool) -> String {
    format!("{POOL}\n[cache]\nenabled = {cache}\n")
}

/// Rows per tenant: ids 10t+1..10t+3, bodies "t<tenant>-<i>".
const TENANTS: [i32; 3] = [1, 2, 3];

struct Fixture {
    docs: String,
    setter: String,
    owned: String,
    roles: [String; 2],
}

impl Fixture {
    async fn create() -> Fixture {
        let docs = unique("tenant_docs");
        let setter = unique("set_tenant");
        let owned = unique("tenant_owned");
        let roles = [unique("tenant_ra"), unique("tenant_rb")];
        let su = superuser().await;
        su.batch_execute(&format!(
            "create table {docs} (id int primary key, tenant int not null, body text not null);
             insert into {docs} select 10 * t + i, t, 't' || t || '-' || i
               from generate_series(1, 3) t, generate_series(1, 3) i;
             alter table {docs} enable row level security;
             create policy by_tenant on {docs} for select
               using (tenant = nullif(current_setting('app.tenant_id', true), '')::int);
             grant select on {docs} to app;
             create function {setter}(t int) returns text language plpgsql as $$
               begin perform set_config('app.tenant_id', t::text, false); return t::text; end $$;
             create role {ra}; create role {rb};
             grant {ra}, {rb} to app;
             create table {owned} (id int primary key, owner text not null, body text not null);
             insert into {owned} values (1, '{ra}', 'a1'), (2, '{ra}', 'a2'), (3, '{rb}', 'b1'),
               (4, 'app', 'app1');
             alter table {owned} enable row level security;
             create policy by_user on {owned} for select using (owner = current_user);
             grant select on {owned} to app, {ra}, {rb};",
            ra = roles[0],
            rb = roles[1],
        ))
        .await
        .unwrap();
        wait_for_replica().await;
        Fixture {
            docs,
            setter,
            owned,
            roles,
        }
    }

    async fn drop(self) {
        let su = superuser().await;
        su.batch_execute(&format!(
            "drop table {docs}; drop table {owned}; drop function {setter}(int);
             drop owned by {ra}, {rb}; drop role {ra}; drop role {rb};",
            docs = self.docs,
            owned = self.owned,
            setter = self.setter,
            ra = self.roles[0],
            rb = self.roles[1],
        ))
        .await
        .unwrap();
    }
}

fn rows(m: &[SimpleQueryMessage]) -> Vec<String> {
    m.iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect()
}

fn expected_docs(tenant: Option<i32>) -> Vec<String> {
    match tenant {
        None => Vec::new(),
        Some(t) => (1..=3).map(|i| format!("t{t}-{i}")).collect(),
    }
}

/// One client session and what PostgreSQL says its tenant is.
struct Tenant {
    client: Client,
    startup: Option<i32>,
    current: Option<i32>,
}

/// How a round sets the tenant.
const WAYS: [&str; 10] = [
    "set",
    "set session",
    "set in transaction",
    "set local",
    "multi-statement",
    "literal set_config",
    "plpgsql set_config",
    "do block",
    "startup options",
    "extended set_config",
];

#[derive(Default, Debug)]
struct Tally {
    reads: usize,
    foreign: usize,
    wrong_own: usize,
    failures: Vec<String>,
}

impl Tally {
    fn check(&mut self, what: &str, got: &[String], want: &[String]) {
        self.reads += 1;
        let foreign = got.iter().filter(|r| !want.contains(r)).count();
        if foreign > 0 {
            self.foreign += 1;
        }
        if got != want {
            self.wrong_own += usize::from(foreign == 0);
            if self.failures.len() < 10 {
                self.failures
                    .push(format!("{what}: got {got:?}, want {want:?}"));
            }
        }
    }
}

async fn read_docs(f: &Fixture, s: &Tenant, tally: &mut Tally, what: &str) {
    let want = expected_docs(s.current);
    let simple = format!("select body from {} order by id", f.docs);
    let extended = format!("select body from {} where id > $1 order by id", f.docs);
    // Twice each, so the second can come from the cache.
    for _ in 0..2 {
        let got = rows(&s.client.simple_query(&simple).await.unwrap());
        tally.check(&format!("{what} simple"), &got, &want);
        let got: Vec<String> = s
            .client
            .query(&extended, &[&0i32])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        tally.check(&format!("{what} extended"), &got, &want);
    }
    // Inside a transaction: the primary, whose connections the DO blocks and functions used.
    let got = rows(
        &s.client
            .simple_query(&format!("begin; {simple}; commit"))
            .await
            .unwrap(),
    );
    tally.check(&format!("{what} in transaction"), &got, &want);
}

async fn connect_tenant(p: &TestProxy, startup: Option<i32>) -> Tenant {
    let url = match startup {
        Some(t) => format!("{}?options=-c%20app.tenant_id%3D{t}", p.url("app", "app")),
        None => p.url("app", "app"),
    };
    Tenant {
        client: connect(&url).await,
        startup,
        current: startup,
    }
}

/// Sets session `s` to tenant `t` the `way` says; SET LOCAL reads inside its transaction.
async fn set_tenant(
    p: &TestProxy,
    f: &Fixture,
    s: &mut Tenant,
    way: &str,
    t: i32,
    tally: &mut Tally,
) {
    let c = &s.client;
    match way {
        "set" => c
            .simple_query(&format!("set app.tenant_id = '{t}'"))
            .await
            .map(drop),
        "set session" => c
            .simple_query(&format!("set session app.tenant_id to {t}"))
            .await
            .map(drop),
        "set in transaction" => {
            c.simple_query("begin").await.unwrap();
            c.simple_query(&format!("set app.tenant_id = '{t}'"))
                .await
                .unwrap();
            c.simple_query("commit").await.map(drop)
        }
        "set local" => {
            c.simple_query("begin").await.unwrap();
            c.simple_query(&format!("set local app.tenant_id = '{t}'"))
                .await
                .unwrap();
            let got = rows(
                &c.simple_query(&format!("select body from {} order by id", f.docs))
                    .await
                    .unwrap(),
            );
            tally.check("set local, inside", &got, &expected_docs(Some(t)));
            // Undone at the transaction's end: the tenant stays what it was.
            c.simple_query("commit").await.unwrap();
            return;
        }
        "multi-statement" => c
            .simple_query(&format!("set app.tenant_id = '{t}'; select 1"))
            .await
            .map(drop),
        "literal set_config" => c
            .simple_query(&format!("select set_config('app.tenant_id', '{t}', false)"))
            .await
            .map(drop),
        "plpgsql set_config" => c
            .simple_query(&format!("select {}({t})", f.setter))
            .await
            .map(drop),
        "do block" => c
            .simple_query(&format!(
                "do $$ begin perform set_config('app.tenant_id', '{t}', false); end $$"
            ))
            .await
            .map(drop),
        "startup options" => {
            *s = connect_tenant(p, Some(t)).await;
            return;
        }
        "extended set_config" => c
            .query(
                "select set_config('app.tenant_id', $1, false)",
                &[&t.to_string()],
            )
            .await
            .map(drop),
        other => panic!("unknown way {other}"),
    }
    .unwrap();
    s.current = Some(t);
}

async fn interleaved_rounds(cache: bool) {
    let p = TestProxy::start_with(&config(cache)).await;
    let f = Fixture::create().await;
    let mut sessions = vec![
        connect_tenant(&p, None).await,
        connect_tenant(&p, None).await,
        connect_tenant(&p, Some(3)).await,
    ];
    let mut tally = Tally::default();
    let rounds = 12;
    for round in 0..rounds {
        for (i, s) in sessions.iter_mut().enumerate() {
            // The third session stays on no tenant (or its startup one) every other round.
            if i == 2 && round % 2 == 0 {
                continue;
            }
            let way = WAYS[(round * 3 + i * 4) % WAYS.len()];
            let t = TENANTS[(round + i) % TENANTS.len()];
            set_tenant(&p, &f, s, way, t, &mut tally).await;
        }
        // Interleaved: each session reads after the others changed tenant.
        for step in 0..2 {
            for (i, s) in sessions.iter().enumerate() {
                read_docs(
                    &f,
                    s,
                    &mut tally,
                    &format!("round {round} step {step} session {i}"),
                )
                .await;
            }
        }
        for s in &mut sessions {
            let reset = if round % 2 == 0 {
                "reset app.tenant_id"
            } else {
                "reset all"
            };
            s.client.simple_query(reset).await.unwrap();
            s.current = s.startup;
        }
        for (i, s) in sessions.iter().enumerate() {
            read_docs(
                &f,
                s,
                &mut tally,
                &format!("round {round} after reset session {i}"),
            )
            .await;
        }
    }
    let hits = cache_stats(&p.handle.shared).hits;
    drop(sessions);
    f.drop().await;
    assert!(tally.reads >= 3 * rounds * 10, "{tally:?}");
    assert_eq!(
        (tally.foreign, tally.wrong_own),
        (0, 0),
        "cache {cache}: foreign reads / wrong own reads out of {}: {:#?}",
        tally.reads,
        tally.failures
    );
    if cache {
        assert!(hits > 0, "the cache answered nothing");
    }
    eprintln!(
        "cache {cache}: {} reads, 0 foreign, {hits} cache hits",
        tally.reads
    );
}

#[tokio::test]
async fn tenants_by_setting_cache_off() {
    interleaved_rounds(false).await;
}

#[tokio::test]
async fn tenants_by_setting_cache_on() {
    interleaved_rounds(true).await;
}

/// Row-level security by current_user: the role set by SET ROLE, SET LOCAL ROLE, set_config
/// and a DO block, reset by RESET ROLE and SET ROLE NONE.
async fn by_current_user(cache: bool) {
    let p = TestProxy::start_with(&config(cache)).await;
    let f = Fixture::create().await;
    let [ra, rb] = &f.roles;
    let want = |role: &str| -> Vec<String> {
        match role {
            r if r == ra => vec!["a1".into(), "a2".into()],
            r if r == rb => vec!["b1".into()],
            _ => vec!["app1".into()],
        }
    };
    let sessions = [p.connect().await, p.connect().await, p.connect().await];
    let mut roles = ["app".to_owned(), "app".to_owned(), "app".to_owned()];
    let mut tally = Tally::default();
    let q = format!("select body from {} order by id", f.owned);
    for round in 0..10 {
        for (i, c) in sessions.iter().enumerate() {
            let role = if (round + i) % 2 == 0 { ra } else { rb };
            match (round + i) % 5 {
                0 => c.simple_query(&format!("set role {role}")).await.map(drop),
                1 => c
                    .simple_query(&format!("select set_config('role', '{role}', false)"))
                    .await
                    .map(drop),
                2 => c
                    .simple_query(&format!("do $$ begin execute 'set role {role}'; end $$"))
                    .await
                    .map(drop),
                3 => {
                    c.simple_query("begin").await.unwrap();
                    c.simple_query(&format!("set local role {role}"))
                        .await
                        .unwrap();
                    let got = rows(&c.simple_query(&q).await.unwrap());
                    tally.check("set local role", &got, &want(role));
                    c.simple_query("commit").await.unwrap();
                    continue;
                }
                _ => c
                    .simple_query(&format!("set session role {role}"))
                    .await
                    .map(drop),
            }
            .unwrap();
            roles[i] = role.clone();
        }
        for _ in 0..2 {
            for (i, c) in sessions.iter().enumerate() {
                for _ in 0..2 {
                    let got = rows(&c.simple_query(&q).await.unwrap());
                    tally.check(
                        &format!("round {round} session {i}"),
                        &got,
                        &want(&roles[i]),
                    );
                }
            }
        }
        for (i, c) in sessions.iter().enumerate() {
            let reset = if round % 2 == 0 {
                "reset role"
            } else {
                "set role none"
            };
            c.simple_query(reset).await.unwrap();
            roles[i] = "app".into();
            let got = rows(&c.simple_query(&q).await.unwrap());
            tally.check(&format!("round {round} after {reset}"), &got, &want("app"));
        }
    }
    drop(sessions);
    f.drop().await;
    assert_eq!(
        (tally.foreign, tally.wrong_own),
        (0, 0),
        "cache {cache}: out of {}: {:#?}",
        tally.reads,
        tally.failures
    );
}

#[tokio::test]
async fn tenants_by_current_user_cache_off() {
    by_current_user(false).await;
}

#[tokio::test]
async fn tenants_by_current_user_cache_on() {
    by_current_user(true).await;
}
