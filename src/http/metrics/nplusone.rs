//! N+1 detector families: bursts found by kind, and findings held.

use super::{counters, gauges, Result};
use crate::admin::snapshot::StatsSnapshot;
use crate::nplusone::Kind;
use prometheus::Registry;

pub(super) fn register(r: &Registry, s: &StatsSnapshot) -> Result<()> {
    counters(
        r,
        "pgsplit_n_plus_one_bursts_total",
        "Bursts found by the N+1 detector, by kind (n_plus_one, repeated_identical, batchable_writes).",
        ["kind"],
        Kind::ALL
            .into_iter()
            .map(|k| ([k.as_str()], s.n_plus_one_bursts.get(k) as f64)),
    )?;
    gauges(
        r,
        "pgsplit_n_plus_one_findings",
        "Distinct N+1 findings held now (bounded by n_plus_one.max_findings).",
        [],
        [([], s.n_plus_one.len() as f64)],
    )
}
