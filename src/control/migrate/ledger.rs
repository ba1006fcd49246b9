//! schema_migrations: which versions are fully applied, and the migration advisory lock.

use tokio_postgres::{Client, GenericClient};

use crate::control::ControlError;

/// Key of the session advisory lock that keeps two `pgsplit migrate` runs apart ("pgsplit" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x0070_6773_706c_6974;

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version     text PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    duration_ms bigint NOT NULL,
    skipped     text[] NOT NULL DEFAULT '{}'
)";

/// A row of schema_migrations. `skipped` holds `"<ordinal>:<extension>"` for statements left out
/// because an extension was missing; a later run applies them once it is installed.
#[derive(Debug, Clone)]
pub struct Applied {
    pub version: String,
    pub name: String,
    pub checksum: String,
    pub applied_at: String,
    pub duration_ms: i64,
    pub skipped: Vec<String>,
}

impl Applied {
    /// Statement ordinals and the extension each one waits for.
    pub fn skipped_statements(&self) -> Vec<(usize, String)> {
        self.skipped
            .iter()
            .filter_map(|s| s.split_once(':'))
            .filter_map(|(n, ext)| n.parse().ok().map(|n| (n, ext.to_string())))
            .collect()
    }
}

pub async fn ensure_table(client: &Client) -> Result<(), ControlError> {
    client
        .batch_execute(CREATE_TABLE)
        .await
        .map_err(|e| ControlError::query("creating schema_migrations", &e))
}

/// Applied versions; empty when the table does not exist yet (so --dry-run creates nothing).
pub async fn read(client: &Client) -> Result<Vec<Applied>, ControlError> {
    let ctx = "reading schema_migrations";
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| ControlError::query(ctx, &e))?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT version, name, checksum, applied_at::text, duration_ms, skipped \
             FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(|e| ControlError::query(ctx, &e))?;
    rows.iter()
        .map(|r| {
            Ok(Applied {
                version: r.try_get(0)?,
                name: r.try_get(1)?,
                checksum: r.try_get(2)?,
                applied_at: r.try_get(3)?,
                duration_ms: r.try_get(4)?,
                skipped: r.try_get(5)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(|e| ControlError::query(ctx, &e))
}

pub async fn record<C: GenericClient>(
    client: &C,
    version: &str,
    name: &str,
    checksum: &str,
    duration_ms: i64,
    skipped: &[String],
) -> Result<(), ControlError> {
    client
        .execute(
            "INSERT INTO schema_migrations (version, name, checksum, duration_ms, skipped) \
             VALUES ($1, $2, $3, $4, $5)",
            &[&version, &name, &checksum, &duration_ms, &skipped],
        )
        .await
        .map(drop)
        .map_err(|e| {
            ControlError::query(
                format!("recording version {version} in schema_migrations"),
                &e,
            )
        })
}

pub async fn set_skipped(
    client: &Client,
    version: &str,
    skipped: &[String],
) -> Result<(), ControlError> {
    client
        .execute(
            "UPDATE schema_migrations SET skipped = $2 WHERE version = $1",
            &[&version, &skipped],
        )
        .await
        .map(drop)
        .map_err(|e| ControlError::query(format!("updating schema_migrations for {version}"), &e))
}

pub async fn remove<C: GenericClient>(client: &C, version: &str) -> Result<(), ControlError> {
    client
        .execute(
            "DELETE FROM schema_migrations WHERE version = $1",
            &[&version],
        )
        .await
        .map(drop)
        .map_err(|e| {
            ControlError::query(
                format!("deleting version {version} from schema_migrations"),
                &e,
            )
        })
}

/// Takes the session-level migration lock, or says which session holds it.
pub async fn lock(client: &Client) -> Result<(), ControlError> {
    let ctx = "taking the migration advisory lock";
    let got: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| ControlError::query(ctx, &e))?;
    if got {
        return Ok(());
    }
    // Session advisory locks on a bigint key appear as classid = high half, objid = low half.
    let holder: Option<i32> = client
        .query_opt(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND classid::bigint = ($1 >> 32) AND objid::bigint = ($1 & 4294967295) LIMIT 1",
            &[&MIGRATION_LOCK_KEY],
        )
        .await
        .map_err(|e| ControlError::query(ctx, &e))?
        .and_then(|r| r.try_get(0).ok());
    let who = holder.map_or("another session".to_string(), |pid| {
        format!("backend pid {pid}")
    });
    Err(ControlError::Refused(format!(
        "another `pgsplit migrate` is running on this database ({who} holds the migration lock); \
         wait for it to finish, or end that session with SELECT pg_terminate_backend(pid)"
    )))
}
