//! Health and lag on the shared cluster, without disturbing it: role = "auto" follows the servers, lag is shown everywhere.

mod common;
use common::*;
use pgsplit::config::{Config, EnvOverrides};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A proxy whose config names the servers the wrong way round, both with role = "auto".
async fn swapped_proxy() -> pgsplit::ProxyHandle {
    let (p_host, p_port) = primary_addr()
        .rsplit_once(':')
        .map(|(h, p)| (h.to_string(), p.to_string()))
        .expect("primary host:port");
    let replica = replica_addrs();
    let first = replica.split(',').next().expect("a replica");
    let (r_host, r_port) = first.rsplit_once(':').expect("replica host:port");
    let servers = format!(
        "[primary]\nhost = \"{r_host}\"\nport = {r_port}\nrole = \"auto\"\n\n\
         [[replicas]]\nhost = \"{p_host}\"\nport = {p_port}\nrole = \"auto\"\n"
    );
    let config =
        Config::from_toml(&config_text(&servers), &EnvOverrides::default()).expect("config");
    let listener = pgsplit::bind(config.listen, 128).expect("bind");
    pgsplit::start(Arc::new(config), listener)
        .await
        .expect("start")
}

#[tokio::test]
async fn auto_roles_follow_the_servers() {
    let proxy = swapped_proxy().await;
    let roles = || {
        proxy
            .shared
            .pools
            .servers()
            .map(|s| s.role().as_str())
            .collect::<Vec<_>>()
    };
    let started = Instant::now();
    while roles() != ["replica", "primary"] {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "roles {:?}",
            roles()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = connect(&format!(
        "postgres://app:app@127.0.0.1:{}/app",
        proxy.addr.port()
    ))
    .await;
    let t = unique("auto_role");
    // Writes reach the server that really is the primary, reads the one in recovery.
    c.batch_execute(&format!(
        "create table {t} (id int); insert into {t} values (1)"
    ))
    .await
    .expect("write through the promoted-by-config server");
    // The session's read waits for its own write at most max_replica_wait_ms (5 ms), and a
    // loaded CI machine can take longer to replay a CREATE TABLE: let the replica catch up
    // first, so the read tests routing by role, not replay speed.
    wait_for_replica().await;
    let mut in_recovery = false;
    for _ in 0..3 {
        in_recovery = c
            .query_one("select pg_is_in_recovery()", &[])
            .await
            .unwrap()
            .get(0);
        if in_recovery {
            break;
        }
    }
    assert!(
        in_recovery,
        "the read of no table ran on the primary; servers {:?}",
        pgsplit::admin::snapshot::servers(&proxy.shared)
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
    );
    c.batch_execute(&format!("drop table {t}")).await.unwrap();
    proxy.shutdown().await;
}

#[tokio::test]
async fn lag_and_bans_are_shown_in_stats_metrics_and_console() {
    let proxy = TestProxy::start().await;
    let started = Instant::now();
    // Lag is known once both the primary and the replica have been polled.
    while proxy.handle.shared.pools.replicas[0].health.lag().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "lag never polled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = http(proxy.handle.stats_addr, "GET", "/stats", None).await;
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    let servers = stats["servers"].as_array().expect("servers");
    let replica = servers
        .iter()
        .find(|s| s["role"] == "replica")
        .expect("a replica");
    assert!(replica["lag_bytes"].is_u64(), "{replica}");
    assert!(replica["lag_ms"].is_u64(), "{replica}");
    assert_eq!(replica["banned_ms"], 0);
    assert!(replica["lsn"].as_str().is_some_and(|l| l.contains('/')));
    let primary = servers.iter().find(|s| s["role"] == "primary").unwrap();
    assert!(primary["lag_bytes"].is_null());

    let (_, metrics) = http(proxy.handle.stats_addr, "GET", "/metrics", None).await;
    for family in [
        "replica_lag_bytes",
        "replica_lag_seconds",
        "server_banned_seconds",
        "server_bans",
    ] {
        assert!(metrics.contains(family), "no {family} in /metrics");
    }

    let out = psql(
        proxy.port(),
        "app",
        "app",
        "pgsplit",
        &["-A", "-c", "SHOW SERVERS"],
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    let header = text.lines().next().unwrap_or_default();
    for column in ["banned_ms", "lsn", "lag_bytes", "lag_ms", "lag_ok"] {
        assert!(header.contains(column), "SHOW SERVERS: {text}");
    }
}
