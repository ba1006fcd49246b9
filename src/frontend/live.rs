//! A session's handles on the settings a reload replaces, revalidated per use with one atomic load instead of arc-swap's per-load debt protocol.
//!
//! A request read the live configuration and the N+1 settings about eleven times (timers, the
//! buffer budget, the message limit, detection); each `ArcSwap::load` took a thread-local debt
//! slot and gave it back, about 120 instructions. A `Cache` keeps the session's own `Arc` and
//! only compares it with the current pointer, so it never serves a replaced value: a reload
//! applies to the next use exactly as before. The price is that an idle session keeps the
//! configuration it last saw alive until it next looks (a few KiB, shared by all such sessions).

use crate::cache::ResultCache;
use crate::config::{CacheSettings, Config};
use crate::nplusone::{Detector, Settings};
use crate::shared::Shared;
use arc_swap::{ArcSwap, Cache};
use std::ops::Deref;
use std::sync::Arc;

/// The live configuration of a proxy, reached through the session's own `Arc<Shared>`.
pub struct ConfigOf(Arc<Shared>);

impl Deref for ConfigOf {
    type Target = ArcSwap<Config>;

    fn deref(&self) -> &ArcSwap<Config> {
        &self.0.live
    }
}

/// The N+1 detector's live settings.
pub struct DetectionOf(Arc<Detector>);

impl Deref for DetectionOf {
    type Target = ArcSwap<Settings>;

    fn deref(&self) -> &ArcSwap<Settings> {
        &self.0.settings
    }
}

/// The result cache's live settings.
pub struct CachingOf(Arc<ResultCache>);

impl Deref for CachingOf {
    type Target = ArcSwap<CacheSettings>;

    fn deref(&self) -> &ArcSwap<CacheSettings> {
        &self.0.live
    }
}

pub struct Live {
    config: Cache<ConfigOf, Arc<Config>>,
    detection: Cache<DetectionOf, Arc<Settings>>,
    caching: Cache<CachingOf, Arc<CacheSettings>>,
}

impl Live {
    pub fn new(shared: &Arc<Shared>) -> Live {
        Live {
            config: Cache::new(ConfigOf(shared.clone())),
            detection: Cache::new(DetectionOf(shared.n_plus_one.clone())),
            caching: Cache::new(CachingOf(shared.cache.clone())),
        }
    }

    /// The latest accepted configuration (`Shared::live`).
    pub fn config(&mut self) -> &Config {
        self.config.load()
    }

    /// The N+1 detector's current settings.
    pub fn detection(&mut self) -> &Settings {
        self.detection.load()
    }

    /// The result cache's current settings.
    pub fn caching(&mut self) -> &CacheSettings {
        self.caching.load()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EnvOverrides;

    /// A cached handle never serves a value a reload replaced.
    #[tokio::test]
    async fn a_reload_is_seen_at_the_next_use() {
        let text = "[[users]]\nname = \"app\"\npassword = \"app\"\n[[databases]]\nname = \"app\"\n";
        let config = Arc::new(Config::from_toml(text, &EnvOverrides::default()).unwrap());
        let shared = Arc::new(Shared::new(config.clone()).unwrap());
        let mut live = Live::new(&shared);
        let before = live.config().max_message_bytes;
        let mut next = (*config).clone();
        next.max_message_bytes = before + 1;
        shared.live.store(Arc::new(next));
        assert_eq!(live.config().max_message_bytes, before + 1);
        let enabled = live.detection().enabled;
        let mut settings = (**shared.n_plus_one.settings.load()).clone();
        settings.enabled = !enabled;
        shared.n_plus_one.settings.store(Arc::new(settings));
        assert_eq!(live.detection().enabled, !enabled);
    }
}
