//! Reloading the configuration (SIGHUP, `RELOAD`): re-read, validate, publish, and apply what can change live.
//!
//! A file that fails to parse or validate changes nothing. An accepted one is published in
//! `Shared.live` and applied: limits and timeouts are read from there by every session, pool
//! sizes and server-connection settings are pushed into the pools. Keys that need a restart are
//! named in the summary and logged; the running proxy keeps their old values.
//! Subsystems with their own live settings hook in at [`apply`].

use crate::backend::ServerTls;
pub use crate::config::ConfigSource;
use crate::config::{Config, ConfigError};
use crate::Shared;
use std::sync::Arc;

/// What a reload changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Keys whose new values are in effect.
    pub applied: Vec<&'static str>,
    /// Keys that changed in the file but keep their old values until a restart.
    pub restart_required: Vec<&'static str>,
}

impl std::fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[&str]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        write!(
            f,
            "applied: {}; need a restart: {}",
            list(&self.applied),
            list(&self.restart_required)
        )
    }
}

/// Reads the configuration file again and applies it; an error leaves the running one in place.
pub fn reload(shared: &Shared) -> Result<ReloadSummary, ConfigError> {
    let source = shared.config_source.lock().clone();
    let Some(source) = source else {
        return Err(ConfigError::Invalid {
            key: "<reload>".into(),
            message: "this proxy was not started from a file".into(),
        });
    };
    let result = Config::load_with(&source.path, &source.env).and_then(|c| apply(shared, c));
    match &result {
        Ok(summary) => {
            tracing::info!(path = %source.path.display(), %summary, "configuration reloaded")
        }
        Err(e) => {
            tracing::error!(path = %source.path.display(), error = %e, "configuration rejected; the running one stays")
        }
    }
    result
}

/// Publishes a validated configuration and applies its live keys.
pub fn apply(shared: &Shared, new: Config) -> Result<ReloadSummary, ConfigError> {
    // Everything fallible first, so a failure changes nothing.
    let tls = ServerTls::from_config(&new.server_tls).map_err(|e| ConfigError::Invalid {
        key: "server_ssl_ca_file".into(),
        message: e.to_string(),
    })?;
    let old = shared.live.load_full();
    let summary = diff(&shared.config, &old, &new);
    if !summary.restart_required.is_empty() {
        tracing::warn!(keys = ?summary.restart_required, "changed keys take effect only after a restart");
    }
    shared.cache.live.store(Arc::new(new.cache.clone()));
    shared.n_plus_one.apply(new.n_plus_one.clone());
    let new = Arc::new(new);
    shared.pools.apply(new.clone(), tls);
    shared.live.store(new);
    Ok(summary)
}

/// Keys (or whole tables, matching every key under them) that a reload does not apply: the one
/// classification proxy.toml's "reload: no" notes and the README's table are checked against
/// (tests/readme_config.rs), and the names [`diff`] reports under "need a restart".
pub const RESTART_KEYS: &[&str] = &[
    "listen",
    "listen_backlog",
    "tls_cert_file",
    "tls_key_file",
    "primary",
    "replicas",
    "pool.max_prepared_per_server",
    "users",
    "databases",
    "stats",
    "cache.enabled",
    "cache.max_bytes",
    "cache.invalidation",
    "cache.wal_poll_ms",
    "cache.wal_user",
    "n_plus_one.max_findings",
    "n_plus_one.max_traces",
    "health",
    "replication",
    "analysis_cache_entries",
];

