//! The SQL admin console: `psql -d pgsplit` as an admin user runs SHOW commands over the live snapshot.

use super::snapshot;
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

const COMMANDS: &[&str] = &[
    "STATS",
    "QUERIES",
    "POOLS",
    "SERVERS",
    "CLIENTS",
    "CACHE",
    "N_PLUS_ONE",
    "TARGETS",
];

/// A result set of text columns.
pub struct Table {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Option<String>>>,
}

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
                    .map_err(|e| e.to_string())
                    .and_then(|s| execute(shared, &s))
                {
                    Ok(Some(table)) => write_table(&mut out, &table),
                    Ok(None) => out.extend_from_slice(&{
                        let mut e = BytesMut::new();
                        build::message(&mut e, b'I', |_| {});
                        e
                    }),
                    Err(msg) => build::error_response(
                        &mut out,
                        Severity::Error,
                        SqlState::FEATURE_NOT_SUPPORTED,
                        &msg,
                    ),
                }
                build::ready_for_query(&mut out, TxStatus::Idle);
            }
            tag::SYNC => {
                build::ready_for_query(&mut out, TxStatus::Idle);
            }
            _ => {
                build::error_response(
                    &mut out,
                    Severity::Error,
                    SqlState::FEATURE_NOT_SUPPORTED,
                    "the admin console speaks the simple query protocol only (psql does)",
                );
            }
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

