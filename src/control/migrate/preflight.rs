//! Pre-flight checks before a migration: version, extensions, blocking locks, long transactions, disk.

use std::collections::BTreeMap;

use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;

use super::source::{LockMode, Target};
use crate::control::db::{self, Db};
use crate::control::error::describe;
use crate::control::ControlError;

/// The seed's rule of thumb: building the indexes needs free space of about 20% of the table sizes.
const INDEX_SPACE_FRACTION: f64 = 0.20;

/// Runs every check, printing one line each; Err when the migration must not start.
/// `targets` are the relations the pending statements lock; `indexed` the tables getting indexes.
pub async fn run(
    db: &Db,
    version_num: i32,
    targets: &[(Target, LockMode)],
    indexed: &[String],
) -> Result<(), ControlError> {
    let c = &db.client;
    println!("pre-flight checks on {}", db.target);
    if version_num < 130000 {
        return Err(ControlError::ServerTooOld {
            found: version_num.to_string(),
        });
    }
    line(
        "server version",
        "ok",
        &format!("server_version_num {version_num} (>= 130000)"),
    );

    let pgss = pg_stat_statements_state(db).await?;
    line(
        "pg_stat_statements",
        if pgss.0 { "ok" } else { "warn" },
        &pgss.1,
    );

    let postgis_installed = db::extension_installed(c, "postgis").await?;
    let postgis = if postgis_installed {
        ("ok", "installed".to_string())
    } else if db::extension_available(c, "postgis").await? {
        (
            "notice",
            "available but not installed here: statements marked `-- pgsplit:requires postgis` \
             (idx_properties_location_price) will be skipped; run CREATE EXTENSION postgis as a \
             superuser and re-run `pgsplit migrate` to add them"
                .to_string(),
        )
    } else {
        (
            "notice",
            "not available on this server (Debian: postgresql-15-postgis-3): PostGIS statements will be skipped"
                .to_string(),
        )
    };
    line("postgis", postgis.0, &postgis.1);

    blocking_locks(db, targets).await?;
    if !indexed.is_empty() {
        long_transactions(db).await?;
        disk_space(db, indexed).await?;
    }
    Ok(())
}

fn line(check: &str, status: &str, detail: &str) {
    println!("  {check:<20} {status:<7} {detail}");
}

async fn pg_stat_statements_state(db: &Db) -> Result<(bool, String), ControlError> {
    let c = &db.client;
    if db::extension_installed(c, "pg_stat_statements").await? {
        return Ok(
            match c
                .simple_query("SELECT 1 FROM pg_stat_statements LIMIT 1")
                .await
            {
                Ok(_) => (true, "installed and collecting".to_string()),
                Err(e) => (
                    false,
                    format!(
                    "installed but not usable ({}); add it to shared_preload_libraries and restart \
                     (needed by `pgsplit analyze`, not by migrate)",
                    describe(&e)
                ),
                ),
            },
        );
    }
    let hint = if db::extension_available(c, "pg_stat_statements").await? {
        "available but not installed here: CREATE EXTENSION pg_stat_statements (needed by `pgsplit analyze`)"
    } else {
        "not available on this server (contrib package missing); `pgsplit analyze` will lack slow-query data"
    };
    Ok((false, hint.to_string()))
}

