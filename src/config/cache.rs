//! The `[cache]` and `[[cache.rules]]` sections: declared, validated into the result cache's settings.

use super::keys::{section, words, Word, LIVE, RESTART};
use super::{invalid, ConfigError};
use std::time::Duration;

section! {
    cache: RawCache ["cache"];
    keys {
        enabled: bool = false, RESTART, |c| c.cache.enabled;
        max_bytes: u64 = 256 << 20, RESTART, |c| c.cache.max_bytes;
        max_entry_bytes: usize = 1 << 20, LIVE, |c| c.cache.max_entry_bytes;
        ttl_ms: u64 = 60_000, LIVE, |c| c.cache.ttl;
        share_across_users: bool = false, LIVE, |c| c.cache.share_across_users;
        coalesce_wait_ms: u64 = 5_000, LIVE, |c| c.cache.coalesce_wait;
        replica_fill_delay_ms: u64 = 1_000, LIVE, |c| c.cache.replica_fill_delay;
        invalidation: Word<Invalidation> = Invalidation::Proxy.into(), RESTART,
            |c| c.cache.invalidation.as_str();
        wal_poll_ms: u64 = 20, RESTART, |c| c.cache.wal_poll;
        wal_user: Option<String> = None, RESTART, |c| c.cache.wal_user;
    }
    tables {
        rules: Vec<RawRule> = Vec::new();
    }
}

section! {
    /// One `[[cache.rules]]` entry: exactly one of `table`/`fingerprint`, one of `never`/`ttl_ms`.
    rule: RawRule [["cache.rules"]] each |c| c.cache.rules.len(), reported as "cache.rules";
    keys {
        table: Option<String> = None, LIVE, |c, i| match &c.cache.rules[i].target {
            RuleTarget::Table(t) => Some(t.clone()),
            RuleTarget::Fingerprint(_) => None,
        };
        fingerprint: Option<String> = None, LIVE, |c, i| match &c.cache.rules[i].target {
            RuleTarget::Fingerprint(f) => Some(format!("{f:016x}")),
            RuleTarget::Table(_) => None,
        };
        never: bool = false, LIVE, |c, i| c.cache.rules[i].ttl.is_none().then_some(true);
        ttl_ms: Option<u64> = None, LIVE, |c, i| c.cache.rules[i].ttl;
    }
}

pub use cache::SECTION;
pub use rule::SECTION as RULES;

words! {
    /// How writes made outside this proxy are noticed.
    pub enum Invalidation {
        /// Only writes through this proxy invalidate; the TTL bounds staleness for others.
        Proxy = "proxy",
        /// Also follow the primary's WAL through a logical replication slot.
        Wal = "wal",
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleTarget {
    /// Unqualified, lowercased relation name.
    Table(String),
    Fingerprint(u64),
}

/// A per-table or per-fingerprint exception to the default TTL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub target: RuleTarget,
    /// None: never cache.
    pub ttl: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct CacheSettings {
    pub enabled: bool,
    pub max_bytes: u64,
    pub max_entry_bytes: usize,
    pub ttl: Duration,
    pub share_across_users: bool,
    pub coalesce_wait: Duration,
    /// A replica's answer for a table written through the proxy this recently is not stored:
    /// the replica may not have replayed that write yet.
    pub replica_fill_delay: Duration,
    pub invalidation: Invalidation,
    pub wal_poll: Duration,
    pub wal_user: Option<String>,
    pub rules: Vec<Rule>,
}

/// The defaults are the file's: an absent `[cache]` section, validated.
impl Default for CacheSettings {
    fn default() -> Self {
        super::checked_default("cache", RawCache::absent, settings)
    }
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
    let invalidation = r.invalidation.get("cache.invalidation")?;
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
