//! COPY FROM STDIN as the client's stream sees it: which client messages are copy data for the server, in whatever order the server's CopyInResponse arrives.

use crate::protocol::tags::frontend as tag;

/// Where one client message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Part of a request: assembled up to its Sync/Query/Flush as usual.
    Request,
    /// Straight to the attached server, in order, with no reply expected.
    Server,
    /// Dropped: PostgreSQL ignores copy messages outside COPY, and no server is attached.
    Drop,
}

/// The client's side of COPY FROM STDIN.
///
/// Drivers need not wait for CopyInResponse before sending their data: asyncpg writes the
/// COPY Query, its CopyData and CopyDone in one go. So copy messages are recognised by their
/// tags, not only once the server has asked for them, and a CopyDone that arrived first is
/// remembered so the CopyInResponse it answers does not put the stream into copy mode again.
#[derive(Default, Debug)]
pub struct CopyIn {
    /// The server asked for data and the client has not ended it: every client message
    /// (CopyData, and the Flush/Sync the server ignores meanwhile) belongs to the COPY.
    active: bool,
    /// CopyDone/CopyFail sent before the CopyInResponse they answer.
    ended_ahead: u32,
}

impl CopyIn {
    /// The server is reading copy data the client has not finished sending.
    pub fn active(&self) -> bool {
        self.active
    }

    /// Routes one client message. `in_flight`: a server is attached and still owes replies;
    /// `assembling`: a request has been started and not yet completed.
    pub fn on_client(&mut self, t: u8, in_flight: bool, assembling: bool) -> Route {
        let ends = t == tag::COPY_DONE || t == tag::COPY_FAIL;
        if self.active {
            self.active = !ends;
            return Route::Server;
        }
        if !(ends || t == tag::COPY_DATA) || assembling {
            // Inside a request, a copy message is the client's error; the server reports it.
            return Route::Request;
        }
        if !in_flight {
            return Route::Drop;
        }
        if ends {
            self.ended_ahead += 1;
        }
        Route::Server
    }

    /// The server sent CopyInResponse (or CopyBothResponse).
    pub fn on_copy_in_response(&mut self) {
        if self.ended_ahead > 0 {
            self.ended_ahead -= 1;
        } else {
            self.active = true;
        }
    }

    /// The server sent ErrorResponse or CommandComplete: a COPY it was reading has ended
    /// (failed midway, or done), and whatever copy data still comes is stale.
    pub fn on_server_end(&mut self) {
        self.active = false;
    }

    /// Nothing is in flight: early ends whose COPY failed before asking for data are void.
    pub fn settle(&mut self) {
        self.ended_ahead = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds client message tags (`"d"`, `"S"`, ...) and server events in the order the
    /// session sees them: `<G>` CopyInResponse, `<E>` ErrorResponse or CommandComplete, `<Z>`
    /// nothing in flight any more. Returns the routes of the client messages.
    fn run(c: &mut CopyIn, events: &[&str], in_flight: bool, assembling: bool) -> Vec<Route> {
        let mut routes = Vec::new();
        for e in events {
            match *e {
                "<G>" => c.on_copy_in_response(),
                "<E>" => c.on_server_end(),
                "<Z>" => c.settle(),
                client => {
                    let t = client.as_bytes()[0];
                    routes.push(c.on_client(t, in_flight, assembling));
                }
            }
        }
        routes
    }

    #[test]
    fn data_before_copy_in_response_goes_to_the_server() {
        // asyncpg: Query, CopyData, CopyData, CopyDone before any reply.
        let mut c = CopyIn::default();
        let r = run(&mut c, &["d", "d", "c", "<G>"], true, false);
        assert_eq!(r, vec![Route::Server; 3]);
        assert!(!c.active(), "the CopyDone already sent ends the COPY");
        // The next request is assembled, not sent raw.
        assert_eq!(c.on_client(b'Q', true, false), Route::Request);
    }

    #[test]
    fn data_after_copy_in_response_includes_ignored_syncs() {
        // libpq extended protocol: Parse/Bind/Execute/Sync, then data, CopyDone, Sync.
        let mut c = CopyIn::default();
        let r = run(&mut c, &["<G>", "d", "H", "d", "c", "S"], true, false);
        assert_eq!(
            r,
            vec![
                Route::Server,
                Route::Server,
                Route::Server,
                Route::Server,
                Route::Request
            ]
        );
        assert!(!c.active());
    }

    #[test]
    fn some_data_early_some_late() {
        let mut c = CopyIn::default();
        let r = run(&mut c, &["d", "<G>", "d", "d", "c", "Q"], true, false);
        assert_eq!(r[..4], [Route::Server; 4]);
        assert_eq!(r[4], Route::Request);
    }

    #[test]
    fn failed_midway_leaves_copy_mode_on_the_servers_word() {
        let mut c = CopyIn::default();
        let r = run(&mut c, &["<G>", "d", "<E>", "d", "c"], true, false);
        assert_eq!(r, vec![Route::Server; 3]);
        assert!(!c.active());
        // The COPY's ReadyForQuery came: the stale CopyDone's count is void, so the next
        // COPY, whose client waits for CopyInResponse, is in copy mode again.
        c.settle();
        c.on_copy_in_response();
        assert!(c.active());
        assert_eq!(c.on_client(b'S', true, false), Route::Server);
    }

    #[test]
    fn stale_copy_messages_with_nothing_in_flight_are_dropped() {
        let mut c = CopyIn::default();
        assert_eq!(
            run(&mut c, &["d", "c", "f"], false, false),
            vec![Route::Drop; 3]
        );
        c.on_copy_in_response();
        assert!(c.active(), "dropped ends are not counted");
    }

    #[test]
    fn copy_message_inside_a_request_stays_in_it() {
        let mut c = CopyIn::default();
        assert_eq!(c.on_client(b'd', true, true), Route::Request);
        assert_eq!(c.on_client(b'P', true, false), Route::Request);
    }
}
