//! Limits no single client can exhaust: idle timeouts, hostile bytes beside a pgbench run, message size, and reload.

mod common;

use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn pg_bin(name: &str) -> String {
    let dir = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into());
    format!("{dir}/{name}")
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_default()
}

/// Reads until the proxy closes the socket (or `limit` passes) and returns what it sent.
async fn until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (got, closed)
}

/// The SQLSTATE of the first ErrorResponse in `bytes`.
fn error_code(bytes: &[u8]) -> Option<String> {
    let start = bytes.iter().position(|&b| b == b'E')?;
    let body = bytes.get(start + 5..)?;
    let mut fields = body.split(|&b| b == 0);
    fields
        .find(|f| f.first() == Some(&b'C'))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
}

#[tokio::test]
async fn idle_client_is_closed_with_57p05() {
    let proxy = TestProxy::start_with_text(&config_text("client_idle_timeout_ms = 300")).await;
    let (client, conn) = tokio_postgres::connect(&proxy.url("app", "app"), tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    client.simple_query("select 1").await.unwrap();
    let started = Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("closed within 5 s")
        .unwrap();
    let e = end.expect_err("the proxy ends the connection with an error");
    assert_eq!(sqlstate(&e), "57P05", "{e}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    proxy.handle.shutdown().await;
}

#[tokio::test]
async fn idle_in_transaction_is_rolled_back_and_frees_the_server() {
    // One primary connection: if the idle transaction kept it, the second client would time out.
    let proxy = TestProxy::start_with_text(&config_text(
        "idle_in_transaction_timeout_ms = 300\n[pool]\nprimary_size = 1\nacquire_timeout_ms = 3000",
    ))
    .await;
    let table = unique("lim_idle_tx");
    let admin = superuser().await;
    admin
        .batch_execute(&format!(
            "create table {table}(id int); grant all on {table} to app"
        ))
        .await
        .unwrap();
    let (idle, conn) = tokio_postgres::connect(&proxy.url("app", "app"), tokio_postgres::NoTls)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    idle.batch_execute(&format!("begin; insert into {table} values (1)"))
        .await
        .unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("closed within 5 s")
        .unwrap();
    assert_eq!(sqlstate(&end.expect_err("error")), "25P03");
    let other = proxy.connect().await;
    other
        .batch_execute(&format!("insert into {table} values (2)"))
        .await
        .expect("the primary connection was given back");
    let ids: Vec<i32> = admin
        .query(&format!("select id from {table} order by id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![2], "the idle transaction was rolled back");
    admin
        .batch_execute(&format!("drop table {table}"))
        .await
        .unwrap();
    proxy.handle.shutdown().await;
}

#[tokio::test]
async fn oversized_message_is_refused_before_it_is_read() {
    let proxy = TestProxy::start_with_text(&config_text("max_message_bytes = 4096")).await;
    let mut s = raw_authenticated(proxy.port(), "app", "app").await;
    // A header claiming 1 GiB; nothing follows. The proxy must answer at once, not wait for it.
    s.write_all(&[b'Q', 0x40, 0, 0, 0]).await.unwrap();
    let (got, closed) = until_closed(&mut s, Duration::from_secs(3)).await;
    assert!(closed, "the proxy closes the connection");
    assert_eq!(error_code(&got).as_deref(), Some("08P01"));
    // Just over the limit, sent whole.
    let mut s = raw_authenticated(proxy.port(), "app", "app").await;
    let sql = format!("select '{}'\0", "x".repeat(5000));
    let mut msg = vec![b'Q'];
    msg.extend_from_slice(&((sql.len() + 4) as i32).to_be_bytes());
    msg.extend_from_slice(sql.as_bytes());
    let _ = s.write_all(&msg).await;
    let (got, closed) = until_closed(&mut s, Duration::from_secs(3)).await;
    assert!(closed);
    assert_eq!(error_code(&got).as_deref(), Some("08P01"));
    // Under the limit still works.
    let c = proxy.connect().await;
    c.simple_query(&format!("select '{}'", "x".repeat(3000)))
        .await
        .unwrap();
    proxy.handle.shutdown().await;
}

/// Garbage, absurd lengths and silent sockets, many of each, while pgbench runs through the same proxy.
#[tokio::test]
async fn hostile_clients_do_not_disturb_pgbench() {
    // The harness sets startup_timeout_ms = 3000.
    let proxy =
        TestProxy::start_with_text(&config_text("[pool]\nprimary_size = 4\nreplica_size = 4"))
            .await;
    let port = proxy.port();
    let schema = unique("lim_pgb");
    superuser()
        .await
        .batch_execute(&format!("create schema {schema} authorization app"))
        .await
        .unwrap();
    let options = format!("-c search_path={schema}");
    let pgbench = |args: &'static [&'static str]| {
        let options = options.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(pg_bin("pgbench"))
                .args(args)
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    "app",
                    "app",
                ])
                .env("PGPASSWORD", "app")
                .env("PGOPTIONS", options)
                .output()
                .unwrap()
        })
    };
    let init = pgbench(&["-i", "-s", "1", "-q"]).await.unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    wait_for_replica().await;
    let run = pgbench(&["-n", "-c", "4", "-j", "2", "-T", "6"]);

    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut attackers = Vec::new();
    for i in 0..30u32 {
        attackers.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let started = Instant::now();
            match i % 3 {
                // Garbage instead of a startup packet.
                0 => {
                    let junk: Vec<u8> = (0..2000u32).map(|k| (k * 7919 + i) as u8).collect();
                    let _ = s.write_all(&junk).await;
                }
                // A startup packet claiming 2 GiB.
                1 => {
                    let _ = s.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]).await;
                }
                // Nothing at all: the startup timeout must close it.
                _ => {}
            }
            let (_, closed) = until_closed(&mut s, Duration::from_secs(6)).await;
            (i % 3, closed, started.elapsed())
        }));
        // A logged-in client that then claims a huge message.
        if i % 10 == 0 {
            attackers.push(tokio::spawn(async move {
                let mut s = raw_authenticated(port, "app", "app").await;
                let started = Instant::now();
                let _ = s.write_all(&[b'Q', 0x7f, 0xff, 0xff, 0xff]).await;
                let (got, closed) = until_closed(&mut s, Duration::from_secs(5)).await;
                assert_eq!(error_code(&got).as_deref(), Some("08P01"));
                (3, closed, started.elapsed())
            }));
        }
    }
    for a in attackers {
        let (kind, closed, took) = a.await.unwrap();
        assert!(closed, "attacker of kind {kind} was not closed");
        if kind == 2 {
            assert!(
                took >= Duration::from_millis(2900) && took < Duration::from_millis(4900),
                "silent client closed after {took:?}"
            );
        }
    }
    let out = run.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("number of failed transactions: 0"),
        "{stdout}"
    );
    superuser()
        .await
        .batch_execute(&format!("drop schema {schema} cascade"))
        .await
        .unwrap();
    proxy.handle.shutdown().await;
}

