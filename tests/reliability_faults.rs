//! Fault tests on a cluster of their own (never the shared one): a killed replica, paused replay, a restarted primary.
//!
//! The cluster lives in `$PGSPLIT_FAULT_CLUSTER_DIR` (default /tmp/pgsplit-cluster-health/faults)
//! on ports 25436/25437 (`PGSPLIT_FAULT_PRIMARY_PORT` / `PGSPLIT_FAULT_REPLICA_PORT`), made by
//! scripts/cluster.sh on first use and left running for the next run. The tests take turns.

mod common;

use common::own_cluster::OwnCluster;
use pgsplit::config::{Config, EnvOverrides};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio_postgres::Client;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The shared own-cluster helper, under this binary's variables and defaults.
fn cluster() -> &'static OwnCluster {
    static CLUSTER: OnceLock<OwnCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let mut c = OwnCluster::from_env(
            "PGSPLIT_FAULT",
            "/tmp/pgsplit-cluster-health/faults",
            25436,
            25437,
        );
        if let Ok(dir) = std::env::var("PGSPLIT_FAULT_CLUSTER_DIR") {
            c.dir = dir.into();
        }
        c
    })
}

/// Takes this binary's turn with the cluster and makes sure it is whole: both servers up,
/// replay running (an earlier failed test may have left it paused or a server stopped).
async fn take_turn() -> tokio::sync::MutexGuard<'static, ()> {
    let guard = TURN.lock().await;
    let c = cluster();
    c.ensure_running();
    c.replica_superuser()
        .await
        .execute("select pg_wal_replay_resume()", &[])
        .await
        .expect("resume replay");
    guard
}

async fn start_proxy(extra: &str) -> pgsplit::ProxyHandle {
    let c = cluster();
    let env = EnvOverrides {
        primary: Some(c.primary_addr()),
        replicas: Some(c.replica_addr()),
        ..Default::default()
    };
    let config = Config::from_toml(&common::config_text(extra), &env).expect("test config");
    let listener = pgsplit::bind(config.listen, 1024).expect("bind");
    pgsplit::start(Arc::new(config), listener)
        .await
        .expect("start proxy")
}

async fn proxy_client(p: &pgsplit::ProxyHandle) -> Client {
    common::connect(&format!(
        "postgres://app:app@127.0.0.1:{}/app",
        p.addr.port()
    ))
    .await
}

/// Whether a replica answered, through the proxy.
async fn answered_by_replica(c: &Client, sql: &str) -> bool {
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}

fn replica_server(p: &pgsplit::ProxyHandle) -> Arc<pgsplit::pool::ServerInfo> {
    p.shared.pools.replicas[0].clone()
}

