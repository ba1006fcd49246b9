//! What a migrate run will do: pending versions, repairs and skipped statements, or a rollback.

use tokio_postgres::Client;

use super::ledger::Applied;
use super::source::{self, LockMode, Migration, Statement, Target};
use crate::control::db;
use crate::control::ControlError;

/// One unit of work, in the order it runs.
#[derive(Debug)]
pub enum Step {
    /// A pending version: all of its statements, then record it.
    Apply {
        migration: Migration,
        statements: Vec<Statement>,
    },
    /// Statements of an applied version run again: missing or INVALID indexes to rebuild, or statements
    /// skipped for a missing extension that is now installed. `remaining_skipped` is the new
    /// skipped list when it changes.
    Replay {
        migration: Migration,
        statements: Vec<Statement>,
        remaining_skipped: Option<Vec<String>>,
        reason: String,
        /// Statements in the whole file, for progress lines.
        total: usize,
    },
    /// An applied version rolled back with its down file, then deleted from the ledger.
    Revert {
        migration: Migration,
        statements: Vec<Statement>,
    },
}

/// Warns (without stopping) when the files and the ledger disagree.
pub fn warn_about_drift(migrations: &[Migration], applied: &[Applied]) {
    for a in applied {
        match migrations.iter().find(|m| m.version == a.version) {
            None => println!(
                "warning: version {} ({}) is applied but has no migration file here",
                a.version, a.name
            ),
            Some(m) if m.checksum != a.checksum => println!(
                "warning: {}_{}.sql changed since it was applied on {} (checksum differs); \
                 applied versions are never re-run, so put changes in a new version",
                m.version, m.name, a.applied_at
            ),
            Some(_) => {}
        }
    }
}

pub async fn up(
    client: &Client,
    migrations: &[Migration],
    applied: &[Applied],
    target: Option<&str>,
) -> Result<Vec<Step>, ControlError> {
    let limit = target.map_or(u64::MAX, source::version_key);
    let mut steps = Vec::new();
    for m in migrations {
        let statements = source::split(&format!("{}_{}.sql", m.version, m.name), &m.up)?;
        let Some(a) = applied.iter().find(|a| a.version == m.version) else {
            if source::version_key(&m.version) <= limit {
                steps.push(Step::Apply {
                    migration: m.clone(),
                    statements,
                });
            }
            continue;
        };
        if a.checksum != m.checksum {
            continue; // ordinals may have moved; warn_about_drift said so
        }
        let mut reasons = Vec::new();
        let mut replay: Vec<usize> = Vec::new();
        let mut remaining = Vec::new();
        let skipped = a.skipped_statements();
        for (ordinal, ext) in &skipped {
            if db::extension_installed(client, ext).await? {
                replay.push(*ordinal);
                reasons.push(format!(
                    "statement {ordinal} was skipped for {ext}, which is now installed"
                ));
            } else {
                remaining.push(format!("{ordinal}:{ext}"));
            }
        }
        let built: Vec<String> = statements
            .iter()
            .filter(|s| !skipped.iter().any(|(o, _)| *o == s.ordinal))
            .filter_map(|s| s.concurrent_index.clone())
            .collect();
        for (index, state) in broken_indexes(client, &built).await? {
            reasons.push(format!("index {index} is {state}: rebuilding it"));
            if let Some(s) = statements
                .iter()
                .find(|s| s.concurrent_index.as_deref() == Some(index.as_str()))
            {
                replay.push(s.ordinal);
            }
        }
        if replay.is_empty() {
            continue;
        }
        let changed = remaining.len() != skipped.len();
        let total = statements.len();
        steps.push(Step::Replay {
            migration: m.clone(),
            total,
            statements: statements
                .into_iter()
                .filter(|s| replay.contains(&s.ordinal))
                .collect(),
            remaining_skipped: changed.then_some(remaining),
            reason: reasons.join("; "),
        });
    }
    Ok(steps)
}