/// Whether a reload leaves `key` ("section.key", as proxy.toml nests it) at its old value.
pub fn needs_restart(key: &str) -> bool {
    RESTART_KEYS.iter().any(|r| {
        key == *r
            || key
                .strip_prefix(r)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// Compares the running configuration with a new one, key by key.
///
/// Live keys are compared with the last applied configuration; restart keys with the one the
/// proxy started with, so a key stays listed until the restart happens.
fn diff(started: &Config, old: &Config, new: &Config) -> ReloadSummary {
    let mut s = ReloadSummary::default();
    for (key, changed) in live_changes(old, new) {
        if changed {
            s.applied.push(key);
        }
    }
    for (key, changed) in restart_changes(started, new) {
        if changed {
            s.restart_required.push(key);
        }
    }
    s
}

/// Every key a reload applies, and whether it changed.
fn live_changes(old: &Config, new: &Config) -> Vec<(&'static str, bool)> {
    let mut out = Vec::new();
    let (l, n) = (&old.limits, &new.limits);
    let (p, q) = (&old.pool, &new.pool);
    for (key, changed) in [
        (
            "max_client_connections",
            old.max_client_connections != new.max_client_connections,
        ),
        (
            "max_client_connections_per_ip",
            l.max_clients_per_ip != n.max_clients_per_ip,
        ),
        (
            "max_message_bytes",
            old.max_message_bytes != new.max_message_bytes,
        ),
        (
            "startup_timeout_ms",
            old.startup_timeout != new.startup_timeout,
        ),
        (
            "client_idle_timeout_ms",
            l.client_idle_timeout != n.client_idle_timeout,
        ),
        (
            "idle_in_transaction_timeout_ms",
            l.idle_in_transaction_timeout != n.idle_in_transaction_timeout,
        ),
        (
            "shutdown_timeout_ms",
            l.shutdown_timeout != n.shutdown_timeout,
        ),
        ("tcp_keepalive", l.keepalive != n.keepalive),
        ("server_sslmode", old.server_tls != new.server_tls),
        ("pool.primary_size", p.primary_size != q.primary_size),
        ("pool.replica_size", p.replica_size != q.replica_size),
        (
            "pool.connect_timeout_ms",
            p.connect_timeout != q.connect_timeout,
        ),
        (
            "pool.acquire_timeout_ms",
            p.acquire_timeout != q.acquire_timeout,
        ),
        (
            "pool.server_idle_timeout_ms",
            p.server_idle_timeout != q.server_idle_timeout,
        ),
        (
            "pool.server_lifetime_ms",
            p.server_lifetime != q.server_lifetime,
        ),
        ("pool.query_timeout_ms", p.query_timeout != q.query_timeout),
        ("pool.min_idle", p.min_idle != q.min_idle),
        (
            "max_client_buffer_bytes",
            old.max_client_buffer_bytes != new.max_client_buffer_bytes,
        ),
    ] {
        out.push((key, changed));
    }
    let (c, d) = (&old.cache, &new.cache);
    let (x, y) = (&old.n_plus_one, &new.n_plus_one);
    for (key, changed) in [
        ("cache.ttl_ms", c.ttl != d.ttl),
        ("cache.rules", c.rules != d.rules),
        (
            "cache.max_entry_bytes",
            c.max_entry_bytes != d.max_entry_bytes,
        ),
        (
            "cache.share_across_users",
            c.share_across_users != d.share_across_users,
        ),
        ("cache.coalesce_wait_ms", c.coalesce_wait != d.coalesce_wait),
        (
            "cache.replica_fill_delay_ms",
            c.replica_fill_delay != d.replica_fill_delay,
        ),
        ("n_plus_one.enabled", x.enabled != y.enabled),
        ("n_plus_one.threshold", x.threshold != y.threshold),
        ("n_plus_one.window_ms", x.window_ms != y.window_ms),
        (
            "n_plus_one.notify_client",
            x.notify_client != y.notify_client,
        ),
        (
            "n_plus_one.repeated_identical",
            x.repeated_identical != y.repeated_identical,
        ),
        (
            "n_plus_one.batchable_writes",
            x.batchable_writes != y.batchable_writes,
        ),
    ] {
        out.push((key, changed));
    }
    out
}

/// Every key a reload cannot apply (named as in [`RESTART_KEYS`]), and whether it changed
/// since the proxy started.
fn restart_changes(started: &Config, new: &Config) -> Vec<(&'static str, bool)> {
    // Debug renderings compare the nested values without requiring PartialEq of every type.
    let dbg = |v: &dyn std::fmt::Debug| format!("{v:?}");
    let o = started;
    [
        ("listen", o.listen != new.listen),
        ("listen_backlog", o.listen_backlog != new.listen_backlog),
        ("tls_cert_file", dbg(&o.tls) != dbg(&new.tls)),
        (
            "primary",
            o.primary != new.primary || o.primary_role_auto != new.primary_role_auto,
        ),
        (
            "replicas",
            o.replicas != new.replicas || o.replica_role_auto != new.replica_role_auto,
        ),
        (
            "pool.max_prepared_per_server",
            o.pool.max_prepared_per_server != new.pool.max_prepared_per_server,
        ),
        ("users", dbg(&o.users) != dbg(&new.users)),
        ("databases", dbg(&o.databases) != dbg(&new.databases)),
        ("stats", dbg(&o.stats) != dbg(&new.stats)),
        ("cache.enabled", o.cache.enabled != new.cache.enabled),
        ("cache.max_bytes", o.cache.max_bytes != new.cache.max_bytes),
        (
            "cache.invalidation",
            o.cache.invalidation != new.cache.invalidation,
        ),
        ("cache.wal_poll_ms", o.cache.wal_poll != new.cache.wal_poll),
        ("cache.wal_user", o.cache.wal_user != new.cache.wal_user),
        (
            "n_plus_one.max_findings",
            o.n_plus_one.max_findings != new.n_plus_one.max_findings,
        ),
        (
            "n_plus_one.max_traces",
            o.n_plus_one.max_traces != new.n_plus_one.max_traces,
        ),
        ("health", dbg(&o.health) != dbg(&new.health)),
        ("replication", dbg(&o.replication) != dbg(&new.replication)),
        (
            "analysis_cache_entries",
            o.analysis_cache_entries != new.analysis_cache_entries,
        ),
    ]
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EnvOverrides;

    fn config(extra: &str) -> Config {
        let text = format!(
            "{extra}\n[[users]]\nname = \"app\"\npassword = \"app\"\n\n[[databases]]\nname = \"app\"\n"
        );
        Config::from_toml(&text, &EnvOverrides::default()).unwrap()
    }

    #[test]
    fn diff_names_live_and_restart_keys() {
        let old = config("max_client_connections = 10\n[pool]\nprimary_size = 5");
        let new = config(
            "max_client_connections = 20\nlisten = \"127.0.0.1:7000\"\n[pool]\nprimary_size = 7",
        );
        let s = diff(&old, &old, &new);
        assert_eq!(
            s.applied,
            vec!["max_client_connections", "pool.primary_size"]
        );
        assert_eq!(s.restart_required, vec!["listen"]);
        assert_eq!(diff(&old, &old, &old), ReloadSummary::default());
    }

    #[test]
    fn diff_and_the_classification_agree() {
        let c = config("");
        for (key, _) in restart_changes(&c, &c) {
            assert!(
                RESTART_KEYS.contains(&key),
                "{key} missing from RESTART_KEYS"
            );
        }
        for (key, _) in live_changes(&c, &c) {
            assert!(
                !needs_restart(key),
                "{key} is applied live but classified restart"
            );
        }
        assert!(needs_restart("stats.targets.p90_ms"));
        assert!(needs_restart("replicas.role"));
        assert!(!needs_restart("listen_other"));
        assert!(!needs_restart("cache.ttl_ms"));
    }

    #[test]
    fn restart_keys_stay_listed_until_restart() {
        let started = config("");
        let applied = config("listen = \"127.0.0.1:7000\"");
        let s = diff(&started, &applied, &applied);
        assert!(s.applied.is_empty());
        assert_eq!(s.restart_required, vec!["listen"]);
    }
}