/// pgbench select-only through the proxy for `seconds`: (exit ok, output, aborted clients).
async fn pgbench_reads(p: &pgsplit::ProxyHandle, seconds: u32) -> (bool, String, usize) {
    let out = tokio::process::Command::new("pgbench")
        .args([
            "-n",
            "-S",
            "-c",
            "8",
            "-j",
            "2",
            "-h",
            "127.0.0.1",
            "-U",
            "app",
        ])
        .args([
            "-T",
            &seconds.to_string(),
            "-p",
            &p.addr.port().to_string(),
            "app",
        ])
        .env("PGPASSWORD", "app")
        .output()
        .await
        .expect("pgbench");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let aborted = text.matches("aborted in command").count();
    (out.status.success(), text, aborted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_replica_is_banned_reads_move_and_return() {
    let _turn = take_turn().await;
    let c = cluster();
    let init = Command::new("pgbench")
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
    let p = start_proxy("[health]\nban_ms = 500\n").await;
    let bans = || {
        replica_server(&p)
            .health
            .bans
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = bans();

    // The kill under load. A read whose answer had begun to reach its client when the server
    // died cannot be re-sent, so the moment of the kill may cost a client or two.
    let kill = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        c.pg_ctl("replica", &["stop", "-m", "immediate", "-w"]);
        let killed = Instant::now();
        while !replica_server(&p).health.is_banned() {
            assert!(
                killed.elapsed() < Duration::from_secs(3),
                "replica never banned"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        killed.elapsed()
    };
    let ((_, _, aborted_at_kill), banned_after) = tokio::join!(pgbench_reads(&p, 4), kill);
    assert!(bans() > before);

    // After the ban: reads run on the primary with no failure, through the replica's restart.
    let client = proxy_client(&p).await;
    assert!(!answered_by_replica(&client, "select pg_is_in_recovery()").await);
    let restart = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        c.pg_ctl("replica", &["start", "-w"]);
        let restarted = Instant::now();
        while !answered_by_replica(&client, "select pg_is_in_recovery()").await {
            assert!(
                restarted.elapsed() < Duration::from_secs(10),
                "reads did not return to the replica within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        restarted.elapsed()
    };
    let ((ok, text, aborted), back_after) = tokio::join!(pgbench_reads(&p, 6), restart);
    eprintln!(
        "banned {banned_after:?} after the kill ({aborted_at_kill} clients aborted at the kill); \
         reads back on the replica {back_after:?} after its restart\n{text}"
    );
    assert!(ok && aborted == 0, "reads failed after the ban:\n{text}");
    assert!(
        text.contains("number of failed transactions: 0 "),
        "failed transactions:\n{text}"
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_replay_never_hides_a_write_from_any_session() {
    let _turn = take_turn().await;
    let c = cluster();
    let written = common::unique("ryw_written");
    let untouched = common::unique("ryw_untouched");
    let admin = c.primary_superuser().await;
    admin
        .batch_execute(&format!(
            "create table {written} (id int primary key, v int not null);
             insert into {written} values (1, 0);
             create table {untouched} (id int);
             insert into {untouched} values (1);
             grant all on {written}, {untouched} to app;"
        ))
        .await
        .expect("tables");
    c.wait_for_replica().await;
    // No lag limit: the paused replica must keep serving reads of what was not written.
    let p = start_proxy("[replication]\nmax_lag_bytes = 0\nmax_lag_ms = 0\n").await;
    // The proxy lists the catalog's tables in the background at start.
    let listed = Instant::now();
    while !p.shared.pools.lsns.knows_table(&untouched) {
        assert!(
            listed.elapsed() < Duration::from_secs(10),
            "tables never listed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let writer = proxy_client(&p).await;
    let other = proxy_client(&p).await;
    let replica = c.replica_superuser().await;
    replica
        .execute("select pg_wal_replay_pause()", &[])
        .await
        .expect("pause");
    let read = format!("select v from {written} where id = 1");
    let untouched_read = format!("select pg_is_in_recovery() from {untouched}");
    let mut untouched_on_replica = 0;
    for i in 1..=200 {
        if i % 10 == 0 {
            writer
                .batch_execute(&format!(
                    "begin; update {written} set v = {i} where id = 1; commit;"
                ))
                .await
                .expect("transaction");
        } else {
            writer
                .execute(&format!("update {written} set v = $1 where id = 1"), &[&i])
                .await
                .expect("update");
        }
        let own: i32 = writer.query_one(&read, &[]).await.expect("own read").get(0);
        let theirs: i32 = other
            .query_one(&read, &[])
            .await
            .expect("other read")
            .get(0);
        assert_eq!((own, theirs), (i, i), "write {i} missed");
        if answered_by_replica(&other, &untouched_read).await {
            untouched_on_replica += 1;
        }
    }
    assert_eq!(
        untouched_on_replica, 200,
        "untouched table read off the replica"
    );
    // The paused replica's lag is visible.
    let lag = replica_server(&p).health.lag().expect("lag polled");
    assert!(lag.0 > 0, "lag bytes {lag:?}");
    // A proxy with a lag limit keeps every read off the paused replica.
    let strict = start_proxy("[replication]\nmax_lag_bytes = 1\n").await;
    let strict_client = proxy_client(&strict).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!answered_by_replica(&strict_client, &untouched_read).await);
    strict.shutdown().await;

    // consistency = "session": a session never misses its own writes; another session may.
    // consistency = "none": reads go to the replica regardless.
    for mode in ["session", "none"] {
        let m = start_proxy(&format!(
            "[replication]\nmax_lag_bytes = 0\nmax_lag_ms = 0\nconsistency = \"{mode}\"\n"
        ))
        .await;
        let (own, other) = (proxy_client(&m).await, proxy_client(&m).await);
        for i in 1000..1020 {
            own.execute(&format!("update {written} set v = $1 where id = 1"), &[&i])
                .await
                .expect("update");
            let mine: i32 = own.query_one(&read, &[]).await.expect("own read").get(0);
            let theirs: i32 = other.query_one(&read, &[]).await.expect("other").get(0);
            assert_ne!(
                theirs, i,
                "{mode}: another session read from the paused replica"
            );
            if mode == "session" {
                assert_eq!(mine, i, "session mode missed the session's own write");
            } else {
                assert_ne!(
                    mine, i,
                    "none: the read should have gone to the paused replica"
                );
            }
        }
        m.shutdown().await;
    }
    writer
        .execute(&format!("update {written} set v = 200 where id = 1"), &[])
        .await
        .expect("update");

    replica
        .execute("select pg_wal_replay_resume()", &[])
        .await
        .expect("resume");
    let resumed = Instant::now();
    let check = format!("select pg_is_in_recovery(), v from {written} where id = 1");
    loop {
        let row = other.query_one(&check, &[]).await.expect("read");
        assert_eq!(row.get::<_, i32>(1), 200);
        if row.get::<_, bool>(0) {
            break;
        }
        assert!(
            resumed.elapsed() < Duration::from_secs(10),
            "reads of the written table did not return to the replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.shutdown().await;
    admin
        .batch_execute(&format!("drop table {written}, {untouched}"))
        .await
        .expect("drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_primary_fails_writes_fast_then_recovers() {
    let _turn = take_turn().await;
    let c = cluster();
    let table = common::unique("outage");
    let admin = c.primary_superuser().await;
    admin
        .batch_execute(&format!(
            "create table {table} (id serial primary key, v int); grant all on {table} to app;
             grant all on sequence {table}_id_seq to app;"
        ))
        .await
        .expect("table");
    drop(admin);
    c.wait_for_replica().await;
    let p = start_proxy("[health]\nban_ms = 500\n").await;
    let clients = futures_join(4, &p).await;
    let insert = format!("insert into {table} (v) values (1)");
    for cl in &clients {
        cl.execute(&insert, &[])
            .await
            .expect("insert before the outage");
    }
    // Each insert's WAL position is read on its connection just after its reply. A stop that
    // lands before that answer leaves the table pending, rightly read on the (stopped) primary,
    // since nothing proves the replica has the row: let the positions arrive first.
    let known = Instant::now();
    while p.shared.pools.lsns.need(std::slice::from_ref(&table)) == pgsplit::pool::ReadNeed::Primary
    {
        assert!(
            known.elapsed() < Duration::from_secs(5),
            "insert positions never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.pg_ctl("primary", &["stop", "-m", "fast", "-w"]);
    let stopped = Instant::now();
    // Every write during the outage fails, quickly, with a connection-class SQLSTATE.
    let mut refused = 0;
    while stopped.elapsed() < Duration::from_secs(3) {
        for cl in &clients {
            let t = Instant::now();
            let e = cl
                .execute(&insert, &[])
                .await
                .expect_err("a write with the primary down");
            let code = e.code().map(|c| c.code().to_string()).unwrap_or_default();
            assert!(
                code == "08006" || code == "57P03" || code == "57P01",
                "unexpected error {e:?}"
            );
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "write took {:?}",
                t.elapsed()
            );
            refused += 1;
        }
        // Reads go on at the replica once its polled replay position covers the last write
        // (the primary sent its final WAL on shutdown).
        let count = format!("select count(*) from {table}");
        let n: i64 = loop {
            match clients[0].query_one(&count, &[]).await {
                Ok(row) => break row.get(0),
                Err(e) if stopped.elapsed() < Duration::from_secs(2) => {
                    eprintln!("read during the outage, replica not caught up yet: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("read during the outage: {e:?}"),
            }
        };
        assert_eq!(n, 4);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let primary_pool_errors = || -> u64 {
        p.shared
            .pools
            .sets()
            .iter()
            .map(|s| {
                s.primary
                    .churn()
                    .connect_errors
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum()
    };
    let errors_during = primary_pool_errors();
    c.pg_ctl("primary", &["start", "-w"]);
    let started = Instant::now();
    // The same client connections write again without reconnecting.
    for cl in &clients {
        loop {
            match cl.execute(&insert, &[]).await {
                Ok(_) => break,
                Err(e) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(10),
                        "writes did not recover: {e:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    eprintln!(
        "{refused} writes refused during the outage; {errors_during} client-path connect errors; recovered {:?} after the restart",
        started.elapsed()
    );
    // No reconnect storm: the outage cost a handful of connection attempts, not one per write.
    assert!(refused >= 8);
    assert!(
        errors_during <= 4,
        "{errors_during} connect errors for {refused} writes"
    );
    p.shutdown().await;
    c.ensure_running();
    c.primary_superuser()
        .await
        .batch_execute(&format!("drop table {table}"))
        .await
        .expect("drop");
}

async fn futures_join(n: usize, p: &pgsplit::ProxyHandle) -> Vec<Client> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(proxy_client(p).await);
    }
    v
}