/// Refuses when another session holds, or waits for, a lock that conflicts with what the
/// migration will take: the migration would queue behind it and block everyone after it.
async fn blocking_locks(db: &Db, targets: &[(Target, LockMode)]) -> Result<(), ControlError> {
    let ctx = "checking for blocking locks";
    let c = &db.client;
    // Strongest lock needed per existing table; indexes also lock their table.
    let mut needed: BTreeMap<String, LockMode> = BTreeMap::new();
    for (target, mode) in targets {
        let mut names = Vec::new();
        match target {
            Target::Table(t) => names.push(t.clone()),
            Target::Index(i) => {
                names.push(i.clone());
                let row = c
                    .query_opt(
                        "SELECT indrelid::regclass::text FROM pg_index WHERE indexrelid = to_regclass($1)",
                        &[i],
                    )
                    .await
                    .map_err(|e| ControlError::query(ctx, &e))?;
                if let Some(table) = row.and_then(|r| r.try_get::<_, String>(0).ok()) {
                    names.push(table);
                }
            }
        }
        for n in names {
            let e = needed.entry(n).or_insert(*mode);
            *e = (*e).max(*mode);
        }
    }
    let mut blockers = Vec::new();
    for (relation, mode) in &needed {
        let conflicting: Vec<String> = mode
            .conflicts_with()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let rows = c
            .query(
                "SELECT l.pid, l.mode, l.granted, coalesce(a.state, ''), \
                        coalesce(extract(epoch FROM now() - a.xact_start)::bigint, 0), \
                        coalesce(left(a.query, 200), '') \
                 FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'relation' \
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                   AND l.relation = to_regclass($1) AND l.pid IS DISTINCT FROM pg_backend_pid() \
                   AND l.mode = ANY($2) ORDER BY l.granted DESC, l.pid",
                &[relation, &conflicting],
            )
            .await
            .map_err(|e| ControlError::query(ctx, &e))?;
        for r in rows {
            let pid: Option<i32> = r.try_get(0).map_err(|e| ControlError::query(ctx, &e))?;
            let held: String = r.try_get(1).map_err(|e| ControlError::query(ctx, &e))?;
            let granted: bool = r.try_get(2).map_err(|e| ControlError::query(ctx, &e))?;
            let state: String = r.try_get(3).map_err(|e| ControlError::query(ctx, &e))?;
            let secs: i64 = r.try_get(4).map_err(|e| ControlError::query(ctx, &e))?;
            let query: String = r.try_get(5).map_err(|e| ControlError::query(ctx, &e))?;
            let who = pid.map_or("a prepared transaction".to_string(), |p| format!("pid {p}"));
            let how = if granted { "holds" } else { "is queued for" };
            blockers.push(format!(
                "{relation}: {who} {how} {held} ({state}, transaction open {secs}s, query: `{}`); \
                 the migration needs {mode:?}Lock",
                db::preview(&query, 120)
            ));
            if let Some(p) = pid {
                blockers.push(format!("  to end it: SELECT pg_terminate_backend({p});"));
            }
        }
    }
    if blockers.is_empty() {
        let names: Vec<&str> = needed.keys().map(String::as_str).collect();
        let on = if names.is_empty() {
            "no existing target tables".to_string()
        } else {
            names.join(", ")
        };
        line("blocking locks", "ok", &format!("none on {on}"));
        return Ok(());
    }
    line("blocking locks", "FAIL", "conflicting locks held or queued");
    Err(ControlError::Refused(format!(
        "conflicting locks on the tables this migration changes:\n  {}\n\
         waiting behind them would also block every query queued after the migration. Let those \
         transactions finish (or end them), then re-run `pgsplit migrate`.",
        blockers.join("\n  ")
    )))
}

/// CREATE INDEX CONCURRENTLY waits for every transaction older than it; warn about long ones.
async fn long_transactions(db: &Db) -> Result<(), ControlError> {
    let rows = db
        .client
        .query(
            "SELECT pid, coalesce(state, ''), extract(epoch FROM now() - xact_start)::bigint, \
                    coalesce(left(query, 120), '') \
             FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() \
               AND xact_start < now() - interval '60 seconds' ORDER BY xact_start",
            &[],
        )
        .await
        .map_err(|e| ControlError::query("checking for long transactions", &e))?;
    if rows.is_empty() {
        line("long transactions", "ok", "none older than 60s");
    }
    for r in rows {
        let pid: i32 = r.try_get(0).unwrap_or_default();
        let state: String = r.try_get(1).unwrap_or_default();
        let secs: i64 = r.try_get(2).unwrap_or_default();
        let query: String = r.try_get(3).unwrap_or_default();
        line(
            "long transactions",
            "warn",
            &format!(
                "pid {pid} ({state}) open {secs}s: concurrent index builds will wait for it (`{}`)",
                db::preview(&query, 80)
            ),
        );
    }
    Ok(())
}

