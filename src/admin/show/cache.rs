//! `SHOW CACHE`: the result cache's counters and each WAL follower's state.

use crate::admin::snapshot;
use crate::admin::table::{n, Table};
use crate::Shared;

pub fn table(shared: &Shared) -> Table {
    let c = snapshot::snapshot(shared).cache;
    Table {
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
    }
}
