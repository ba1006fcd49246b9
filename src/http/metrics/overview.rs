//! Process-wide families: uptime, client sessions and the seed's targets.

use super::{flag, gauges, Result};
use crate::admin::snapshot::StatsSnapshot;
use prometheus::Registry;

pub(super) fn register(r: &Registry, s: &StatsSnapshot) -> Result<()> {
    gauges(
        r,
        "pgsplit_uptime_seconds",
        "Seconds since pgsplit started.",
        [],
        [([], s.uptime_s as f64)],
    )?;
    gauges(
        r,
        "pgsplit_client_connections",
        "Client sessions connected now.",
        [],
        [([], s.clients as f64)],
    )?;
    gauges(
        r,
        "pgsplit_target_met",
        "1 when the seed's target is met, 0 when missed (absent without data).",
        ["target"],
        s.targets
            .rows()
            .into_iter()
            .filter(|(_, t)| t.status != "no data")
            .map(|(name, t)| ([name], flag(t.status == "met"))),
    )
}
