//! Running statements: transactional groups, concurrent builds with progress, INVALID index repair.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::ledger;
use super::source::{Migration, Statement};
use crate::control::db::{self, Db};
use crate::control::error::describe;
use crate::control::{ControlError, MigrationFailure};

/// How often pg_stat_progress_create_index is polled during a concurrent build.
const PROGRESS_POLL: Duration = Duration::from_millis(250);

/// What to do with schema_migrations once every statement succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ledger {
    /// Up: insert the version (in the same transaction when the migration is one transaction).
    Insert,
    /// Down: delete the version.
    Delete,
    /// Replaying statements that were skipped earlier: the caller updates `skipped`.
    Leave,
}

pub struct Runner<'a> {
    pub db: &'a Db,
    /// A second connection, so progress can be read while the first one builds an index.
    pub monitor: &'a Client,
    /// Backend pid of `db`, whose row pg_stat_progress_create_index shows.
    pub backend_pid: i32,
}

impl Runner<'_> {
    /// Runs `stmts` of migration `m` in file order: consecutive ordinary statements together in
    /// one transaction, CONCURRENTLY ones alone. `total` is the file's statement count, for
    /// progress lines. Returns the `"<ordinal>:<extension>"` skips.
    pub async fn execute(
        &self,
        m: &Migration,
        stmts: &[&Statement],
        total: usize,
        ledger: Ledger,
    ) -> Result<Vec<String>, ControlError> {
        let started = Instant::now();
        let groups = group(stmts);
        let single_tx = groups.len() == 1 && !groups[0][0].alone;
        let mut skipped = Vec::new();
        for g in &groups {
            if g[0].alone {
                for st in g {
                    self.alone(m, st, ledger, total, &mut skipped).await?;
                }
            } else {
                let in_tx = if single_tx {
                    Some((ledger, started))
                } else {
                    None
                };
                self.transaction(m, g, in_tx, ledger, total, &mut skipped)
                    .await?;
            }
        }
        if !single_tx {
            let c = &self.db.client;
            match ledger {
                Ledger::Insert => {
                    ledger::record(
                        c,
                        &m.version,
                        &m.name,
                        &m.checksum,
                        elapsed_ms(started),
                        &skipped,
                    )
                    .await?
                }
                Ledger::Delete => ledger::remove(c, &m.version).await?,
                Ledger::Leave => {}
            }
        }
        Ok(skipped)
    }

    async fn transaction(
        &self,
        m: &Migration,
        group: &[&Statement],
        ledger_in_tx: Option<(Ledger, Instant)>,
        direction: Ledger,
        total: usize,
        skipped: &mut Vec<String>,
    ) -> Result<(), ControlError> {
        let c = &self.db.client;
        let rolled_back = || {
            let first = group.first().map_or(0, |s| s.ordinal);
            let last = group.last().map_or(0, |s| s.ordinal);
            format!("the transaction holding statements {first}-{last} was rolled back: none of them is applied")
        };
        c.batch_execute("BEGIN")
            .await
            .map_err(|e| ControlError::query("BEGIN", &e))?;
        for st in group {
            if let Some(ext) = self.missing_extension(st).await? {
                skip_notice(st, &ext, total);
                skipped.push(format!("{}:{ext}", st.ordinal));
                continue;
            }
            let t = Instant::now();
            let head = format!("  [{:>2}/{total}] {}", st.ordinal, db::preview(&st.sql, 70));
            if let Err(e) = c.batch_execute(&st.sql).await {
                println!("{head} FAILED");
                let _ = c.batch_execute("ROLLBACK").await;
                return Err(failure(m, st, &describe(&e), rolled_back(), direction));
            }
            println!("{head} ok ({} ms)", t.elapsed().as_millis());
        }
        if let Some((ledger, started)) = ledger_in_tx {
            let recorded = match ledger {
                Ledger::Insert => {
                    ledger::record(
                        c,
                        &m.version,
                        &m.name,
                        &m.checksum,
                        elapsed_ms(started),
                        skipped,
                    )
                    .await
                }
                Ledger::Delete => ledger::remove(c, &m.version).await,
                Ledger::Leave => Ok(()),
            };
            if let Err(e) = recorded {
                let _ = c.batch_execute("ROLLBACK").await;
                return Err(e);
            }
        }
        if let Err(e) = c.batch_execute("COMMIT").await {
            let st = group
                .last()
                .copied()
                .ok_or_else(|| ControlError::Files("empty statement group".into()))?;
            return Err(failure(
                m,
                st,
                &format!("COMMIT: {}", describe(&e)),
                rolled_back(),
                direction,
            ));
        }
        Ok(())
    }

    async fn alone(
        &self,
        m: &Migration,
        st: &Statement,
        direction: Ledger,
        total: usize,
        skipped: &mut Vec<String>,
    ) -> Result<(), ControlError> {
        if let Some(ext) = self.missing_extension(st).await? {
            skip_notice(st, &ext, total);
            skipped.push(format!("{}:{ext}", st.ordinal));
            return Ok(());
        }
        let partial = "statements before it that ran outside a transaction stay applied; this one did not complete"
            .to_string();
        let t = Instant::now();
        let label = st
            .concurrent_index
            .clone()
            .unwrap_or_else(|| db::preview(&st.sql, 70));
        println!("  [{:>2}/{total}] {label}", st.ordinal);
        if let Some(index) = &st.concurrent_index {
            if self.index_validity(index).await? == Some(false) {
                println!("         {index} is INVALID (an interrupted concurrent build): dropping it CONCURRENTLY to rebuild");
                let drop = format!(
                    "DROP INDEX CONCURRENTLY IF EXISTS {}",
                    db::quote_ident(index)
                );
                if let Err(e) = self.db.client.batch_execute(&drop).await {
                    return Err(failure(
                        m,
                        st,
                        &format!("dropping the invalid index: {}", describe(&e)),
                        partial,
                        direction,
                    ));
                }
            }
        }
        let result = match &st.concurrent_index {
            Some(index) => self.with_progress(index, &st.sql).await,
            None => self.db.client.batch_execute(&st.sql).await,
        };
        if let Err(e) = result {
            return Err(failure(m, st, &describe(&e), partial, direction));
        }
        if let Some(index) = &st.concurrent_index {
            match self.index_validity(index).await? {
                Some(true) => {}
                state => {
                    let what = if state.is_none() {
                        "does not exist"
                    } else {
                        "is INVALID"
                    };
                    let msg = format!("the build reported success but {index} {what} afterwards");
                    return Err(failure(m, st, &msg, partial, direction));
                }
            }
            let size = self.index_size(index).await.unwrap_or(0);
            println!(
                "         {index} ok ({} ms, {})",
                t.elapsed().as_millis(),
                super::preflight::bytes(size)
            );
        } else {
            println!("         ok ({} ms)", t.elapsed().as_millis());
        }
        Ok(())
    }

    /// Runs a CREATE INDEX CONCURRENTLY on the main connection while the monitor connection polls
    /// its progress. The build future is only ever polled by reference, so a progress tick never
    /// cancels it.
    async fn with_progress(&self, index: &str, sql: &str) -> Result<(), tokio_postgres::Error> {
        let build = self.db.client.batch_execute(sql);
        tokio::pin!(build);
        let mut tick = tokio::time::interval(PROGRESS_POLL);
        let mut last = String::new();
        loop {
            tokio::select! {
                result = &mut build => return result,
                _ = tick.tick() => {
                    if let Some(p) = self.progress().await {
                        if p != last {
                            println!("         {index}: {p}");
                            last = p;
                        }
                    }
                }
            }
        }
    }

    /// One line from pg_stat_progress_create_index, rounded to 10% so it prints only on change.
    async fn progress(&self) -> Option<String> {
        let row = self
            .monitor
            .query_opt(
                "SELECT p.phase, p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total, \
                        p.lockers_done, p.lockers_total, p.current_locker_pid, \
                        coalesce(left(a.query, 80), '') \
                 FROM pg_stat_progress_create_index p \
                 LEFT JOIN pg_stat_activity a ON a.pid = p.current_locker_pid \
                 WHERE p.pid = $1",
                &[&self.backend_pid],
            )
            .await
            .ok()??;
        let phase: String = row.try_get(0).ok()?;
        let pct = |done: i64, total: i64| {
            if total > 0 {
                Some(done * 10 / total * 10)
            } else {
                None
            }
        };
        let n = |i: usize| row.try_get::<_, i64>(i).unwrap_or(0);
        let detail = if phase.starts_with("waiting") {
            let locker = n(7);
            let query: String = row.try_get(8).unwrap_or_default();
            let who = if locker > 0 {
                format!(", now pid {locker} `{}`", db::preview(&query, 60))
            } else {
                String::new()
            };
            format!(" ({}/{} transactions{who})", n(5), n(6))
        } else if phase.contains("sorting") || phase.contains("loading") {
            // blocks_* still hold the finished table scan here; tuples_* is what moves.
            pct(n(3), n(4)).map_or(String::new(), |p| format!(" {p}% of tuples"))
        } else {
            pct(n(1), n(2)).map_or(String::new(), |p| format!(" {p}% of blocks"))
        };
        Some(format!("{phase}{detail}"))
    }

    /// Some(valid) when the index exists, None when it does not.
    async fn index_validity(&self, index: &str) -> Result<Option<bool>, ControlError> {
        let ctx = format!("checking index {index}");
        let row = self
            .db
            .client
            .query_opt(
                "SELECT indisvalid AND indisready FROM pg_index WHERE indexrelid = to_regclass($1)",
                &[&db::quote_ident(index)],
            )
            .await
            .map_err(|e| ControlError::query(&ctx, &e))?;
        row.map(|r| r.try_get(0))
            .transpose()
            .map_err(|e| ControlError::query(&ctx, &e))
    }

    async fn index_size(&self, index: &str) -> Option<u64> {
        let row = self
            .db
            .client
            .query_one(
                "SELECT pg_relation_size(to_regclass($1))",
                &[&db::quote_ident(index)],
            )
            .await
            .ok()?;
        row.try_get::<_, Option<i64>>(0)
            .ok()
            .flatten()
            .map(|n| n.max(0) as u64)
    }

    /// The first extension the statement requires that is not installed, if any.
    async fn missing_extension(&self, st: &Statement) -> Result<Option<String>, ControlError> {
        for ext in &st.requires {
            if !db::extension_installed(&self.db.client, ext).await? {
                return Ok(Some(ext.clone()));
            }
        }
        Ok(None)
    }
}

