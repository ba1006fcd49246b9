//! Prometheus exposition: each scrape registers the live snapshot's families in a fresh registry, one file per subsystem, and renders the classic text format.

use crate::admin::snapshot::StatsSnapshot;
use prometheus::{CounterVec, GaugeVec, Opts, Registry, TextEncoder};

mod cache;
mod nplusone;
mod overview;
mod pools;
mod queries;
mod replicas;
mod servers;

/// Per-fingerprint series are kept to the costliest few, so label cardinality stays bounded.
pub const TOP_FINGERPRINTS: usize = 50;

/// The classic Prometheus text format (version 0.0.4), which `promtool check metrics` and
/// every Prometheus version read. (prometheus-client writes OpenMetrics, whose counter HELP
/// names lack `_total` and fail promtool's lint.)
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

type Result<T> = std::result::Result<T, prometheus::Error>;

/// Renders a snapshot. A family with no series is left out, as every Prometheus client does.
pub fn render(snapshot: StatsSnapshot) -> Result<String> {
    let s = &snapshot;
    let r = Registry::new();
    overview::register(&r, s)?;
    queries::register(&r, s)?;
    pools::register(&r, s)?;
    servers::register(&r, s)?;
    replicas::register(&r, s)?;
    cache::register(&r, s)?;
    nplusone::register(&r, s)?;
    TextEncoder::new().encode_to_string(&r.gather())
}

/// Registers a counter family (its name ends in `_total`) with one series per label-value set.
fn counters<'a, const N: usize>(
    r: &Registry,
    name: &str,
    help: &str,
    labels: [&str; N],
    series: impl IntoIterator<Item = ([&'a str; N], f64)>,
) -> Result<()> {
    let family = CounterVec::new(Opts::new(name, help), &labels)?;
    for (values, v) in series {
        // A counter cannot go down; a NaN or negative reading shows as 0 rather than panicking.
        family
            .get_metric_with_label_values(&values)?
            .inc_by(v.max(0.0));
    }
    r.register(Box::new(family))
}

/// Registers a gauge family with one series per label-value set.
fn gauges<'a, const N: usize>(
    r: &Registry,
    name: &str,
    help: &str,
    labels: [&str; N],
    series: impl IntoIterator<Item = ([&'a str; N], f64)>,
) -> Result<()> {
    let family = GaugeVec::new(Opts::new(name, help), &labels)?;
    for (values, v) in series {
        family.get_metric_with_label_values(&values)?.set(v);
    }
    r.register(Box::new(family))
}

fn flag(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests;
