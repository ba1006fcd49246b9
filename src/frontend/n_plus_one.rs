//! Feeding each executed statement to the N+1 detector (the session's stream, or its trace's) and reporting bursts: log line and client notice.

use super::action::ReadyAction;
use super::session::Session;
use super::statements::ClientStatement;
use crate::nplusone::flow::{self, Rows, Values};
use crate::nplusone::{CacheUse, Call, Class, Detection, Kind, Origin, Statement};
use crate::protocol::build;
use crate::protocol::sqlstate::{Severity, SqlState};
use crate::protocol::tags::backend as tag;
use crate::router::Analysis;
use std::hash::{BuildHasher, Hasher};
use std::time::Instant;

/// Longest query text quoted in a client notice.
const NOTICE_QUERY_CHARS: usize = 200;

fn hasher() -> ahash::AHasher {
    ahash::RandomState::with_seeds(71, 72, 73, 74).build_hasher()
}

/// A simple Query: its literals are in its text, so the text stands for its parameters. Their
/// values are read only when they can meet a parent result (`values`, or a trace, whose stream
/// other sessions feed): scanning every text for them was a twentieth of a request's work.
pub(super) fn query_call(body: &[u8], values: bool) -> Call {
    let mut h = hasher();
    h.write(body);
    let trace = crate::nplusone::trace_id(body);
    Call {
        params: h.finish(),
        trace,
        values: if values || trace != 0 {
            flow::literals(body)
        } else {
            Values::default()
        },
    }
}

/// A Bind: the parameter values (and formats) together with the statement they go to, whose
/// text may carry literals of its own.
pub(super) fn bind_call(stmt: Option<&ClientStatement>, rest: &[u8]) -> Call {
    let mut h = hasher();
    h.write_u64(stmt.map_or(0, |s| s.key));
    h.write(rest);
    Call {
        params: h.finish(),
        trace: stmt.map_or(0, |s| s.trace),
        values: bind_values(rest),
    }
}

/// The hashed values of a Bind's parameters (after the statement name: formats, then values);
/// a malformed message yields what was read before the fault.
fn bind_values(rest: &[u8]) -> Values {
    let mut out = Values::default();
    let i16_at = |at: usize| {
        rest.get(at..at + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]).max(0) as usize)
    };
    let Some(nfmt) = i16_at(0) else {
        return out;
    };
    let mut at = 2 + 2 * nfmt;
    let Some(n) = i16_at(at) else {
        return out;
    };
    at += 2;
    for _ in 0..n.min(flow::MAX_PARAMS) {
        let Some(len) = rest.get(at..at + 4) else {
            break;
        };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        at += 4;
        if len < 0 {
            out.push(flow::NONE);
            continue;
        }
        let Some(v) = rest.get(at..at + len as usize) else {
            break;
        };
        out.push(flow::value_hash(v));
        at += len as usize;
    }
    out
}

/// A cached reply's multi-row results, hashed with `limit` rows at most: (statement offset in
/// the reply, result), and how many statements the reply completes.
struct HashedReply {
    limit: u32,
    results: Vec<(usize, Rows)>,
    statements: usize,
}

/// The hashed values of the current request's multi-row results, kept while detection is on
/// and handed to the detector at ReadyForQuery; each result is bounded by [`flow::rows_to_hash`],
/// [`flow::MAX_VALUES`] and [`flow::MAX_BYTES`].
#[derive(Default)]
pub(super) struct Capture {
    on: bool,
    /// The result being read; boxed and made at its first row, so a session between requests
    /// holds none (a result with its filter is a few hundred bytes).
    current: Option<Box<Rows>>,
    /// Rows hashed at most per result ([`flow::rows_to_hash`]).
    limit: u32,
    /// (statement index in the request, its result).
    done: Vec<(usize, Rows)>,
    index: usize,
}

impl Capture {
    pub(super) fn new(settings: &crate::nplusone::Settings) -> Capture {
        let mut c = Capture::default();
        c.end_request(settings);
        c
    }

    /// One message forwarded to the client (the DataRow hook); only a flag test when off.
    pub(super) fn feed(&mut self, t: u8, body: &[u8]) {
        if !self.on {
            return;
        }
        match t {
            tag::DATA_ROW => {
                let limit = self.limit;
                self.current
                    .get_or_insert_with(|| {
                        let mut rows = Box::<Rows>::default();
                        rows.limit = limit;
                        rows
                    })
                    .add_row(body)
            }
            tag::COMMAND_COMPLETE | tag::PORTAL_SUSPENDED | tag::EMPTY_QUERY_RESPONSE => {
                // Only a possible parent is moved out; a one-row result (most statements)
                // leaves its buffer here for the rest of the request.
                match self.current.take_if(|c| c.is_parent()) {
                    Some(parent) => self.done.push((self.index, *parent)),
                    None => self.clear_current(),
                }
                self.index += 1;
            }
            tag::ERROR_RESPONSE => self.clear_current(),
            _ => {}
        }
    }

