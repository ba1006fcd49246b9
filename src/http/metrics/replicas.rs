//! Replica-read families: lag, reads served or sent to the primary, position checks and refusals.

use super::servers::{server, SERVER};
use super::{counters, gauges, Result};
use crate::admin::snapshot::{ServerSnapshot, StatsSnapshot};
use prometheus::Registry;

pub(super) fn register(r: &Registry, s: &StatsSnapshot) -> Result<()> {
    let servers = &s.servers;
    gauges(
        r,
        "pgsplit_replica_lag_bytes",
        "WAL bytes the replica has not replayed yet.",
        SERVER,
        servers
            .iter()
            .filter_map(|x| x.lag_bytes.map(|v| (server(x), v as f64))),
    )?;
    gauges(
        r,
        "pgsplit_replica_lag_seconds",
        "How long ago the primary was where the replica's replay is now.",
        SERVER,
        servers
            .iter()
            .filter_map(|x| x.lag_ms.map(|v| (server(x), v as f64 / 1000.0))),
    )?;

    let replicas = || servers.iter().filter(|x| x.role == "replica");
    let reads = |name: &str, help: &str, value: fn(&ServerSnapshot) -> u64| {
        counters(
            r,
            name,
            help,
            SERVER,
            replicas().map(|x| (server(x), value(x) as f64)),
        )
    };
    reads(
        "pgsplit_replica_reads_total",
        "Reads the replica served.",
        |x| x.reads.served,
    )?;
    reads(
        "pgsplit_replica_position_checks_total",
        "Replay-position questions sent to the replica for reads its polled position did not allow.",
        |x| x.reads.position_checks,
    )?;
    reads(
        "pgsplit_replica_position_checks_in_line_total",
        "Of those, questions sent in the same round trip as the read they decide.",
        |x| x.reads.checked_in_line,
    )?;
    reads(
        "pgsplit_replica_reads_sent_again_total",
        "Reads whose in-line question found the replica behind: their answer was dropped unseen and they ran again.",
        |x| x.reads.sent_again,
    )?;
    counters(
        r,
        "pgsplit_reads_sent_to_primary_total",
        "Reads that could have gone to the replica but went to the primary to stay consistent, by reason.",
        ["server", "role", "reason"],
        replicas().flat_map(|x| {
            x.reads
                .to_primary
                .iter()
                .map(move |(reason, n)| ([x.server.as_str(), x.role, *reason], *n as f64))
        }),
    )?;

    counters(
        r,
        "pgsplit_replica_refusals_total",
        "Reads a replica refused because they write, re-sent to the primary unseen by the client.",
        [],
        [([], s.replica_refusals as f64)],
    )?;
    gauges(
        r,
        "pgsplit_primary_only_fingerprints",
        "Fingerprints pinned to the primary after a replica refused them (reasons in /stats primary_only).",
        [],
        [([], s.primary_only.len() as f64)],
    )?;
    let c = &s.consistency;
    counters(
        r,
        "pgsplit_global_position_queries_total",
        "consistency = \"global\": WAL position queries sent to the primary, and reads that waited for one.",
        ["kind"],
        [
            (["queries"], c.position_queries as f64),
            (["reads"], c.position_reads as f64),
            (["failures"], c.position_failures as f64),
        ],
    )
}
