//! Driver conformance: the scripts under tests/drivers/ (asyncpg, psycopg 3, psycopg2, SQLAlchemy, node-postgres, pgjdbc) run as subprocesses through an in-process pgsplit, with the result cache off and on.
//!
//! Each script prints `ok <check>` per passed check and exits non-zero on the first failure;
//! a run passes only with exit code 0 and exactly the expected checks, in order. The drivers
//! are installed by scripts/test.sh (`ensure_drivers`) under `PGSPLIT_DRIVERS_DIR`
//! (default /opt/pgsplit-drivers). A missing driver fails the test under CI=true; elsewhere
//! it is reported on stderr and that driver is left out.

mod common;

use common::TestProxy;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One script run is given this long; the slowest (asyncpg's 100,000-row COPY) takes seconds.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

struct Driver {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    /// What must exist for the driver to run at all.
    needs: Vec<PathBuf>,
    checks: &'static [&'static str],
}

fn drivers_dir() -> PathBuf {
    std::env::var_os("PGSPLIT_DRIVERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/pgsplit-drivers"))
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/drivers")
}

fn drivers() -> Vec<Driver> {
    let dir = drivers_dir();
    let python = dir.join("venv/bin/python");
    let node_modules = dir.join("node/node_modules");
    let jar = PathBuf::from("/usr/share/java/postgresql.jar");
    let script = |f: &str| scripts_dir().join(f).to_string_lossy().into_owned();
    let python_driver = |name, file: &str, checks| Driver {
        name,
        program: python.clone(),
        args: vec![script(file)],
        env: vec![],
        needs: vec![python.clone()],
        checks,
    };
    vec![
        python_driver(
            "asyncpg",
            "asyncpg_checks.py",
            &[
                "fetch_execute",
                "executemany",
                "errors_sqlstate",
                "transactions",
                "statement_cache_pooled",
                "statement_cache_after_ddl",
                "result_columns_after_ddl",
                "copy_records_1_to_100000",
                "copy_to_table_after_prepare",
                "copy_in_transaction",
                "copy_fails_midway",
                "copy_out_after_prepare",
                "listen_notify",
                "binary_codecs",
            ],
        ),
        python_driver(
            "psycopg",
            "psycopg_checks.py",
            &[
                "pipeline",
                "pipeline_error_after_flush",
                "binary_copy",
                "named_cursors_in_transaction",
                "prepare_threshold",
            ],
        ),
        python_driver(
            "psycopg2",
            "psycopg2_checks.py",
            &[
                "execute_values",
                "named_cursors",
                "copy_expert",
                "errors_sqlstate",
            ],
        ),
        python_driver(
            "sqlalchemy",
            "sqlalchemy_checks.py",
            &["orm_psycopg", "orm_asyncpg"],
        ),
        Driver {
            name: "node-postgres",
            program: PathBuf::from("node"),
            args: vec![script("node/checks.js")],
            env: vec![("NODE_PATH", node_modules.to_string_lossy().into_owned())],
            needs: vec![node_modules.join("pg"), node_modules.join("pg-cursor")],
            checks: &["named_prepared_queries", "pg_cursor", "pg_copy_streams"],
        },
        Driver {
            name: "pgjdbc",
            program: PathBuf::from("java"),
            args: vec![
                "-cp".into(),
                jar.to_string_lossy().into_owned(),
                script("jdbc/JdbcChecks.java"),
            ],
            env: vec![],
            needs: vec![jar],
            checks: &[
                "prepare_threshold",
                "batches",
                "binary_transfer",
                "autocommit_off",
                "copy_manager",
            ],
        },
    ]
}

fn on_path(program: &Path) -> bool {
    if program.is_absolute() {
        return program.exists();
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// What of the driver is missing, if anything.
fn missing(d: &Driver) -> Option<String> {
    let mut gone: Vec<String> = d
        .needs
        .iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !on_path(&d.program) {
        gone.push(d.program.display().to_string());
    }
    (!gone.is_empty()).then(|| gone.join(", "))
}

/// Runs one driver's script against the proxy; returns its failure, if any.
async fn run(d: &Driver, url: &str, mode: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let tag = common::unique(&format!("{}_{mode}", d.name.replace('-', "")));
    let mut cmd = tokio::process::Command::new(&d.program);
    cmd.args(&d.args)
        .env("PGSPLIT_DRIVER_URL", url)
        .env("PGSPLIT_DRIVER_TAG", &tag)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (k, v) in &d.env {
        cmd.env(k, v);
    }
    let out = match tokio::time::timeout(SCRIPT_TIMEOUT, cmd.output()).await {
        Err(_) => {
            return Err(format!(
                "{} ({mode}): no exit within {SCRIPT_TIMEOUT:?}",
                d.name
            ))
        }
        Ok(Err(e)) => return Err(format!("{} ({mode}): cannot start: {e}", d.name)),
        Ok(Ok(out)) => out,
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let passed: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ok "))
        .collect();
    if !out.status.success() || passed != d.checks {
        return Err(format!(
            "{} ({mode}): exit {:?}\nexpected checks {:?}\npassed   checks {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            d.name, out.status.code(), d.checks, passed
        ));
    }
    Ok(started.elapsed())
}

async fn conformance(cache: bool) {
    let mode = if cache { "cache_on" } else { "cache_off" };
    // Fewer server connections than the scripts open clients, so statements and portals
    // really move between server connections.
    let mut extra = String::from("[pool]\nprimary_size = 4\nreplica_size = 4\n");
    if cache {
        extra.push_str("[cache]\nenabled = true\n");
    }
    let proxy = TestProxy::start_with(&extra).await;
    let url = proxy.url("app", "app");
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let mut runnable = Vec::new();
    for d in drivers() {
        match missing(&d) {
            None => runnable.push(d),
            Some(what) if ci => panic!(
                "driver {} is not installed (missing: {what}); scripts/test.sh installs it",
                d.name
            ),
            Some(what) => eprintln!(
                "SKIPPED driver {} ({mode}): missing {what}; run scripts/test.sh to install it",
                d.name
            ),
        }
    }
    let started = Instant::now();
    let results = futures_util::future::join_all(runnable.iter().map(|d| run(d, &url, mode))).await;
    let mut failures = Vec::new();
    for (d, r) in runnable.iter().zip(results) {
        match r {
            Ok(took) => eprintln!(
                "{} ({mode}): {} checks passed in {:.1} s",
                d.name,
                d.checks.len(),
                took.as_secs_f64()
            ),
            Err(e) => failures.push(e),
        }
    }
    eprintln!(
        "drivers ({mode}): {} of {} passed in {:.1} s",
        runnable.len() - failures.len(),
        runnable.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        !runnable.is_empty(),
        "no driver installed; run scripts/test.sh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_through_pgsplit_cache_off() {
    conformance(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drivers_through_pgsplit_cache_on() {
    conformance(true).await;
}