    /// A stored reply the cache answered with: the same rows the server would have sent.
    pub(super) fn feed_reply(&mut self, mut reply: &[u8]) {
        while let Some((&t, rest)) = reply.split_first() {
            let Some(len) = rest.get(..4) else {
                return;
            };
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            let Some(body) = len.checked_sub(4).and_then(|n| rest.get(4..4 + n)) else {
                return;
            };
            self.feed(t, body);
            reply = &rest[len..];
        }
    }

    /// A stored reply the cache answered with, hashed on its first hit and replayed from there
    /// after: on a hot entry, hashing the same rows at every hit was most of the detector's cost.
    pub(super) fn feed_entry(&mut self, entry: &crate::cache::Entry) {
        if !self.on {
            return;
        }
        let limit = self.limit;
        let memo = entry
            .derived
            .get()
            .and_then(|d| d.downcast_ref::<HashedReply>());
        if let Some(m) = memo.filter(|m| m.limit == limit) {
            for (i, rows) in &m.results {
                self.done.push((self.index + i, rows.clone()));
            }
            self.index += m.statements;
            return;
        }
        let clean = self.current_is_empty();
        let (first, index) = (self.done.len(), self.index);
        self.feed_reply(&entry.reply);
        // A reply ends at its CommandComplete, so nothing is left half-read; if something is
        // (a truncated reply), the result is not one to keep.
        if clean && self.current_is_empty() && memo.is_none() {
            let results = self.done[first..]
                .iter()
                .map(|(i, rows)| (i - index, rows.clone()))
                .collect();
            let m = HashedReply {
                limit,
                results,
                statements: self.index - index,
            };
            // Another client's first hit may have stored it meanwhile: the same values.
            let _ = entry.derived.set(std::sync::Arc::new(m));
        }
    }

    /// The result of statement `i` (a simple Query's texts all count as statement 0: its last
    /// result).
    fn take(&mut self, i: usize, simple: bool) -> Option<Rows> {
        let at = if simple {
            self.done.len().checked_sub(1)?
        } else {
            self.done.iter().position(|(j, _)| *j == i)?
        };
        Some(self.done.swap_remove(at).1)
    }

    /// Between requests: the result buffers kept for the next request's rows go.
    pub(super) fn shed_idle(&mut self) {
        use super::shed::Shed;
        self.done.shed();
        if self.current_is_empty() {
            self.current = None;
        }
    }

    fn current_is_empty(&self) -> bool {
        self.current.as_ref().is_none_or(|c| c.is_empty())
    }

    fn clear_current(&mut self) {
        if let Some(c) = self.current.as_mut() {
            c.clear();
        }
    }

    fn end_request(&mut self, settings: &crate::nplusone::Settings) {
        self.done.clear();
        self.clear_current();
        self.limit = flow::rows_to_hash(settings.threshold);
        if let Some(c) = self.current.as_mut() {
            c.limit = self.limit;
        }
        self.index = 0;
        self.on = settings.enabled;
    }
}

/// Transaction control, SET/RESET, DISCARD, DEALLOCATE and pinning statements are no part of
/// a loop: they are left out of the stream entirely.
fn class(a: &Analysis) -> Option<Class> {
    if a.statement_count == 0
        || a.is_transaction_control
        || !a.session.is_empty()
        || a.pin.is_some()
        || a.deallocate.is_some()
        || a.discard_all
    {
        return None;
    }
    Some(match a.reason {
        "insert" | "update" | "delete" | "merge" => Class::Write,
        _ if a.tables_written.is_empty() && !a.writes_unknown => Class::Read,
        _ => Class::Other,
    })
}

impl Session {
    /// Whether a simple Query's literal values may meet a parent result when it is fed: the
    /// session keeps one, or a request before it, not yet fed, may leave one.
    pub(super) fn literals_may_link(&self) -> bool {
        self.n_plus_one.has_parents() || !self.ready_actions.is_empty() || self.flushed.is_open()
    }

    /// Feeds a finished request's statements (answered by the result cache when `cached`) and
    /// their results' values to the detector; allocation-free per statement unless a burst is
    /// found or a statement returned several rows.
    pub(super) fn detect_bursts(&mut self, action: &ReadyAction, cached: bool, now: Instant) {
        self.feed_detector(action, cached, now);
        let settings = self.live.detection();
        self.n1_capture.end_request(settings);
    }