/// Consecutive statements with the same `alone` flag.
fn group<'s>(stmts: &[&'s Statement]) -> Vec<Vec<&'s Statement>> {
    let mut groups: Vec<Vec<&Statement>> = Vec::new();
    for st in stmts {
        match groups.last_mut() {
            Some(g) if !st.alone && !g[0].alone => g.push(st),
            _ => groups.push(vec![st]),
        }
    }
    groups
}

fn skip_notice(st: &Statement, ext: &str, total: usize) {
    let what = st
        .concurrent_index
        .clone()
        .unwrap_or_else(|| db::preview(&st.sql, 60));
    println!(
        "  [{:>2}/{total}] NOTICE: skipping {what}: requires extension {ext}, which is not installed in this \
         database; after CREATE EXTENSION {ext}, `pgsplit migrate` adds it",
        st.ordinal
    );
}

fn elapsed_ms(started: Instant) -> i64 {
    i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX)
}

fn failure(
    m: &Migration,
    st: &Statement,
    message: &str,
    state: String,
    direction: Ledger,
) -> ControlError {
    let v = &m.version;
    let (state_suffix, resume) = match direction {
        Ledger::Delete => (
            format!("version {v} is still recorded in schema_migrations"),
            format!(
                "fix the cause and run `pgsplit migrate --down {v}` again; the rollback's drops use IF EXISTS, \
                 so what was already dropped is skipped"
            ),
        ),
        _ => (
            format!("version {v} is not recorded in schema_migrations"),
            format!(
                "fix the cause and run `pgsplit migrate` again: {v} is re-run from its first statement, what \
                 already ran is a no-op (IF NOT EXISTS / OR REPLACE), and an index left INVALID by a failed \
                 build is dropped and rebuilt"
            ),
        ),
    };
    ControlError::MigrationFailed(Box::new(MigrationFailure {
        version: v.clone(),
        name: m.name.clone(),
        ordinal: st.ordinal,
        line: st.line,
        head: db::preview(&st.sql, 80),
        message: message.to_string(),
        state: format!("{state}; {state_suffix}"),
        resume,
    }))
}
