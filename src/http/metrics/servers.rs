//! Per-server health families: up, banned, bans and requests in flight.

use super::{counters, flag, gauges, Result};
use crate::admin::snapshot::{ServerSnapshot, StatsSnapshot};
use prometheus::Registry;

pub(super) const SERVER: [&str; 2] = ["server", "role"];

pub(super) fn server(x: &ServerSnapshot) -> [&str; 2] {
    [x.server.as_str(), x.role]
}

pub(super) fn register(r: &Registry, s: &StatsSnapshot) -> Result<()> {
    let servers = &s.servers;
    gauges(
        r,
        "pgsplit_server_up",
        "1 when the server is taking requests.",
        SERVER,
        servers.iter().map(|x| (server(x), flag(x.reachable))),
    )?;
    gauges(
        r,
        "pgsplit_server_banned_seconds",
        "Time left of the server's ban after failures; 0 when it takes requests.",
        SERVER,
        servers
            .iter()
            .map(|x| (server(x), x.banned_ms as f64 / 1000.0)),
    )?;
    counters(
        r,
        "pgsplit_server_bans_total",
        "Times the server was banned after failing.",
        SERVER,
        servers.iter().map(|x| (server(x), x.bans as f64)),
    )?;
    gauges(
        r,
        "pgsplit_server_outstanding_requests",
        "Requests holding a connection to the server now.",
        SERVER,
        servers.iter().map(|x| (server(x), x.outstanding as f64)),
    )
}
