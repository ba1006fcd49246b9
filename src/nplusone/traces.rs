//! Streams per W3C trace id, so a loop spread over an application's connection pool is seen as one; sharded and bounded.

use super::flow::Rows;
use super::{Detection, Origin, Registry, Settings, Statement, Stream};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Instant;

const SHARDS: usize = 16;

struct Entry {
    stream: Stream,
    used: Instant,
}

/// At most `max_traces` streams; a full shard first drops traces idle longer than the window,
/// then the least recently used one.
pub struct Traces {
    shards: Vec<Mutex<HashMap<u128, Entry>>>,
    per_shard: usize,
}

impl Traces {
    pub fn new(max_traces: usize) -> Traces {
        Traces {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: max_traces.div_ceil(SHARDS).max(1),
        }
    }

    /// Feeds a statement of trace `trace` to that trace's stream.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &self,
        trace: u128,
        now: Instant,
        s: &Statement<'_>,
        result: Option<Rows>,
        settings: &Settings,
        registry: &Registry,
        origin: Origin<'_>,
    ) -> Option<Detection> {
        let shard = &self.shards[((trace as u64) ^ ((trace >> 64) as u64)) as usize % SHARDS];
        let mut map = shard.lock();
        if !map.contains_key(&trace) && map.len() >= self.per_shard {
            let window = std::time::Duration::from_millis(u64::from(settings.window_ms));
            map.retain(|_, e| now.saturating_duration_since(e.used) <= window);
            if map.len() >= self.per_shard {
                let lru = map.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| *k);
                if let Some(k) = lru {
                    map.remove(&k);
                }
            }
        }
        let e = map.entry(trace).or_insert_with(|| Entry {
            stream: Stream::default(),
            used: now,
        });
        e.used = now;
        e.stream.observe(now, s, result, settings, registry, origin)
    }

    /// Traces tracked now.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self) {
        for s in &self.shards {
            s.lock().clear();
        }
    }
}
