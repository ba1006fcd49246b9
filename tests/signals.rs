//! The pgsplit binary as a child process: a login storm past max_client_connections, SIGHUP reload, SIGTERM drain, a pipelining client that never reads.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `pgsplit serve` and the log lines it printed so far.
struct Proc {
    child: Child,
    port: u16,
    logs: Arc<Mutex<Vec<String>>>,
    dir: PathBuf,
}

impl Proc {
    fn start(name: &str, extra: &str) -> Proc {
        let dir = std::env::temp_dir().join(unique(name));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("proxy.toml"), config(extra)).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_pgsplit"))
            .args(["--log-format", "json", "serve", "--config"])
            .arg(dir.join("proxy.toml"))
            .env("PGSPLIT_PRIMARY", primary_addr())
            .env("PGSPLIT_REPLICAS", replica_addrs())
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pgsplit");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v["fields"]["message"] == "pgsplit is ready" {
                        let _ = tx.send(v["fields"]["listen"].as_str().unwrap_or("").to_string());
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let listen = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("pgsplit did not report ready");
        let port = listen.rsplit(':').next().unwrap().parse().unwrap();
        Proc {
            child,
            port,
            logs,
            dir,
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("proxy.toml")
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on the pid of a child this test started.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0);
    }

    fn url(&self, user: &str, password: &str, db: &str) -> String {
        format!("postgres://{user}:{password}@127.0.0.1:{}/{db}", self.port)
    }

    fn logged(&self, text: &str) -> bool {
        self.logs.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// Peak and current resident memory of the child, in KiB.
    fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit on this process with a valid struct.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// The harness's configuration with a startup timeout that a loaded CI machine cannot miss.
fn config(extra: &str) -> String {
    config_text(extra).replace("startup_timeout_ms = 3000", "startup_timeout_ms = 30000")
}

fn rewrite(path: &Path, extra: &str) {
    std::fs::write(path, config(extra)).unwrap();
}

async fn primary_pool_size(p: &Proc) -> Option<String> {
    let admin = connect(&p.url("app", "app", "pgsplit")).await;
    let rows = admin.simple_query("SHOW POOLS").await.unwrap();
    rows.into_iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) if r.get("role") == Some("primary") => {
            r.get("max_size").map(str::to_string)
        }
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_storm_past_max_client_connections_is_served_or_refused_with_53300() {
    const CLIENTS: usize = 5000;
    const MAX: usize = 4000;
    raise_fd_limit();
    let p = Proc::start(
        "lim_storm",
        &format!("max_client_connections = {MAX}\nlisten_backlog = 8192"),
    );
    let (baseline, _) = p.memory_kib();
    let url = p.url("app_md5", "app_md5", "app");
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel(CLIENTS);
    let started = Instant::now();
    for _ in 0..CLIENTS {
        let url = url.clone();
        let done = done_tx.clone();
        let mut release = release_rx.clone();
        tokio::spawn(async move {
            let outcome = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                Ok((client, conn)) => {
                    let conn = tokio::spawn(conn);
                    let r = client.simple_query("select 1").await;
                    let outcome = match r {
                        Ok(_) => Ok(()),
                        Err(e) => Err(format!("query: {e}")),
                    };
                    let _ = done.send(outcome).await;
                    // Served clients stay connected until every client has an answer.
                    let _ = release.wait_for(|v| *v).await;
                    drop(client);
                    let _ = conn.await;
                    return;
                }
                Err(e) => match e.code() {
                    Some(c) if c.code() == "53300" => Err("53300".to_string()),
                    _ => Err(format!("connect: {e}")),
                },
            };
            let _ = done.send(outcome).await;
        });
    }
    drop(done_tx);
    let (mut served, mut refused, mut other) = (0, 0, Vec::new());
    for _ in 0..CLIENTS {
        match tokio::time::timeout(Duration::from_secs(50), done_rx.recv()).await {
            Ok(Some(Ok(()))) => served += 1,
            Ok(Some(Err(e))) if e == "53300" => refused += 1,
            Ok(Some(Err(e))) => other.push(e),
            Ok(None) | Err(_) => break,
        }
    }
    let took = started.elapsed();
    let (peak, rss) = p.memory_kib();
    let _ = release_tx.send(true);
    eprintln!(
        "login storm: {served} served, {refused} refused (53300), {} other, in {took:?}; \
         proxy RSS {baseline} KiB before, {rss} KiB with {served} clients, peak {peak} KiB",
        other.len()
    );
    assert!(
        other.is_empty(),
        "unexpected outcomes: {:?}",
        &other[..other.len().min(5)]
    );
    assert_eq!(served, MAX, "exactly max_client_connections are served");
    assert_eq!(refused, CLIENTS - MAX);
    // Bounded memory: well under 32 KiB per connection (idle clients cost ~4 KiB in release).
    assert!(
        peak - baseline < (MAX as u64) * 32,
        "proxy grew by {} KiB for {MAX} clients",
        peak - baseline
    );
}