    fn feed_detector(&mut self, action: &ReadyAction, cached: bool, now: Instant) {
        let detector = &self.shared.n_plus_one;
        let settings = self.live.detection();
        if !settings.enabled {
            // Detection was turned off: the results it kept go now, not at the session's end.
            self.n_plus_one.forget_results();
            return;
        }
        let Some(started) = action.started else {
            return;
        };
        let cache_on = self.shared.cache.enabled();
        // Empty (no allocation) unless a burst is found.
        let mut bursts: Vec<(Detection, u128)> = Vec::new();
        let us = now.saturating_duration_since(started).as_micros() as u64;
        for (i, (a, rows)) in action.executed.iter().enumerate() {
            // Failed statements ran nothing worth counting; after an extended-protocol error
            // the server skipped the rest.
            if action.failed && (action.simple || i >= action.cursor) {
                break;
            }
            let Some(class) = class(a) else {
                continue;
            };
            let call = action.executed.call(i);
            let s = Statement {
                fingerprint: a.fingerprint,
                normalized: &a.normalized,
                class,
                params: call.params,
                rows: *rows,
                duration_us: us,
                values: call.values.as_slice(),
                cached,
                cache: match (cache_on, a.cacheable()) {
                    (false, _) => CacheUse::Off,
                    (true, false) => CacheUse::NotCacheable,
                    (true, true) => CacheUse::On,
                },
            };
            let result = self.n1_capture.take(i, action.simple);
            let origin = Origin {
                database: &self.db,
                user: &self.user,
                application_name: &self.application_name,
            };
            let found = if call.trace != 0 {
                detector.traces.observe(
                    call.trace,
                    now,
                    &s,
                    result,
                    settings,
                    &detector.registry,
                    origin,
                )
            } else {
                self.n_plus_one
                    .observe(now, &s, result, settings, &detector.registry, origin)
            };
            if let Some(d) = found {
                bursts.push((d, call.trace));
            }
        }
        for (d, trace) in &bursts {
            if d.kind == Kind::NPlusOne {
                self.shared.stats.events.n_plus_one_burst();
            }
            self.report_burst(d, *trace);
        }
    }

    /// One WARN per burst, and a NoticeResponse after the request's ReadyForQuery (a notice
    /// may come at any time between whole messages) when `n_plus_one.notify_client` is on.
    fn report_burst(&mut self, d: &Detection, trace: u128) {
        let what = match d.kind {
            Kind::NPlusOne => "N+1 query burst",
            Kind::RepeatedIdentical => "repeated identical query",
            Kind::BatchableWrites => "batchable writes",
        };
        let peer = self.shared.cancels.peer(self.cancel.pid);
        tracing::warn!(
            kind = d.kind.as_str(),
            fingerprint = format_args!("{:016x}", d.fingerprint),
            query = %d.query,
            parent_fingerprint = d.parent.as_ref().map(|p| format!("{:016x}", p.0)).unwrap_or_default(),
            parent_query = d.parent.as_ref().map(|p| &*p.1).unwrap_or(""),
            count = d.count,
            total_ms = d.total_us as f64 / 1000.0,
            span_ms = d.span_ms,
            database = %self.db,
            user = %self.user,
            application_name = %self.application_name,
            client_addr = peer.map(|p| p.to_string()).unwrap_or_default(),
            trace_id = if trace == 0 { String::new() } else { format!("{trace:032x}") },
            suggestion = %d.suggestion,
            "{what}"
        );
        if self.live.detection().notify_client {
            let message = notice_text(d);
            build::notice_response(
                &mut self.wbuf,
                Severity::Warning,
                SqlState::WARNING,
                &message,
            );
        }
    }
}

/// One line naming the query and the count.
fn notice_text(d: &Detection) -> String {
    let q = one_line(&d.query);
    let mut m = match d.kind {
        Kind::NPlusOne => format!(
            "pgsplit: N+1 queries: \"{q}\" ran {} times in {} ms with differing parameters",
            d.count, d.span_ms
        ),
        Kind::RepeatedIdentical => format!(
            "pgsplit: repeated identical query: \"{q}\" ran {} times in {} ms with the same parameters",
            d.count, d.span_ms
        ),
        Kind::BatchableWrites => format!(
            "pgsplit: batchable writes: \"{q}\" ran {} times back to back in {} ms",
            d.count, d.span_ms
        ),
    };
    if let Some((_, p)) = &d.parent {
        if d.kind == Kind::NPlusOne {
            m.push_str(&format!(", once per row of \"{}\"", one_line(p)));
        }
    }
    m.push_str("; ");
    m.push_str(&d.suggestion);
    m
}

