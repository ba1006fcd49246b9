//! Real client programs through the proxy: psql and pgbench in all three query modes.

mod common;
use common::*;
use std::process::Command;

fn pg_bin(name: &str) -> String {
    let dir = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into());
    format!("{dir}/{name}")
}

#[tokio::test]
async fn psql_reads_on_replica_writes_on_primary() {
    let proxy = TestProxy::start().await;
    let port = proxy.port().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(pg_bin("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "app",
                "-d",
                "app",
                "-AtX",
            ])
            .args(["-c", "select pg_is_in_recovery()"])
            .args([
                "-c",
                "begin",
                "-c",
                "select pg_is_in_recovery()",
                "-c",
                "commit",
            ])
            .args(["-c", "\\copy (select 1 union all select 2) to stdout"])
            .env("PGPASSWORD", "app")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        vec!["t", "BEGIN", "f", "COMMIT", "1", "2"],
        "{stdout}"
    );
    proxy.handle.shutdown().await;
}

#[tokio::test]
async fn pgbench_in_every_mode_has_no_failures() {
    // As many server connections as clients: in prepared mode pgbench prepares each statement
    // with the synchronous PQprepare on first use, which blocks all clients of its thread; with
    // fewer connections than clients, those clients can sit in open transactions holding every
    // connection while the blocked one waits for a slot (PgBouncer deadlocks the same way).
    // Sharing few connections among many clients is tested with tokio-postgres instead.
    let proxy = TestProxy::start_with("[pool]\nprimary_size = 8\nreplica_size = 8\n").await;
    let port = proxy.port().to_string();
    // pgbench's tables live in a schema of their own, chosen through the startup `options`
    // (which the proxy replays as SET on every server connection), so runs never collide.
    let schema = unique("pgb");
    superuser()
        .await
        .batch_execute(&format!("create schema {schema} authorization app"))
        .await
        .unwrap();
    let options = format!("-c search_path={schema}");
    let init = tokio::task::spawn_blocking({
        let port = port.clone();
        let options = options.clone();
        move || {
            Command::new(pg_bin("pgbench"))
                .args([
                    "-i",
                    "-s",
                    "1",
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "app",
                    "app",
                ])
                .env("PGPASSWORD", "app")
                .env("PGOPTIONS", options)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        init.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    wait_for_replica().await;
    for mode in ["simple", "extended", "prepared"] {
        for select_only in [false, true] {
            let port = port.clone();
            let options = options.clone();
            let out = tokio::task::spawn_blocking(move || {
                let mut cmd = Command::new(pg_bin("pgbench"));
                cmd.args(["-n", "-c", "8", "-j", "2", "-t", "100", "-M", mode])
                    .args(["-h", "127.0.0.1", "-p", &port, "-U", "app", "app"])
                    .env("PGPASSWORD", "app")
                    .env("PGOPTIONS", options);
                if select_only {
                    cmd.arg("-S");
                }
                cmd.output().unwrap()
            })
            .await
            .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "pgbench -M {mode}: {}\n{stdout}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                stdout.contains("number of failed transactions: 0"),
                "pgbench -M {mode} (select-only {select_only}):\n{stdout}"
            );
            assert!(
                stdout.contains("number of transactions actually processed: 800/800"),
                "{stdout}"
            );
        }
    }
    superuser()
        .await
        .batch_execute(&format!("drop schema {schema} cascade"))
        .await
        .unwrap();
    proxy.handle.shutdown().await;
}
