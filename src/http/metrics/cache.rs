//! Result-cache families: hits, misses, size, evictions, invalidations and WAL followers.

use super::{counters, flag, gauges, Result};
use crate::admin::snapshot::StatsSnapshot;
use prometheus::Registry;

pub(super) fn register(r: &Registry, s: &StatsSnapshot) -> Result<()> {
    let c = &s.cache;
    counters(
        r,
        "pgsplit_cache_hits_total",
        "Statements answered from the result cache.",
        [],
        [([], c.hits as f64)],
    )?;
    counters(
        r,
        "pgsplit_cache_misses_total",
        "Cacheable statements sent to a server.",
        [],
        [([], c.misses as f64)],
    )?;
    counters(
        r,
        "pgsplit_cache_coalesced_total",
        "Cacheable statements answered by an identical request already in flight.",
        [],
        [([], c.coalesced as f64)],
    )?;
    gauges(
        r,
        "pgsplit_cache_entries",
        "Result cache entries held.",
        [],
        [([], c.entries as f64)],
    )?;
    gauges(
        r,
        "pgsplit_cache_bytes",
        "Bytes held by the result cache (entries and keys).",
        [],
        [([], c.bytes as f64)],
    )?;
    counters(
        r,
        "pgsplit_cache_evictions_total",
        "Result cache entries evicted, by cause (size, expired).",
        ["cause"],
        [
            (["size"], c.evictions_size as f64),
            (["expired"], c.evictions_expired as f64),
        ],
    )?;
    let inv = &c.invalidations;
    counters(
        r,
        "pgsplit_cache_invalidations_total",
        "Result cache invalidation events, by cause (write, unknown, wal).",
        ["cause"],
        [
            (["write"], inv.write as f64),
            (["unknown"], inv.unknown as f64),
            (["wal"], inv.wal as f64),
        ],
    )?;
    gauges(
        r,
        "pgsplit_cache_wal_follower_running",
        "1 while the database's WAL follower reads its slot, 0 when stopped (see /stats cache.wal for why).",
        ["database"],
        c.wal
            .iter()
            .map(|f| ([f.database.as_str()], flag(f.running))),
    )
}
