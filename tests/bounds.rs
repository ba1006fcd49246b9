//! Every wait has a bound: a frozen replica (SIGSTOP) and a replica shutdown under reads on a cluster of its own, and `query_timeout_ms` on the shared cluster.
//!
//! The own cluster lives in `$PGSPLIT_FAULTS_DIR` (default /tmp/pgsplit-faults) on ports
//! 31636/31637 (`PGSPLIT_FAULTS_PRIMARY_PORT` / `PGSPLIT_FAULTS_REPLICA_PORT`).
//! `PGSPLIT_FROZEN_SECONDS` sets how long the replica stays frozen: 20 s by default (CI),
//! `benches/frozen.sh` runs the 60 s.

mod common;

use common::own_cluster::OwnCluster;
use pgsplit::config::{Config, EnvOverrides};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::{AsyncMessage, Client, NoTls, SimpleQueryMessage};

/// `health.check_timeout_ms` of the proxies here: the bound every wait is measured against.
const CHECK_TIMEOUT: Duration = Duration::from_millis(1000);

fn cluster() -> OwnCluster {
    OwnCluster::from_env("PGSPLIT_FAULTS", "/tmp/pgsplit-faults", 31636, 31637)
}

/// One test at a time on the own cluster: each freezes or stops a node of it.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sends SIGCONT to what was frozen, also when an assertion fails first.
struct Thaw<'a> {
    cluster: &'a OwnCluster,
    node: &'static str,
}

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        self.cluster.signal(self.node, libc::SIGCONT);
    }
}

async fn ready_cluster() -> OwnCluster {
    let c = cluster();
    c.ensure_running();
    c.wait_for_replica().await;
    c
}

async fn proxy_on(c: &OwnCluster, extra: &str) -> pgsplit::ProxyHandle {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let env = EnvOverrides {
        primary: Some(c.primary_addr()),
        replicas: Some(c.replica_addr()),
        ..Default::default()
    };
    let text = common::config_text(&format!(
        "{extra}\n[health]\ncheck_timeout_ms = {}\nban_ms = 500\n",
        CHECK_TIMEOUT.as_millis()
    ));
    let config = Config::from_toml(&text, &env).expect("config");
    let listener = pgsplit::bind(config.listen, 1024).expect("bind");
    pgsplit::start(Arc::new(config), listener)
        .await
        .expect("proxy")
}

fn url(p: &pgsplit::ProxyHandle) -> String {
    format!("postgres://app:app@127.0.0.1:{}/app", p.addr.port())
}

/// A client whose notices (NoticeResponse messages) are collected.
async fn client_with_notices(url: &str) -> (Client, Arc<Mutex<Vec<String>>>) {
    let (client, mut conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    let notices = Arc::new(Mutex::new(Vec::new()));
    let seen = notices.clone();
    tokio::spawn(async move {
        while let Some(m) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            match m {
                Ok(AsyncMessage::Notice(n)) => seen
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("{}: {}", n.severity(), n.message())),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    (client, notices)
}

/// How a read is sent. A statement prepared anew for each read (a named Parse, then a Close)
/// is not among them: a request that changes the session's statements is not re-sent, so it
/// fails with 08006 within the bound instead.
#[derive(Clone)]
enum Mode {
    Simple,
    /// Parse (unnamed), Bind, Describe, Execute, Sync in one request.
    Unnamed,
    /// Bind and Execute of a statement prepared once, as pgbench -M prepared does.
    Prepared(tokio_postgres::Statement),
}

impl Mode {
    /// Mode number `i` of three on client `c`.
    async fn nth(c: &Client, i: usize, sql: &str) -> Mode {
        match i % 3 {
            0 => Mode::Simple,
            1 => Mode::Unnamed,
            _ => Mode::Prepared(c.prepare(sql).await.expect("prepare")),
        }
    }
}

const WHO: &str = "select inet_server_port()";

/// The port in the first column of `sql`'s row.
async fn port_of(c: &Client, sql: &str, mode: &Mode) -> Result<i32, tokio_postgres::Error> {
    match mode {
        Mode::Unnamed => return c.query_typed_one(sql, &[]).await.map(|r| r.get(0)),
        Mode::Prepared(s) => return c.query_one(s, &[]).await.map(|r| r.get(0)),
        Mode::Simple => {}
    }
    let rows = c.simple_query(sql).await?;
    Ok(rows
        .iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).and_then(|v| v.parse().ok()),
            _ => None,
        })
        .unwrap_or(-1))
}

