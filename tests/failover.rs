//! Failover on a cluster of its own: the primary stopped (immediate) under a write load, the replica promoted; with role = "auto" in the file, or kept under PGSPLIT_PRIMARY / PGSPLIT_REPLICAS, writes reach the promoted node within 2 s and none acknowledged is lost.
//!
//! The cluster lives in `$PGSPLIT_POOL_DIR` (default /tmp/pgsplit-pool) on ports 31736/31737
//! (`PGSPLIT_POOL_PRIMARY_PORT` / `PGSPLIT_POOL_REPLICA_PORT`). Replication is synchronous there,
//! so that every commit the primary acknowledged is on the replica when it is promoted: what is
//! checked is that pgsplit acknowledged nothing the servers did not commit, and follows the
//! promotion.

mod common;

use common::own_cluster::OwnCluster;
use pgsplit::config::{Config, EnvOverrides};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WRITERS: usize = 4;

fn cluster() -> OwnCluster {
    OwnCluster::from_env("PGSPLIT_POOL", "/tmp/pgsplit-pool", 31736, 31737)
}

/// A running primary and replica, the replica synchronous; an earlier run's promoted replica
/// is rebuilt.
async fn fresh_cluster(c: &OwnCluster) {
    c.discard_promoted_replica();
    c.ensure_running();
    let primary = c.primary_superuser().await;
    // One statement per call: ALTER SYSTEM may not run in a multi-statement query's transaction.
    for sql in [
        "alter system set synchronous_standby_names = 'pgsplit_replica'",
        "alter system set synchronous_commit = 'on'",
    ] {
        primary
            .batch_execute(sql)
            .await
            .expect("synchronous replication");
    }
    primary
        .execute("select pg_reload_conf()", &[])
        .await
        .unwrap();
    // The replica was cloned with the primary's settings: once promoted it has no standby to
    // wait for.
    let replica = c.replica_superuser().await;
    replica
        .batch_execute("alter system reset synchronous_standby_names")
        .await
        .expect("replica settings");
    replica
        .execute("select pg_reload_conf()", &[])
        .await
        .unwrap();
    primary
        .batch_execute(
            "drop table if exists failover_log;
             create table failover_log (id bigint primary key, writer int not null);
             grant all on failover_log to app;",
        )
        .await
        .unwrap();
    c.wait_for_replica().await;
}

/// An acknowledged write: its id, the port of the server that committed it, and when.
type Acked = (i64, u16, Instant);

/// Inserts rows one at a time through the proxy until `stop`, reconnecting after a close.
async fn writer(url: String, n: usize, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<Acked>>>) {
    let mut next: i64 = (n as i64) << 40;
    let mut client: Option<tokio_postgres::Client> = None;
    while !stop.load(Ordering::Relaxed) {
        let c = match client.take() {
            Some(c) if !c.is_closed() => c,
            _ => match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                Ok((c, conn)) => {
                    tokio::spawn(conn);
                    c
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        next += 1;
        match c
            .query_one(
                "insert into failover_log values ($1, $2) returning inet_server_port()",
                &[&next, &(n as i32)],
            )
            .await
        {
            Ok(row) => {
                let port: i32 = row.get(0);
                acked
                    .lock()
                    .unwrap()
                    .push((next, port as u16, Instant::now()));
            }
            // Refused while no server takes writes, or cut by the stop: not acknowledged.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
        client = Some(c);
    }
}

/// Runs the failover with the proxy configured by `file` and `env`; returns the time from the
/// promotion to the first write the promoted node acknowledged.
async fn fail_over(c: &OwnCluster, file: &str, env: EnvOverrides) -> Duration {
    fresh_cluster(c).await;
    let config = Config::from_toml(&common::config_text(file), &env).expect("config");
    assert!(
        config.primary_role_auto && config.replica_role_auto == vec![true],
        "role = \"auto\" is in effect for both servers"
    );
    let listener = pgsplit::bind(config.listen, 1024).expect("bind");
    let proxy = pgsplit::start(Arc::new(config), listener)
        .await
        .expect("proxy");
    let url = format!("postgres://app:app@127.0.0.1:{}/app", proxy.addr.port());
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|n| tokio::spawn(writer(url.clone(), n, stop.clone(), acked.clone())))
        .collect();
    let count = |port: u16| acked.lock().unwrap().iter().filter(|a| a.1 == port).count();
    let deadline = Instant::now() + Duration::from_secs(20);
    while count(c.primary_port) < 100 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        count(c.primary_port) >= 100,
        "writes flow before the failover"
    );

    c.pg_ctl("primary", &["stop", "-m", "immediate", "-w"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.pg_ctl("replica", &["promote", "-w"]);
    let promoted = Instant::now();
    let deadline = promoted + Duration::from_secs(10);
    while count(c.replica_port) < 100 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    proxy.shutdown().await;

    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let first = acked
        .iter()
        .filter(|a| a.1 == c.replica_port)
        .map(|a| a.2)
        .min()
        .expect("no write reached the promoted node within 10 s");
    let after = first.saturating_duration_since(promoted);
    let rows = c
        .replica_superuser()
        .await
        .query("select id from failover_log", &[])
        .await
        .unwrap();
    let there: std::collections::HashSet<i64> = rows.iter().map(|r| r.get(0)).collect();
    let lost: Vec<i64> = acked
        .iter()
        .map(|a| a.0)
        .filter(|id| !there.contains(id))
        .collect();
    eprintln!(
        "failover: {} writes acknowledged ({} by the promoted node), first on it {after:?} \
         after the promotion, {} lost",
        acked.len(),
        count_on(&acked, c.replica_port),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged writes are missing: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    after
}

fn count_on(acked: &[Acked], port: u16) -> usize {
    acked.iter().filter(|a| a.1 == port).count()
}

/// Both ways of configuring, one after the other on one cluster (rebuilt in between).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_follow_a_promotion_however_role_auto_is_given() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let c = cluster();
    let in_file = format!(
        "[primary]\nhost = \"127.0.0.1\"\nport = {}\nrole = \"auto\"\n\
         [[replicas]]\nhost = \"127.0.0.1\"\nport = {}\nrole = \"auto\"\n",
        c.primary_port, c.replica_port
    );
    let after = fail_over(&c, &in_file, EnvOverrides::default()).await;
    assert!(
        after <= Duration::from_secs(2),
        "role = \"auto\" in the file: first write on the promoted node {after:?} after the promotion"
    );
    // The addresses in the file are wrong on purpose: only the overrides reach the cluster, and
    // the roles must survive them.
    let overridden = "[primary]\nhost = \"127.0.0.1\"\nport = 1\nrole = \"auto\"\n\
         [[replicas]]\nhost = \"127.0.0.1\"\nport = 2\nrole = \"auto\"\n";
    let env = EnvOverrides {
        primary: Some(c.primary_addr()),
        replicas: Some(c.replica_addr()),
        ..Default::default()
    };
    let after = fail_over(&c, overridden, env).await;
    assert!(
        after <= Duration::from_secs(2),
        "role = \"auto\" under PGSPLIT_PRIMARY/PGSPLIT_REPLICAS: first write on the promoted \
         node {after:?} after the promotion"
    );
}
