//! The `[cache]` section: raw form, defaults and validation into the result cache's settings.

use super::{invalid, ConfigError};
use super::{CacheSettings, Invalidation, Rule, RuleTarget};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "d_max_bytes")]
    pub max_bytes: u64,
    #[serde(default = "d_max_entry_bytes")]
    pub max_entry_bytes: usize,
    #[serde(default = "d_ttl_ms")]
    pub ttl_ms: u64,
    #[serde(default)]
    pub share_across_users: bool,
    #[serde(default = "d_coalesce_wait_ms")]
    pub coalesce_wait_ms: u64,
    #[serde(default = "d_replica_fill_delay_ms")]
    pub replica_fill_delay_ms: u64,
    #[serde(default = "d_invalidation")]
    pub invalidation: String,
    #[serde(default = "d_wal_poll_ms")]
    pub wal_poll_ms: u64,
    #[serde(default)]
    pub wal_user: Option<String>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            enabled: false,
            max_bytes: d_max_bytes(),
            max_entry_bytes: d_max_entry_bytes(),
            ttl_ms: d_ttl_ms(),
            share_across_users: false,
            coalesce_wait_ms: d_coalesce_wait_ms(),
            replica_fill_delay_ms: d_replica_fill_delay_ms(),
            invalidation: d_invalidation(),
            wal_poll_ms: d_wal_poll_ms(),
            wal_user: None,
            rules: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(default)]
    pub table: Option<String>,
    #[serde(default)]
    pub fingerprint: Option<String>,
    #[serde(default)]
    pub never: bool,
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}

fn d_max_bytes() -> u64 {
    256 << 20
}
fn d_max_entry_bytes() -> usize {
    1 << 20
}
fn d_ttl_ms() -> u64 {
    60_000
}
fn d_coalesce_wait_ms() -> u64 {
    5_000
}
fn d_replica_fill_delay_ms() -> u64 {
    1_000
}
fn d_invalidation() -> String {
    "proxy".into()
}
fn d_wal_poll_ms() -> u64 {
    20
}

pub fn settings(r: &RawCache) -> Result<CacheSettings, ConfigError> {
    if r.max_bytes < 1024 {
        return Err(invalid("cache.max_bytes", "must be at least 1024"));
    }
    if r.max_entry_bytes == 0 || r.max_entry_bytes as u64 > r.max_bytes {
        return Err(invalid(
            "cache.max_entry_bytes",
            "must be at least 1 and at most cache.max_bytes",
        ));
    }
    if r.ttl_ms == 0 {
        return Err(invalid("cache.ttl_ms", "must be at least 1 ms"));
    }
    if r.wal_poll_ms == 0 {
        return Err(invalid("cache.wal_poll_ms", "must be at least 1 ms"));
    }
    let invalidation = match r.invalidation.as_str() {
        "proxy" => Invalidation::Proxy,
        "wal" => Invalidation::Wal,
        other => {
            return Err(invalid(
                "cache.invalidation",
                format!("`{other}` is not one of \"proxy\", \"wal\""),
            ))
        }
    };
    let mut rules = Vec::with_capacity(r.rules.len());
    for (i, rule) in r.rules.iter().enumerate() {
        let key = format!("cache.rules[{i}]");
        let target = match (&rule.table, &rule.fingerprint) {
            (Some(t), None) if !t.is_empty() => {
                RuleTarget::Table(crate::router::relation_key(t).into_owned())
            }
            (None, Some(f)) => RuleTarget::Fingerprint(
                u64::from_str_radix(f.trim_start_matches("0x"), 16).map_err(|_| {
                    invalid(
                        &key,
                        format!("fingerprint `{f}` is not a hexadecimal number"),
                    )
                })?,
            ),
            _ => {
                return Err(invalid(
                    &key,
                    "needs exactly one of `table` or `fingerprint`",
                ))
            }
        };
        let ttl = match (rule.never, rule.ttl_ms) {
            (true, None) => None,
            (false, Some(ms)) if ms > 0 => Some(Duration::from_millis(ms)),
            _ => {
                return Err(invalid(
                    &key,
                    "needs exactly one of `never = true` or `ttl_ms` (at least 1)",
                ))
            }
        };
        rules.push(Rule { target, ttl });
    }
    Ok(CacheSettings {
        enabled: r.enabled,
        max_bytes: r.max_bytes,
        max_entry_bytes: r.max_entry_bytes,
        ttl: Duration::from_millis(r.ttl_ms),
        share_across_users: r.share_across_users,
        coalesce_wait: Duration::from_millis(r.coalesce_wait_ms),
        replica_fill_delay: Duration::from_millis(r.replica_fill_delay_ms),
        invalidation,
        wal_poll: Duration::from_millis(r.wal_poll_ms),
        wal_user: r.wal_user.clone(),
        rules,
    })
}
