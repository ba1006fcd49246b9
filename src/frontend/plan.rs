//! The response plan: what each message sent to the server will answer, so replies can be forwarded, swallowed or synthesized in order.

use crate::protocol::tags::backend as tag;
use bytes::Bytes;
use std::collections::VecDeque;

/// One message sent to the server (or answered by the proxy itself), in order.
#[derive(Debug)]
pub enum Expect {
    /// A Parse; `injected` ones were added by the proxy and their ParseComplete is swallowed.
    /// `key` is the server-side statement to forget if the Parse fails or is skipped.
    /// `client_name` is the client's statement to forget in that case.
    Parse {
        injected: bool,
        key: Option<u64>,
        client_name: Option<Bytes>,
    },
    Bind,
    /// Describe of a statement answers ParameterDescription then RowDescription/NoData.
    /// `statement`: the client's statement described (its name, "" for the unnamed one) and
    /// its key, so the parameter types the server inferred can be kept with it.
    Describe {
        statement: Option<(Bytes, u64)>,
    },
    /// A Describe the proxy sent of a client statement it prepared again on this connection:
    /// its answer is swallowed and compared with `columns`, what the client was shown for
    /// `name` (see [`columns_shape`]).
    Check {
        name: Bytes,
        key: u64,
        columns: u64,
    },
    Execute,
    /// A Close of a portal, or of the unnamed statement, forwarded to the server.
    Close,
    /// A Close the proxy sent to evict a server statement; its CloseComplete is swallowed.
    CloseInjected,
    /// A reply the proxy makes itself, written when everything before it has been answered.
    Synthetic(Bytes),
    Sync,
    /// A simple Query: everything up to its ReadyForQuery is forwarded.
    Query,
    FunctionCall,
    /// A query the proxy issued (session replay): everything up to its ReadyForQuery is swallowed.
    Internal,
    /// The proxy's read of the WAL position after a write: swallowed like `Internal`, but its
    /// messages are flagged so the session can read the row.
    Probe,
    /// The proxy's question of a replica's replay position, sent ahead of the read it decides
    /// (pool/replica_choice.rs): swallowed, its messages flagged like `Probe`'s.
    Position,
}

/// What to do with one server message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Forward,
    Swallow,
}

/// Something the session must learn from a message.
#[derive(Debug, PartialEq, Eq, Default)]
pub struct Event {
    /// A ReadyForQuery ended a Sync, Query or FunctionCall.
    pub ready: bool,
    /// The ReadyForQuery ended the proxy's own query.
    pub internal_done: bool,
    /// The proxy's own query failed.
    pub internal_failed: bool,
    /// An ErrorResponse arrived for a client request.
    pub error: bool,
    /// The message answers the proxy's WAL-position probe.
    pub probe: bool,
    /// The message answers the proxy's replay-position question.
    pub position: bool,
    /// This ReadyForQuery ends a request whose replies were all swallowed after [`Plan::void`]:
    /// nothing of it reached the client, which is still owed its answer.
    pub voided: bool,
    /// An ErrorResponse arrived with nothing pending: the server is ending the connection
    /// (terminated, shutting down); the client has nothing to hear about it.
    pub unsolicited_error: bool,
    /// A ParameterDescription answers a Describe of this client statement (name, key).
    pub described: Option<(Bytes, u64)>,
    /// A RowDescription or NoData answers a Describe of this client statement (name, key).
    pub described_columns: Option<(Bytes, u64)>,
    /// A RowDescription or NoData answers the proxy's check of this client statement: compare
    /// it with what the client was shown, then call [`Plan::checked`].
    pub check: Option<Check>,
    /// This ReadyForQuery ends a request whose replies were swallowed after a failed check:
    /// the client must hear the check's error before it.
    pub checked_failed: bool,
    /// An error answered the held request before its checks: send this now.
    pub release: Option<Release>,
    /// An extended-protocol error with no Sync sent after it (a request sent on with Flush):
    /// the server now ignores every message up to the next Sync, so anything the client sends
    /// before its Sync would be expected to answer and never would.
    pub unsynced_error: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("server sent message '{}' where the proxy expected a reply to {expected}", char::from(*got))]
pub struct Desync {
    pub got: u8,
    pub expected: &'static str,
}

#[derive(Default, Debug)]
pub struct Plan {
    queue: VecDeque<Expect>,
    internal_failed: bool,
    /// The request's Sync is held back until its checks are answered (translate.rs).
    held: Option<Held>,
    /// A check failed: the request's replies up to its ReadyForQuery are swallowed.
    poisoned: bool,
    /// The request's answer is not the client's (its replica was behind): every reply up to
    /// its ReadyForQuery is swallowed, and proxy replies due meanwhile are dropped.
    voided: bool,
}

