//! Pools under load: the clients queued on an exhausted pool are counted in every view, and a pool grown at a peak reuses its warmest servers and shrinks back.

mod common;

use common::*;
use std::time::{Duration, Instant};
use tokio_postgres::SimpleQueryMessage;

/// `column` of the SHOW POOLS row of `user`'s pool of `role`.
async fn show_pools(proxy: &TestProxy, user: &str, role: &str, column: &str) -> usize {
    let admin = connect(&format!(
        "postgres://app:app@127.0.0.1:{}/pgsplit",
        proxy.port()
    ))
    .await;
    let rows = admin.simple_query("SHOW POOLS").await.unwrap();
    rows.into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r)
                if r.get("role") == Some(role)
                    && r.get("pool")
                        .is_some_and(|p| p.starts_with(&format!("{user}@"))) =>
            {
                r.get(column).and_then(|v| v.parse().ok())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {role} pool of {user} in SHOW POOLS"))
}

/// `waiting` of `user`'s primary pool in /stats and in /metrics.
async fn endpoint_waiting(proxy: &TestProxy, user: &str) -> (u64, u64) {
    let (_, body) = http(proxy.handle.stats_addr, "GET", "/stats", None).await;
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    let json = stats["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["user"] == user && p["role"] == "primary")
        .and_then(|p| p["waiting"].as_u64())
        .expect("the pool in /stats");
    let (_, metrics) = http(proxy.handle.stats_addr, "GET", "/metrics", None).await;
    let gauge = metrics
        .lines()
        .find(|l| {
            l.starts_with("pgsplit_pool_waiting_clients{")
                && l.contains(&format!("\"{user}@"))
                && l.contains("role=\"primary\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("the pool in /metrics");
    (json, gauge as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_counts_the_clients_queued_on_an_exhausted_pool() {
    const WAITERS: usize = 300;
    let proxy =
        TestProxy::start_with("[pool]\nprimary_size = 2\nacquire_timeout_ms = 120000\n").await;
    // md5 logins: 300 SCRAM handshakes would cost the test more than the pool does.
    let url = proxy.url("app_md5", "app_md5");
    let mut holders = Vec::new();
    for _ in 0..2 {
        let c = connect(&url).await;
        c.batch_execute("begin; select 1").await.unwrap();
        holders.push(c);
    }
    let mut clients = Vec::new();
    for _ in 0..WAITERS {
        clients.push(connect(&url).await);
    }
    let mut tasks = Vec::new();
    for c in clients {
        tasks.push(tokio::spawn(async move {
            c.batch_execute("begin; select 1; commit").await.unwrap();
        }));
    }
    // Every client has sent its BEGIN once the count stops rising; none can be served.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut waiting = 0;
    while Instant::now() < deadline {
        waiting = show_pools(&proxy, "app_md5", "primary", "waiting").await;
        if waiting >= WAITERS - 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        waiting.abs_diff(WAITERS) <= 1,
        "SHOW POOLS waiting = {waiting} with {WAITERS} clients queued"
    );
    let (json, gauge) = endpoint_waiting(&proxy, "app_md5").await;
    assert!(
        (json as usize).abs_diff(WAITERS) <= 1,
        "/stats waiting = {json}"
    );
    assert!(
        (gauge as usize).abs_diff(WAITERS) <= 1,
        "/metrics waiting = {gauge}"
    );
    for h in &holders {
        h.batch_execute("commit").await.unwrap();
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        show_pools(&proxy, "app_md5", "primary", "waiting").await,
        0,
        "nobody waits once every client was served"
    );
    assert_eq!(endpoint_waiting(&proxy, "app_md5").await, (0, 0));
}

/// After a peak the light load that follows reuses one warm server (last in, first out) rather
/// than cycling through every connection the peak opened, and connections idle past
/// `server_idle_timeout_ms` are closed down to `pool.min_idle`. The pool's clock is deadpool's
/// (std's, which tokio cannot pause), so the test waits in real time, with a 1 s timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_peak_the_pool_reuses_its_warmest_server_and_retires_the_rest() {
    const PEAK: usize = 16;
    let proxy = TestProxy::start_with(
        "[pool]\nreplica_size = 40\nserver_idle_timeout_ms = 1000\nmin_idle = 2\n",
    )
    .await;
    let replica_port: u16 = replica_addrs()
        .split(',')
        .next()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("a replica address");
    let url = proxy.url("app_md5", "app_md5");
    let mut clients = Vec::new();
    for _ in 0..PEAK {
        clients.push(connect(&url).await);
    }
    let mut tasks = Vec::new();
    for c in clients {
        tasks.push(tokio::spawn(async move {
            c.simple_query("select pg_sleep(0.5)").await.unwrap();
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }
    let grown = show_pools(&proxy, "app_md5", "replica", "size").await;
    assert!(grown > 2, "the peak opened {grown} replica connections");
    // One client's sequential reads: every one on the same replica backend.
    let light = &clients[0];
    let mut pids = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let rows = light
            .simple_query("select pg_backend_pid()::text, inet_server_port()::text")
            .await
            .unwrap();
        for m in rows {
            if let SimpleQueryMessage::Row(r) = m {
                if r.get(1) == Some(&*replica_port.to_string()) {
                    pids.insert(r.get(0).unwrap_or_default().to_string());
                }
            }
        }
    }
    assert_eq!(
        pids.len(),
        1,
        "a light load after a peak of {grown} connections used backends {pids:?}"
    );
    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut size = grown;
    while Instant::now() < deadline {
        size = show_pools(&proxy, "app_md5", "replica", "size").await;
        if size <= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(size, 2, "idle connections retire down to min_idle = 2");
    // The floor holds: the two kept connections outlive further sweeps.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(show_pools(&proxy, "app_md5", "replica", "size").await, 2);
}

/// With two data workers (as every test proxy has) each keeping its own server connections, a
/// pool of one still serves clients on both: a worker that needs the pool's only connection
/// while another worker holds it idle closes that one and opens its own, so the server never
/// sees more than the pool's size, and the hand-over is counted.
#[tokio::test]
async fn a_full_pool_hands_an_idle_connection_over_to_the_worker_that_needs_one() {
    let proxy = TestProxy::start_with("[pool]\nprimary_size = 1\n").await;
    let url = proxy.url("app_md5", "app_md5");
    // The second client goes to the worker with fewer clients: the other one.
    let first = connect(&url).await;
    let second = connect(&url).await;
    let mut pids = Vec::new();
    for round in 0..3 {
        for c in [&first, &second] {
            // A transaction, so the primary's pool serves it.
            let rows = c
                .simple_query("begin; select pg_backend_pid()::text; commit")
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            pids.extend(rows.iter().find_map(|m| match m {
                SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            }));
        }
    }
    assert_eq!(show_pools(&proxy, "app_md5", "primary", "size").await, 1);
    let handed = show_pools(&proxy, "app_md5", "primary", "handed_over").await;
    assert_eq!(
        handed, 5,
        "every turn after the first changes worker: {pids:?}"
    );
    let distinct: std::collections::BTreeSet<_> = pids.iter().collect();
    assert_eq!(
        distinct.len(),
        6,
        "each hand-over opens a new backend: {pids:?}"
    );
}

/// Clients on both workers opening connections at once never take the server past the pool's
/// size: each worker opens one only after taking a place for it, and hands over otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_opening_at_once_never_exceed_the_pool_size() {
    const SIZE: usize = 3;
    let proxy = TestProxy::start_with(&format!("[pool]\nprimary_size = {SIZE}\n")).await;
    let url = proxy.url("app_md5", "app_md5");
    let mut clients = Vec::new();
    for _ in 0..12 {
        clients.push(connect(&url).await);
    }
    let work = clients.into_iter().map(|c| {
        tokio::spawn(async move {
            for _ in 0..15 {
                c.simple_query("begin; select pg_sleep(0.002); commit")
                    .await
                    .unwrap();
            }
        })
    });
    let work: Vec<_> = work.collect();
    let mut most = 0;
    while !work.iter().all(|t| t.is_finished()) {
        most = most.max(show_pools(&proxy, "app_md5", "primary", "size").await);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for t in work {
        t.await.unwrap();
    }
    most = most.max(show_pools(&proxy, "app_md5", "primary", "size").await);
    assert!(
        most <= SIZE,
        "{most} server connections open for a pool of {SIZE}"
    );
    assert!(most > 0);
}
