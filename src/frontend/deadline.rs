//! Bounds on a session's wait for its server: `pool.query_timeout_ms` (cancel, then close) and giving up on a server whose health check stalled.

use super::session::{End, Session};
use std::time::{Duration, Instant};

/// What is due when the query clock's deadline passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// The request outlived `query_timeout_ms`: send the server a CancelRequest.
    Cancel,
    /// The cancel was not answered in time: the server connection is closed.
    Close,
}

/// How long the oldest unanswered request has waited for its server. Pure: the session feeds it
/// what it sees after each step, with the time.
#[derive(Default, Debug)]
pub struct QueryClock {
    /// When the oldest unanswered request began waiting; `None` while nothing waits.
    since: Option<Instant>,
    /// When the cancel for it was sent.
    cancelled_at: Option<Instant>,
    /// Requests outstanding at the last observation; fewer now means one was answered.
    outstanding: usize,
}

impl QueryClock {
    /// After each step: `busy` when the server owes an answer (not while it waits for the
    /// client's COPY data), `outstanding` the requests sent and not yet answered.
    /// `now` is asked only when a wait starts: most steps of a request change nothing here,
    /// and a clock read per step was a tenth of the session's clock reads.
    pub fn observe(&mut self, now: impl FnOnce() -> Instant, busy: bool, outstanding: usize) {
        if !busy {
            *self = QueryClock::default();
            return;
        }
        // Each request gets its own time: the next one starts waiting when the one before it
        // is answered, as it would on a direct connection running them one after another.
        if self.since.is_none() || outstanding < self.outstanding {
            self.since = Some(now());
            self.cancelled_at = None;
        }
        self.outstanding = outstanding;
    }

    /// The next deadline and what it calls for, if a timeout is set and a request waits.
    pub fn next(&self, timeout: Option<Duration>, grace: Duration) -> Option<(Instant, Due)> {
        let timeout = timeout?;
        match (self.since, self.cancelled_at) {
            (None, _) => None,
            (Some(since), None) => Some((since + timeout, Due::Cancel)),
            (Some(_), Some(at)) => Some((at + grace, Due::Close)),
        }
    }

    pub fn cancel_sent(&mut self, now: Instant) {
        self.cancelled_at = Some(now);
    }
}

impl Session {
    /// Feeds the query clock what the session waits for now.
    pub(super) fn observe_query_clock(&mut self) {
        let busy = self.server.is_some() && !self.copy.active() && self.in_flight();
        self.query_clock
            .observe(Instant::now, busy, self.ready_actions.len());
    }

    /// The query clock's next deadline under the live configuration.
    pub(super) fn query_deadline(&mut self) -> Option<(Instant, Due)> {
        let live = self.live.config();
        self.query_clock
            .next(live.pool.query_timeout, live.health.check_timeout)
    }

    /// `query_timeout_ms` passed: cancel the query, or close a server that ignored the cancel.
    pub(super) fn query_deadline_passed(&mut self, due: Due) -> Result<(), End> {
        let live = self.shared.live.load();
        match due {
            Due::Cancel => {
                self.query_clock.cancel_sent(Instant::now());
                if let Some(target) = self.cancel.slot.get() {
                    let timeout = live.pool.query_timeout.unwrap_or_default();
                    tracing::info!(user = %self.user, server = %target.host, timeout_ms = timeout.as_millis() as u64,
                        "query_timeout_ms reached; cancelling the query");
                    tokio::spawn(crate::clients::send_cancel(target));
                }
                Ok(())
            }
            Due::Close => {
                // The same request would only time out again elsewhere.
                self.disarm_retry();
                let why = format!(
                    "query_timeout_ms: the server did not answer the cancel within {} ms",
                    live.health.check_timeout.as_millis()
                );
                self.server_lost(&why)
            }
        }
    }

    /// The attached server stopped answering its health checks while this session waited on
    /// it: a read not yet answered is re-sent elsewhere, anything else fails now instead of
    /// after the freeze.
    pub(super) fn server_stalled(&mut self) -> Result<(), End> {
        self.server_lost("the server stopped answering (its health check timed out)")
    }

    /// A request is about to wait on a server connection the session already held: only
    /// stalls from now on concern it.
    pub(super) fn watch_stalls_from_now(&mut self) {
        let idle = !self.in_flight();
        if let Some(lease) = self.server.as_mut().filter(|_| idle) {
            lease.stalls.mark_unchanged();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Option<Duration> = Some(Duration::from_millis(100));
    const GRACE: Duration = Duration::from_millis(50);

    fn ms(base: Instant, n: u64) -> Instant {
        base + Duration::from_millis(n)
    }

    #[test]
    fn cancel_then_close_when_the_cancel_is_ignored() {
        let t0 = Instant::now();
        let mut c = QueryClock::default();
        assert_eq!(c.next(T, GRACE), None, "nothing in flight");
        c.observe(|| t0, true, 1);
        assert_eq!(c.next(T, GRACE), Some((ms(t0, 100), Due::Cancel)));
        c.observe(|| ms(t0, 60), true, 1);
        assert_eq!(c.next(T, GRACE), Some((ms(t0, 100), Due::Cancel)));
        c.cancel_sent(ms(t0, 100));
        c.observe(|| ms(t0, 110), true, 1);
        assert_eq!(c.next(T, GRACE), Some((ms(t0, 150), Due::Close)));
        c.observe(|| ms(t0, 120), false, 0);
        assert_eq!(c.next(T, GRACE), None, "answered");
    }

    #[test]
    fn each_pipelined_request_gets_its_own_time() {
        let t0 = Instant::now();
        let mut c = QueryClock::default();
        c.observe(|| t0, true, 3);
        c.observe(|| ms(t0, 90), true, 3);
        c.observe(|| ms(t0, 95), true, 2);
        assert_eq!(c.next(T, GRACE), Some((ms(t0, 195), Due::Cancel)));
        // More requests joining the pipeline do not restart the wait of the oldest.
        c.observe(|| ms(t0, 120), true, 4);
        assert_eq!(c.next(T, GRACE), Some((ms(t0, 195), Due::Cancel)));
        // An answer after a cancel gives the next request a fresh wait, cancel not yet sent.
        c.cancel_sent(ms(t0, 195));
        c.observe(|| ms(t0, 200), true, 3);
        assert_eq!(c.next(T, GRACE), Some((ms(t0, 300), Due::Cancel)));
    }

    #[test]
    fn off_and_copy_waits_count_nothing() {
        let t0 = Instant::now();
        let mut c = QueryClock::default();
        c.observe(|| t0, true, 1);
        assert_eq!(c.next(None, GRACE), None, "query_timeout_ms = 0");
        // While the server waits for COPY data the wait is the client's: the clock restarts after.
        c.observe(|| ms(t0, 500), false, 1);
        c.observe(|| ms(t0, 900), true, 1);
        assert_eq!(c.next(T, GRACE), Some((ms(t0, 1000), Due::Cancel)));
    }
}
