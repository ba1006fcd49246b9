//! The SQL admin console: `psql -d pgsplit` as an admin user runs SHOW commands over the live snapshot.

use super::show::{self, Show};
pub use super::table::Table;
use crate::error::ClientError;
use crate::protocol::build;
use crate::protocol::frame;
use crate::protocol::messages::{Query, TxStatus};
use crate::protocol::sqlstate::{Severity, SqlState};
use crate::protocol::tags::frontend as tag;
use crate::Shared;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// ParameterStatus values the console reports; it is not a PostgreSQL server, but psql wants these.
pub const PARAMETERS: &[(&str, &str)] = &[
    ("server_version", "15.0 (pgsplit admin console)"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("DateStyle", "ISO, MDY"),
    ("integer_datetimes", "on"),
    ("standard_conforming_strings", "on"),
];

/// Serves SHOW commands until the client leaves; only the simple query protocol.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    shared: &Shared,
    stream: &mut S,
    mut rbuf: BytesMut,
) {
    let mut out = BytesMut::new();
    loop {
        let f = match frame::decode_frontend(&mut rbuf, 1 << 20) {
            Ok(Some(f)) => f,
            Ok(None) => match stream.read_buf(&mut rbuf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
            Err(e) => {
                build::error_response(
                    &mut out,
                    Severity::Fatal,
                    SqlState::PROTOCOL_VIOLATION,
                    &e.to_string(),
                );
                let _ = stream.write_all(&out).await;
                return;
            }
        };
        match f.tag() {
            tag::TERMINATE => return,
            tag::QUERY => {
                let sql =
                    Query::decode(f.body()).map(|q| String::from_utf8_lossy(q.sql).into_owned());
                match sql
                    .map_err(ClientError::Protocol)
                    .and_then(|s| execute(shared, &s))
                {
                    Ok(Some(table)) => write_table(&mut out, &table),
                    Ok(None) => out.extend_from_slice(&{
                        let mut e = BytesMut::new();
                        build::message(&mut e, b'I', |_| {});
                        e
                    }),
                    Err(e) => {
                        e.write(&mut out);
                        if e.severity() == Severity::Fatal {
                            let _ = stream.write_all(&out).await;
                            return;
                        }
                    }
                }
                build::ready_for_query(&mut out, TxStatus::Idle);
            }
            tag::SYNC => {
                build::ready_for_query(&mut out, TxStatus::Idle);
            }
            _ => ClientError::AdminExtendedProtocol.write(&mut out),
        }
        if stream.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
}

fn write_table(out: &mut BytesMut, t: &Table) {
    build::row_description(out, &t.columns);
    for r in &t.rows {
        let values: Vec<Option<&str>> = r.iter().map(|v| v.as_deref()).collect();
        build::data_row(out, &values);
    }
    build::command_complete(out, &format!("SHOW {}", t.rows.len()));
}

/// A console command, parsed once from the query text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// An empty query (psql sends one for a lone `;`).
    Empty,
    Help,
    Show(Show),
    Reload,
}

impl Command {
    /// Case-insensitive, a trailing `;` ignored.
    pub fn parse(sql: &str) -> Result<Command, ClientError> {
        let words: Vec<String> = sql
            .trim()
            .trim_end_matches(';')
            .split_whitespace()
            .map(|w| w.to_ascii_uppercase())
            .collect();
        match words
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice()
        {
            [] => Ok(Command::Empty),
            ["SHOW"] | ["SHOW", "HELP"] | ["HELP"] => Ok(Command::Help),
            ["SHOW", what] => {
                Show::parse(what)
                    .map(Command::Show)
                    .ok_or_else(|| ClientError::AdminUnknownShow {
                        what: what.to_string(),
                        known: show::list(),
                    })
            }
            ["RELOAD"] => Ok(Command::Reload),
            _ => Err(ClientError::AdminUnknownCommand {
                command: sql.trim().to_string(),
                known: format!("{}, RELOAD", show::list()),
            }),
        }
    }

    /// Its result; `Ok(None)` for an empty query.
    pub fn run(self, shared: &Shared) -> Result<Option<Table>, ClientError> {
        match self {
            Command::Empty => Ok(None),
            Command::Help => Ok(Some(Table {
                columns: vec!["command"],
                rows: Show::ALL
                    .iter()
                    .map(|c| vec![Some(format!("SHOW {}", c.name()))])
                    .chain(std::iter::once(vec![Some("RELOAD".to_string())]))
                    .collect(),
            })),
            Command::Show(what) => Ok(Some(what.table(shared))),
            Command::Reload => {
                let summary = crate::reload::reload(shared).map_err(ClientError::ReloadRejected)?;
                Ok(Some(Table {
                    columns: vec!["applied", "restart_required"],
                    rows: vec![vec![
                        Some(summary.applied.join(", ")),
                        Some(summary.restart_required.join(", ")),
                    ]],
                }))
            }
        }
    }
}

/// Runs one console command; `Ok(None)` for an empty query.
pub fn execute(shared: &Shared, sql: &str) -> Result<Option<Table>, ClientError> {
    Command::parse(sql)?.run(shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_command_once() {
        assert_eq!(Command::parse(" ; ").unwrap(), Command::Empty);
        for q in ["SHOW", "show help", "HELP;"] {
            assert_eq!(Command::parse(q).unwrap(), Command::Help);
        }
        assert_eq!(
            Command::parse("show n_plus_one;").unwrap(),
            Command::Show(Show::NPlusOne)
        );
        assert_eq!(Command::parse("reload").unwrap(), Command::Reload);
        for s in Show::ALL {
            assert_eq!(Show::parse(s.name()), Some(*s));
        }
    }

    #[test]
    fn errors_name_what_exists() {
        let all = "SHOW STATS, SHOW QUERIES, SHOW POOLS, SHOW SERVERS, SHOW CLIENTS, SHOW CACHE, SHOW N_PLUS_ONE, SHOW TARGETS";
        assert_eq!(
            Command::parse("show foo").unwrap_err().to_string(),
            format!("unknown SHOW FOO; try one of: {all}")
        );
        assert_eq!(
            Command::parse("  bogus cmd ").unwrap_err().to_string(),
            format!("unknown admin command \"bogus cmd\"; try one of: {all}, RELOAD")
        );
    }
}
