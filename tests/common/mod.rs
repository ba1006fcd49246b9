//! Test harness: a pgsplit started in-process on port 0 in front of the local cluster from `scripts/cluster.sh`.
#![allow(dead_code)]

pub mod cache;
pub mod own_cluster;
pub mod wire;

use pgsplit::config::{Config, EnvOverrides};
use std::sync::Arc;
use tokio_postgres::{Client, NoTls};

pub fn primary_addr() -> String {
    std::env::var("PGSPLIT_PRIMARY").unwrap_or_else(|_| "127.0.0.1:15432".into())
}

pub fn replica_addrs() -> String {
    std::env::var("PGSPLIT_REPLICAS").unwrap_or_else(|_| "127.0.0.1:15433".into())
}

pub fn superuser_url() -> String {
    let p = primary_addr();
    format!("postgres://postgres:postgres@{p}/app")
}

/// The TOML for a test proxy; `extra` is appended (e.g. a `[pool]` table).
pub fn config_text(pool: &str) -> String {
    config_text_with_stats(pool, "")
}

pub fn config_text_with_stats(pool: &str, stats: &str) -> String {
    // app_trust logs in to the servers without a password (trust); clients still need one.
    let verifier = postgres_protocol::password::scram_sha_256(b"app_trust");
    format!(
        r#"
listen = "127.0.0.1:0"
startup_timeout_ms = 3000
# Two data threads whatever the machine, so every test also crosses workers (pool hand-overs).
workers = 2
{pool}

[[users]]
name = "app"
password = "app"
admin = true

[[users]]
name = "app_md5"
password = "app_md5"
auth = "md5"

[[users]]
name = "app_trust"
scram_verifier = "{verifier}"

[[databases]]
name = "app"

[stats]
listen = "127.0.0.1:0"
{stats}
"#
    )
}

pub struct TestProxy {
    pub handle: pgsplit::ProxyHandle,
}

impl TestProxy {
    pub async fn start() -> TestProxy {
        TestProxy::start_with("").await
    }

    pub async fn start_with(pool: &str) -> TestProxy {
        TestProxy::start_with_text(&config_text(pool)).await
    }

    pub async fn start_with_stats(stats: &str) -> TestProxy {
        TestProxy::start_with_text(&config_text_with_stats("", stats)).await
    }

    pub async fn start_with_text(text: &str) -> TestProxy {
        // RUST_LOG=debug shows the proxy's logs in a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let env = EnvOverrides {
            primary: Some(primary_addr()),
            replicas: Some(replica_addrs()),
            ..Default::default()
        };
        let config = Config::from_toml(text, &env).expect("test config");
        let listener = pgsplit::bind(config.listen, 1024).expect("bind");
        let handle = pgsplit::start(Arc::new(config), listener)
            .await
            .expect("start proxy");
        TestProxy { handle }
    }

    pub fn port(&self) -> u16 {
        self.handle.addr.port()
    }

    pub fn url(&self, user: &str, password: &str) -> String {
        format!("postgres://{user}:{password}@127.0.0.1:{}/app", self.port())
    }

    pub async fn connect(&self) -> Client {
        connect(&self.url("app", "app")).await
    }
}

pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

pub async fn superuser() -> Client {
    connect(&superuser_url()).await
}

/// The superuser on the first replica, bypassing the proxy.
pub async fn replica_superuser() -> Client {
    let addr = replica_addrs();
    let first = addr.split(',').next().unwrap_or("127.0.0.1:15433");
    connect(&format!("postgres://postgres:postgres@{first}/app")).await
}

/// Runs psql against the proxy and returns its output.
pub async fn psql(
    port: u16,
    user: &str,
    password: &str,
    database: &str,
    args: &[&str],
) -> std::process::Output {
    tokio::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            user,
            "-d",
            database,
            "-X",
        ])
        .args(args)
        .env("PGPASSWORD", password)
        .output()
        .await
        .expect("psql")
}

/// A table name unique to this test run, so tests can run in parallel.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos % 100_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Waits until the replica has replayed everything the primary has written so far.
///
/// The insert position, not the write position: the test cluster runs with
/// synchronous_commit = off, so a commit may be inserted but not yet written.
pub async fn wait_for_replica() {
    let primary = superuser().await;
    let lsn: String = primary
        .query_one("select pg_current_wal_insert_lsn()::text", &[])
        .await
        .expect("lsn")
        .get(0);
    let replica = replica_superuser().await;
    for _ in 0..500 {
        let caught_up: bool = replica
            .query_one(
                "select coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)",
                &[&lsn],
            )
            .await
            .expect("replay lsn")
            .get(0);
        if caught_up {
            // Proxies learn replay positions by polling (replication.lag_poll_ms, 50 ms):
            // until a poll sees this one, reads of tables written through them stay on the primary.
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("replica did not catch up to {lsn}");
}

/// A raw socket logged in through the proxy with SCRAM, for sending hand-made messages.
pub async fn raw_authenticated(port: u16, user: &str, password: &str) -> tokio::net::TcpStream {
    use bytes::BytesMut;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
    use postgres_protocol::message::backend::Message;
    use postgres_protocol::message::frontend;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut out = BytesMut::new();
    frontend::startup_message([("user", user), ("database", "app")], &mut out).unwrap();
    s.write_all(&out).await.unwrap();
    let mut inbuf = BytesMut::new();
    let mut scram: Option<ScramSha256> = None;
    loop {
        let msg = loop {
            if let Some(m) = Message::parse(&mut inbuf).unwrap() {
                break m;
            }
            assert!(
                s.read_buf(&mut inbuf).await.unwrap() > 0,
                "proxy closed during login"
            );
        };
        out.clear();
        match msg {
            Message::AuthenticationSasl(_) => {
                let sc = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                frontend::sasl_initial_response(SCRAM_SHA_256, sc.message(), &mut out).unwrap();
                scram = Some(sc);
            }
            Message::AuthenticationSaslContinue(b) => {
                let sc = scram.as_mut().unwrap();
                sc.update(b.data()).unwrap();
                frontend::sasl_response(sc.message(), &mut out).unwrap();
            }
            Message::AuthenticationSaslFinal(b) => {
                scram.take().unwrap().finish(b.data()).unwrap();
            }
            Message::ReadyForQuery(_) => return s,
            Message::ErrorResponse(_) => panic!("login refused"),
            _ => {}
        }
        if !out.is_empty() {
            s.write_all(&out).await.unwrap();
        }
    }
}

/// Reads until the peer closes (or 3 s pass) and returns everything received.
pub async fn read_until_closed(s: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), s.read_to_end(&mut buf)).await;
    buf
}

/// A minimal HTTP/1.1 request to the stats endpoint: (status, body).
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("stats endpoint");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n{auth}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `done` every 25 ms, for up to 10 s.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The first column of the first row of a simple query.
pub async fn value(c: &Client, sql: &str) -> String {
    let rows = c.simple_query(sql).await.expect(sql);
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap_or_default()
}