/// A request whose Sync the proxy has not sent yet.
#[derive(Debug, PartialEq, Eq)]
struct Held {
    checks: u32,
    /// Server statements whose columns did not match: closed before the Sync.
    close: Vec<u64>,
}

/// A check answered: the client's statement, its server key, and the columns it was shown.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Check {
    pub name: Bytes,
    pub key: u64,
    pub columns: u64,
}

/// What to send once a held request's checks are all answered.
#[derive(Debug, PartialEq, Eq)]
pub enum Release {
    /// Every check matched: the Sync.
    Sync,
    /// One did not: a Close of each server statement that did not match (so no client binds
    /// it unchecked), a message the server fails (so the implicit transaction rolls back
    /// whatever ran after the check), then the Sync. Their replies are planned already.
    FailThenSync { close: Vec<u64> },
}

/// The shape of a RowDescription (B) body that PostgreSQL keeps a prepared statement to:
/// each column's name, type and type modifier (not its table or format). NoData is `None`'s
/// shape, the same as no columns. None for a body that is no RowDescription.
pub fn columns_shape(row_description: Option<&[u8]>) -> Option<u64> {
    use std::hash::{BuildHasher, Hasher};
    let mut h = ahash::RandomState::with_seeds(5, 6, 7, 8).build_hasher();
    let Some(mut b) = row_description else {
        h.write_u16(0);
        return Some(h.finish());
    };
    let (n, rest) = b.split_first_chunk::<2>()?;
    let n = u16::from_be_bytes(*n);
    h.write_u16(n);
    b = rest;
    for _ in 0..n {
        let end = b.iter().position(|&c| c == 0)?;
        h.write(&b[..end]);
        // table oid (4), column number (2), type oid (4), type length (2), modifier (4), format (2)
        let field = b.get(end + 1..end + 19)?;
        h.write(&field[6..10]);
        h.write(&field[12..16]);
        b = &b[end + 19..];
    }
    Some(h.finish())
}

