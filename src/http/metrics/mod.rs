//! Prometheus exposition: a collector that reads the live snapshot at each scrape and lets prometheus-client render it.

use crate::admin::snapshot::StatsSnapshot;
use std::fmt::Write;

/// Per-fingerprint series are kept to the costliest few, so label cardinality stays bounded.
pub const TOP_FINGERPRINTS: usize = 50;

const PERCENTILES: [&str; 5] = ["50", "90", "95", "99", "99.9"];

/// Renders a snapshot in the classic Prometheus text format (version 0.0.4), which
/// `promtool check metrics` and every Prometheus version read. (prometheus-client writes
/// OpenMetrics, whose counter HELP names lack `_total` and fail promtool's lint.)
pub fn render(snapshot: StatsSnapshot) -> Result<String, std::fmt::Error> {
    let mut e = Exposition::default();
    SnapshotCollector { s: snapshot }.encode(&mut e)?;
    Ok(e.out)
}

#[derive(Clone, Copy)]
enum MetricType {
    Counter,
    Gauge,
}

/// Writes metric families: HELP and TYPE once, then one sample per label set, values escaped.
#[derive(Default)]
struct Exposition {
    out: String,
}

type Labels = Vec<(&'static str, String)>;

impl Exposition {
    fn family(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricType,
        series: impl IntoIterator<Item = (Labels, f64)>,
    ) -> Result<(), std::fmt::Error> {
        // Counters are named with `_total`, as Prometheus' naming rules ask.
        let full = match kind {
            MetricType::Counter => format!("pgsplit_{name}_total"),
            MetricType::Gauge => format!("pgsplit_{name}"),
        };
        let kind = match kind {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
        };
        writeln!(
            self.out,
            "# HELP {full} {}",
            help.replace('\\', "\\\\").replace('\n', "\\n")
        )?;
        writeln!(self.out, "# TYPE {full} {kind}")?;
        for (labels, value) in series {
            self.out.push_str(&full);
            if !labels.is_empty() {
                self.out.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    write!(self.out, "{k}=\"{}\"", escape_label(v))?;
                }
                self.out.push('}');
            }
            writeln!(self.out, " {}", fmt_value(value))?;
        }
        Ok(())
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

struct SnapshotCollector {
    s: StatsSnapshot,
}

fn family(
    e: &mut Exposition,
    name: &str,
    help: &str,
    kind: MetricType,
    series: impl IntoIterator<Item = (Labels, f64)>,
) -> Result<(), std::fmt::Error> {
    e.family(name, help, kind, series)
}

fn gauge(v: f64) -> f64 {
    v
}

fn counter(v: u64) -> f64 {
    v as f64
}

impl SnapshotCollector {
    fn encode(&self, e: &mut Exposition) -> Result<(), std::fmt::Error> {
        let s = &self.s;
        family(
            e,
            "uptime_seconds",
            "Seconds since pgsplit started.",
            MetricType::Gauge,
            [(vec![], gauge(s.uptime_s as f64))],
        )?;
        family(
            e,
            "client_connections",
            "Client sessions connected now.",
            MetricType::Gauge,
            [(vec![], gauge(s.clients as f64))],
        )?;
        let calls: u64 = s.queries.iter().map(|q| q.calls).sum();
        let errors: u64 = s.queries.iter().map(|q| q.errors).sum();
        family(
            e,
            "queries",
            "Statements answered, all fingerprints.",
            MetricType::Counter,
            [(vec![], counter(calls))],
        )?;
        family(
            e,
            "query_errors",
            "Statements that failed, all fingerprints.",
            MetricType::Counter,
            [(vec![], counter(errors))],
        )?;
        family(
            e,
            "query_fingerprints_folded",
            "Fingerprints folded into the <other> row by stats.max_fingerprints.",
            MetricType::Counter,
            [(vec![], counter(s.queries_folded))],
        )?;

        family(
            e,
            "replica_refusals",
            "Reads a replica refused because they write, re-sent to the primary unseen by the client.",
            MetricType::Counter,
            [(vec![], counter(s.replica_refusals))],
        )?;
        family(
            e,
            "primary_only_fingerprints",
            "Fingerprints pinned to the primary after a replica refused them (reasons in /stats primary_only).",
            MetricType::Gauge,
            [(vec![], gauge(s.primary_only.len() as f64))],
        )?;

        let mut top: Vec<_> = s.queries.iter().collect();
        top.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        top.truncate(TOP_FINGERPRINTS);
        let fp = |q: &crate::stats::QuerySnapshot| -> Labels {
            vec![
                ("fingerprint", q.fingerprint.clone()),
                ("database", q.database.clone()),
            ]
        };
        family(
            e,
            "fingerprint_calls",
            "Statements answered, per fingerprint (costliest 50).",
            MetricType::Counter,
            top.iter().map(|q| (fp(q), counter(q.calls))),
        )?;
        family(
            e,
            "fingerprint_errors",
            "Statements failed, per fingerprint.",
            MetricType::Counter,
            top.iter().map(|q| (fp(q), counter(q.errors))),
        )?;
        family(
            e,
            "fingerprint_rows",
            "Rows returned or affected, per fingerprint.",
            MetricType::Counter,
            top.iter().map(|q| (fp(q), counter(q.rows))),
        )?;
        family(
            e,
            "fingerprint_duration_seconds",
            "Total latency, per fingerprint.",
            MetricType::Counter,
            top.iter().map(|q| (fp(q), gauge(q.total_ms / 1000.0))),
        )?;
        family(
            e,
            "fingerprint_latency_seconds",
            "Latency percentiles from the proxy's HDR histogram, per fingerprint.",
            MetricType::Gauge,
            top.iter().flat_map(|q| {
                let p = q.percentiles;
                let values = [p.p50_ms, p.p90_ms, p.p95_ms, p.p99_ms, p.p999_ms];
                PERCENTILES.iter().zip(values).map(move |(pct, v)| {
                    let mut l = fp(q);
                    l.push(("percentile", pct.to_string()));
                    (l, gauge(v / 1000.0))
                })
            }),
        )?;
        family(
            e,
            "fingerprint_route_calls",
            "Statements per fingerprint by where they were answered.",
            MetricType::Counter,
            top.iter().flat_map(|q| {
                [
                    ("primary", q.primary_calls),
                    ("replica", q.replica_calls),
                    ("cache", q.cache_hits),
                ]
                .into_iter()
                .map(move |(r, n)| {
                    let mut l = fp(q);
                    l.push(("route", r.to_string()));
                    (l, counter(n))
                })
            }),
        )?;

        let pool = |p: &crate::admin::PoolSnapshot| -> Labels {
            vec![("pool", p.name.clone()), ("role", p.role.to_string())]
        };
        family(
            e,
            "pool_connections",
            "Server connections open, by state.",
            MetricType::Gauge,
            s.pools.iter().flat_map(|p| {
                [("idle", p.idle), ("busy", p.busy)]
                    .into_iter()
                    .map(move |(st, n)| {
                        let mut l = pool(p);
                        l.push(("state", st.to_string()));
                        (l, gauge(n as f64))
                    })
            }),
        )?;
        family(
            e,
            "pool_max_connections",
            "Configured size of the pool.",
            MetricType::Gauge,
            s.pools.iter().map(|p| (pool(p), gauge(p.max_size as f64))),
        )?;
        family(
            e,
            "pool_waiting_clients",
            "Clients waiting for a server connection now.",
            MetricType::Gauge,
            s.pools.iter().map(|p| (pool(p), gauge(p.waiting as f64))),
        )?;
        family(
            e,
            "pool_acquisitions",
            "Server connections handed to clients.",
            MetricType::Counter,
            s.pools.iter().map(|p| (pool(p), counter(p.acquisitions))),
        )?;
        family(
            e,
            "pool_timeouts",
            "Clients that gave up waiting for a connection.",
            MetricType::Counter,
            s.pools.iter().map(|p| (pool(p), counter(p.timeouts))),
        )?;
        family(
            e,
            "pool_connections_opened",
            "Server connections opened.",
            MetricType::Counter,
            s.pools
                .iter()
                .map(|p| (pool(p), counter(p.connections_opened))),
        )?;
        family(
            e,
            "pool_connections_broken",
            "Server connections discarded as broken.",
            MetricType::Counter,
            s.pools
                .iter()
                .map(|p| (pool(p), counter(p.connections_broken))),
        )?;
        family(
            e,
            "pool_efficiency_ratio",
            "Share of acquisitions served within the fast-acquire target.",
            MetricType::Gauge,
            s.pools
                .iter()
                .filter_map(|p| p.efficiency.map(|v| (pool(p), gauge(v)))),
        )?;
        family(
            e,
            "pool_acquire_seconds",
            "Time clients waited for a server connection, percentiles.",
            MetricType::Gauge,
            s.pools.iter().flat_map(|p| {
                [
                    ("50", p.acquire_p50_ms),
                    ("95", p.acquire_p95_ms),
                    ("99", p.acquire_p99_ms),
                ]
                .into_iter()
                .map(move |(pct, v)| {
                    let mut l = pool(p);
                    l.push(("percentile", pct.to_string()));
                    (l, gauge(v / 1000.0))
                })
            }),
        )?;

        let server = |x: &crate::admin::ServerSnapshot| -> Labels {
            vec![("server", x.server.clone()), ("role", x.role.to_string())]
        };
        family(
            e,
            "server_up",
            "1 when the server is taking requests.",
            MetricType::Gauge,
            s.servers
                .iter()
                .map(|x| (server(x), gauge(if x.reachable { 1.0 } else { 0.0 }))),
        )?;
        family(
            e,
            "server_banned_seconds",
            "Time left of the server's ban after failures; 0 when it takes requests.",
            MetricType::Gauge,
            s.servers
                .iter()
                .map(|x| (server(x), gauge(x.banned_ms as f64 / 1000.0))),
        )?;
        family(
            e,
            "server_bans",
            "Times the server was banned after failing.",
            MetricType::Counter,
            s.servers.iter().map(|x| (server(x), counter(x.bans))),
        )?;
        family(
            e,
            "replica_lag_bytes",
            "WAL bytes the replica has not replayed yet.",
            MetricType::Gauge,
            s.servers
                .iter()
                .filter_map(|x| x.lag_bytes.map(|v| (server(x), gauge(v as f64)))),
        )?;
        family(
            e,
            "replica_lag_seconds",
            "How long ago the primary was where the replica's replay is now.",
            MetricType::Gauge,
            s.servers
                .iter()
                .filter_map(|x| x.lag_ms.map(|v| (server(x), gauge(v as f64 / 1000.0)))),
        )?;
        family(
            e,
            "replica_reads",
            "Reads the replica served.",
            MetricType::Counter,
            s.servers
                .iter()
                .filter(|x| x.role == "replica")
                .map(|x| (server(x), counter(x.reads.served))),
        )?;
        family(
            e,
            "replica_position_checks",
            "Replay-position questions sent to the replica for reads its polled position did not allow.",
            MetricType::Counter,
            s.servers
                .iter()
                .filter(|x| x.role == "replica")
                .map(|x| (server(x), counter(x.reads.position_checks))),
        )?;
        family(
            e,
            "replica_position_checks_in_line",
            "Of those, questions sent in the same round trip as the read they decide.",
            MetricType::Counter,
            s.servers
                .iter()
                .filter(|x| x.role == "replica")
                .map(|x| (server(x), counter(x.reads.checked_in_line))),
        )?;
        family(
            e,
            "replica_reads_sent_again",
            "Reads whose in-line question found the replica behind: their answer was dropped unseen and they ran again.",
            MetricType::Counter,
            s.servers
                .iter()
                .filter(|x| x.role == "replica")
                .map(|x| (server(x), counter(x.reads.sent_again))),
        )?;
        family(
            e,
            "reads_sent_to_primary",
            "Reads that could have gone to the replica but went to the primary to stay consistent, by reason.",
            MetricType::Counter,
            s.servers
                .iter()
                .filter(|x| x.role == "replica")
                .flat_map(|x| {
                    x.reads.to_primary.iter().map(move |(reason, n)| {
                        let mut l = server(x);
                        l.push(("reason", reason.to_string()));
                        (l, counter(*n))
                    })
                }),
        )?;
        family(
            e,
            "server_outstanding_requests",
            "Requests holding a connection to the server now.",
            MetricType::Gauge,
            s.servers
                .iter()
                .map(|x| (server(x), gauge(x.outstanding as f64))),
        )?;

        family(
            e,
            "cache_hits",
            "Statements answered from the result cache.",
            MetricType::Counter,
            [(vec![], counter(s.cache.hits))],
        )?;
        family(
            e,
            "cache_misses",
            "Cacheable statements sent to a server.",
            MetricType::Counter,
            [(vec![], counter(s.cache.misses))],
        )?;
        family(
            e,
            "cache_coalesced",
            "Cacheable statements answered by an identical request already in flight.",
            MetricType::Counter,
            [(vec![], counter(s.cache.coalesced))],
        )?;
        family(
            e,
            "cache_entries",
            "Result cache entries held.",
            MetricType::Gauge,
            [(vec![], gauge(s.cache.entries as f64))],
        )?;
        family(
            e,
            "cache_bytes",
            "Bytes held by the result cache (entries and keys).",
            MetricType::Gauge,
            [(vec![], gauge(s.cache.bytes as f64))],
        )?;
        family(
            e,
            "cache_evictions",
            "Result cache entries evicted, by cause (size, expired).",
            MetricType::Counter,
            [
                (
                    vec![("cause", "size".to_string())],
                    counter(s.cache.evictions_size),
                ),
                (
                    vec![("cause", "expired".to_string())],
                    counter(s.cache.evictions_expired),
                ),
            ],
        )?;
        family(
            e,
            "cache_invalidations",
            "Result cache invalidation events, by cause (write, unknown, wal).",
            MetricType::Counter,
            [
                (
                    vec![("cause", "write".to_string())],
                    counter(s.cache.invalidations.write),
                ),
                (
                    vec![("cause", "unknown".to_string())],
                    counter(s.cache.invalidations.unknown),
                ),
                (
                    vec![("cause", "wal".to_string())],
                    counter(s.cache.invalidations.wal),
                ),
            ],
        )?;
        family(
            e,
            "cache_wal_follower_running",
            "1 while the database's WAL follower reads its slot, 0 when stopped (see /stats cache.wal for why).",
            MetricType::Gauge,
            s.cache.wal.iter().map(|f| {
                (
                    vec![("database", f.database.clone())],
                    gauge(if f.running { 1.0 } else { 0.0 }),
                )
            }),
        )?;
        family(
            e,
            "global_position_queries",
            "consistency = \"global\": WAL position queries sent to the primary, and reads that waited for one.",
            MetricType::Counter,
            [
                (
                    vec![("kind", "queries".to_string())],
                    counter(s.consistency.position_queries),
                ),
                (
                    vec![("kind", "reads".to_string())],
                    counter(s.consistency.position_reads),
                ),
                (
                    vec![("kind", "failures".to_string())],
                    counter(s.consistency.position_failures),
                ),
            ],
        )?;
        family(
            e,
            "n_plus_one_bursts",
            "Bursts found by the N+1 detector, by kind (n_plus_one, repeated_identical, batchable_writes).",
            MetricType::Counter,
            crate::nplusone::Kind::ALL.into_iter().map(|k| {
                (
                    vec![("kind", k.as_str().to_string())],
                    counter(s.n_plus_one_bursts.get(k)),
                )
            }),
        )?;
        family(
            e,
            "n_plus_one_findings",
            "Distinct N+1 findings held now (bounded by n_plus_one.max_findings).",
            MetricType::Gauge,
            [(vec![], gauge(s.n_plus_one.len() as f64))],
        )?;
        family(
            e,
            "target_met",
            "1 when the seed's target is met, 0 when missed (absent without data).",
            MetricType::Gauge,
            s.targets
                .rows()
                .into_iter()
                .filter(|(_, t)| t.status != "no data")
                .map(|(name, t)| {
                    (
                        vec![("target", name.to_string())],
                        gauge(if t.status == "met" { 1.0 } else { 0.0 }),
                    )
                }),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod fixture_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_escaping() {
        let mut e = Exposition::default();
        e.family(
            "x",
            "help",
            MetricType::Counter,
            [(vec![("q", "a\"b\\c\nd".to_string())], 3.0)],
        )
        .unwrap();
        e.family("y", "gauge", MetricType::Gauge, [(vec![], 0.5)])
            .unwrap();
        assert_eq!(
            e.out,
            "# HELP pgsplit_x_total help\n# TYPE pgsplit_x_total counter\npgsplit_x_total{q=\"a\\\"b\\\\c\\nd\"} 3\n# HELP pgsplit_y gauge\n# TYPE pgsplit_y gauge\npgsplit_y 0.5\n"
        );
    }
}
