//! A primary and replica of a test binary's own, for tests that restart, freeze or kill servers (never the shared cluster).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use tokio_postgres::Client;

const BINDIR: &str = "/usr/lib/postgresql/15/bin";

pub struct OwnCluster {
    pub dir: PathBuf,
    pub primary_port: u16,
    pub replica_port: u16,
}

impl OwnCluster {
    /// The cluster under `$<VAR>_DIR`, `$<VAR>_PRIMARY_PORT`, `$<VAR>_REPLICA_PORT`, else the defaults.
    pub fn from_env(var: &str, dir: &str, primary_port: u16, replica_port: u16) -> OwnCluster {
        let port = |suffix: &str, default: u16| {
            std::env::var(format!("{var}_{suffix}"))
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        OwnCluster {
            dir: std::env::var(format!("{var}_DIR"))
                .unwrap_or_else(|_| dir.into())
                .into(),
            primary_port: port("PRIMARY_PORT", primary_port),
            replica_port: port("REPLICA_PORT", replica_port),
        }
    }

    /// Creates the cluster the first time, starts whatever is stopped, waits for the replica.
    pub fn ensure_running(&self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cluster.sh");
        let out = Command::new(script)
            .arg("start")
            .env("PGSPLIT_CLUSTER_DIR", &self.dir)
            .env("PGSPLIT_PRIMARY_PORT", self.primary_port.to_string())
            .env("PGSPLIT_REPLICA_PORT", self.replica_port.to_string())
            .output()
            .expect("run scripts/cluster.sh");
        assert!(
            out.status.success(),
            "cluster.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// After a failover test: a replica that was promoted can never follow its old primary
    /// again, so it is stopped and removed, and `ensure_running` clones a fresh one.
    pub fn discard_promoted_replica(&self) {
        let replica = self.dir.join("replica");
        if !replica.exists() || replica.join("standby.signal").exists() {
            return;
        }
        // A pidfile can outlive its postmaster (a machine restarted mid-run): stop only a live one.
        if self.is_running("replica") {
            self.pg_ctl("replica", &["stop", "-m", "immediate", "-w"]);
        }
        std::fs::remove_dir_all(&replica).expect("remove the promoted replica");
    }

    /// Whether a node's postmaster is alive (`pg_ctl status` exits 0 only then).
    pub fn is_running(&self, node: &str) -> bool {
        let data = self.dir.join(node).display().to_string();
        let ctl = format!("{BINDIR}/pg_ctl");
        let out = if unsafe { libc::geteuid() } == 0 {
            Command::new("runuser")
                .args(["-u", "postgres", "--", &ctl, "-D", &data, "status"])
                .current_dir("/")
                .output()
        } else {
            Command::new(&ctl).args(["-D", &data, "status"]).output()
        };
        out.map(|o| o.status.success()).unwrap_or(false)
    }

    /// pg_ctl as the owner of the cluster (postgres when the tests run as root).
    pub fn pg_ctl(&self, node: &str, args: &[&str]) {
        let data = self.dir.join(node);
        let log = self.dir.join(format!("{node}.log"));
        let mut full: Vec<String> = vec![
            format!("{BINDIR}/pg_ctl"),
            "-D".into(),
            data.display().to_string(),
        ];
        full.extend(args.iter().map(|s| s.to_string()));
        if matches!(args.first(), Some(&"start") | Some(&"restart")) {
            full.extend(["-l".into(), log.display().to_string()]);
        }
        let out = if unsafe { libc::geteuid() } == 0 {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .args(&full)
                .current_dir("/")
                .output()
        } else {
            Command::new(&full[0]).args(&full[1..]).output()
        }
        .expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl {args:?} on {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn primary_addr(&self) -> String {
        format!("127.0.0.1:{}", self.primary_port)
    }

    pub fn replica_addr(&self) -> String {
        format!("127.0.0.1:{}", self.replica_port)
    }

    pub async fn primary_superuser(&self) -> Client {
        super::connect(&format!(
            "postgres://postgres:postgres@{}/app",
            self.primary_addr()
        ))
        .await
    }

    pub async fn replica_superuser(&self) -> Client {
        super::connect(&format!(
            "postgres://postgres:postgres@{}/app",
            self.replica_addr()
        ))
        .await
    }

    /// The PIDs of a node's postmaster and every process it started.
    pub fn processes(&self, node: &str) -> Vec<i32> {
        let pidfile = self.dir.join(node).join("postmaster.pid");
        let Some(postmaster) = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
        else {
            return Vec::new();
        };
        let mut pids = vec![postmaster];
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                // The parent PID is the second field after the parenthesized command name.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<i32>().ok());
                if ppid == Some(postmaster) {
                    pids.push(pid);
                }
            }
        }
        pids
    }

    /// Sends `signal` (SIGSTOP / SIGCONT) to every process of `node`.
    pub fn signal(&self, node: &str, signal: i32) {
        for pid in self.processes(node) {
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }

    /// Waits until the replica has replayed everything the primary has inserted so far.
    pub async fn wait_for_replica(&self) {
        let lsn: String = self
            .primary_superuser()
            .await
            .query_one("select pg_current_wal_insert_lsn()::text", &[])
            .await
            .expect("lsn")
            .get(0);
        let replica = self.replica_superuser().await;
        for _ in 0..1000 {
            let row = replica
                .query_one(
                    "select coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn - 40, false)",
                    &[&lsn],
                )
                .await
                .expect("replay lsn");
            if row.get::<_, bool>(0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("own cluster's replica did not catch up to {lsn}");
    }
}
