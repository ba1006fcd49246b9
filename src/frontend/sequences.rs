//! currval()/lastval() under transaction pooling: run only where this session's nextval() ran, else refuse with 0A000.
//!
//! Sequence state (`currval`, `lastval`) lives in the server session. Once a transaction ends,
//! its server connection goes back to the pool and may serve another client, who may call
//! nextval() on it; a later currval() of ours could then return that client's value, or run on
//! another connection and fail. pgsplit lets currval()/lastval() through when the server
//! connection they will run on is still the one held since a statement that may have called
//! nextval() (in the same transaction, the same simple-query text, the same pipeline before one
//! Sync, or a pinned session), and refuses them otherwise, naming the fix: INSERT ... RETURNING,
//! or nextval() and currval() in one transaction.

use super::session::Session;
use crate::router::{Analysis, FunctionCatalog};
use std::sync::Arc;

/// Whether running this statement may set the session's sequence state: an explicit
/// nextval()/setval(), a write (column defaults and triggers call nextval() unseen), or
/// something of unknown effect (CALL, DO, a function that may write). currval() and lastval()
/// themselves only read it.
fn may_set_sequences(a: &Analysis, catalog: &FunctionCatalog) -> bool {
    let writer = |f: &String| {
        f == "nextval" || f == "setval" || (reads_state(f).is_none() && !catalog.is_read_only(f))
    };
    let unknown_beyond_calls =
        a.writes_unknown && !a.functions.iter().any(|f| reads_state(f).is_some());
    !a.tables_written.is_empty() || unknown_beyond_calls || a.functions.iter().any(writer)
}

fn reads_state(f: &str) -> Option<&'static str> {
    match f {
        "currval" => Some("currval"),
        "lastval" => Some("lastval"),
        _ => None,
    }
}

fn reads_sequence_state(a: &Analysis) -> Option<&'static str> {
    a.functions.iter().find_map(|f| reads_state(f))
}

impl Session {
    /// The request's statements in order: the first currval()/lastval() that would run on a
    /// connection not known to hold this session's sequence state.
    pub(super) fn sequence_state_missing(
        &self,
        analyses: &[Option<Arc<Analysis>>],
    ) -> Option<&'static str> {
        if self.pin.is_some() {
            return None;
        }
        let catalog = self.shared.router.catalog();
        let may_set_sequences = |a: &Analysis| may_set_sequences(a, &catalog);
        let mut here = self.server.is_some() && self.sequences_here;
        for a in analyses.iter().flatten() {
            if let Some(f) = reads_sequence_state(a) {
                // The same text may set it first (`INSERT ...; SELECT lastval()`).
                if !here && !may_set_sequences(a) {
                    return Some(f);
                }
            }
            here |= may_set_sequences(a);
        }
        None
    }

    /// The request is being sent on the attached connection.
    pub(super) fn note_sequences(&mut self, analyses: &[Option<Arc<Analysis>>]) {
        let catalog = self.shared.router.catalog();
        if analyses
            .iter()
            .flatten()
            .any(|a| may_set_sequences(a, &catalog))
        {
            self.sequences_here = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::{analyze_uncached, FunctionCatalog};

    fn a(sql: &str) -> Analysis {
        analyze_uncached(sql, &FunctionCatalog::builtin())
    }

    fn may_set_sequences(a: &Analysis) -> bool {
        super::may_set_sequences(a, &FunctionCatalog::builtin())
    }

    #[test]
    fn what_sets_and_what_reads_sequence_state() {
        assert!(may_set_sequences(&a("SELECT nextval('s')")));
        assert!(may_set_sequences(&a("INSERT INTO t DEFAULT VALUES")));
        assert!(may_set_sequences(&a("DO $$ BEGIN END $$")));
        assert!(may_set_sequences(&a(
            "SELECT pg_advisory_lock(1), currval('s')"
        )));
        assert!(!may_set_sequences(&a("SELECT currval('s')")));
        assert!(!may_set_sequences(&a("SELECT lastval(), now()")));
        assert_eq!(
            reads_sequence_state(&a("SELECT currval('s')")),
            Some("currval")
        );
        assert_eq!(
            reads_sequence_state(&a("SELECT lastval()")),
            Some("lastval")
        );
        assert_eq!(reads_sequence_state(&a("SELECT 1")), None);
        let both = a("INSERT INTO t DEFAULT VALUES; SELECT lastval()");
        assert!(may_set_sequences(&both) && reads_sequence_state(&both).is_some());
    }
}