#[tokio::test]
async fn admin_reload_applies_pool_size_and_keeps_running_config_on_error() {
    let dir = std::env::temp_dir().join(unique("lim_reload"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("proxy.toml");
    let text = |size: usize| config_text(&format!("[pool]\nprimary_size = {size}"));
    std::fs::write(&path, text(2)).unwrap();
    let proxy = TestProxy::start_with_text(&text(2)).await;
    *proxy.handle.shared.config_source.lock() = Some(pgsplit::reload::ConfigSource {
        path: path.clone(),
        env: pgsplit::config::EnvOverrides {
            primary: Some(primary_addr()),
            replicas: Some(replica_addrs()),
            ..Default::default()
        },
    });
    let kept = proxy.connect().await;
    kept.simple_query("select 1").await.unwrap();
    let admin = connect(&format!(
        "postgres://app:app@127.0.0.1:{}/pgsplit",
        proxy.port()
    ))
    .await;
    let primary_max = |rows: Vec<tokio_postgres::SimpleQueryMessage>| {
        rows.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) if r.get("role") == Some("primary") => {
                    r.get("max_size").map(str::to_string)
                }
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        primary_max(admin.simple_query("SHOW POOLS").await.unwrap()),
        vec!["2"]
    );

    std::fs::write(&path, text(5)).unwrap();
    let rows = admin.simple_query("RELOAD").await.unwrap();
    let applied = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get("applied").map(str::to_string),
        _ => None,
    });
    assert_eq!(applied.as_deref(), Some("pool.primary_size"));
    assert_eq!(
        primary_max(admin.simple_query("SHOW POOLS").await.unwrap()),
        vec!["5"]
    );
    // Five transactions at once now each hold their own server connection.
    let mut held = Vec::new();
    let mut pids = std::collections::HashSet::new();
    for _ in 0..5 {
        let c = proxy.connect().await;
        c.batch_execute("begin").await.unwrap();
        let pid: i32 = c
            .query_one("select pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        pids.insert(pid);
        held.push(c);
    }
    assert_eq!(pids.len(), 5);
    for c in &held {
        c.batch_execute("commit").await.unwrap();
    }

    std::fs::write(&path, "this is = = not toml").unwrap();
    let message = |e: tokio_postgres::Error| {
        let d = e.as_db_error();
        let code = d.map(|d| d.code().code().to_string()).unwrap_or_default();
        // config_file_error, as PostgreSQL's own reload of a bad file.
        assert_eq!(code, "F0000", "{e}");
        d.map(|d| d.message().to_string()).unwrap_or_default()
    };
    let e = message(admin.simple_query("RELOAD").await.unwrap_err());
    assert!(e.contains("rejected"), "{e}");
    std::fs::write(&path, text(0)).unwrap();
    let e = message(admin.simple_query("RELOAD").await.unwrap_err());
    assert!(e.contains("pool.primary_size"), "{e}");
    assert_eq!(
        primary_max(admin.simple_query("SHOW POOLS").await.unwrap()),
        vec!["5"],
        "a rejected file changes nothing"
    );
    kept.simple_query("select 1")
        .await
        .expect("the client connected before the reloads still works");
    drop(admin);
    proxy.handle.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn one_address_cannot_take_every_client_slot() {
    let proxy = TestProxy::start_with_text(&config_text(
        "max_client_connections = 100\nmax_client_connections_per_ip = 3",
    ))
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(proxy.connect().await);
    }
    let e = tokio_postgres::connect(&proxy.url("app", "app"), tokio_postgres::NoTls)
        .await
        .err()
        .expect("a fourth client from 127.0.0.1 is refused");
    assert_eq!(sqlstate(&e), "53300");
    // A place frees up when one of them leaves.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let c = proxy.connect().await;
    c.simple_query("select 1").await.unwrap();
    proxy.handle.shutdown().await;
}