/// Needed ≈ 20% of the indexed tables; free space only when the server's data directory is on
/// this machine and visible to us (PostgreSQL itself cannot report free disk).
async fn disk_space(db: &Db, indexed: &[String]) -> Result<(), ControlError> {
    let c = &db.client;
    let ctx = "estimating table sizes";
    // pg_table_size takes an AccessShareLock; the lock check ran first, and this bounds any wait.
    c.batch_execute("SET lock_timeout = '2s'")
        .await
        .map_err(|e| ControlError::query(ctx, &e))?;
    let sized = c
        .query_one(
            "SELECT coalesce(sum(pg_table_size(r)), 0)::bigint \
             FROM unnest($1::text[]) AS t(name), LATERAL to_regclass(t.name) AS r WHERE r IS NOT NULL",
            &[&indexed],
        )
        .await
        .and_then(|r| r.try_get::<_, i64>(0));
    c.batch_execute("RESET lock_timeout")
        .await
        .map_err(|e| ControlError::query(ctx, &e))?;
    let tables = sized.map_err(|e| ControlError::query(ctx, &e))?;
    let need = (tables as f64 * INDEX_SPACE_FRACTION) as u64;
    let need_text = format!(
        "need ~{} (20% of {} in the indexed tables)",
        bytes(need),
        bytes(tables as u64)
    );
    match free_space(db).await {
        Ok((free, path)) if free < need => {
            line(
                "disk space",
                "FAIL",
                &format!("{need_text}, free {} on {path}", bytes(free)),
            );
            Err(ControlError::Refused(format!(
                "not enough disk for the index builds: {need_text} but only {} is free on {path}; \
                 free up space or add a tablespace, then re-run",
                bytes(free)
            )))
        }
        Ok((free, path)) => {
            line(
                "disk space",
                "ok",
                &format!("{need_text}, free {} on {path}", bytes(free)),
            );
            Ok(())
        }
        Err(reason) => {
            line(
                "disk space",
                "unknown",
                &format!("{need_text}; free space unknown: {reason}"),
            );
            Ok(())
        }
    }
}

async fn free_space(db: &Db) -> Result<(u64, String), String> {
    let local = db.config.get_hosts().iter().all(|h| match h {
        Host::Tcp(name) => matches!(name.as_str(), "localhost" | "127.0.0.1" | "::1"),
        Host::Unix(_) => true,
    });
    if !local {
        return Err(
            "the server is not on this machine, and PostgreSQL cannot report free disk".into(),
        );
    }
    let dir: String = match db
        .client
        .query_one("SELECT current_setting('data_directory')", &[])
        .await
    {
        Ok(row) => row.try_get(0).map_err(|e| describe(&e))?,
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
            return Err(
                "data_directory is visible only to superusers and pg_read_all_settings members"
                    .into(),
            )
        }
        Err(e) => return Err(format!("cannot read data_directory: {}", describe(&e))),
    };
    statvfs_free(&dir)
        .map(|free| (free, dir.clone()))
        .map_err(|e| format!("statvfs({dir}): {e}"))
}

fn statvfs_free(path: &str) -> Result<u64, String> {
    let c_path = std::ffi::CString::new(path).map_err(|e| e.to_string())?;
    // SAFETY: statvfs only writes into `st`, which is a correctly sized, zeroed out-parameter,
    // and reads the NUL-terminated path that outlives the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    // The field widths differ between platforms, hence the casts.
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Human-readable byte count (binary units).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
