//! `SHOW CLIENTS`: one row per connected client and the server it is using.

use crate::admin::table::{n, Table};
use crate::Shared;

pub fn table(shared: &Shared) -> Table {
    Table {
        columns: vec![
            "pid",
            "user",
            "database",
            "application_name",
            "address",
            "connected_s",
            "state",
            "server",
        ],
        rows: shared
            .cancels
            .list()
            .into_iter()
            .map(|c| {
                let age = c
                    .info
                    .connected_at
                    .elapsed()
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                vec![
                    n(c.pid),
                    Some(c.info.user.clone()),
                    Some(c.info.database.clone()),
                    Some(c.info.application_name.clone()),
                    c.info.peer.map(|p| p.to_string()),
                    n(age),
                    n(if c.server.is_some() { "active" } else { "idle" }),
                    c.server,
                ]
            })
            .collect(),
    }
}