/// One read of the load: when it started, how long it took, which server answered.
struct Read {
    started: Instant,
    took: Duration,
    port: Result<i32, String>,
}

async fn timed_read(c: &Client, mode: &Mode) -> Read {
    let started = Instant::now();
    // Far beyond any bound asserted: a read stuck on the frozen server shows as a long one.
    let port = match tokio::time::timeout(Duration::from_secs(90), port_of(c, WHO, mode)).await {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(e)) => Err(describe(&e)),
        Err(_) => Err("no answer in 90 s".into()),
    };
    Read {
        started,
        took: started.elapsed(),
        port,
    }
}

/// Reads in a loop on one connection until `stop`.
async fn reader(url: String, i: usize, stop: Arc<AtomicBool>) -> Vec<Read> {
    let c = common::connect(&url).await;
    let mode = Mode::nth(&c, i, WHO).await;
    let mut reads = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        reads.push(timed_read(&c, &mode).await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    reads
}

/// Acquisitions of a server connection from `port`'s pools so far.
fn acquisitions(p: &pgsplit::ProxyHandle, port: u16) -> u64 {
    p.shared
        .pools
        .sets()
        .iter()
        .flat_map(|s| {
            s.all()
                .filter(|pool| pool.server.addr.port == port)
                .map(|pool| pool.acquisitions.load(Ordering::Relaxed))
                .collect::<Vec<_>>()
        })
        .sum()
}

fn replica_info(p: &pgsplit::ProxyHandle, port: u16) -> Arc<pgsplit::pool::ServerInfo> {
    p.shared
        .pools
        .servers()
        .find(|s| s.addr.port == port)
        .cloned()
        .expect("the replica in the proxy's servers")
}

/// Waits until reads through the proxy are answered by the replica again.
async fn until_replica_answers(url: &str, replica: u16, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let c = common::connect(url).await;
    while started.elapsed() < within {
        if port_of(&c, WHO, &Mode::Simple).await.ok() == Some(i32::from(replica)) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_replica_reads_move_to_the_primary_within_the_bound_and_return() {
    let _turn = TURN.lock().await;
    let frozen_for = Duration::from_secs(
        std::env::var("PGSPLIT_FROZEN_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20),
    );
    let c = ready_cluster().await;
    let proxy = proxy_on(&c, "").await;
    let url = url(&proxy);
    let (primary, replica) = (c.primary_port, c.replica_port);
    assert!(
        until_replica_answers(&url, replica, Duration::from_secs(10))
            .await
            .is_some(),
        "reads never reached the replica before the freeze"
    );
    let bound = CHECK_TIMEOUT * 2;

    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..9)
        .map(|i| tokio::spawn(reader(url.clone(), i, stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The replica's postmaster and every process of it stop answering; its sockets stay open.
    let frozen_at = Instant::now();
    c.signal("replica", libc::SIGSTOP);
    let thaw = Thaw {
        cluster: &c,
        node: "replica",
    };
    // New clients meanwhile: more than the replica's idle connections, so some need a new
    // connection (connect and login) to the frozen server.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let burst: Vec<_> = (0..20)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                // Timed from before the login: all of it counts as the client's wait.
                let started = Instant::now();
                let c = common::connect(&url).await;
                // Not prepared: preparing is itself a request that could meet the freeze.
                let mode = if i % 2 == 0 {
                    Mode::Simple
                } else {
                    Mode::Unnamed
                };
                let read = timed_read(&c, &mode).await;
                Read {
                    started,
                    took: started.elapsed(),
                    port: read.port,
                }
            })
        })
        .collect();
    // From one bound in, the replica is banned and takes no connection until it is thawed.
    tokio::time::sleep(bound.saturating_sub(frozen_at.elapsed())).await;
    let info = replica_info(&proxy, replica);
    let used_before = acquisitions(&proxy, replica);
    let mut unbanned_samples = 0;
    while frozen_at.elapsed() < frozen_for {
        if !info.health.is_banned() {
            unbanned_samples += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let used_while_frozen = acquisitions(&proxy, replica) - used_before;
    let thawed_at = Instant::now();
    drop(thaw);
    let back = until_replica_answers(&url, replica, Duration::from_secs(30)).await;
    stop.store(true, Ordering::Relaxed);

    let mut reads = Vec::new();
    for r in readers {
        reads.extend(r.await.expect("reader"));
    }
    let mut burst_reads = Vec::new();
    for b in burst {
        burst_reads.push(b.await.expect("burst client"));
    }
    let all: Vec<&Read> = reads.iter().chain(burst_reads.iter()).collect();
    let errors: Vec<&String> = all.iter().filter_map(|r| r.port.as_ref().err()).collect();
    let slowest = all.iter().map(|r| r.took).max().unwrap_or_default();
    let first_on_primary = all
        .iter()
        .filter(|r| r.started >= frozen_at && r.port == Ok(i32::from(primary)))
        .map(|r| r.started + r.took - frozen_at)
        .min();
    let during: Vec<&&Read> = all
        .iter()
        .filter(|r| r.started >= frozen_at && r.started < thawed_at)
        .collect();
    let burst_slowest = burst_reads.iter().map(|r| r.took).max().unwrap_or_default();
    eprintln!(
        "frozen replica: {} s frozen, {} reads ({} while frozen, {} of them on the primary), {} failed; \
         slowest read {slowest:?} (new clients: {burst_slowest:?}); first primary answer {first_on_primary:?} \
         after SIGSTOP; replica acquisitions while banned {used_while_frozen}; back {back:?} after SIGCONT",
        frozen_for.as_secs(),
        all.len(),
        during.len(),
        during.iter().filter(|r| r.port == Ok(i32::from(primary))).count(),
        errors.len(),
    );
    assert!(errors.is_empty(), "reads failed: {errors:?}");
    assert!(
        slowest <= bound,
        "a read waited {slowest:?}, more than 2 × check_timeout_ms"
    );
    assert!(
        first_on_primary.is_some_and(|t| t <= bound),
        "reads did not continue on the primary within {bound:?}: {first_on_primary:?}"
    );
    assert!(
        during.len() > 100,
        "too few reads while frozen: {}",
        during.len()
    );
    assert_eq!(
        unbanned_samples, 0,
        "the frozen replica counted as healthy between bans"
    );
    assert_eq!(used_while_frozen, 0, "the frozen replica was used");
    assert!(
        back.is_some_and(|t| t <= Duration::from_secs(10)),
        "the replica was not back in use within 10 s of SIGCONT: {back:?}"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_read_shows_nothing_of_the_replica_shutdown() {
    let _turn = TURN.lock().await;
    let c = ready_cluster().await;
    let proxy = proxy_on(&c, "").await;
    let url = url(&proxy);
    assert!(
        until_replica_answers(&url, c.replica_port, Duration::from_secs(10))
            .await
            .is_some(),
        "reads never reached the replica"
    );
    const SLOW_READ: &str = "select inet_server_port() from pg_sleep(1)";
    // A direct client shows what the shutdown says to its clients: a WARNING, then the close.
    let (direct, direct_notices) = client_with_notices(&format!(
        "postgres://postgres:postgres@{}/app",
        c.replica_addr()
    ))
    .await;
    let direct_read = tokio::spawn(async move { direct.simple_query(SLOW_READ).await.is_err() });
    let mut reads = Vec::new();
    for i in 0..6 {
        let (client, notices) = client_with_notices(&url).await;
        reads.push(tokio::spawn(async move {
            let mode = Mode::nth(&client, i, SLOW_READ).await;
            let port = port_of(&client, SLOW_READ, &mode).await;
            // Let any late notice of the first attempt arrive before it is counted.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let seen = notices.lock().unwrap_or_else(|p| p.into_inner()).clone();
            (port.map_err(|e| describe(&e)), seen)
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    c.pg_ctl("replica", &["stop", "-m", "immediate", "-w"]);

    let direct_failed = direct_read.await.expect("direct read");
    let direct_notices = direct_notices
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut results = Vec::new();
    for r in reads {
        results.push(r.await.expect("read"));
    }
    c.ensure_running();
    c.wait_for_replica().await;
    eprintln!(
        "replica shutdown: direct client saw {direct_notices:?}; through the proxy {results:?}"
    );
    assert!(
        direct_failed
            && direct_notices
                .iter()
                .any(|n| n.starts_with("WARNING") && n.contains("terminating connection")),
        "the shutdown did not warn its clients: {direct_notices:?}"
    );
    for (port, notices) in &results {
        assert_eq!(
            port.as_ref().ok(),
            Some(&i32::from(c.primary_port)),
            "the read was not retried on the primary"
        );
        assert!(
            notices.is_empty(),
            "the failed attempt's notices reached the client: {notices:?}"
        );
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_the_query_timeout_cancel_is_closed() {
    let _turn = TURN.lock().await;
    let c = ready_cluster().await;
    let proxy = proxy_on(&c, "[pool]\nquery_timeout_ms = 1000\n").await;
    let url = url(&proxy);
    assert!(
        until_replica_answers(&url, c.replica_port, Duration::from_secs(10))
            .await
            .is_some(),
        "reads never reached the replica"
    );
    let client = common::connect(&url).await;
    let admin = c.replica_superuser().await;
    let sql = "select 1 from pg_sleep(30) /* ignores its cancel */";
    let started = Instant::now();
    let read = tokio::spawn(async move {
        let r = client.simple_query(sql).await.map(|_| ());
        (r, started.elapsed(), client)
    });
    // Freeze only the backend running it: the server's health checks still pass, but the
    // CancelRequest's SIGINT waits until it is thawed.
    let mut backend = None;
    while backend.is_none() && started.elapsed() < Duration::from_millis(900) {
        backend = admin
            .query_opt(
                "select pid from pg_stat_activity where query like '%ignores its cancel%' \
                 and pid <> pg_backend_pid()",
                &[],
            )
            .await
            .expect("pg_stat_activity")
            .map(|r| r.get::<_, i32>(0));
    }
    let pid = backend.expect("the slow read's backend on the replica");
    unsafe {
        libc::kill(pid, libc::SIGSTOP);
    }
    let (result, took, client) = read.await.expect("read");
    unsafe {
        libc::kill(pid, libc::SIGCONT);
    }
    let err = result.expect_err("the read outlived query_timeout_ms and its cancel");
    eprintln!("ignored cancel: {} after {took:?}", describe(&err));
    assert_eq!(err.code().map(|c| c.code()), Some("08006"), "{err}");
    // Cancel at 1 s, closed one check_timeout_ms later.
    assert!(
        took >= Duration::from_millis(1900) && took <= Duration::from_millis(3500),
        "closed after {took:?}"
    );
    // The session goes on (no transaction was lost) and the frozen backend was let go.
    let rows = client.simple_query("select 1").await.expect("after close");
    assert!(!rows.is_empty());
    let mut gone = false;
    for _ in 0..100 {
        gone = admin
            .query_opt("select 1 from pg_stat_activity where pid = $1", &[&pid])
            .await
            .expect("pg_stat_activity")
            .is_none();
        if gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        gone,
        "the server connection that ignored its cancel stayed open"
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn query_timeout_cancels_a_slow_query_and_the_session_goes_on() {
    let proxy = common::TestProxy::start_with("[pool]\nquery_timeout_ms = 300\n").await;
    let c = proxy.connect().await;
    let started = Instant::now();
    let err = c
        .query_one("select pg_sleep(5)::text", &[])
        .await
        .expect_err("pg_sleep(5) outlived query_timeout_ms");
    let took = started.elapsed();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "cancelled after {took:?}"
    );
    // A query within the timeout is untouched, and so is the session.
    let v: i32 = c
        .query_one("select 7 from pg_sleep(0.1)", &[])
        .await
        .expect("a query within the timeout")
        .get(0);
    assert_eq!(v, 7);
    // In a transaction: the statement fails as it would under statement_timeout, the
    // transaction can be rolled back and the session carries on.
    c.batch_execute("begin").await.expect("begin");
    let err = c
        .batch_execute("select pg_sleep(5)")
        .await
        .expect_err("cancelled in the transaction");
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    c.batch_execute("rollback").await.expect("rollback");
    let v: i32 = c.query_one("select 1", &[]).await.expect("after").get(0);
    assert_eq!(v, 1);
    // Each request of a pipeline has its own time: three 0.2 s queries in a row all pass.
    let (a, b, d) = tokio::join!(
        c.query_one("select 1 from pg_sleep(0.2)", &[]),
        c.query_one("select 2 from pg_sleep(0.2)", &[]),
        c.query_one("select 3 from pg_sleep(0.2)", &[]),
    );
    assert!(a.is_ok() && b.is_ok() && d.is_ok(), "{a:?} {b:?} {d:?}");
    proxy.handle.shutdown().await;
}

/// An error with its SQLSTATE and message, for assertion output.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{} {}: {}", d.severity(), d.code().code(), d.message()),
        None => e.to_string(),
    }
}
