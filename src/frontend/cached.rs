//! The session's side of the result cache: which requests it may answer, replaying hits, capturing fills, and invalidating on writes.

use super::action::ReadyAction;
use super::session::{End, Session};
use super::statements::ClientStatement;
use crate::cache::{CacheKey, Entry, Fill, Fresh, Lookup};
use crate::protocol::build;
use crate::protocol::message::Message;
use crate::protocol::messages::{TxStatus, TARGET_PORTAL, TARGET_STATEMENT};
use crate::protocol::tags::{backend, frontend as tag};
use crate::router::{Analysis, WriteSet};
use crate::stats::AnsweredBy;
use bytes::{BufMut, Bytes, BytesMut};
use std::sync::Arc;

/// A request the cache may answer.
pub(super) struct Probe {
    key: CacheKey,
    analysis: Arc<Analysis>,
    /// Index of the request's Parse, if it has one (its ParseComplete is replayed and its
    /// statement registered).
    parse: Option<usize>,
    simple: bool,
}

/// What the cache did with a request.
pub(super) enum Outcome {
    Answered,
    /// Send to the server, capturing the reply when a fill is given; under global, with what
    /// the lookup learned the read needs.
    Server(Option<Box<Fill>>, Option<crate::pool::ReadNeed>),
}

impl Session {
    /// The cache key of a request the cache may answer: one simple Query of a single cacheable
    /// read, or `[Parse] Bind [Describe portal] Execute Sync` of one, with nothing in flight
    /// and no transaction open.
    pub(super) fn cache_probe(&self, analyses: &[Option<Arc<Analysis>>]) -> Option<Probe> {
        let cache = &self.shared.cache;
        if !cache.enabled()
            || (self.server.is_some() && !self.server_held_only_for_probe())
            || self.tx != TxStatus::Idle
            || self.pin.is_some()
            || !self.ready_actions.is_empty()
            || self.flushed.is_open()
        {
            return None;
        }
        let messages = &self.pending.messages;
        let shared_users = cache.live.load().share_across_users;
        let cacheable = |a: &Option<Arc<Analysis>>| {
            a.as_ref()
                .filter(|a| a.cache_refusal(shared_users).is_none())
                .cloned()
        };
        let user = (!shared_users).then(|| self.user_key.clone());
        let key = |request: Bytes| CacheKey {
            db: self.db.clone(),
            user: user.clone(),
            settings: self.settings.result_hash(),
            request,
        };
        if let [q] = messages.as_slice() {
            q.query()?;
            return Some(Probe {
                key: key(q.raw().clone()),
                analysis: cacheable(analyses.first()?)?,
                parse: None,
                simple: true,
            });
        }
        let (parse, rest) = match messages.first()?.parse() {
            Some(p) => (Some(p), &messages[1..]),
            None => (None, &messages[..]),
        };
        let (bind, describe, execute) = match rest {
            [b, e, s] if s.tag() == tag::SYNC => (b, None, e),
            [b, d, e, s] if s.tag() == tag::SYNC => (b, Some(d), e),
            _ => return None,
        };
        if execute.tag() != tag::EXECUTE {
            return None;
        }
        let b = bind.bind()?;
        // Describe of the portal (RowDescription) or of the statement being bound
        // (ParameterDescription and RowDescription), as drivers send them.
        let mut describe_kind = 0u8;
        if let Some(d) = describe {
            let t = d.describe()?;
            let ok = match t.kind {
                TARGET_PORTAL => t.name.is_empty(),
                TARGET_STATEMENT => t.name == b.statement,
                _ => false,
            };
            if !ok {
                return None;
            }
            describe_kind = t.kind;
        }
        // Execute of the unnamed portal with no row limit: a suspended portal is not a result.
        if execute.body() != [0, 0, 0, 0, 0] {
            return None;
        }
        if !b.portal.is_empty() {
            return None;
        }
        let (sql, types) = match &parse {
            Some(p) => {
                // A duplicate name must reach the error path; a Bind of another statement
                // than the one just parsed is unusual enough not to cache.
                if p.name != b.statement
                    || (!p.name.is_empty() && self.statements.contains_key(p.name))
                {
                    return None;
                }
                (
                    Bytes::copy_from_slice(p.sql),
                    Bytes::copy_from_slice(p.param_types),
                )
            }
            None => {
                let s = if b.statement.is_empty() {
                    self.unnamed.as_ref()?
                } else {
                    self.statements.get(b.statement)?
                };
                (s.sql.clone(), s.param_types.clone())
            }
        };
        // The analysis of the Bind, after the Parse if there is one.
        let parse = parse.map(|_| 0);
        let analysis = cacheable(analyses.get(usize::from(parse.is_some()))?)?;
        if binds_time_literal(b.rest) {
            return None;
        }
        let mut r = BytesMut::with_capacity(16 + sql.len() + types.len() + b.rest.len());
        r.put_u8(b'X');
        r.put_u8(u8::from(parse.is_some()));
        r.put_u8(describe_kind);
        r.put_u32(sql.len() as u32);
        r.put_slice(&sql);
        r.put_u32(types.len() as u32);
        r.put_slice(&types);
        r.put_slice(b.rest);
        Some(Probe {
            key: key(r.freeze()),
            analysis,
            parse,
            simple: false,
        })
    }