#[tokio::test]
async fn sighup_resizes_the_pool_without_dropping_a_client() {
    let p = Proc::start("lim_hup", "[pool]\nprimary_size = 2");
    let kept = connect(&p.url("app", "app", "app")).await;
    kept.batch_execute("set application_name = 'kept'")
        .await
        .unwrap();
    assert_eq!(primary_pool_size(&p).await.as_deref(), Some("2"));

    rewrite(&p.config_path(), "[pool]\nprimary_size = 5");
    p.signal(libc::SIGHUP);
    let until = Instant::now() + Duration::from_secs(10);
    while primary_pool_size(&p).await.as_deref() != Some("5") {
        assert!(Instant::now() < until, "pool size did not change");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Five open transactions each hold their own server connection.
    let mut held = Vec::new();
    let mut pids = std::collections::HashSet::new();
    for _ in 0..5 {
        let c = connect(&p.url("app", "app", "app")).await;
        c.batch_execute("begin").await.unwrap();
        pids.insert(
            c.query_one("select pg_backend_pid()", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
        );
        held.push(c);
    }
    assert_eq!(pids.len(), 5);
    drop(held);

    // A broken file is logged and changes nothing.
    std::fs::write(p.config_path(), "[pool]\nprimary_size = \"many\"").unwrap();
    p.signal(libc::SIGHUP);
    let until = Instant::now() + Duration::from_secs(10);
    while !p.logged("configuration rejected") {
        assert!(Instant::now() < until, "rejection not logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(primary_pool_size(&p).await.as_deref(), Some("5"));
    let name: String = kept
        .query_one("show application_name", &[])
        .await
        .expect("the client connected before both reloads still works")
        .get(0);
    assert_eq!(name, "kept", "and it is the same session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_open_transaction_commit() {
    let mut p = Proc::start("lim_term", "shutdown_timeout_ms = 15000");
    let table = unique("lim_term");
    let admin = superuser().await;
    admin
        .batch_execute(&format!(
            "create table {table}(id int); grant all on {table} to app"
        ))
        .await
        .unwrap();
    let writer = connect(&p.url("app", "app", "app")).await;
    writer
        .batch_execute(&format!("begin; insert into {table} values (1)"))
        .await
        .unwrap();
    let (idle, idle_conn) =
        tokio_postgres::connect(&p.url("app", "app", "app"), tokio_postgres::NoTls)
            .await
            .unwrap();
    let idle_conn = tokio::spawn(idle_conn);
    idle.simple_query("select 1").await.unwrap();

    p.signal(libc::SIGTERM);
    // The idle client is told at once and closed.
    let end = tokio::time::timeout(Duration::from_secs(5), idle_conn)
        .await
        .expect("idle client closed")
        .unwrap();
    let code = end
        .expect_err("an error")
        .code()
        .map(|c| c.code().to_string());
    assert_eq!(code.as_deref(), Some("57P01"));
    // No new clients.
    let refused = tokio_postgres::connect(&p.url("app", "app", "app"), tokio_postgres::NoTls).await;
    assert!(refused.is_err(), "new clients are refused while draining");
    // The open transaction still commits.
    tokio::time::sleep(Duration::from_millis(300)).await;
    writer
        .batch_execute(&format!("insert into {table} values (2); commit"))
        .await
        .expect("commit during drain");
    let status = tokio::task::block_in_place(|| p.wait_exit(Duration::from_secs(10)));
    assert!(
        status.is_some_and(|s| s.success()),
        "pgsplit exits cleanly: {status:?}"
    );
    let n: i64 = admin
        .query_one(&format!("select count(*) from {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
    admin
        .batch_execute(&format!("drop table {table}"))
        .await
        .unwrap();
}

/// A client that pipelines `SELECT 1`s and never reads is paused at `max_client_buffer_bytes`:
/// the proxy stops reading it instead of buffering its answers (PostgreSQL's own behaviour), so
/// it holds at most the limit plus 1 MiB, and that memory is returned when the client leaves.
/// Measured as the child's RSS (VmRSS), sampled while the client writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pipelines_without_reading_holds_at_most_the_limit() {
    use tokio::io::AsyncWriteExt;
    const LIMIT: u64 = 1 << 20;
    const QUERIES: usize = 1_000_000;
    let p = Proc::start(
        "lim_pipeline",
        &format!("max_client_buffer_bytes = {LIMIT}"),
    );
    // Warm: the pools, the statement's stats row and the workers' allocator arenas exist.
    for _ in 0..4 {
        let mut warm = raw_authenticated(p.port, "app", "app").await;
        let mut out = bytes::BytesMut::new();
        for _ in 0..2000 {
            postgres_protocol::message::frontend::query("select 1", &mut out).unwrap();
        }
        postgres_protocol::message::frontend::terminate(&mut out);
        warm.write_all(&out).await.unwrap();
        let _ = read_until_closed(&mut warm).await;
    }
    let (_, baseline) = p.memory_kib();
    let mut batch = bytes::BytesMut::new();
    for _ in 0..1000 {
        postgres_protocol::message::frontend::query("select 1", &mut batch).unwrap();
    }
    let mut s = raw_authenticated(p.port, "app", "app").await;
    let (mut sent, mut peak) = (0, baseline);
    while sent < QUERIES {
        // The proxy stops reading: the socket buffers fill and a write makes no progress.
        match tokio::time::timeout(Duration::from_secs(3), s.write_all(&batch)).await {
            Ok(r) => r.unwrap(),
            Err(_) => break,
        }
        sent += 1000;
        peak = peak.max(p.memory_kib().1);
    }
    peak = peak.max(p.memory_kib().1);
    eprintln!(
        "pipelining client: {sent} of {QUERIES} queries accepted before the proxy paused it; \
         proxy RSS {baseline} KiB before, peak {peak} KiB (+{} KiB, limit {} KiB)",
        peak - baseline,
        LIMIT / 1024
    );
    assert!(
        sent < QUERIES,
        "the proxy read every query of a client that never reads"
    );
    assert!(
        peak - baseline <= LIMIT / 1024 + 1024,
        "the client cost {} KiB, more than the limit + 1 MiB",
        peak - baseline
    );
    drop(s);
    // The proxy notices the close at its next write; RSS then returns close to the baseline.
    let until = Instant::now() + Duration::from_secs(10);
    let mut after = p.memory_kib().1;
    while after > baseline + baseline / 10 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = p.memory_kib().1;
    }
    eprintln!("after the client left: RSS {after} KiB (baseline {baseline} KiB)");
    assert!(
        after <= baseline + baseline / 10,
        "RSS {after} KiB after the client left, baseline {baseline} KiB"
    );
}
