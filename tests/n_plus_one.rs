//! N+1 detection through the real proxy: the classic loop, its one-query fix, repeated identical
//! queries, a loop spread over connections by one trace, and pgbench's independent lookups.

mod common;
use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use tokio_postgres::{AsyncMessage, Client, NoTls};

const NOTIFY: &str = "[n_plus_one]\nnotify_client = true\n";

/// Parents (50 rows) and three notes per parent, readable on the replica.
async fn tables() -> (String, String) {
    let parents = unique("n1_parents");
    let notes = unique("n1_notes");
    superuser()
        .await
        .batch_execute(&format!(
            "create table {parents} (id int primary key, name text);
             insert into {parents} select g, 'p' || g from generate_series(1, 50) g;
             create table {notes} (id serial primary key, parent_id int not null, body text);
             insert into {notes} (parent_id, body) select g % 50 + 1, 'n' || g from generate_series(1, 150) g;
             grant all on {parents}, {notes} to app;"
        ))
        .await
        .unwrap();
    wait_for_replica().await;
    (parents, notes)
}

async fn drop_tables(parents: &str, notes: &str) {
    superuser()
        .await
        .batch_execute(&format!("drop table {parents}, {notes}"))
        .await
        .unwrap();
}

/// A client whose notices arrive on the returned channel.
async fn connect_with_notices(
    url: &str,
) -> (
    Client,
    tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::error::DbError>,
) {
    let (client, mut conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(m) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            match m {
                Ok(AsyncMessage::Notice(n)) => {
                    let _ = tx.send(n);
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    (client, rx)
}

async fn stats(proxy: &TestProxy) -> Value {
    let (status, body) = http(proxy.handle.stats_addr, "GET", "/stats", None).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn findings<'a>(stats: &'a Value, kind: &str) -> Vec<&'a Value> {
    stats["n_plus_one"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == kind)
        .collect()
}

#[tokio::test]
async fn classic_loop_is_reported_once_with_its_parent_and_the_client_is_told() {
    let (parents, notes) = tables().await;
    let proxy = TestProxy::start_with(NOTIFY).await;
    let (client, mut notices) = connect_with_notices(&proxy.url("app", "app")).await;
    let ids: Vec<i32> = client
        .query(&format!("select id from {parents} order by id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids.len(), 50);
    let child = format!("select body from {notes} where parent_id = $1");
    for id in &ids {
        let rows = client.query(&child, &[id]).await.unwrap();
        assert_eq!(rows.len(), 3);
    }

    let notice = tokio::time::timeout(Duration::from_secs(5), notices.recv())
        .await
        .expect("a notice within 5 s")
        .expect("a notice");
    assert_eq!(notice.severity(), "WARNING");
    assert_eq!(notice.code().code(), "01000");
    assert!(notice.message().contains("N+1"), "{}", notice.message());
    assert!(notice.message().contains(&notes), "{}", notice.message());
    assert!(
        notice.message().contains("ran 10 times"),
        "{}",
        notice.message()
    );
    assert!(!notice.message().contains('\n'));
    // One notice per burst, not one per query.
    assert!(notices.try_recv().is_err());

    let s = stats(&proxy).await;
    let all = s["n_plus_one"].as_array().unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    let f = &all[0];
    assert_eq!(f["kind"], "n_plus_one");
    assert_eq!(f["occurrences"], 1);
    assert!(f["last_count"].as_u64().unwrap() >= 50, "{f}");
    assert!(f["max_count"].as_u64().unwrap() >= 50, "{f}");
    assert!(f["query"].as_str().unwrap().contains(&notes));
    assert!(f["query"].as_str().unwrap().contains("$1"));
    assert!(
        f["parent_query"].as_str().unwrap().contains(&parents),
        "{f}"
    );
    assert_eq!(f["parent_fingerprint"].as_str().unwrap().len(), 16);
    assert!(f["total_ms"].as_f64().unwrap() > 0.0);
    assert!(f["suggestion"]
        .as_str()
        .unwrap()
        .contains("parent_id = ANY($1)"));
    assert_eq!(f["database"], "app");
    assert_eq!(s["n_plus_one_bursts"]["n_plus_one"], 1);
    assert_eq!(s["targets"]["n_plus_one_bursts"]["actual"], 1.0);
    assert_eq!(s["targets"]["n_plus_one_bursts"]["status"], "missed");

    // The same finding in the console and in /metrics.
    let table = pgsplit::admin::console::execute(&proxy.handle.shared, "SHOW N_PLUS_ONE")
        .unwrap()
        .unwrap();
    assert_eq!(table.rows.len(), 1);
    let col = |name: &str| table.columns.iter().position(|c| *c == name).unwrap();
    assert_eq!(table.rows[0][col("kind")].as_deref(), Some("n_plus_one"));
    assert_eq!(table.rows[0][col("occurrences")].as_deref(), Some("1"));
    assert!(table.rows[0][col("parent_query")]
        .as_deref()
        .unwrap()
        .contains(&parents));
    let (_, metrics) = http(proxy.handle.stats_addr, "GET", "/metrics", None).await;
    assert!(
        metrics.contains("pgsplit_n_plus_one_bursts_total{kind=\"n_plus_one\"} 1\n"),
        "{metrics}"
    );
    drop(client);
    proxy.handle.shutdown().await;
    drop_tables(&parents, &notes).await;
}

#[tokio::test]
async fn one_any_query_is_not_reported() {
    let (parents, notes) = tables().await;
    let proxy = TestProxy::start_with(NOTIFY).await;
    let (client, mut notices) = connect_with_notices(&proxy.url("app", "app")).await;
    let ids: Vec<i32> = client
        .query(&format!("select id from {parents} order by id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let rows = client
        .query(
            &format!("select parent_id, body from {notes} where parent_id = any($1)"),
            &[&ids],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 150);
    // A round trip after, so a notice would have arrived before its answer.
    client.simple_query("select 1").await.unwrap();
    assert!(notices.try_recv().is_err());
    let s = stats(&proxy).await;
    assert_eq!(s["n_plus_one"], serde_json::json!([]));
    assert_eq!(s["targets"]["n_plus_one_bursts"]["status"], "met");
    drop(client);
    proxy.handle.shutdown().await;
    drop_tables(&parents, &notes).await;
}

#[tokio::test]
async fn identical_selects_are_a_repeated_query_not_n_plus_one() {
    let (parents, notes) = tables().await;
    let proxy = TestProxy::start_with(NOTIFY).await;
    let (client, mut notices) = connect_with_notices(&proxy.url("app", "app")).await;
    client
        .simple_query(&format!("select id from {parents}"))
        .await
        .unwrap();
    // The simple protocol: the literal is in the text, and it is the same each time.
    for _ in 0..50 {
        client
            .simple_query(&format!("select body from {notes} where parent_id = 7"))
            .await
            .unwrap();
    }
    client.simple_query("select 1").await.unwrap();
    let notice = notices.try_recv().expect("a notice");
    assert!(
        notice.message().contains("repeated identical query"),
        "{}",
        notice.message()
    );
    assert!(notices.try_recv().is_err());
    let s = stats(&proxy).await;
    assert!(findings(&s, "n_plus_one").is_empty(), "{}", s["n_plus_one"]);
    let rep = findings(&s, "repeated_identical");
    assert_eq!(rep.len(), 1, "{}", s["n_plus_one"]);
    assert!(rep[0]["query"].as_str().unwrap().contains(&notes));
    assert!(rep[0]["last_count"].as_u64().unwrap() >= 50);
    assert_eq!(s["n_plus_one_bursts"]["repeated_identical"], 1);
    assert_eq!(s["targets"]["n_plus_one_bursts"]["actual"], 0.0);
    drop(client);
    proxy.handle.shutdown().await;
    drop_tables(&parents, &notes).await;
}

#[tokio::test]
async fn a_loop_spread_over_five_connections_is_one_trace() {
    let (parents, notes) = tables().await;
    let proxy = TestProxy::start().await;
    let trace = "/*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/";
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(proxy.connect().await);
    }
    let ids: Vec<i32> = clients[0]
        .query(
            &format!("select id from {parents} order by id {trace}"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    // Five children per connection: below the threshold in any one session.
    let child = format!("select body from {notes} where parent_id = $1 {trace}");
    for (i, id) in ids.iter().take(25).enumerate() {
        clients[i % 5].query(&child, &[id]).await.unwrap();
    }
    // Without the trace, the same spread loop is invisible: five per session.
    let untraced = format!("select name from {parents} where id = $1");
    clients[0]
        .query(&format!("select id from {notes}"), &[])
        .await
        .unwrap();
    for (i, id) in ids.iter().take(25).enumerate() {
        clients[i % 5].query(&untraced, &[id]).await.unwrap();
    }
    let s = stats(&proxy).await;
    let f = findings(&s, "n_plus_one");
    assert_eq!(f.len(), 1, "{}", s["n_plus_one"]);
    assert!(f[0]["query"].as_str().unwrap().contains(&notes));
    assert!(!f[0]["query"].as_str().unwrap().contains("traceparent"));
    assert!(f[0]["parent_query"].as_str().unwrap().contains(&parents));
    assert!(f[0]["last_count"].as_u64().unwrap() >= 25, "{}", f[0]);
    assert_eq!(f[0]["occurrences"], 1);
    drop(clients);
    proxy.handle.shutdown().await;
    drop_tables(&parents, &notes).await;
}

fn pg_bin(name: &str) -> String {
    let dir = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into());
    format!("{dir}/{name}")
}

#[tokio::test]
async fn pgbench_random_lookups_are_no_n_plus_one() {
    let proxy = TestProxy::start_with("[pool]\nprimary_size = 10\nreplica_size = 10\n").await;
    let port = proxy.port().to_string();
    let schema = unique("pgb_n1");
    superuser()
        .await
        .batch_execute(&format!("create schema {schema} authorization app"))
        .await
        .unwrap();
    let options = format!("-c search_path={schema}");
    let pgbench = |args: Vec<&'static str>| {
        let port = port.clone();
        let options = options.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(pg_bin("pgbench"))
                .args(args)
                .args(["-h", "127.0.0.1", "-p", &port, "-U", "app", "app"])
                .env("PGPASSWORD", "app")
                .env("PGOPTIONS", options)
                .output()
                .unwrap()
        })
    };
    let init = pgbench(vec!["-i", "-s", "1", "-q"]).await.unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    wait_for_replica().await;
    pgsplit::admin::snapshot::reset(&proxy.handle.shared);
    for mode in ["simple", "extended", "prepared"] {
        let out = pgbench(vec![
            "-n", "-S", "-c", "10", "-j", "2", "-t", "300", "-M", mode,
        ])
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("number of transactions actually processed: 3000/3000"),
            "{mode}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let s = stats(&proxy).await;
    assert_eq!(s["n_plus_one"], serde_json::json!([]), "false positive");
    assert_eq!(s["targets"]["n_plus_one_bursts"]["actual"], 0.0);
    assert_eq!(s["targets"]["n_plus_one_bursts"]["status"], "met");
    // The lookups did run through the detector's path: 9000 selects were counted.
    let calls: u64 = s["queries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["query"].as_str().unwrap().contains("pgbench_accounts"))
        .map(|q| q["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(calls, 9000);
    proxy.handle.shutdown().await;
    superuser()
        .await
        .batch_execute(&format!("drop schema {schema} cascade"))
        .await
        .unwrap();
}

/// The seed application's tables (migrations/000_schema.sql) in a schema of their own, with a
/// little data: active and other leads, listings in four cities (a column whose values repeat),
/// conversations per contact and interactions per lead.
async fn seeded_schema() -> String {
    let schema = unique("n1_planted");
    let ddl = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/migrations/000_schema.sql"
    ))
    .unwrap();
    superuser()
        .await
        .batch_execute(&format!(
            "create schema {schema};
             set search_path = {schema};
             {ddl};
             insert into leads (contact_id, name, status, ml_score, created_at)
               select 'c' || g, 'lead ' || g, case when g % 2 = 0 then 'active' else 'new' end,
                      (g % 100) / 10.0, now() - g * interval '1 minute'
               from generate_series(1, 200) g;
             insert into properties (address, city, state, zip, price, bedrooms, bathrooms, property_type)
               select g || ' Main St', (array['Austin', 'Dallas', 'Houston', 'El Paso'])[g % 4 + 1],
                      'TX', '7' || lpad(g::text, 4, '0'), 100000 + g * 1000, g % 5, 1 + g % 3, 'Condo'
               from generate_series(1, 300) g;
             insert into conversations (tenant_id, contact_id, channel)
               select 't1', 'c' || (g % 200 + 1), 'sms' from generate_series(1, 400) g;
             insert into property_interactions (lead_id, property_id, interaction_type)
               select g % 200 + 1, g % 300 + 1, 'view' from generate_series(1, 600) g;
             grant usage on schema {schema} to app;
             grant select on all tables in schema {schema} to app;"
        ))
        .await
        .unwrap();
    wait_for_replica().await;
    schema
}

#[tokio::test]
async fn the_planted_workload_reports_exactly_its_loops_with_their_columns_and_fixes() {
    let schema = seeded_schema().await;
    let proxy = TestProxy::start().await;
    let rounds = 3;
    let args = pgsplit::demo::WorkloadArgs {
        database_url: format!(
            "{}?options=-c%20search_path%3D{schema}",
            proxy.url("app", "app")
        ),
        duration: 1,
        clients: pgsplit::demo::planted::POOL,
        stats_url: format!("http://{}", proxy.handle.stats_addr),
        token: None,
        seed: 3,
        mode: pgsplit::demo::Mode::Planted,
        rounds,
    };
    pgsplit::demo::run(&args).await.expect("planted workload");
    let s = stats(&proxy).await;
    let all = s["n_plus_one"].as_array().unwrap();
    for l in pgsplit::demo::planted::LOOPS {
        let found: Vec<&Value> = all
            .iter()
            .filter(|f| f["query"].as_str().unwrap().contains(l.child))
            .collect();
        assert_eq!(found.len(), 1, "{}: {all:#?}", l.name);
        let f = found[0];
        assert_eq!(f["kind"], "n_plus_one", "{}: {f}", l.name);
        assert_eq!(f["flow"], l.flow, "{}: {f}", l.name);
        assert_eq!(
            f["occurrences"], rounds,
            "one burst per round: {}: {f}",
            l.name
        );
        let fix = f["suggestion"].as_str().unwrap();
        assert!(fix.contains(l.fix), "{}: {fix}", l.name);
        assert!(fix.starts_with(l.flow), "{}: {fix}", l.name);
    }
    // Nothing else: the independent lookups after list queries, the interleaved counts and
    // the parents themselves are no finding of any kind.
    assert_eq!(all.len(), pgsplit::demo::planted::LOOPS.len(), "{all:#?}");
    assert_eq!(s["n_plus_one_bursts"]["n_plus_one"], 3 * rounds);
    // The report says the same: the three loops, each with its flow and fix, and nothing else.
    let mut out = Vec::new();
    pgsplit::report::run_to(
        &pgsplit::report::ReportArgs {
            url: args.stats_url.clone(),
            token: None,
            limit: 15,
            export: None,
        },
        &mut out,
    )
    .await
    .unwrap();
    let report = String::from_utf8(out).unwrap();
    let section: String = report
        .lines()
        .skip_while(|l| !l.starts_with("N+1 bursts"))
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    let entries = section
        .lines()
        .filter(|l| l.trim_start().starts_with("query: "))
        .count();
    assert_eq!(entries, 3, "{section}");
    assert_eq!(section.matches(" n_plus_one ").count(), 3, "{section}");
    for l in pgsplit::demo::planted::LOOPS {
        assert!(section.contains(l.child), "{}: {section}", l.name);
        assert!(
            section.contains(&format!("flow:  {}\n", l.flow)),
            "{}: {section}",
            l.name
        );
        assert!(
            section.contains(&format!("fix:   {}:", l.flow)),
            "{}: {section}",
            l.name
        );
    }
    proxy.handle.shutdown().await;
    superuser()
        .await
        .batch_execute(&format!("drop schema {schema} cascade"))
        .await
        .unwrap();
}
