//! `pgsplit migrate`: applies and rolls back the versioned SQL files in migrations/ safely.
//!
//! A version is recorded in schema_migrations only once all of its statements succeeded.
//! Ordinary statements of a version run in one transaction; CONCURRENTLY statements run alone
//! (PostgreSQL refuses them in a transaction) with progress from pg_stat_progress_create_index.
//! Every concurrent build first drops an INVALID index of the same name left by an interrupted
//! build, because IF NOT EXISTS would silently keep it. A `-- pgsplit:requires <extension>`
//! comment above a statement makes it conditional on the extension (see migrations/README.md).

mod exec;
mod ledger;
mod plan;
mod preflight;
pub mod source;
mod validate;

use std::path::PathBuf;
use std::time::Instant;

use crate::control::db;
use crate::control::ControlError;
use exec::{Ledger, Runner};
use plan::Step;

/// Arguments of `pgsplit migrate`.
#[derive(clap::Args, Debug, Clone)]
pub struct MigrateArgs {
    /// URL of the database to migrate (the primary), e.g. postgres://app:app@127.0.0.1:15432/app.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,

    /// Run the pre-flight checks and print what would run, changing nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Roll back VERSION and every applied version after it, newest first, with the .down.sql files.
    #[arg(long, value_name = "VERSION", conflicts_with = "target")]
    pub down: Option<String>,

    /// Apply pending versions up to and including VERSION (default: all of them).
    #[arg(long, value_name = "VERSION")]
    pub target: Option<String>,

    /// Read NNN_name.sql / NNN_name.down.sql from DIR instead of the copies built into the binary.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Runs `pgsplit migrate`.
pub async fn run(args: &MigrateArgs) -> Result<(), ControlError> {
    let started = Instant::now();
    let migrations = source::load(args.dir.as_deref())?;
    for v in args.down.iter().chain(args.target.iter()) {
        if !migrations
            .iter()
            .any(|m| source::version_key(&m.version) == source::version_key(v))
        {
            let known: Vec<&str> = migrations.iter().map(|m| m.version.as_str()).collect();
            return Err(ControlError::Files(format!(
                "no migration has version {v}; known versions: {}",
                known.join(", ")
            )));
        }
    }

    let main = db::connect(&args.database_url, "pgsplit migrate").await?;
    let version_num = db::server_version_num(&main.client).await?;
    if version_num < 130000 {
        return Err(ControlError::ServerTooOld {
            found: version_num.to_string(),
        });
    }
    if !args.dry_run {
        ledger::ensure_table(&main.client).await?;
        ledger::lock(&main.client).await?;
    }
    let applied = ledger::read(&main.client).await?;
    plan::warn_about_drift(&migrations, &applied);

    let steps = match &args.down {
        Some(v) => plan::down(&migrations, &applied, v)?,
        None => plan::up(&main.client, &migrations, &applied, args.target.as_deref()).await?,
    };
    if steps.is_empty() {
        let versions: Vec<String> = applied
            .iter()
            .map(|a| {
                format!(
                    "{} (applied {}, took {} ms)",
                    a.version, a.applied_at, a.duration_ms
                )
            })
            .collect();
        let list = if versions.is_empty() {
            "none".to_string()
        } else {
            versions.join(", ")
        };
        println!("nothing to do: applied versions are {list}");
        validate::report(&main.client, false).await?;
        return Ok(());
    }

    let (targets, indexed) = plan::targets(&steps);
    preflight::run(&main, version_num, &targets, &indexed).await?;
    plan::print(&steps);
    if args.dry_run {
        println!("dry run: nothing was changed");
        return Ok(());
    }

    let monitor = db::connect(&args.database_url, "pgsplit migrate (progress)").await?;
    let backend_pid: i32 = main
        .client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| ControlError::query("reading pg_backend_pid()", &e))?;
    if version_num >= 140000 {
        // If this process dies mid-build, the server notices within a second and cancels the build
        // (leaving an INVALID index the next run repairs) instead of building on for nobody.
        main.client
            .batch_execute("SET client_connection_check_interval = '1s'")
            .await
            .map_err(|e| ControlError::query("setting client_connection_check_interval", &e))?;
    }
    let runner = Runner {
        db: &main,
        monitor: &monitor.client,
        backend_pid,
    };
    for step in &steps {
        let t = Instant::now();
        match step {
            Step::Apply {
                migration,
                statements,
            } => {
                println!(
                    "applying {} {} ({} statements)",
                    migration.version,
                    migration.name,
                    statements.len()
                );
                let refs: Vec<_> = statements.iter().collect();
                let skipped = runner
                    .execute(migration, &refs, refs.len(), Ledger::Insert)
                    .await?;
                let note = if skipped.is_empty() {
                    String::new()
                } else {
                    format!(", skipped {}", skipped.join(" "))
                };
                println!(
                    "applied {} in {} ms{note}",
                    migration.version,
                    t.elapsed().as_millis()
                );
            }
            Step::Replay {
                migration,
                statements,
                remaining_skipped,
                total,
                reason,
            } => {
                println!("{} {}: {reason}", migration.version, migration.name);
                let refs: Vec<_> = statements.iter().collect();
                let mut skipped = runner
                    .execute(migration, &refs, *total, Ledger::Leave)
                    .await?;
                if let Some(remaining) = remaining_skipped {
                    skipped.extend(remaining.iter().cloned());
                    ledger::set_skipped(&main.client, &migration.version, &skipped).await?;
                }
                println!(
                    "done with {} in {} ms",
                    migration.version,
                    t.elapsed().as_millis()
                );
            }
            Step::Revert {
                migration,
                statements,
            } => {
                println!(
                    "rolling back {} {} ({} statements)",
                    migration.version,
                    migration.name,
                    statements.len()
                );
                let refs: Vec<_> = statements.iter().collect();
                runner
                    .execute(migration, &refs, refs.len(), Ledger::Delete)
                    .await?;
                println!(
                    "rolled back {} in {} ms",
                    migration.version,
                    t.elapsed().as_millis()
                );
            }
        }
    }
    validate::report(&main.client, true).await?;
    println!("migrate finished in {} ms", started.elapsed().as_millis());
    Ok(())
}