/// Indexes among `names` that are missing or not valid and ready, with which of the two.
async fn broken_indexes(
    client: &Client,
    names: &[String],
) -> Result<Vec<(String, String)>, ControlError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT n, CASE WHEN i.indexrelid IS NULL THEN 'missing' ELSE 'INVALID' END \
             FROM unnest($1::text[]) AS n \
             LEFT JOIN pg_index i ON i.indexrelid = to_regclass(quote_ident(n)) \
             WHERE i.indexrelid IS NULL OR NOT (i.indisvalid AND i.indisready)",
            &[&names],
        )
        .await
        .map_err(|e| ControlError::query("looking for missing or INVALID indexes", &e))?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(|e| ControlError::query("reading missing or INVALID indexes", &e))
}

/// Rolls back `version` and every applied version after it, newest first.
pub fn down(
    migrations: &[Migration],
    applied: &[Applied],
    version: &str,
) -> Result<Vec<Step>, ControlError> {
    let from = source::version_key(version);
    if !applied
        .iter()
        .any(|a| source::version_key(&a.version) == from)
    {
        let list: Vec<&str> = applied.iter().map(|a| a.version.as_str()).collect();
        return Err(ControlError::Files(format!(
            "version {version} is not applied (applied: {}); nothing to roll back",
            if list.is_empty() {
                "none".into()
            } else {
                list.join(", ")
            }
        )));
    }
    let mut newest_first: Vec<&Applied> = applied
        .iter()
        .filter(|a| source::version_key(&a.version) >= from)
        .collect();
    newest_first.sort_by_key(|a| std::cmp::Reverse(source::version_key(&a.version)));
    let mut steps = Vec::new();
    for a in newest_first {
        let m = migrations
            .iter()
            .find(|m| m.version == a.version)
            .ok_or_else(|| {
                ControlError::Files(format!(
                    "applied version {} has no migration file here, so it cannot be rolled back",
                    a.version
                ))
            })?;
        let text = m.down.as_deref().ok_or_else(|| {
            ControlError::Files(format!(
                "{}_{}.down.sql is missing, so {} cannot be rolled back",
                m.version, m.name, m.version
            ))
        })?;
        let statements = source::split(&format!("{}_{}.down.sql", m.version, m.name), text)?;
        steps.push(Step::Revert {
            migration: m.clone(),
            statements,
        });
    }
    Ok(steps)
}

/// Relations the steps lock, and the tables that get a concurrent index (for the disk estimate).
pub fn targets(steps: &[Step]) -> (Vec<(Target, LockMode)>, Vec<String>) {
    let mut targets = Vec::new();
    let mut indexed = Vec::new();
    for st in steps.iter().flat_map(statements) {
        targets.extend(st.targets.iter().cloned());
        if st.concurrent_index.is_some() {
            for (t, _) in &st.targets {
                if let Target::Table(name) = t {
                    if !indexed.contains(name) {
                        indexed.push(name.clone());
                    }
                }
            }
        }
    }
    (targets, indexed)
}

fn statements(step: &Step) -> &[Statement] {
    match step {
        Step::Apply { statements, .. }
        | Step::Replay { statements, .. }
        | Step::Revert { statements, .. } => statements,
    }
}

pub fn print(steps: &[Step]) {
    println!("plan:");
    for step in steps {
        let (verb, m) = match step {
            Step::Apply { migration, .. } => ("apply", migration),
            Step::Replay { migration, .. } => ("repair", migration),
            Step::Revert { migration, .. } => ("roll back", migration),
        };
        let sts = statements(step);
        let alone = sts.iter().filter(|s| s.alone).count();
        let conditional = sts.iter().filter(|s| !s.requires.is_empty()).count();
        let mut detail = format!(
            "{} statements: {} in a transaction, {alone} alone (CONCURRENTLY)",
            sts.len(),
            sts.len() - alone
        );
        if conditional > 0 {
            detail.push_str(&format!(", {conditional} conditional on an extension"));
        }
        println!("  {verb} {} {}: {detail}", m.version, m.name);
        if let Step::Replay { reason, .. } = step {
            println!("    because {reason}");
        }
    }
}
