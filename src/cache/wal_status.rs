//! What each database's WAL follower is doing (running, or why not, with the server's SQLSTATE and the fix) and how far it has applied the WAL.

use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use thiserror::Error;

/// Why a WAL follower is not following.
#[derive(Debug, Error, Clone)]
pub enum WalError {
    #[error("cache.invalidation = \"wal\" needs a configured user to read the WAL (cache.wal_user, or a user with admin = true)")]
    NoUser,
    /// The server refused: its own message and SQLSTATE, and what to change.
    #[error("{step}: {message} (SQLSTATE {code}){}", fix_suffix(.fix))]
    Server {
        step: &'static str,
        code: String,
        message: String,
        fix: Option<String>,
    },
    /// No answer from the server (unreachable, timed out, connection lost).
    #[error("{step}: {reason}")]
    Connection { step: &'static str, reason: String },
    #[error("decoding the WAL: {0}")]
    Decode(String),
}

fn fix_suffix(fix: &Option<String>) -> String {
    fix.as_ref()
        .map(|f| format!("; fix: {f}"))
        .unwrap_or_default()
}

impl WalError {
    /// `e` from `step`, keeping the server's message and SQLSTATE (tokio-postgres shows only
    /// "db error" for them) and naming the setting that fixes the common refusals.
    pub fn from_pg(step: &'static str, user: &str, e: &tokio_postgres::Error) -> WalError {
        let Some(db) = e.as_db_error() else {
            // The source holds the I/O or protocol reason; the error itself says only its kind.
            let reason = match std::error::Error::source(e) {
                Some(s) => format!("{e}: {s}"),
                None => e.to_string(),
            };
            return WalError::Connection { step, reason };
        };
        let code = db.code().code().to_string();
        let mut message = db.message().to_string();
        if let Some(d) = db.detail() {
            message.push_str(". ");
            message.push_str(d);
        }
        let fix = fix_for(&code, &message, user);
        WalError::Server {
            step,
            code,
            message,
            fix,
        }
    }

    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            WalError::Server { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn fix(&self) -> Option<String> {
        match self {
            WalError::NoUser => {
                Some("add cache.wal_user = \"<a user with the REPLICATION attribute>\"".into())
            }
            WalError::Server { fix, .. } => fix.clone(),
            _ => None,
        }
    }
}

/// The change that makes the server accept a temporary logical slot, for the refusals seen in
/// practice (PostgreSQL 15 to 17 wording).
fn fix_for(code: &str, message: &str, user: &str) -> Option<String> {
    let m = message.to_ascii_lowercase();
    if code == "42501" || m.contains("replication role") || m.contains("replication attribute") {
        Some(format!("the role needs the REPLICATION attribute: ALTER ROLE \"{user}\" REPLICATION; (or set cache.wal_user to a role that has it)"))
    } else if m.contains("wal_level") {
        Some("set wal_level = logical on the primary (postgresql.conf or ALTER SYSTEM) and restart it".into())
    } else if code == "53400"
        || m.contains("max_replication_slots")
        || m.contains("replication slots are in use")
    {
        Some("raise max_replication_slots on the primary (each pgsplit instance holds one slot per database) and restart it, or drop unused slots (pg_replication_slots)".into())
    } else if code == "58P01" && m.contains("test_decoding") {
        Some("install the test_decoding plugin on the primary (Debian: postgresql-contrib-<version>)".into())
    } else if code.starts_with("28") {
        Some(format!(
            "let \"{user}\" log in to the primary (password, pg_hba.conf), or set cache.wal_user"
        ))
    } else {
        None
    }
}

/// One database's follower: how far it has applied the WAL and what it last reported.
#[derive(Default, Debug)]
pub struct Follower {
    /// Every commit whose WAL ends at or below this was decoded and invalidated (0: not following).
    pub applied: AtomicU64,
    state: Mutex<State>,
}

#[derive(Default, Debug, Clone)]
struct State {
    running: bool,
    user: String,
    error: Option<WalError>,
    /// Milliseconds since the Unix epoch of the last change of `running` or `error`.
    since_ms: u64,
}

impl Follower {
    pub fn running(&self, user: &str) {
        let mut s = self.state.lock();
        *s = State {
            running: true,
            user: user.to_string(),
            error: None,
            since_ms: now_ms(),
        };
    }

    pub fn stopped(&self, user: &str, error: WalError) {
        self.applied.store(0, Ordering::Release);
        let mut s = self.state.lock();
        *s = State {
            running: false,
            user: user.to_string(),
            error: Some(error),
            since_ms: now_ms(),
        };
    }

