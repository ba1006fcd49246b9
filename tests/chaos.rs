//! Chaos on a cluster of its own: backends terminated every 100 ms, a primary restart and a frozen replica under TPC-B and pgbench; no protocol violation, no half-committed transaction.
//!
//! `PGSPLIT_CHAOS_SECONDS` sets the length (20 s in CI; `benches/chaos.sh` runs 60 s). The
//! cluster lives in `$PGSPLIT_CHAOS_DIR` (default /tmp/pgsplit-chaos) on ports 31436/31437
//! (`PGSPLIT_CHAOS_PRIMARY_PORT` / `PGSPLIT_CHAOS_REPLICA_PORT`).

mod common;

use common::own_cluster::OwnCluster;
use pgsplit::config::{Config, EnvOverrides};
use rand::Rng;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ACCOUNTS: i32 = 100_000;

fn cluster() -> OwnCluster {
    OwnCluster::from_env("PGSPLIT_CHAOS", "/tmp/pgsplit-chaos", 31436, 31437)
}

/// What the clients saw, for the assertions at the end.
#[derive(Default)]
struct Seen {
    committed: Mutex<HashSet<String>>,
    violations: Mutex<Vec<String>>,
    errors: AtomicU64,
    transactions: AtomicU64,
    /// Failures by SQLSTATE ("closed" for a connection that ended), for the log line.
    kinds: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Seen {
    /// Sorts a client-visible failure: a server or proxy error with a SQLSTATE, or a closed
    /// connection, is a well-formed failure; anything the driver could not parse is not.
    fn failure(&self, e: &tokio_postgres::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let kind = match e.as_db_error() {
            Some(d) => d.code().code().to_string(),
            None if e.is_closed() => "closed".to_string(),
            None => "other".to_string(),
        };
        *self
            .kinds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(format!(
                "{kind} {}",
                e.as_db_error()
                    .map(|d| d.message())
                    .unwrap_or("")
                    .split(':')
                    .next()
                    .unwrap_or("")
            ))
            .or_default() += 1;
        let text = e.to_string();
        if e.as_db_error().is_none() && !e.is_closed() && is_protocol_violation(&text) {
            self.violations
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(text);
        }
    }
}

fn is_protocol_violation(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "unexpected message",
        "error parsing",
        "while idle",
        "lost synchronization",
        "invalid message",
    ]
    .iter()
    .any(|p| t.contains(p))
}

/// One TPC-B transaction as separate statements, so a loss can fall between any two of them.
async fn tpcb(
    c: &tokio_postgres::Client,
    tag: &str,
    extended: bool,
) -> Result<(), tokio_postgres::Error> {
    let (aid, tid, delta) = {
        let mut rng = rand::thread_rng();
        (
            rng.gen_range(1..=ACCOUNTS),
            rng.gen_range(1..=10),
            rng.gen_range(-5000..=5000),
        )
    };
    let bid = 1;
    c.batch_execute("begin").await?;
    if extended {
        c.execute(
            "update pgbench_accounts set abalance = abalance + $1 where aid = $2",
            &[&delta, &aid],
        )
        .await?;
        c.query_one(
            "select abalance from pgbench_accounts where aid = $1",
            &[&aid],
        )
        .await?;
        c.execute(
            "update pgbench_tellers set tbalance = tbalance + $1 where tid = $2",
            &[&delta, &tid],
        )
        .await?;
        c.execute(
            "update pgbench_branches set bbalance = bbalance + $1 where bid = $2",
            &[&delta, &bid],
        )
        .await?;
        c.execute(
            "insert into pgbench_history (tid, bid, aid, delta, mtime, filler) values ($1, $2, $3, $4, now(), $5)",
            &[&tid, &bid, &aid, &delta, &tag],
        )
        .await?;
    } else {
        for sql in [
            format!("update pgbench_accounts set abalance = abalance + {delta} where aid = {aid}"),
            format!("select abalance from pgbench_accounts where aid = {aid}"),
            format!("update pgbench_tellers set tbalance = tbalance + {delta} where tid = {tid}"),
            format!("update pgbench_branches set bbalance = bbalance + {delta} where bid = {bid}"),
            format!(
                "insert into pgbench_history (tid, bid, aid, delta, mtime, filler) values ({tid}, {bid}, {aid}, {delta}, now(), '{tag}')"
            ),
        ] {
            c.batch_execute(&sql).await?;
        }
    }
    c.batch_execute("commit").await
}