    /// Answers the request from the cache, waits for an identical one in flight, or returns
    /// the fill that will capture the server's reply.
    /// Under `consistency = "global"`: the tables' generations, then the primary's position,
    /// then how far the WAL follower has applied. The snapshot comes first so that a fill keeps
    /// generations no newer than the position its server is made to replay.
    pub(super) async fn global_fresh(&self, tables: &[String]) -> Fresh {
        let snapshot = self.shared.cache.generations.snapshot(&self.db, tables);
        let position = match self.global_need().await {
            crate::pool::ReadNeed::Lsn(p) => Some(p),
            _ => None,
        };
        Fresh {
            position,
            applied: self.shared.wal.followers.applied(&self.db),
            snapshot,
        }
    }

    /// Under `consistency = "global"` (`global`), a hit must be proven to cover the primary's
    /// position, which a miss hands on for its routing.
    pub(super) async fn consult_cache(
        &mut self,
        probe: Probe,
        global: bool,
    ) -> Result<Outcome, End> {
        let fresh = if global {
            Some(self.global_fresh(&probe.analysis.tables_read).await)
        } else {
            None
        };
        let need = fresh.as_ref().map(|f| {
            f.position
                .map_or(crate::pool::ReadNeed::Primary, crate::pool::ReadNeed::Lsn)
        });
        let cache = self.shared.cache.clone();
        let a = &probe.analysis;
        let deadline = tokio::time::Instant::now() + self.live.caching().coalesce_wait;
        let mut waited = false;
        loop {
            match cache.lookup_at(&probe.key, a.fingerprint, &a.tables_read, fresh.as_ref()) {
                Lookup::Hit(entry) => {
                    self.shared.stats.events.cache_hit();
                    if waited {
                        cache
                            .counters
                            .coalesced
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    self.replay(&probe, &entry)?;
                    return Ok(Outcome::Answered);
                }
                Lookup::Fill(fill) => {
                    self.shared.stats.events.cache_miss();
                    return Ok(Outcome::Server(Some(fill), need));
                }
                Lookup::Bypass => return Ok(Outcome::Server(None, need)),
                Lookup::Wait(mut rx) => {
                    waited = true;
                    // The filler drops its sender when it stores the entry or gives up.
                    let done = tokio::time::timeout_at(deadline, rx.changed()).await;
                    if done.is_err() {
                        return Ok(Outcome::Server(None, need));
                    }
                }
            }
        }
    }

    /// Writes what the server would have sent for the request, from a stored reply.
    fn replay(&mut self, probe: &Probe, entry: &Entry) -> Result<(), End> {
        let (reply, rows) = (&entry.reply, entry.rows);
        let started = self.pending.arrived;
        let messages = self.take_pending();
        if let Some(i) = probe.parse {
            self.register_parsed(&messages[i], probe.analysis.clone())?;
            build::parse_complete(&mut self.wbuf);
        }
        if !probe.simple {
            build::message(&mut self.wbuf, backend::BIND_COMPLETE, |_| {});
        }
        self.wbuf.extend_from_slice(reply);
        build::ready_for_query(&mut self.wbuf, self.tx);
        let mut action = ReadyAction {
            started,
            simple: probe.simple,
            ..Default::default()
        };
        action.executed.push(probe.analysis.clone());
        if self.live.detection().enabled {
            // A loop answered from the cache is still a loop in the application.
            let call = if probe.simple {
                let values = self.literals_may_link() || probe.analysis.statement_count != 1;
                super::n_plus_one::query_call(messages[0].body(), values)
            } else {
                let Some(b) = messages[probe.parse.map_or(0, |i| i + 1)].bind() else {
                    return Err(End::Fatal(crate::error::ClientError::Internal(
                        "a cached request without its Bind".into(),
                    )));
                };
                let stmt = if b.statement.is_empty() {
                    self.unnamed.as_deref()
                } else {
                    self.statements.get(b.statement).map(|s| &**s)
                };
                super::n_plus_one::bind_call(stmt, b.rest)
            };
            action.executed.set_call(call);
        }
        action.completed(rows);
        let now = std::time::Instant::now();
        self.record_as(&action, AnsweredBy::Cache, now);
        self.n1_capture.feed_entry(entry);
        self.detect_bursts(&action, true, now);
        self.recycle_messages(messages);
        Ok(())
    }

    /// A Parse answered from the cache: the statement exists for the client all the same.
    fn register_parsed(&mut self, m: &Message, analysis: Arc<Analysis>) -> Result<(), End> {
        let Some(p) = m.parse() else {
            return Err(End::Fatal(crate::error::ClientError::Internal(
                "a cached request without its Parse".into(),
            )));
        };
        let trace = if self.live.detection().enabled {
            crate::nplusone::trace_id(p.sql)
        } else {
            0
        };
        let epoch = self.shared.router.schema_epoch();
        let salt = self.shared.router.catalog_salt();
        let stmt = Arc::new(ClientStatement::new(&p, analysis, trace, epoch, salt));
        if p.name.is_empty() {
            // No server holds this unnamed statement: the next Bind of it must re-parse.
            self.next_unnamed_id();
            self.unnamed = Some(stmt);
        } else {
            self.statements.insert(Bytes::copy_from_slice(p.name), stmt);
        }
        Ok(())
    }

    /// A request finished (its ReadyForQuery is about to reach the client): store its reply if
    /// it filled the cache, and invalidate what its writes touched, before the client can send
    /// its next read.
    pub(super) fn cache_on_ready(&mut self, action: &mut ReadyAction) {
        if !self.shared.cache.enabled() {
            return;
        }
        if let Some(fill) = action.fill.take() {
            // Under table_lsn a replica answered only after replaying every tracked write to
            // the tables read, so its answer is as fresh as the primary's would have been for
            // writes through the proxy. Under global, after replaying the primary's position
            // read after the request came. Writes the WAL reported still hold a replica's off.
            let from_replica = self
                .server
                .as_ref()
                .is_some_and(|l| l.server.role() == crate::pool::Role::Replica);
            self.shared.cache.finish(
                fill,
                !action.failed && self.tx == TxStatus::Idle,
                from_replica,
                self.shared.config.replication.consistency.routes_by_lsn(),
            );
        }
        let now = std::mem::take(&mut action.writes);
        if self.tx != TxStatus::Idle && action.ended_transaction {
            // COMMIT/ROLLBACK AND CHAIN: the earlier transaction is over. This request's own
            // writes count now and again when the chained transaction ends.
            let earlier = std::mem::take(&mut self.tx_writes);
            if !action.ended_with_rollback {
                self.apply_writes(&earlier);
            }
            self.apply_writes(&now);
            self.tx_writes = now;
        } else if self.tx == TxStatus::Idle {
            // Writes of earlier requests in the transaction count unless it rolled back;
            // this request's own writes always count (its outcome is not worth guessing).
            let earlier = std::mem::take(&mut self.tx_writes);
            if !action.ended_with_rollback {
                self.apply_writes(&earlier);
            }
            self.apply_writes(&now);
        } else {
            self.tx_writes.merge(now);
        }
    }

    /// Requests whose outcome is unknown (the server was lost): assume their writes landed.
    pub(super) fn cache_writes_unknown_outcome(&mut self, actions: &[ReadyAction]) {
        if !self.shared.cache.enabled() {
            return;
        }
        let mut w = std::mem::take(&mut self.tx_writes);
        for action in actions {
            w.merge(action.writes.clone());
        }
        self.apply_writes(&w);
    }

    fn apply_writes(&self, w: &WriteSet) {
        if w.is_empty() {
            return;
        }
        let cache = &self.shared.cache;
        if w.unknown {
            cache.invalidate_all();
        } else {
            cache.invalidate_tables(&self.db, &w.tables);
        }
    }
}

/// A Bind parameter whose value reads as the current time ('now', 'today', ...)
/// makes the result time-dependent whatever the statement's text.
fn binds_time_literal(rest: &[u8]) -> bool {
    use crate::protocol::frame::Reader;
    let mut r = Reader::new(rest, "Bind");
    let scan = |r: &mut Reader<'_>| -> Result<bool, crate::protocol::ProtocolError> {
        let nfmt = r.i16()?.max(0) as usize;
        for _ in 0..nfmt {
            r.i16()?;
        }
        let n = r.i16()?.max(0) as usize;
        for _ in 0..n {
            let len = r.i32()?;
            if len < 0 {
                continue;
            }
            let v = r.bytes(len as usize)?;
            // Binary text parameters are the same bytes; another binary type spelling
            // "now" only costs a cache miss.
            if v.len() <= 16 {
                if let Ok(s) = std::str::from_utf8(v) {
                    if crate::router::is_time_literal(s) {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    };
    // A Bind the proxy cannot read is not cached either.
    scan(&mut r).unwrap_or(true)
}
