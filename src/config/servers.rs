//! The `[primary]`, `[[replicas]]` and `[health]` sections: the servers, their roles, and how failing ones are banned.

use super::keys::{section, words, Word, RESTART};
use super::{invalid, millis, ConfigError, EnvOverrides, ServerAddr};
use std::time::Duration;

/// The host of a server entry that names none.
const DEFAULT_HOST: &str = "127.0.0.1";

section! {
    /// `[primary]`. Its port has no default once the table is written; the whole table's
    /// default is [`default_primary`].
    primary: RawPrimary ["primary"], reported as "primary";
    keys {
        host: String = DEFAULT_HOST.into(), RESTART, |c| c.primary.host;
        port: u16, RESTART, |c| c.primary.port;
        /// "auto": the health check decides from pg_is_in_recovery(); otherwise the section's role.
        role: Option<Word<Role>> = None, RESTART, |c| c.primary_role_auto.then_some("auto");
    }
}

section! {
    /// One `[[replicas]]` entry; its port has no default.
    replica: RawReplica [["replicas"]] each |c| c.replicas.len(), reported as "replicas";
    keys {
        host: String = DEFAULT_HOST.into(), RESTART, |c, i| c.replicas[i].host;
        port: u16, RESTART, |c, i| c.replicas[i].port;
        role: Option<Word<Role>> = None, RESTART,
            |c, i| c.replica_role_auto.get(i).copied().unwrap_or(false).then_some("auto");
    }
}

section! {
    health: RawHealth ["health"], reported as "health";
    keys {
        check_timeout_ms: u64 = 2_000, RESTART, |c| c.health.check_timeout;
        ban_ms: u64 = 1_000, RESTART, |c| c.health.ban;
        max_ban_ms: u64 = 30_000, RESTART, |c| c.health.max_ban;
        retry_reads: bool = true, RESTART, |c| c.health.retry_reads;
    }
}

pub use health::SECTION as HEALTH;
pub use primary::SECTION as PRIMARY;
pub use replica::SECTION as REPLICAS;

/// `[primary]` when the file has none: the local test cluster's primary.
pub(super) fn default_primary() -> Result<RawPrimary, String> {
    RawPrimary::try_from(primary::Partial {
        port: Some(15432),
        ..Default::default()
    })
}

/// `[[replicas]]` when the file has none: the local test cluster's replica.
pub(super) fn default_replica() -> Result<RawReplica, String> {
    RawReplica::try_from(replica::Partial {
        port: Some(15433),
        ..Default::default()
    })
}

words! {
    /// A server entry's `role`.
    pub enum Role {
        Primary = "primary",
        Replica = "replica",
        Auto = "auto",
    }
}

/// The primary's and the replicas' addresses (overridden by the environment) and whether
/// each one's role follows the server.
pub(super) struct Servers {
    pub primary: ServerAddr,
    pub replicas: Vec<ServerAddr>,
    pub primary_role_auto: bool,
    pub replica_role_auto: Vec<bool>,
}

pub(super) fn servers(
    primary: &RawPrimary,
    file_replicas: &[RawReplica],
    env: &EnvOverrides,
) -> Result<Servers, ConfigError> {
    let primary_addr = match &env.primary {
        Some(s) => ServerAddr::parse("PGSPLIT_PRIMARY", s)?,
        None => server_addr("primary", &primary.host, primary.port)?,
    };
    let replicas = match &env.replicas {
        Some(list) => list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| ServerAddr::parse("PGSPLIT_REPLICAS", s))
            .collect::<Result<Vec<_>, _>>()?,
        None => file_replicas
            .iter()
            .enumerate()
            .map(|(i, r)| server_addr(&format!("replicas[{i}]"), &r.host, r.port))
            .collect::<Result<Vec<_>, _>>()?,
    };
    let primary_role_auto = role_auto("primary.role", &primary.role, Role::Primary)?;
    // An address override replaces the address only: each overridden replica keeps the
    // other keys (role) of the file's entry at its position, and addresses beyond the
    // file's list those of its last entry, so one `[[replicas]] role = "auto"` template
    // covers every address PGSPLIT_REPLICAS lists.
    let file_roles = file_replicas
        .iter()
        .enumerate()
        .map(|(i, r)| role_auto(&format!("replicas[{i}].role"), &r.role, Role::Replica))
        .collect::<Result<Vec<_>, _>>()?;
    let replica_role_auto = (0..replicas.len())
        .map(|i| {
            file_roles
                .get(i)
                .or(file_roles.last())
                .copied()
                .unwrap_or(false)
        })
        .collect();
    Ok(Servers {
        primary: primary_addr,
        replicas,
        primary_role_auto,
        replica_role_auto,
    })
}

fn server_addr(key: &str, host: &str, port: u16) -> Result<ServerAddr, ConfigError> {
    if host.is_empty() {
        return Err(invalid(format!("{key}.host"), "must not be empty"));
    }
    if port == 0 {
        return Err(invalid(format!("{key}.port"), "must not be 0"));
    }
    Ok(ServerAddr {
        host: host.to_string(),
        port,
    })
}

/// `role` of a server entry: absent or the section's own role is fixed, "auto" follows the server.
fn role_auto(key: &str, role: &Option<Word<Role>>, section: Role) -> Result<bool, ConfigError> {
    let other = match role {
        None => return Ok(false),
        Some(Word::Known(Role::Auto)) => return Ok(true),
        Some(Word::Known(r)) if *r == section => return Ok(false),
        Some(Word::Known(r)) => r.as_str(),
        Some(Word::Unknown(w)) => w.as_str(),
    };
    Err(invalid(
        key,
        format!("`{other}` is not one of \"{}\", \"auto\"", section.as_str()),
    ))
}

#[derive(Clone, Debug)]
pub struct HealthConfig {
    /// A health check (connect or poll) slower than this counts as a failure.
    pub check_timeout: Duration,
    /// First ban of a failing server; doubled for each further ban while it flaps.
    pub ban: Duration,
    pub max_ban: Duration,
    /// Re-send a read whose server died before any of its answer reached the client.
    pub retry_reads: bool,
}

pub(super) fn health(r: &RawHealth) -> Result<HealthConfig, ConfigError> {
    let health = HealthConfig {
        check_timeout: millis("health.check_timeout_ms", r.check_timeout_ms)?,
        ban: millis("health.ban_ms", r.ban_ms)?,
        max_ban: millis("health.max_ban_ms", r.max_ban_ms)?,
        retry_reads: r.retry_reads,
    };
    if health.max_ban < health.ban {
        return Err(invalid(
            "health.max_ban_ms",
            "must not be below health.ban_ms",
        ));
    }
    Ok(health)
}