/// Runs one console command; `Ok(None)` for an empty query.
pub fn execute(shared: &Shared, sql: &str) -> Result<Option<Table>, String> {
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
        [] => Ok(None),
        ["SHOW"] | ["SHOW", "HELP"] | ["HELP"] => Ok(Some(Table {
            columns: vec!["command"],
            rows: COMMANDS
                .iter()
                .map(|c| vec![Some(format!("SHOW {c}"))])
                .chain(std::iter::once(vec![Some("RELOAD".to_string())]))
                .collect(),
        })),
        ["SHOW", what] => show(shared, what).map(Some),
        ["RELOAD"] => match crate::reload::reload(shared) {
            Ok(summary) => Ok(Some(Table {
                columns: vec!["applied", "restart_required"],
                rows: vec![vec![
                    Some(summary.applied.join(", ")),
                    Some(summary.restart_required.join(", ")),
                ]],
            })),
            Err(e) => Err(format!(
                "configuration rejected, the running one stays: {e}"
            )),
        },
        _ => Err(format!(
            "unknown admin command \"{}\"; try one of: {}, RELOAD",
            sql.trim(),
            COMMANDS
                .iter()
                .map(|c| format!("SHOW {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn ms(v: f64) -> Option<String> {
    Some(format!("{v:.3}"))
}

fn n<T: ToString>(v: T) -> Option<String> {
    Some(v.to_string())
}

/// Unix seconds as RFC 3339 UTC with milliseconds.
fn utc(unix_s: f64) -> String {
    let ms = (unix_s.max(0.0) * 1000.0) as i64;
    let (days, rem_ms) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = crate::civil::civil_from_days(days);
    let s = rem_ms / 1000;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        rem_ms % 1000
    )
}

fn show(shared: &Shared, what: &str) -> Result<Table, String> {
    match what {
        "STATS" => {
            let q = shared.stats.queries.snapshot();
            let (count, p) = shared.stats.queries.overall();
            let calls: u64 = q.iter().map(|r| r.calls).sum();
            let errors: u64 = q.iter().map(|r| r.errors).sum();
            let rows: u64 = q.iter().map(|r| r.rows).sum();
            let total: f64 = q.iter().map(|r| r.total_ms).sum();
            Ok(Table {
                columns: vec![
                    "uptime_s",
                    "clients",
                    "fingerprints",
                    "calls",
                    "errors",
                    "rows",
                    "total_ms",
                    "p50_ms",
                    "p90_ms",
                    "p95_ms",
                    "p99_ms",
                    "folded",
                ],
                rows: vec![vec![
                    n(shared.stats.uptime_s()),
                    n(shared.cancels.len()),
                    n(q.len()),
                    n(calls.max(count)),
                    n(errors),
                    n(rows),
                    ms(total),
                    ms(p.p50_ms),
                    ms(p.p90_ms),
                    ms(p.p95_ms),
                    ms(p.p99_ms),
                    n(shared.stats.queries.folded()),
                ]],
            })
        }
        "QUERIES" => {
            let mut q = shared.stats.queries.snapshot();
            q.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
            q.truncate(100);
            Ok(Table {
                columns: vec![
                    "fingerprint",
                    "database",
                    "query",
                    "calls",
                    "errors",
                    "rows",
                    "total_ms",
                    "mean_ms",
                    "p50_ms",
                    "p90_ms",
                    "p95_ms",
                    "p99_ms",
                    "primary_calls",
                    "replica_calls",
                    "cache_hits",
                ],
                rows: q
                    .into_iter()
                    .map(|r| {
                        vec![
                            Some(r.fingerprint),
                            Some(r.database),
                            Some(r.query),
                            n(r.calls),
                            n(r.errors),
                            n(r.rows),
                            ms(r.total_ms),
                            ms(r.mean_ms),
                            ms(r.percentiles.p50_ms),
                            ms(r.percentiles.p90_ms),
                            ms(r.percentiles.p95_ms),
                            ms(r.percentiles.p99_ms),
                            n(r.primary_calls),
                            n(r.replica_calls),
                            n(r.cache_hits),
                        ]
                    })
                    .collect(),
            })
        }
        "POOLS" => Ok(Table {
            columns: vec![
                "pool",
                "role",
                "max_size",
                "size",
                "idle",
                "busy",
                "waiting",
                "acquisitions",
                "acquire_p95_ms",
                "efficiency",
                "timeouts",
                "opened",
                "broken",
            ],
            rows: snapshot::pools(shared)
                .into_iter()
                .map(|p| {
                    vec![
                        Some(p.name),
                        n(p.role),
                        n(p.max_size),
                        n(p.size),
                        n(p.idle),
                        n(p.busy),
                        n(p.waiting),
                        n(p.acquisitions),
                        ms(p.acquire_p95_ms),
                        p.efficiency.map(|e| format!("{e:.4}")),
                        n(p.timeouts),
                        n(p.connections_opened),
                        n(p.connections_broken),
                    ]
                })
                .collect(),
        }),
        "SERVERS" => Ok(Table {
            columns: vec![
                "server",
                "role",
                "reachable",
                "outstanding",
                "banned_ms",
                "bans",
                "lsn",
                "lag_bytes",
                "lag_ms",
                "lag_ok",
                "last_error",
                "reads",
                "reads_after_wait",
                "checked_in_line",
                "sent_again",
                "to_primary",
                "wait_p99_ms",
            ],
            rows: snapshot::servers(shared)
                .into_iter()
                .map(|s| {
                    let to_primary = s
                        .reads
                        .to_primary
                        .iter()
                        .filter(|(_, n)| **n > 0)
                        .map(|(why, n)| format!("{why}={n}"))
                        .collect::<Vec<_>>()
                        .join(" ");
                    vec![
                        Some(s.server),
                        n(s.role),
                        n(s.reachable),
                        n(s.outstanding),
                        n(s.banned_ms),
                        n(s.bans),
                        s.lsn,
                        s.lag_bytes.map(|v| v.to_string()),
                        s.lag_ms.map(|v| v.to_string()),
                        n(s.lag_ok),
                        s.last_error,
                        n(s.reads.served),
                        n(s.reads.served_after_wait),
                        n(s.reads.checked_in_line),
                        n(s.reads.sent_again),
                        Some(to_primary),
                        s.reads.wait_p99_ms.map(|v| format!("{v:.2}")),
                    ]
                })
                .collect(),
        }),
        "CLIENTS" => Ok(Table {
            columns: vec![
                "pid",
                "user",
                "database",
                "application_name",
                "address",
                "connected_s",
                "state",
                "server",
            ],
            rows: shared
                .cancels
                .list()
                .into_iter()
                .map(|c| {
                    let age = c
                        .info
                        .connected_at
                        .elapsed()
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    vec![
                        n(c.pid),
                        Some(c.info.user.clone()),
                        Some(c.info.database.clone()),
                        Some(c.info.application_name.clone()),
                        c.info.peer.map(|p| p.to_string()),
                        n(age),
                        n(if c.server.is_some() { "active" } else { "idle" }),
                        c.server,
                    ]
                })
                .collect(),
        }),
        "CACHE" => {
            let c = snapshot::snapshot(shared).cache;
            Ok(Table {
                columns: vec![
                    "enabled",
                    "invalidation",
                    "hits",
                    "misses",
                    "hit_rate",
                    "coalesced",
                    "entries",
                    "bytes",
                    "max_bytes",
                    "evictions_size",
                    "evictions_expired",
                    "fills",
                    "fills_stale",
                    "stale_dropped",
                    "invalidations_write",
                    "invalidations_unknown",
                    "invalidations_wal",
                    "wal_followers",
                ],
                rows: vec![vec![
                    n(c.enabled),
                    n(c.invalidation),
                    n(c.hits),
                    n(c.misses),
                    c.hit_rate.map(|h| format!("{h:.4}")),
                    n(c.coalesced),
                    n(c.entries),
                    n(c.bytes),
                    n(c.max_bytes),
                    n(c.evictions_size),
                    n(c.evictions_expired),
                    n(c.fills),
                    n(c.fills_stale),
                    n(c.stale_dropped),
                    n(c.invalidations.write),
                    n(c.invalidations.unknown),
                    n(c.invalidations.wal),
                    // Per database: running, or the error that names its fix.
                    Some(
                        c.wal
                            .iter()
                            .map(|f| match &f.error {
                                _ if f.running => format!("{}: running", f.database),
                                Some(e) => format!("{}: {e}", f.database),
                                None => format!("{}: starting", f.database),
                            })
                            .collect::<Vec<_>>()
                            .join("; "),
                    ),
                ]],
            })
        }
        "N_PLUS_ONE" => Ok(Table {
            columns: vec![
                "fingerprint",
                "database",
                "query",
                "parent_fingerprint",
                "parent_query",
                "kind",
                "occurrences",
                "last_count",
                "max_count",
                "total_ms",
                "first_seen",
                "last_seen",
                "application_name",
                "suggestion",
            ],
            rows: shared
                .n_plus_one
                .registry
                .snapshot()
                .into_iter()
                .map(|f| {
                    vec![
                        Some(f.fingerprint),
                        Some(f.database),
                        Some(f.query),
                        f.parent_fingerprint,
                        Some(f.parent_query).filter(|q| !q.is_empty()),
                        n(f.kind.as_str()),
                        n(f.occurrences),
                        n(f.last_count),
                        n(f.max_count),
                        ms(f.total_ms),
                        Some(utc(f.first_seen)),
                        Some(utc(f.last_seen)),
                        Some(f.application_name),
                        Some(f.suggestion),
                    ]
                })
                .collect(),
        }),
        "TARGETS" => Ok(Table {
            columns: vec!["target", "comparison", "threshold", "actual", "status"],
            rows: snapshot::targets(shared)
                .rows()
                .into_iter()
                .map(|(name, t)| {
                    vec![
                        n(name),
                        n(t.comparison),
                        n(t.target),
                        t.actual.map(|a| format!("{a:.4}")),
                        n(t.status),
                    ]
                })
                .collect(),
        }),
        other => Err(format!(
            "unknown SHOW {other}; try one of: {}",
            COMMANDS
                .iter()
                .map(|c| format!("SHOW {c}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}
