//! `SHOW SERVERS`: one row per server, its health, lag and the reads it served.

use crate::admin::snapshot;
use crate::admin::table::{n, Table};
use crate::Shared;

pub fn table(shared: &Shared) -> Table {
    Table {
        columns: vec![
            "server",
            "role",
            "reachable",
            "outstanding",
            "banned_ms",
            "bans",
            "lsn",
            "lag_bytes",
            "lag_ms",
            "lag_ok",
            "last_error",
            "reads",
            "reads_after_wait",
            "checked_in_line",
            "sent_again",
            "to_primary",
            "wait_p99_ms",
        ],
        rows: snapshot::servers(shared)
            .into_iter()
            .map(|s| {
                let to_primary = s
                    .reads
                    .to_primary
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(why, n)| format!("{why}={n}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                vec![
                    Some(s.server),
                    n(s.role),
                    n(s.reachable),
                    n(s.outstanding),
                    n(s.banned_ms),
                    n(s.bans),
                    s.lsn,
                    s.lag_bytes.map(|v| v.to_string()),
                    s.lag_ms.map(|v| v.to_string()),
                    n(s.lag_ok),
                    s.last_error,
                    n(s.reads.served),
                    n(s.reads.served_after_wait),
                    n(s.reads.checked_in_line),
                    n(s.reads.sent_again),
                    Some(to_primary),
                    s.reads.wait_p99_ms.map(|v| format!("{v:.2}")),
                ]
            })
            .collect(),
    }
}