impl Plan {
    pub fn push(&mut self, e: Expect) {
        self.queue.push_back(e);
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Gives back the queue's capacity once nothing is expected (an idle client holds none).
    pub fn shed_idle(&mut self) {
        super::shed::Shed::shed(&mut self.queue);
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether all that is left is the proxy's WAL-position probe after a write, with the
    /// Closes that precede it where the probe is prepared on this connection for the first
    /// time: the client's request has been answered, and the next may be decided afresh.
    pub fn only_probe_left(&self) -> bool {
        matches!(self.queue.back(), Some(Expect::Probe))
            && self
                .queue
                .iter()
                .rev()
                .skip(1)
                .all(|e| matches!(e, Expect::CloseInjected))
    }

    /// Whether a client message still waits for its reply past the last Sync (a request
    /// sent on with Flush), as opposed to only the proxy's own queries.
    pub fn awaits_unsynced_reply(&self) -> bool {
        self.queue
            .iter()
            .rev()
            .take_while(|e| !matches!(e, Expect::Sync | Expect::Query | Expect::FunctionCall))
            .any(|e| {
                !matches!(
                    e,
                    Expect::Internal
                        | Expect::Probe
                        | Expect::Position
                        | Expect::CloseInjected
                        | Expect::Check { .. }
                )
            })
    }

    pub fn clear(&mut self) {
        self.queue.clear();
        self.held = None;
        self.poisoned = false;
        self.voided = false;
    }

    /// The client request next in line is to be run again elsewhere: what the server answers
    /// it is swallowed, up to and including its ReadyForQuery (`Event::voided`).
    pub fn void(&mut self) {
        self.voided = true;
    }

    pub fn is_voided(&self) -> bool {
        self.voided
    }

    /// The request just planned has `checks` checks and its Sync was not sent.
    pub fn hold_sync(&mut self, checks: u32) {
        if checks > 0 {
            self.held = Some(Held {
                checks,
                close: Vec::new(),
            });
        }
    }

    /// A Sync is held back: nothing else may be sent to this server before it.
    pub fn holds_sync(&self) -> bool {
        self.held.is_some()
    }

    /// One check was answered: `mismatched`, the server statement whose columns differ (None:
    /// they agree). Once all are answered, what to send.
    pub fn checked(&mut self, mismatched: Option<u64>) -> Option<Release> {
        let held = self.held.as_mut()?;
        held.checks = held.checks.saturating_sub(1);
        if let Some(key) = mismatched {
            held.close.push(key);
            self.poisoned = true;
        }
        if held.checks > 0 {
            return None;
        }
        let close = self.held.take()?.close;
        if close.is_empty() {
            return Some(Release::Sync);
        }
        // Their CloseCompletes come before the failure and the Sync's ReadyForQuery.
        let at = self
            .queue
            .iter()
            .rposition(|e| matches!(e, Expect::Sync))
            .unwrap_or(self.queue.len());
        for _ in &close {
            self.queue.insert(at, Expect::CloseInjected);
        }
        Some(Release::FailThenSync { close })
    }

    /// Writes synthetic replies that are now due (everything before them is answered).
    pub fn drain_synthetic(&mut self, out: &mut bytes::BytesMut) {
        while let Some(Expect::Synthetic(_)) = self.queue.front() {
            if let Some(Expect::Synthetic(b)) = self.queue.pop_front() {
                if !self.voided {
                    out.extend_from_slice(&b);
                }
            }
        }
    }

    /// Decides what happens to one server message and advances the plan.
    ///
    /// `forget` collects server statement keys and client statement names that must be
    /// forgotten because their Parse failed or was skipped after an error.
    pub fn on_message(&mut self, t: u8, forget: &mut Vec<Forget>) -> Result<(Step, Event), Desync> {
        let own = matches!(
            self.queue.front(),
            Some(Expect::Internal | Expect::Probe | Expect::Position)
        );
        let (mut step, mut ev) = self.advance(t, forget)?;
        if self.voided && !own {
            step = Step::Swallow;
            if ev.ready {
                self.voided = false;
                self.poisoned = false;
                ev.voided = true;
            }
        } else if self.poisoned && !own {
            match t {
                tag::READY_FOR_QUERY if ev.ready => {
                    self.poisoned = false;
                    ev.checked_failed = true;
                }
                tag::NOTICE_RESPONSE | tag::NOTIFICATION_RESPONSE | tag::PARAMETER_STATUS => {}
                _ => step = Step::Swallow,
            }
        }
        Ok((step, ev))
    }

    fn advance(&mut self, t: u8, forget: &mut Vec<Forget>) -> Result<(Step, Event), Desync> {
        let mut ev = Event::default();
        let front = match self.queue.front() {
            Some(f) => f,
            None => {
                // Asynchronous messages may arrive while nothing is pending.
                return match t {
                    tag::NOTICE_RESPONSE | tag::NOTIFICATION_RESPONSE | tag::PARAMETER_STATUS => {
                        Ok((Step::Forward, ev))
                    }
                    tag::ERROR_RESPONSE => {
                        ev.unsolicited_error = true;
                        Ok((Step::Swallow, ev))
                    }
                    _ => Err(Desync {
                        got: t,
                        expected: "nothing",
                    }),
                };
            }
        };
        if matches!(front, Expect::Internal | Expect::Probe | Expect::Position) {
            ev.probe = matches!(front, Expect::Probe);
            ev.position = matches!(front, Expect::Position);
            match t {
                tag::ERROR_RESPONSE => self.internal_failed = true,
                tag::READY_FOR_QUERY => {
                    self.queue.pop_front();
                    ev.internal_done = true;
                    ev.internal_failed = std::mem::take(&mut self.internal_failed);
                }
                _ => {}
            }
            return Ok((Step::Swallow, ev));
        }
        match t {
            tag::NOTICE_RESPONSE | tag::NOTIFICATION_RESPONSE | tag::PARAMETER_STATUS => {
                Ok((Step::Forward, ev))
            }
            tag::READY_FOR_QUERY => match self.queue.pop_front() {
                Some(Expect::Sync | Expect::Query | Expect::FunctionCall) => {
                    ev.ready = true;
                    Ok((Step::Forward, ev))
                }
                other => Err(self.desync(t, other)),
            },
            tag::ERROR_RESPONSE => {
                ev.error = true;
                if matches!(front, Expect::Query | Expect::FunctionCall) {
                    return Ok((Step::Forward, ev));
                }
                // Extended protocol: the server skips everything up to the next Sync.
                let mut checks = 0;
                while let Some(e) = self.queue.front() {
                    if matches!(e, Expect::Sync) {
                        break;
                    }
                    match self.queue.pop_front() {
                        Some(Expect::Parse {
                            key, client_name, ..
                        }) => forget.push(Forget { key, client_name }),
                        Some(Expect::Check { .. }) => checks += 1,
                        _ => {}
                    }
                }
                // Checks skipped with the rest: the server waits for the held Sync, and the
                // client hears its own error, not a check's.
                for _ in 0..checks {
                    ev.release = self.checked(None).or(ev.release);
                }
                ev.unsynced_error = self.queue.is_empty();
                Ok((Step::Forward, ev))
            }
            tag::PARSE_COMPLETE => match self.queue.pop_front() {
                Some(Expect::Parse { injected, .. }) => Ok((
                    if injected {
                        Step::Swallow
                    } else {
                        Step::Forward
                    },
                    ev,
                )),
                other => Err(self.desync(t, other)),
            },
            tag::BIND_COMPLETE => self.complete(t, |e| matches!(e, Expect::Bind)),
            tag::CLOSE_COMPLETE => match self.queue.pop_front() {
                Some(Expect::Close) => Ok((Step::Forward, ev)),
                Some(Expect::CloseInjected) => Ok((Step::Swallow, ev)),
                other => Err(self.desync(t, other)),
            },
            tag::PARAMETER_DESCRIPTION => match front {
                Expect::Describe { statement } => {
                    ev.described = statement.clone();
                    Ok((Step::Forward, ev))
                }
                Expect::Check { .. } => Ok((Step::Swallow, ev)),
                _ => Err(Desync {
                    got: t,
                    expected: name(front),
                }),
            },
            tag::ROW_DESCRIPTION | tag::NO_DATA => match front {
                Expect::Query | Expect::FunctionCall => Ok((Step::Forward, ev)),
                Expect::Describe { .. } | Expect::Check { .. } => match self.queue.pop_front() {
                    Some(Expect::Describe { statement }) => {
                        ev.described_columns = statement;
                        Ok((Step::Forward, ev))
                    }
                    Some(Expect::Check { name, key, columns }) => {
                        ev.check = Some(Check { name, key, columns });
                        Ok((Step::Swallow, ev))
                    }
                    other => Err(self.desync(t, other)),
                },
                _ => Err(Desync {
                    got: t,
                    expected: name(front),
                }),
            },
            tag::COMMAND_COMPLETE | tag::EMPTY_QUERY_RESPONSE | tag::PORTAL_SUSPENDED => {
                match front {
                    Expect::Query => Ok((Step::Forward, ev)),
                    Expect::Execute => {
                        self.queue.pop_front();
                        Ok((Step::Forward, ev))
                    }
                    _ => Err(Desync {
                        got: t,
                        expected: name(front),
                    }),
                }
            }
            // Rows, COPY traffic and function results belong to the message at the front.
            _ => Ok((Step::Forward, ev)),
        }
    }

    /// The server entered COPY FROM STDIN from an Execute: it ignores Syncs that the client
    /// sent before its copy data, so they will get no ReadyForQuery. Returns how many.
    pub fn copy_in_started(&mut self) -> usize {
        if !matches!(self.queue.front(), Some(Expect::Execute)) {
            return 0;
        }
        let mut dropped = 0;
        while matches!(self.queue.get(1), Some(Expect::Sync)) {
            self.queue.remove(1);
            dropped += 1;
        }
        dropped
    }

    fn complete(&mut self, t: u8, ok: impl Fn(&Expect) -> bool) -> Result<(Step, Event), Desync> {
        match self.queue.pop_front() {
            Some(e) if ok(&e) => Ok((Step::Forward, Event::default())),
            other => Err(self.desync(t, other)),
        }
    }

    fn desync(&self, got: u8, e: Option<Expect>) -> Desync {
        Desync {
            got,
            expected: e.as_ref().map(name).unwrap_or("nothing"),
        }
    }
}

/// A statement that does not exist after all.
#[derive(Debug, PartialEq, Eq)]
pub struct Forget {
    pub key: Option<u64>,
    pub client_name: Option<Bytes>,
}

fn name(e: &Expect) -> &'static str {
    match e {
        Expect::Parse { .. } => "Parse",
        Expect::Bind => "Bind",
        Expect::Describe { .. } | Expect::Check { .. } => "Describe",
        Expect::Execute => "Execute",
        Expect::Close | Expect::CloseInjected => "Close",
        Expect::Synthetic(_) => "a proxy reply",
        Expect::Sync => "Sync",
        Expect::Query => "Query",
        Expect::FunctionCall => "FunctionCall",
        Expect::Internal | Expect::Probe | Expect::Position => "the proxy's own query",
    }
}

#[cfg(test)]
mod tests;
