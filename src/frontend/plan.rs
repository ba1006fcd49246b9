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
    /// An ErrorResponse arrived with nothing pending: the server is ending the connection
    /// (terminated, shutting down); the client has nothing to hear about it.
    pub unsolicited_error: bool,
    /// A ParameterDescription answers a Describe of this client statement (name, key).
    pub described: Option<(Bytes, u64)>,
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
}

impl Plan {
    pub fn push(&mut self, e: Expect) {
        self.queue.push_back(e);
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether a client message still waits for its reply past the last Sync (a request
    /// sent on with Flush), as opposed to only the proxy's own queries.
    pub fn awaits_unsynced_reply(&self) -> bool {
        self.queue
            .iter()
            .rev()
            .take_while(|e| !matches!(e, Expect::Sync | Expect::Query | Expect::FunctionCall))
            .any(|e| !matches!(e, Expect::Internal | Expect::Probe | Expect::CloseInjected))
    }

    pub fn clear(&mut self) {
        self.queue.clear();
    }

    /// Writes synthetic replies that are now due (everything before them is answered).
    pub fn drain_synthetic(&mut self, out: &mut bytes::BytesMut) {
        while let Some(Expect::Synthetic(_)) = self.queue.front() {
            if let Some(Expect::Synthetic(b)) = self.queue.pop_front() {
                out.extend_from_slice(&b);
            }
        }
    }

    /// Decides what happens to one server message and advances the plan.
    ///
    /// `forget` collects server statement keys and client statement names that must be
    /// forgotten because their Parse failed or was skipped after an error.
    pub fn on_message(&mut self, t: u8, forget: &mut Vec<Forget>) -> Result<(Step, Event), Desync> {
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
        if matches!(front, Expect::Internal | Expect::Probe) {
            ev.probe = matches!(front, Expect::Probe);
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
                while let Some(e) = self.queue.front() {
                    if matches!(e, Expect::Sync) {
                        break;
                    }
                    if let Some(Expect::Parse {
                        key, client_name, ..
                    }) = self.queue.pop_front()
                    {
                        forget.push(Forget { key, client_name });
                    }
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
                _ => Err(Desync {
                    got: t,
                    expected: name(front),
                }),
            },
            tag::ROW_DESCRIPTION | tag::NO_DATA => match front {
                Expect::Query | Expect::FunctionCall => Ok((Step::Forward, ev)),
                Expect::Describe { .. } => {
                    self.queue.pop_front();
                    Ok((Step::Forward, ev))
                }
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
        Expect::Describe { .. } => "Describe",
        Expect::Execute => "Execute",
        Expect::Close | Expect::CloseInjected => "Close",
        Expect::Synthetic(_) => "a proxy reply",
        Expect::Sync => "Sync",
        Expect::Query => "Query",
        Expect::FunctionCall => "FunctionCall",
        Expect::Internal | Expect::Probe => "the proxy's own query",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn run(plan: &mut Plan, tags: &[u8]) -> Vec<Step> {
        let mut forget = Vec::new();
        let mut steps = Vec::new();
        for &t in tags {
            let mut out = BytesMut::new();
            plan.drain_synthetic(&mut out);
            steps.push(plan.on_message(t, &mut forget).unwrap().0);
        }
        steps
    }

    #[test]
    fn unsynced_replies_are_told_from_the_proxys_own_queries() {
        let mut p = Plan::default();
        assert!(!p.awaits_unsynced_reply());
        p.push(Expect::Probe);
        assert!(!p.awaits_unsynced_reply());
        p.push(Expect::Bind);
        p.push(Expect::Execute);
        assert!(p.awaits_unsynced_reply(), "Bind/Execute sent on with Flush");
        p.push(Expect::Sync);
        assert!(
            !p.awaits_unsynced_reply(),
            "a Sync's ReadyForQuery answers them"
        );
    }

    #[test]
    fn injected_parse_is_swallowed() {
        let mut p = Plan::default();
        p.push(Expect::Parse {
            injected: true,
            key: Some(1),
            client_name: None,
        });
        p.push(Expect::Bind);
        p.push(Expect::Execute);
        p.push(Expect::Sync);
        let steps = run(&mut p, b"12DDCZ");
        assert_eq!(steps[0], Step::Swallow);
        assert!(steps[1..].iter().all(|s| *s == Step::Forward));
        assert!(p.is_empty());
    }

    #[test]
    fn synthetic_parse_complete_in_order() {
        let mut p = Plan::default();
        p.push(Expect::Synthetic(Bytes::from_static(b"1\0\0\0\x04")));
        p.push(Expect::Bind);
        p.push(Expect::Sync);
        let mut out = BytesMut::new();
        p.drain_synthetic(&mut out);
        assert_eq!(&out[..], b"1\0\0\0\x04");
        let mut f = Vec::new();
        assert_eq!(p.on_message(b'2', &mut f).unwrap().0, Step::Forward);
        let (_, ev) = p.on_message(b'Z', &mut f).unwrap();
        assert!(ev.ready);
    }

    #[test]
    fn error_skips_to_sync_and_forgets_parses() {
        let mut p = Plan::default();
        p.push(Expect::Parse {
            injected: false,
            key: Some(7),
            client_name: Some(Bytes::from_static(b"s1")),
        });
        p.push(Expect::Bind);
        p.push(Expect::Parse {
            injected: false,
            key: Some(8),
            client_name: Some(Bytes::from_static(b"s2")),
        });
        p.push(Expect::Synthetic(Bytes::from_static(b"x")));
        p.push(Expect::Sync);
        p.push(Expect::Bind);
        p.push(Expect::Sync);
        let mut f = Vec::new();
        let (step, ev) = p.on_message(b'E', &mut f).unwrap();
        assert_eq!(step, Step::Forward);
        assert!(ev.error);
        assert!(
            !ev.unsynced_error,
            "the queued Sync ends the server's skipping"
        );
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].key, Some(7));
        assert!(p.on_message(b'Z', &mut f).unwrap().1.ready);
        assert_eq!(p.len(), 2);
    }

    /// asyncpg prepares with Parse, Describe, Flush; psycopg's pipeline flushes between
    /// statements. An error there leaves the server skipping to a Sync nobody has sent yet.
    #[test]
    fn error_without_a_sync_queued_is_reported_as_unsynced() {
        let mut p = Plan::default();
        p.push(Expect::Synthetic(Bytes::from_static(b"1\0\0\0\x04")));
        p.push(Expect::Describe { statement: None });
        let mut out = BytesMut::new();
        p.drain_synthetic(&mut out);
        let mut f = Vec::new();
        let (step, ev) = p.on_message(b'E', &mut f).unwrap();
        assert_eq!(step, Step::Forward);
        assert!(ev.error && ev.unsynced_error);
        assert!(p.is_empty());
        // What the session did before: plan the client's next Bind/Execute/Sync. The server,
        // skipping, answers only the Sync, and the plan was out of step at its ReadyForQuery.
        p.push(Expect::Bind);
        p.push(Expect::Execute);
        p.push(Expect::Sync);
        assert_eq!(
            p.on_message(b'Z', &mut f).unwrap_err(),
            Desync {
                got: b'Z',
                expected: "Bind"
            }
        );
        // What it does now: its own Sync, whose ReadyForQuery is swallowed.
        let mut p = Plan::default();
        p.push(Expect::Bind);
        p.push(Expect::Execute);
        let (_, ev) = p.on_message(b'E', &mut f).unwrap();
        assert!(ev.unsynced_error);
        p.push(Expect::Internal);
        let (step, ev) = p.on_message(b'Z', &mut f).unwrap();
        assert_eq!(step, Step::Swallow);
        assert!(ev.internal_done && !ev.ready);
        assert!(p.is_empty());
    }

    #[test]
    fn simple_query_with_error_continues_to_ready() {
        let mut p = Plan::default();
        p.push(Expect::Query);
        let steps = run(&mut p, b"TDCE");
        assert!(steps.iter().all(|s| *s == Step::Forward));
        assert!(p.on_message(b'Z', &mut Vec::new()).unwrap().1.ready);
    }

    #[test]
    fn internal_query_is_swallowed() {
        let mut p = Plan::default();
        p.push(Expect::Internal);
        p.push(Expect::Query);
        let mut f = Vec::new();
        assert_eq!(p.on_message(b'C', &mut f).unwrap().0, Step::Swallow);
        assert_eq!(p.on_message(b'S', &mut f).unwrap().0, Step::Swallow);
        assert_eq!(p.on_message(b'E', &mut f).unwrap().0, Step::Swallow);
        let (s, ev) = p.on_message(b'Z', &mut f).unwrap();
        assert_eq!(s, Step::Swallow);
        assert!(ev.internal_done && ev.internal_failed);
        assert_eq!(p.on_message(b'C', &mut f).unwrap().0, Step::Forward);
    }

    #[test]
    fn probe_is_swallowed_and_flagged() {
        let mut p = Plan::default();
        p.push(Expect::Probe);
        p.push(Expect::Query);
        let mut f = Vec::new();
        for t in *b"TDC" {
            let (s, ev) = p.on_message(t, &mut f).unwrap();
            assert_eq!(s, Step::Swallow);
            assert!(ev.probe && !ev.internal_done);
        }
        let (s, ev) = p.on_message(b'Z', &mut f).unwrap();
        assert_eq!(s, Step::Swallow);
        assert!(ev.probe && ev.internal_done && !ev.internal_failed);
        let (_, ev) = p.on_message(b'T', &mut f).unwrap();
        assert!(!ev.probe);
    }

    #[test]
    fn extended_copy_in_drops_the_early_sync() {
        let mut p = Plan::default();
        p.push(Expect::Bind);
        p.push(Expect::Execute);
        p.push(Expect::Sync);
        p.push(Expect::Sync);
        let mut f = Vec::new();
        p.on_message(b'2', &mut f).unwrap();
        p.on_message(b'G', &mut f).unwrap();
        assert_eq!(p.copy_in_started(), 2);
        p.push(Expect::Sync);
        p.on_message(b'C', &mut f).unwrap();
        assert!(p.on_message(b'Z', &mut f).unwrap().1.ready);
        assert!(p.is_empty());
    }

    #[test]
    fn describe_statement() {
        let mut p = Plan::default();
        p.push(Expect::Describe { statement: None });
        p.push(Expect::Sync);
        assert_eq!(run(&mut p, b"tTZ"), vec![Step::Forward; 3]);
        assert!(p.is_empty());
        // A client statement's ParameterDescription names it, for the types to be kept.
        let s1 = (Bytes::from_static(b"s1"), 9);
        p.push(Expect::Describe {
            statement: Some(s1.clone()),
        });
        let (_, ev) = p.on_message(b't', &mut Vec::new()).unwrap();
        assert_eq!(ev.described, Some(s1));
        let (_, ev) = p.on_message(b'n', &mut Vec::new()).unwrap();
        assert_eq!(ev.described, None);
        assert!(p.is_empty());
    }

    #[test]
    fn unexpected_message_is_desync() {
        let mut p = Plan::default();
        p.push(Expect::Bind);
        assert!(p.on_message(b'1', &mut Vec::new()).is_err());
        let mut p = Plan::default();
        assert!(p.on_message(b'D', &mut Vec::new()).is_err());
        assert!(p.on_message(b'N', &mut Vec::new()).is_ok());
        let (step, ev) = p.on_message(b'E', &mut Vec::new()).unwrap();
        assert_eq!(step, Step::Swallow);
        assert!(ev.unsolicited_error);
    }
}