fn one_line(q: &str) -> String {
    let mut s: String = q
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(NOTICE_QUERY_CHARS + 1)
        .collect();
    if s.chars().count() > NOTICE_QUERY_CHARS {
        s = s.chars().take(NOTICE_QUERY_CHARS).collect::<String>() + "...";
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn notice_is_one_line_naming_query_and_count() {
        let d = Detection {
            kind: Kind::NPlusOne,
            fingerprint: 1,
            query: Arc::from("SELECT *\n  FROM notes WHERE lead_id = $1"),
            parent: Some((2, Arc::from("SELECT id FROM leads"))),
            count: 10,
            total_us: 1200,
            span_ms: 3,
            suggestion: Arc::from("fetch them at once"),
        };
        let m = notice_text(&d);
        assert!(!m.contains('\n'));
        assert!(
            m.contains("\"SELECT * FROM notes WHERE lead_id = $1\" ran 10 times"),
            "{m}"
        );
        assert!(
            m.contains("once per row of \"SELECT id FROM leads\""),
            "{m}"
        );
        let long = "x".repeat(500);
        assert_eq!(one_line(&long).len(), NOTICE_QUERY_CHARS + 3);
    }

    fn reply(rows: &[[String; 2]]) -> bytes::Bytes {
        let mut b = Vec::new();
        for r in rows {
            let mut body = 2u16.to_be_bytes().to_vec();
            for v in r {
                body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                body.extend_from_slice(v.as_bytes());
            }
            b.push(tag::DATA_ROW);
            b.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
            b.extend_from_slice(&body);
        }
        b.push(tag::COMMAND_COMPLETE);
        b.extend_from_slice(&14u32.to_be_bytes());
        b.extend_from_slice(b"SELECT 20\0");
        b.into()
    }

    fn results(c: &Capture) -> Vec<(usize, u32, Vec<u32>)> {
        c.done
            .iter()
            .map(|(i, r)| (*i, r.rows, r.values.clone()))
            .collect()
    }

    #[test]
    fn a_hit_replays_the_hashes_of_its_first_hit() {
        let settings = crate::nplusone::Settings::default();
        let rows: Vec<[String; 2]> = (0..20).map(|i| [i.to_string(), format!("v{i}")]).collect();
        let entry = crate::cache::Entry::for_reply(reply(&rows), 20);
        let mut fed = Capture::new(&settings);
        fed.index = 2;
        fed.feed_reply(&entry.reply);
        let want = results(&fed);
        assert_eq!(want.len(), 1);
        assert_eq!(want[0].0, 2);
        assert_eq!(want[0].1, 20);

        let mut c = Capture::new(&settings);
        c.index = 2;
        c.feed_entry(&entry);
        assert!(
            entry.derived.get().is_some(),
            "the first hit keeps its hashes"
        );
        assert_eq!(results(&c), want);
        assert_eq!(c.index, 3);

        // The next hit, at another statement of another request, comes from the memo.
        c.end_request(&settings);
        c.index = 5;
        c.feed_entry(&entry);
        let again = results(&c);
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].0, again[0].1), (5, 20));
        assert_eq!(again[0].2, want[0].2);
        assert_eq!(c.index, 6);

        // Another threshold hashes another number of rows (16): the memo of 20 is not used.
        let few = crate::nplusone::Settings {
            threshold: 1,
            ..settings
        };
        let mut d = Capture::new(&few);
        d.feed_entry(&entry);
        assert_eq!(results(&d)[0].1, 16);
    }

    #[test]
    fn parameters_and_statements_both_count() {
        let a = query_call(b"select 1 where id = 5\0", true);
        assert_eq!(a, query_call(b"select 1 where id = 5\0", true));
        assert_ne!(
            a.params,
            query_call(b"select 1 where id = 6\0", true).params
        );
        assert_eq!(a.trace, 0);
        assert_ne!(
            bind_call(None, b"\0\0\0\x01"),
            bind_call(None, b"\0\0\0\x02")
        );
    }

    #[test]
    fn literal_values_are_read_only_where_they_may_link() {
        let text = b"select 1 where id = 5 and name = 'x'\0";
        assert_eq!(query_call(text, true).values.len, 3);
        let skipped = query_call(text, false);
        assert_eq!(skipped.values.len, 0, "no parent to meet");
        assert_eq!(skipped.params, query_call(text, true).params);
        // A traced statement feeds its trace's stream, which other sessions fill with parents.
        let traced = b"/* traceparent='00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' */ select 1 where id = 5\0";
        let call = query_call(traced, false);
        assert_ne!(call.trace, 0);
        assert_eq!(call.values.len, 2);
    }
}
