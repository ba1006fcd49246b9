//! `SHOW POOLS`: one row per pool, its size, waiters and efficiency.

use crate::admin::snapshot;
use crate::admin::table::{ms, n, Table};
use crate::Shared;

pub fn table(shared: &Shared) -> Table {
    Table {
        columns: vec![
            "pool",
            "role",
            "max_size",
            "size",
            "idle",
            "busy",
            "waiting",
            "acquisitions",
            "acquire_p95_ms",
            "efficiency",
            "timeouts",
            "opened",
            "broken",
            "handed_over",
        ],
        rows: snapshot::pools(shared)
            .into_iter()
            .map(|p| {
                vec![
                    Some(p.name),
                    n(p.role),
                    n(p.max_size),
                    n(p.size),
                    n(p.idle),
                    n(p.busy),
                    n(p.waiting),
                    n(p.acquisitions),
                    ms(p.acquire_p95_ms),
                    p.efficiency.map(|e| format!("{e:.4}")),
                    n(p.timeouts),
                    n(p.connections_opened),
                    n(p.connections_broken),
                    n(p.connections_handed_over),
                ]
            })
            .collect(),
    }
}