/// A TPC-B client that reconnects after every loss and remembers each COMMIT it was told succeeded.
async fn tpcb_client(id: usize, url: String, stop: Arc<AtomicBool>, seen: Arc<Seen>) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let client = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                client
            }
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let tag = format!("c{id}-{n}");
            match tpcb(&client, &tag, id % 2 == 1).await {
                Ok(()) => {
                    seen.transactions.fetch_add(1, Ordering::Relaxed);
                    seen.committed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(tag);
                }
                Err(e) => {
                    seen.failure(&e);
                    if client.is_closed() {
                        break;
                    }
                    // An ERROR inside the transaction: end it as an application would.
                    if client.batch_execute("rollback").await.is_err() {
                        break;
                    }
                }
            }
        }
    }
}

/// pgbench runs back to back until `stop`; returns the protocol violations in their output.
async fn pgbench_loop(
    port: u16,
    args: &'static [&'static str],
    stop: Arc<AtomicBool>,
) -> Vec<String> {
    let mut found = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let out = tokio::process::Command::new("pgbench")
            .args([
                "-n",
                "-c",
                "3",
                "-j",
                "1",
                "-T",
                "3",
                "-h",
                "127.0.0.1",
                "-U",
                "app",
            ])
            .args(args)
            .args(["-p", &port.to_string(), "app"])
            .env("PGPASSWORD", "app")
            .output()
            .await
            .expect("pgbench");
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        for line in text.lines().filter(|l| is_protocol_violation(l)) {
            found.push(format!("pgbench {args:?}: {line}"));
        }
    }
    found
}

/// Terminates a random client backend of `app` every 100 ms.
async fn terminator(c: &OwnCluster, stop: Arc<AtomicBool>, frozen: Arc<AtomicBool>) -> u64 {
    let mut killed = 0;
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if frozen.load(Ordering::Relaxed) {
            continue;
        }
        let url = format!("postgres://postgres:postgres@{}/app", c.primary_addr());
        let Ok(Ok((admin, conn))) = tokio::time::timeout(
            Duration::from_secs(1),
            tokio_postgres::connect(&url, tokio_postgres::NoTls),
        )
        .await
        else {
            continue; // the primary is restarting
        };
        tokio::spawn(conn);
        if let Ok(row) = admin
            .query_one(
                "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity \
                 where usename = 'app' and backend_type = 'client backend' \
                 and application_name not like 'pgsplit-%' \
                 order by random() limit 1) t",
                &[],
            )
            .await
        {
            killed += row.get::<_, i64>(0) as u64;
        }
    }
    killed
}

