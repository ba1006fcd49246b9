//! Reloading the configuration (SIGHUP, `RELOAD`): re-read, validate, publish, and apply what can change live.
//!
//! A file that fails to parse or validate changes nothing. An accepted one is published in
//! `Shared.live` and applied: limits and timeouts are read from there by every session, pool
//! sizes and server-connection settings are pushed into the pools. Keys that need a restart are
//! named in the summary and logged; the running proxy keeps their old values.
//! Subsystems with their own live settings hook in at [`apply`].

use crate::backend::ServerTls;
pub use crate::config::ConfigSource;
use crate::config::{self, Config, ConfigError, Reload};
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

/// Whether a reload leaves `key` ("section.key", as proxy.toml nests it) at its old value, as
/// its declaration in src/config/ says (proxy.toml's "reload" notes are checked against the same
/// classes by tests/readme_config.rs).
pub fn needs_restart(key: &str) -> bool {
    config::keys::find(key).is_some_and(|(_, k)| k.class.reload == Reload::Restart)
}

/// Compares the running configuration with a new one, key by key, as the key tables declare.
///
/// Live keys are compared with the last applied configuration; restart keys with the one the
/// proxy started with, so a key stays listed until the restart happens.
fn diff(started: &Config, old: &Config, new: &Config) -> ReloadSummary {
    let changed = |a, b, class| {
        config::keys::changes(a, b)
            .into_iter()
            .filter(move |(_, reload)| *reload == class)
            .map(|(name, _)| name)
            .collect()
    };
    ReloadSummary {
        applied: changed(old, new, Reload::Live),
        restart_required: changed(started, new, Reload::Restart),
    }
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
    fn grouped_keys_are_reported_once_under_their_group() {
        let old = config("");
        let new = config(
            "tcp_keepalive_idle_ms = 30000\ntcp_keepalive_count = 3\n[health]\nban_ms = 7\nmax_ban_ms = 9\n[stats.targets]\np90_ms = 1",
        );
        let s = diff(&old, &old, &new);
        assert_eq!(s.applied, vec!["tcp_keepalive"]);
        assert_eq!(s.restart_required, vec!["stats", "health"]);
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