    /// Advances the applied position (never lowers it while attached).
    pub fn applied_to(&self, lsn: u64) {
        self.applied.fetch_max(lsn, Ordering::AcqRel);
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Every database's follower, by the client-facing database name.
#[derive(Default, Debug)]
pub struct Followers {
    by_db: RwLock<HashMap<Box<str>, Arc<Follower>>>,
}

impl Followers {
    pub fn get(&self, db: &str) -> Arc<Follower> {
        if let Some(f) = self.by_db.read().get(db) {
            return f.clone();
        }
        self.by_db.write().entry(db.into()).or_default().clone()
    }

    /// Where `db`'s follower has applied the WAL; 0 when it is not following.
    pub fn applied(&self, db: &str) -> u64 {
        self.by_db
            .read()
            .get(db)
            .map_or(0, |f| f.applied.load(Ordering::Acquire))
    }

    /// For the stats endpoint, by database name.
    pub fn snapshot(&self) -> Vec<FollowerSnapshot> {
        let mut all: Vec<FollowerSnapshot> = self
            .by_db
            .read()
            .iter()
            .map(|(db, f)| {
                let s = f.state.lock().clone();
                let applied = f.applied.load(Ordering::Acquire);
                FollowerSnapshot {
                    database: db.to_string(),
                    running: s.running,
                    user: s.user,
                    applied_lsn: (applied > 0).then(|| crate::protocol::lsn::format(applied)),
                    sqlstate: s
                        .error
                        .as_ref()
                        .and_then(|e| e.sqlstate().map(str::to_string)),
                    fix: s.error.as_ref().and_then(WalError::fix),
                    error: s.error.map(|e| e.to_string()),
                    since_ms: s.since_ms,
                }
            })
            .collect();
        all.sort_by(|a, b| a.database.cmp(&b.database));
        all
    }
}

/// One database's WAL invalidation, as /stats shows it.
#[derive(Clone, Debug, Serialize)]
pub struct FollowerSnapshot {
    pub database: String,
    /// Attached to its slot and reading.
    pub running: bool,
    /// The role it reads the WAL as.
    pub user: String,
    /// Every commit up to here has invalidated the cache.
    pub applied_lsn: Option<String>,
    /// Why it is not running: the server's message, SQLSTATE and the fix.
    pub error: Option<String>,
    pub sqlstate: Option<String>,
    pub fix: Option<String>,
    /// Unix milliseconds of the last change.
    pub since_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_refusals_name_their_fix() {
        let fix = |code, msg| fix_for(code, msg, "cachewal").unwrap_or_default();
        assert!(fix(
            "42501",
            "must be superuser or replication role to use replication slots"
        )
        .contains("ALTER ROLE \"cachewal\" REPLICATION"));
        assert!(fix(
            "42501",
            "permission denied to use replication slots. Only roles with the REPLICATION attribute may use replication slots."
        )
        .contains("REPLICATION attribute"));
        assert!(
            fix("55000", "logical decoding requires wal_level >= logical")
                .contains("wal_level = logical")
        );
        assert!(fix("53400", "all replication slots are in use").contains("max_replication_slots"));
        assert!(fix(
            "55000",
            "replication slots can only be used if max_replication_slots > 0"
        )
        .contains("max_replication_slots"));
        assert_eq!(fix_for("XX000", "something else", "u"), None);
    }

    #[test]
    fn a_stopped_follower_reports_code_and_fix_and_applies_nothing() {
        let all = Followers::default();
        let f = all.get("app");
        f.running("u");
        f.applied_to(0x1_0000_0010);
        assert_eq!(all.applied("app"), 0x1_0000_0010);
        let snap = all.snapshot();
        assert!(snap[0].running);
        assert_eq!(snap[0].applied_lsn.as_deref(), Some("1/10"));
        f.stopped(
            "u",
            WalError::Server {
                step: "creating the replication slot",
                code: "42501".into(),
                message: "must be superuser or replication role to use replication slots".into(),
                fix: fix_for("42501", "", "u"),
            },
        );
        assert_eq!(all.applied("app"), 0);
        let s = &all.snapshot()[0];
        assert!(!s.running);
        assert_eq!(s.sqlstate.as_deref(), Some("42501"));
        let e = s.error.clone().unwrap_or_default();
        assert!(
            e.contains("SQLSTATE 42501") && e.contains("REPLICATION"),
            "{e}"
        );
        assert_eq!(all.applied("other"), 0);
    }
}