/// Which faults a run injects.
struct Faults {
    seconds: u64,
    terminate: bool,
    freeze_replica: bool,
}

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_keeps_protocol_and_balances() {
    let seconds: u64 = std::env::var("PGSPLIT_CHAOS_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    run(Faults {
        seconds,
        terminate: true,
        freeze_replica: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_restart_during_tpcb_keeps_balances_and_every_acknowledged_commit() {
    run(Faults {
        seconds: 8,
        terminate: false,
        freeze_replica: false,
    })
    .await;
}

async fn run(faults: Faults) {
    let _turn = TURN.lock().await;
    let seconds = faults.seconds;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let c = cluster();
    c.ensure_running();
    c.replica_superuser()
        .await
        .execute("select pg_wal_replay_resume()", &[])
        .await
        .expect("resume replay");
    let init = std::process::Command::new("pgbench")
        .args(["-i", "-q", "-s", "1", "-h", "127.0.0.1", "-U", "app", "app"])
        .args(["-p", &c.primary_port.to_string()])
        .env("PGPASSWORD", "app")
        .output()
        .expect("pgbench -i");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    c.wait_for_replica().await;

    let env = EnvOverrides {
        primary: Some(c.primary_addr()),
        replicas: Some(c.replica_addr()),
        ..Default::default()
    };
    let text = common::config_text("[health]\nban_ms = 500\ncheck_timeout_ms = 1000\n");
    let config = Config::from_toml(&text, &env).expect("config");
    let listener = pgsplit::bind(config.listen, 1024).expect("bind");
    let proxy = pgsplit::start(Arc::new(config), listener)
        .await
        .expect("proxy");
    let port = proxy.addr.port();
    let url = format!("postgres://app:app@127.0.0.1:{port}/app");

    let stop = Arc::new(AtomicBool::new(false));
    let frozen = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Seen::default());
    let mut clients = Vec::new();
    for id in 0..6 {
        clients.push(tokio::spawn(tpcb_client(
            id,
            url.clone(),
            stop.clone(),
            seen.clone(),
        )));
    }
    let benches: Vec<_> = [
        &["-S", "-M", "simple"][..],
        &["-S", "-M", "prepared"][..],
        &["-b", "tpcb-like", "-M", "simple"][..],
    ]
    .into_iter()
    .map(|args| tokio::spawn(pgbench_loop(port, args, stop.clone())))
    .collect();
    let killer = {
        let (stop, frozen) = (stop.clone(), frozen.clone());
        let terminate = faults.terminate;
        tokio::spawn(async move {
            if terminate {
                terminator(&cluster(), stop, frozen).await
            } else {
                0
            }
        })
    };

    let started = Instant::now();
    let at = |fraction: f64| Duration::from_secs_f64(seconds as f64 * fraction);
    tokio::time::sleep(at(0.25)).await;
    let restart = Instant::now();
    c.pg_ctl("primary", &["restart", "-m", "fast", "-w"]);
    let restart_took = restart.elapsed();
    if faults.freeze_replica {
        tokio::time::sleep(at(0.5).saturating_sub(started.elapsed())).await;
        frozen.store(true, Ordering::Relaxed);
        c.signal("replica", libc::SIGSTOP);
        tokio::time::sleep(at(0.15)).await;
        c.signal("replica", libc::SIGCONT);
        frozen.store(false, Ordering::Relaxed);
    }
    tokio::time::sleep(Duration::from_secs(seconds).saturating_sub(started.elapsed())).await;
    stop.store(true, Ordering::Relaxed);

    let killed = killer.await.expect("terminator");
    for client in clients {
        let _ = tokio::time::timeout(Duration::from_secs(15), client).await;
    }
    let mut violations = seen
        .violations
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for b in benches {
        violations.extend(b.await.expect("pgbench loop"));
    }
    let transactions = seen.transactions.load(Ordering::Relaxed);
    let errors = seen.errors.load(Ordering::Relaxed);
    eprintln!(
        "chaos: {seconds} s, {transactions} TPC-B commits acknowledged, {errors} client-visible failures, \
         {killed} backends terminated, primary restart took {restart_took:?}; failures by kind {:?}",
        seen.kinds.lock().unwrap_or_else(|p| p.into_inner())
    );
    assert!(
        violations.is_empty(),
        "protocol violations: {violations:#?}"
    );
    assert!(transactions > 0, "no transaction committed under chaos");
    assert!(
        !faults.terminate || killed > 0,
        "the terminator ended no backend"
    );

    // Balances: every committed transaction moved the same delta into all three tables and history.
    let admin = c.primary_superuser().await;
    let row = admin
        .query_one(
            "select (select coalesce(sum(delta), 0) from pgbench_history)::bigint, \
                    (select sum(abalance) from pgbench_accounts)::bigint, \
                    (select sum(tbalance) from pgbench_tellers)::bigint, \
                    (select sum(bbalance) from pgbench_branches)::bigint",
            &[],
        )
        .await
        .expect("balances");
    let (h, a, t, b): (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert!(
        h == a && a == t && t == b,
        "balances diverged: history {h}, accounts {a}, tellers {t}, branches {b}"
    );
    let tags: HashSet<String> = admin
        .query(
            "select trim(filler) from pgbench_history where filler like 'c%-%'",
            &[],
        )
        .await
        .expect("history")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let committed = seen
        .committed
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let lost: Vec<_> = committed.difference(&tags).take(10).cloned().collect();
    assert!(
        lost.is_empty(),
        "acknowledged COMMITs missing from history: {lost:?}"
    );
    proxy.shutdown().await;
}
