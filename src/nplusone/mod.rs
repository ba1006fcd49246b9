//! N+1 detection: per-session (or per-trace) windows of recent fingerprints, and the bounded findings they report.
//!
//! A session feeds every executed statement to its own [`Stream`]; statements carrying a W3C
//! `traceparent` go to that trace's stream in [`Traces`] instead, so a loop spread over an
//! application's connection pool is still one stream. A stream reports a burst once, when it
//! crosses the threshold, and then keeps the [`Registry`] entry's count growing until it ends.

mod columns;
mod detector;
pub mod flow;
mod literals;
mod registry;
mod suggest;
mod traceparent;
mod traces;

#[cfg(test)]
mod tests;

pub use crate::config::NPlusOneSettings as Settings;
pub use detector::{Detection, Stream};
pub use registry::{BurstCounts, FindingSnapshot, NewBurst, Registry};
pub use suggest::{suggest, CacheUse};
pub use traceparent::trace_id;
pub use traces::Traces;

use serde::Serialize;
use std::sync::Arc;

/// Which finding a burst is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The same read with differing parameters, once per row of a parent statement.
    NPlusOne,
    /// The same statement with the same parameters: a cache candidate.
    RepeatedIdentical,
    /// The same INSERT/UPDATE/DELETE back to back with differing parameters.
    BatchableWrites,
}

impl Kind {
    pub const ALL: [Kind; 3] = [
        Kind::NPlusOne,
        Kind::RepeatedIdentical,
        Kind::BatchableWrites,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::NPlusOne => "n_plus_one",
            Kind::RepeatedIdentical => "repeated_identical",
            Kind::BatchableWrites => "batchable_writes",
        }
    }

    fn index(self) -> usize {
        match self {
            Kind::NPlusOne => 0,
            Kind::RepeatedIdentical => 1,
            Kind::BatchableWrites => 2,
        }
    }
}

/// What a statement may be in a burst: a read may be an N+1 child, a write a batchable one;
/// any of them may be the parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Read,
    Write,
    Other,
}

/// What the session knows of one executed statement beyond its analysis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Call {
    /// Hash of the parameter values: the Bind's values with the statement's key, or the whole
    /// text of a simple Query (its literals are its parameters).
    pub params: u64,
    /// W3C trace id from a `traceparent` in the text; 0 when none (an all-zero id is invalid).
    pub trace: u128,
    /// Each parameter's value hashed, for the data flow from a parent's rows (a Bind's values,
    /// a simple Query's literals).
    pub values: flow::Values,
}

/// One executed statement, as a stream sees it.
#[derive(Clone, Copy, Debug)]
pub struct Statement<'a> {
    pub fingerprint: u64,
    pub normalized: &'a Arc<str>,
    pub class: Class,
    pub params: u64,
    pub rows: u64,
    pub duration_us: u64,
    /// Hashed parameter values (see [`Call::values`]).
    pub values: &'a [u32],
    /// The result cache answered it.
    pub cached: bool,
    pub cache: CacheUse,
}

/// Who ran a statement, for the findings.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    pub database: &'a Arc<str>,
    pub user: &'a str,
    pub application_name: &'a str,
}

/// The detector's shared half: settings, findings and trace streams (`Shared::n_plus_one`).
pub struct Detector {
    /// Replaced on reload (threshold, window, kinds, notices and the switch apply at once;
    /// the bounds of the findings and traces at the next start).
    pub settings: arc_swap::ArcSwap<Settings>,
    pub registry: Registry,
    pub traces: Traces,
}

impl Detector {
    pub fn new(settings: Settings) -> Detector {
        Detector {
            registry: Registry::new(settings.max_findings),
            traces: Traces::new(settings.max_traces),
            settings: arc_swap::ArcSwap::from_pointee(settings),
        }
    }

    /// New settings (a reload). Turning detection off drops the trace streams and the results
    /// they hashed; sessions drop theirs at their next request.
    pub fn apply(&self, settings: Settings) {
        let off = !settings.enabled;
        self.settings.store(Arc::new(settings));
        if off {
            self.traces.clear();
        }
    }

    /// Clears findings, counters and trace streams (POST /stats/reset).
    pub fn reset(&self) {
        self.registry.reset();
        self.traces.clear();
    }
}
