//! What one Sync/Query/FunctionCall's ReadyForQuery settles: the statements a request ran, their rows, effects and writes.

use crate::nplusone::Call;
use crate::router::{Analysis, WriteSet};
use std::sync::Arc;
use std::time::Instant;

/// What to do when the ReadyForQuery of one Sync/Query/FunctionCall arrives.
#[derive(Default, Debug)]
pub struct ReadyAction {
    /// Statements run in this request whose session effects apply if it succeeds.
    pub effects: Vec<Arc<Analysis>>,
    pub failed: bool,
    /// When the request's first message arrived, for its latency.
    pub started: Option<Instant>,
    pub pool_wait_us: u64,
    /// Statements executed, in order, with the rows each reported.
    pub executed: Executed,
    /// A simple Query: every CommandComplete belongs to its one text.
    pub simple: bool,
    /// Index of the statement whose completion is awaited (extended protocol).
    pub cursor: usize,
    /// A ROLLBACK completed within the request, undoing SETs it made.
    pub rolled_back: bool,
    /// With `stats.log_parameters`: the Query text or the last Bind, for the slow-query log.
    pub parameters: Option<crate::protocol::message::Message>,
    /// Captures the reply for the result cache (the request missed it).
    pub fill: Option<Box<crate::cache::Fill>>,
    /// The result cache was consulted and missed.
    pub cache_miss: bool,
    /// A FunctionCall: it may write anything.
    pub function_call: bool,
    /// What the statements write, fed once as they are added: read-your-writes notes it before
    /// the request is sent, the result cache invalidates by it at the ReadyForQuery.
    pub writes: WriteSet,
    /// The last CommandComplete was ROLLBACK (a ROLLBACK, or a COMMIT of a failed transaction).
    pub ended_with_rollback: bool,
    /// A COMMIT or ROLLBACK completed (with AND CHAIN the transaction status stays open).
    pub ended_transaction: bool,
}

/// The statements of one request; the first is kept inline so most requests allocate nothing.
#[derive(Default, Debug)]
pub struct Executed {
    pub first: Option<(Arc<Analysis>, u64)>,
    pub more: Vec<(Arc<Analysis>, u64)>,
    /// Parameter hash and trace id per statement, for N+1 detection (default while it is off).
    pub first_call: Call,
    pub more_calls: Vec<Call>,
}

impl Executed {
    pub fn push(&mut self, a: Arc<Analysis>) {
        if self.first.is_none() {
            self.first = Some((a, 0));
        } else {
            self.more.push((a, 0));
        }
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut (Arc<Analysis>, u64)> {
        if i == 0 {
            self.first.as_mut()
        } else {
            self.more.get_mut(i - 1)
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &(Arc<Analysis>, u64)> {
        self.first.iter().chain(self.more.iter())
    }

    /// Sets the N+1 details of the statement pushed last.
    pub fn set_call(&mut self, c: Call) {
        if self.more.is_empty() {
            self.first_call = c;
        } else {
            self.more_calls.resize(self.more.len(), Call::default());
            if let Some(last) = self.more_calls.last_mut() {
                *last = c;
            }
        }
    }

    /// Appends `other`'s statements, with their rows and N+1 details.
    pub fn append(&mut self, other: Executed) {
        let calls: Vec<Call> = (0..1 + other.more.len()).map(|i| other.call(i)).collect();
        for ((a, rows), call) in other.first.into_iter().chain(other.more).zip(calls) {
            self.push(a);
            let last = if self.more.is_empty() {
                self.first.as_mut()
            } else {
                self.more.last_mut()
            };
            if let Some(last) = last {
                last.1 = rows;
            }
            self.set_call(call);
        }
    }

    pub fn call(&self, i: usize) -> Call {
        if i == 0 {
            self.first_call
        } else {
            self.more_calls.get(i - 1).copied().unwrap_or_default()
        }
    }
}

impl ReadyAction {
    pub fn new(started: Option<Instant>, pool_wait_us: u64) -> ReadyAction {
        ReadyAction {
            started,
            pool_wait_us,
            ..Default::default()
        }
    }

    /// A statement the request runs.
    pub fn execute(&mut self, a: Arc<Analysis>) {
        self.writes.add_statement(&a);
        self.executed.push(a);
    }

    /// A FunctionCall names its function by oid: it may write anything.
    pub fn function_call(&mut self) {
        self.function_call = true;
        self.writes.unknown = true;
    }

    /// Whether it holds anything a later ReadyForQuery must account for.
    pub fn is_open(&self) -> bool {
        self.executed.first.is_some() || !self.effects.is_empty() || self.function_call
    }

    /// Takes over an earlier action whose own ReadyForQuery will never come (its statements
    /// were sent before a Flush, or a COPY swallowed its Sync): the earlier statements come
    /// first, so their CommandCompletes still meet them in order. Replies arrive in order, so
    /// `self` has seen none yet, and what replies set (rows, rollbacks) is the earlier one's.
    pub fn absorb(&mut self, earlier: ReadyAction) {
        let later = std::mem::replace(self, earlier);
        self.executed.append(later.executed);
        self.effects.extend(later.effects);
        self.writes.merge(later.writes);
        self.function_call |= later.function_call;
        self.simple = later.simple;
        self.cache_miss |= later.cache_miss;
        if later.fill.is_some() {
            self.fill = later.fill;
        }
        if later.parameters.is_some() {
            self.parameters = later.parameters;
        }
    }

    /// A CommandComplete (or EmptyQueryResponse / PortalSuspended) with its row count.
    pub fn completed(&mut self, rows: u64) {
        let i = self.cursor;
        if let Some(e) = self.executed.get_mut(i) {
            e.1 += rows;
        }
        if !self.simple {
            self.cursor += 1;
        }
    }
}

/// The statements sent before a Flush, waiting for the Sync whose ReadyForQuery settles them.
/// Boxed and made only when a request ends with Flush: most clients never do, and an
/// action inline would be a few hundred bytes in every session.
#[derive(Default, Debug)]
pub struct Flushed(Option<Box<ReadyAction>>);

impl Flushed {
    pub fn is_open(&self) -> bool {
        self.0.as_ref().is_some_and(|a| a.is_open())
    }

    pub fn get(&self) -> Option<&ReadyAction> {
        self.0.as_deref()
    }

    /// The action replies go to when no Sync of the client's is queued.
    pub fn get_mut(&mut self) -> &mut ReadyAction {
        self.0.get_or_insert_default()
    }

    pub fn take(&mut self) -> ReadyAction {
        self.0.take().map(|a| *a).unwrap_or_default()
    }

    pub fn set(&mut self, action: ReadyAction) {
        self.0 = Some(Box::new(action));
    }

    /// Between requests: an action with nothing to settle is dropped.
    pub fn shed(&mut self) {
        if !self.is_open() {
            self.0 = None;
        }
    }
}
