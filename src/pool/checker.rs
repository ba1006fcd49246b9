//! The health task of one server: a control connection polled every `replication.lag_poll_ms` for role, WAL position and lag.

use super::health::record_end;
use super::role::Role;
use super::set::{Pools, ServerInfo};
use crate::config::{Config, ServerAddr};
use crate::protocol::lsn;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How the health task logs in: the first configured user and database, as the catalog load does.
pub fn control_login(config: &Config, addr: &ServerAddr) -> Option<tokio_postgres::Config> {
    let (user, db) = (config.users.first()?, config.databases.first()?);
    Some(crate::backend::control::login(
        &addr.host,
        addr.port,
        db,
        user,
        "pgsplit-health",
        config.health.check_timeout,
    ))
}

/// A `pg_lsn` text read right after a commit, as the position a replica must reach to show it.
pub fn parse_record_end(text: &str) -> Option<u64> {
    lsn::parse(text).map(record_end)
}

const POLL_SQL: &str = "select pg_is_in_recovery(), (case when pg_is_in_recovery() \
    then pg_last_wal_replay_lsn() else pg_current_wal_insert_lsn() end)::text";

/// Polls `server` until shutdown. Failures ban the server; reconnects back off from one poll
/// interval doubling up to `health.ban_ms`, so a dead server costs one attempt per ban at most.
pub async fn run(
    pools: &Pools,
    server: Arc<ServerInfo>,
    config: Arc<Config>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(login) = control_login(&config, &server.addr) else {
        return;
    };
    server.health.set_checked();
    let poll = config.replication.lag_poll;
    let timeout = config.health.check_timeout;
    let max_backoff = config.health.ban.max(poll);
    let mut backoff = poll;
    let mut client: Option<(tokio_postgres::Client, tokio::task::JoinHandle<()>)> = None;
    let mut login_refused = false;
    loop {
        let result = match &client {
            Some((c, _)) => poll_once(pools, &server, c, timeout).await,
            None => match connect(&login, timeout).await {
                Ok(c) => {
                    client = Some(c);
                    continue;
                }
                Err(Refused::Login(reason)) => {
                    // The server is up and answering; only our login is refused (a user or
                    // database that exists for clients but not for the control plane, or
                    // pg_hba wanting TLS). Banning it would stop all traffic to a healthy
                    // server, so it keeps its state and the check tries again later.
                    server.health.check_answered();
                    if !std::mem::replace(&mut login_refused, true) {
                        tracing::warn!(server = %server.addr, %reason,
                            "health checks cannot log in; the server is not banned for it, but lag and role are not tracked");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(max_backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    continue;
                }
                Err(Refused::Down(e)) => Err(e),
            },
        };
        login_refused = false;
        let wait = match result {
            Ok(()) => {
                server.health.check_passed();
                backoff = poll;
                poll
            }
            Err(Failed { reason, stalled }) => {
                if !server.health.is_banned() {
                    tracing::warn!(server = %server.addr, %reason, "health check failed");
                }
                if stalled {
                    server.health.check_stalled(&reason);
                } else {
                    server.health.check_failed(&reason);
                }
                if let Some((_, task)) = client.take() {
                    task.abort();
                }
                let w = backoff;
                backoff = (backoff * 2).min(max_backoff);
                w
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// A failed check; `stalled` when the server did not answer at all within the check timeout.
struct Failed {
    reason: String,
    stalled: bool,
}

impl From<String> for Failed {
    fn from(reason: String) -> Failed {
        Failed {
            reason,
            stalled: false,
        }
    }
}

/// Why a health connection could not be made.
enum Refused {
    /// Unreachable, timed out, or refusing everyone (starting up, shutting down, full).
    Down(Failed),
    /// The server answered but rejected this login (SQLSTATE class 28, or 3D000).
    Login(String),
}

async fn connect(
    login: &tokio_postgres::Config,
    timeout: Duration,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), Refused> {
    let attempt = tokio::time::timeout(timeout, login.connect(tokio_postgres::NoTls)).await;
    match attempt {
        Ok(Ok((client, conn))) => Ok((
            client,
            tokio::spawn(async move {
                let _ = conn.await;
            }),
        )),
        Ok(Err(e)) => {
            let code = e.as_db_error().map(|d| d.code().code().to_string());
            let reason = format!("health check cannot connect: {e}");
            match code.as_deref() {
                Some(c) if c.starts_with("28") || c == "3D000" => Err(Refused::Login(reason)),
                _ => Err(Refused::Down(reason.into())),
            }
        }
        Err(_) => Err(Refused::Down(Failed {
            reason: format!("health check connect timed out after {timeout:?}"),
            stalled: true,
        })),
    }
}

async fn poll_once(
    pools: &Pools,
    server: &ServerInfo,
    client: &tokio_postgres::Client,
    timeout: Duration,
) -> Result<(), Failed> {
    let ticket = pools.lsns.poll_ticket();
    let at = pools.lsns.now();
    let row = match tokio::time::timeout(timeout, client.query_one(POLL_SQL, &[])).await {
        Ok(Ok(row)) => row,
        Ok(Err(e)) => return Err(format!("health check failed: {e}").into()),
        Err(_) => {
            return Err(Failed {
                reason: format!("health check timed out after {timeout:?}"),
                stalled: true,
            })
        }
    };
    let in_recovery: bool = row.try_get(0).map_err(|e| Failed::from(e.to_string()))?;
    let lsn: Option<String> = row.try_get(1).map_err(|e| Failed::from(e.to_string()))?;
    let lsn = lsn.as_deref().and_then(lsn::parse).unwrap_or(0);
    let h = &server.health;
    let now_role = if in_recovery {
        Role::Replica
    } else {
        Role::Primary
    };
    if now_role != h.role() {
        if h.auto_role {
            tracing::warn!(server = %server.addr, role = now_role.as_str(), "server changed role; routing follows");
            h.set_role(now_role);
        } else if server.configured_role == Role::Replica {
            // A promoted replica is no longer fed by the primary: its reads could be stale forever.
            return Err(Failed::from(
                "replica is not in recovery (promoted?) and its role is fixed: role = \"auto\" on its [[replicas]] entry (kept under PGSPLIT_REPLICAS) follows a promotion"
                    .to_string(),
            ));
        } else if !h
            .role_mismatch
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(server = %server.addr, "the primary is in recovery; writes will fail until it is promoted (role = \"auto\" follows role changes)");
        }
    } else {
        h.role_mismatch
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
    let now = Instant::now();
    if in_recovery {
        h.set_lsn(lsn);
        if let Some((bytes, ms)) = pools.wal_history.lag(lsn, now) {
            h.set_lag(bytes, ms);
        }
    } else {
        let lsn = record_end(lsn);
        h.set_lsn(lsn);
        h.set_lag(0, 0);
        pools.wal_history.record(now, lsn);
        // Writes whose LSN was not learned on their own connection are covered by this one.
        pools.lsns.resolve_deferred(ticket, lsn);
        pools.lsns.observed(at, lsn);
    }
    Ok(())
}
