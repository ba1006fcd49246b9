//! WAL invalidation that cannot start says why: the pgsplit binary with `invalidation = "wal"` for a role without REPLICATION logs and shows in /stats (and SHOW CACHE) the server's SQLSTATE and the missing attribute.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Kills the child however the test ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_role_without_replication_is_named_in_the_log_and_in_stats() {
    // `app` logs in but has neither REPLICATION nor superuser (scripts/cluster.sh).
    let admin = common::superuser().await;
    let attrs = admin
        .query_one(
            "select rolreplication, rolsuper from pg_roles where rolname = 'app'",
            &[],
        )
        .await
        .expect("role app");
    assert!(!attrs.get::<_, bool>(0) && !attrs.get::<_, bool>(1));
    let dir = std::env::temp_dir().join(common::unique("walerr"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let text = common::config_text(
        "[cache]\nenabled = true\ninvalidation = \"wal\"\nwal_user = \"app\"\nwal_poll_ms = 10",
    );
    std::fs::write(dir.join("proxy.toml"), text).expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgsplit"))
        .args(["--log-format", "json", "serve", "--config"])
        .arg(dir.join("proxy.toml"))
        .env("PGSPLIT_PRIMARY", common::primary_addr())
        .env("PGSPLIT_REPLICAS", common::replica_addrs())
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pgsplit");
    let stderr = child.stderr.take().expect("stderr");
    let child = Child(child);
    let logs = Arc::new(Mutex::new(Vec::<String>::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = logs.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if v["fields"]["message"] == "pgsplit is ready" {
                    let field = |k: &str| v["fields"][k].as_str().unwrap_or("").to_string();
                    let _ = tx.send((field("stats"), field("listen")));
                }
            }
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    });
    let (stats, listen) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("pgsplit did not report ready");
    let stats: std::net::SocketAddr = stats.parse().expect("stats address");
    let listen: std::net::SocketAddr = listen.parse().expect("listen address");

    let deadline = Instant::now() + Duration::from_secs(20);
    let follower = loop {
        let (status, body) = common::http(stats, "GET", "/stats", None).await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("stats json");
        let wal = v["cache"]["wal"].as_array().cloned().unwrap_or_default();
        if let Some(f) = wal.iter().find(|f| f["error"].is_string()) {
            break f.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no WAL follower error in /stats: {}",
            v["cache"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(follower["database"], "app");
    assert_eq!(follower["running"], false);
    assert_eq!(follower["user"], "app");
    assert_eq!(follower["sqlstate"], "42501", "{follower}");
    let error = follower["error"].as_str().unwrap_or_default();
    // The server's own words, not tokio-postgres's "db error".
    assert!(
        error.contains("replication") && !error.contains("db error"),
        "{error}"
    );
    let fix = follower["fix"].as_str().unwrap_or_default();
    assert!(
        fix.contains("REPLICATION attribute") && fix.contains("ALTER ROLE \"app\" REPLICATION"),
        "{fix}"
    );

    // The log says the same, with the SQLSTATE as a field of its own.
    let logged = logs
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("WAL invalidation stopped"))
        });
    let Some(line) = logged else {
        panic!("no WAL invalidation warning in the log");
    };
    assert_eq!(line["fields"]["sqlstate"], "42501", "{line}");
    let logged_error = line["fields"]["error"].as_str().unwrap_or_default();
    assert!(
        logged_error.contains("REPLICATION attribute") && logged_error.contains("SQLSTATE 42501"),
        "{logged_error}"
    );
    // And the console's SHOW CACHE, per database.
    let out = common::psql(
        listen.port(),
        "app",
        "app",
        "pgsplit",
        &["-At", "-F", "|", "-c", "SHOW CACHE"],
    )
    .await;
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("app: creating a temporary logical replication slot")
            && shown.contains("SQLSTATE 42501"),
        "{shown}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}
