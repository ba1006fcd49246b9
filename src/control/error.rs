//! ControlError: every way a control-plane command fails, each saying what to do next.

use std::path::PathBuf;

/// The error of `migrate`, `seed-data` and `analyze`. Display is the whole message a user sees:
/// what failed, the server's words when there are any, and how to proceed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("invalid database URL: {0}; expected e.g. postgres://app:secret@127.0.0.1:5432/app")]
    InvalidUrl(String),

    #[error("cannot connect to {target}: {message}; check --database-url (or DATABASE_URL) and that the server is running")]
    Connect { target: String, message: String },

    #[error("{context} failed: {message}")]
    Query { context: String, message: String },

    #[error("server version {found} is too old: pgsplit migrate needs PostgreSQL 13 or newer (server_version_num >= 130000)")]
    ServerTooOld { found: String },

    #[error("refusing to migrate: {0}")]
    Refused(String),

    #[error("migration files: {0}")]
    Files(String),

    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{0}")]
    MigrationFailed(Box<MigrationFailure>),

    #[error("post-migration validation failed: {0}; run `pgsplit migrate` again: it rebuilds missing and INVALID indexes of applied versions")]
    Validation(String),

    #[error("seed-data: {0}")]
    Seed(String),

    #[error("cannot write the report to {path}: {source}")]
    Export {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where a migration stopped, what state it left, and how to resume (boxed in ControlError to
/// keep the common Result small).
#[derive(Debug, thiserror::Error)]
#[error(
    "migration {version} ({name}) failed at statement {ordinal} (line {line}: {head}): {message}\n\
     {state}\n\
     what to do: {resume}"
)]
pub struct MigrationFailure {
    pub version: String,
    pub name: String,
    pub ordinal: usize,
    pub line: usize,
    pub head: String,
    pub message: String,
    pub state: String,
    pub resume: String,
}

impl ControlError {
    /// A failed query, with the server's message (severity, SQLSTATE, detail, hint) when it sent one.
    pub(crate) fn query(context: impl Into<String>, err: &tokio_postgres::Error) -> Self {
        ControlError::Query {
            context: context.into(),
            message: describe(err),
        }
    }
}

/// The server's ErrorResponse fields when there is one, else the client-side error text.
pub(crate) fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => {
            let mut s = format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            );
            if let Some(detail) = db.detail() {
                s.push_str(&format!("; detail: {detail}"));
            }
            if let Some(hint) = db.hint() {
                s.push_str(&format!("; hint: {hint}"));
            }
            s
        }
        None => err.to_string(),
    }
}
