//! A client's prepared statements: what re-prepares them on any server connection, and their analyses kept current with the catalog.

use super::session::Session;
use crate::protocol::messages::Parse;
use crate::router::Analysis;
use bytes::Bytes;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

/// A client's prepared statement, enough to prepare it again on any server connection.
#[derive(Debug, Clone)]
pub struct ClientStatement {
    /// Hash of text and parameter types: the statement's name on every server.
    pub key: u64,
    pub sql: Bytes,
    pub param_types: Bytes,
    pub analysis: Arc<Analysis>,
    /// The router's catalog salt `analysis` was made under: a catalog loaded since (the first
    /// one, after a statement prepared at start-up with every write's reach unknown) makes the
    /// next Bind analyze the text again.
    pub catalog_salt: u64,
    /// W3C trace id of a `traceparent` in the text (0: none), found once at Parse.
    pub trace: u128,
    /// The shape of the result columns a Describe showed the client (plan::columns_shape):
    /// a server connection preparing the text again must return the same, or the client
    /// would decode its rows by the old types.
    pub columns: Option<u64>,
    /// The text now returns other columns than the client was shown: like PostgreSQL's own
    /// prepared statement, every Bind of it fails with 0A000 until the client prepares again.
    pub columns_changed: bool,
}

impl ClientStatement {
    /// `schema_epoch`: the router's when the client parsed it. The server statement is named
    /// for it, so a text parsed after DDL never reuses a server statement parsed before, whose
    /// inferred parameter types and result columns may differ (PostgreSQL keeps the types a
    /// statement was parsed with and fails it with 0A000 when its result columns change).
    pub fn new(
        p: &Parse<'_>,
        analysis: Arc<Analysis>,
        trace: u128,
        schema_epoch: u64,
        catalog_salt: u64,
    ) -> ClientStatement {
        ClientStatement {
            key: statement_key(p.sql, p.param_types, schema_epoch),
            sql: Bytes::copy_from_slice(p.sql),
            param_types: Bytes::copy_from_slice(p.param_types),
            analysis,
            catalog_salt,
            trace,
            columns: None,
            columns_changed: false,
        }
    }
}

fn statement_key(sql: &[u8], param_types: &[u8], schema_epoch: u64) -> u64 {
    let mut h = ahash::RandomState::with_seeds(11, 22, 33, 44).build_hasher();
    h.write(sql);
    h.write_u8(0);
    h.write(param_types);
    h.write_u64(schema_epoch);
    h.finish()
}

impl Session {
    /// After a catalog change, analyzes every statement the client prepared again, once, so
    /// that Binds after it use the stored analysis instead of analyzing the text each time.
    pub(super) fn refresh_statements(&mut self) {
        let salt = self.shared.router.catalog_salt();
        if self.statements_salt == salt {
            return;
        }
        self.statements_salt = salt;
        let fresh = |session: &Session, s: &Arc<ClientStatement>| {
            Arc::new(ClientStatement {
                analysis: session.analyze(&s.sql),
                catalog_salt: salt,
                ..(**s).clone()
            })
        };
        let refreshed: Vec<(Bytes, Arc<ClientStatement>)> = self
            .statements
            .iter()
            .filter(|(_, s)| s.catalog_salt != salt)
            .map(|(name, s)| (name.clone(), fresh(self, s)))
            .collect();
        self.statements.extend(refreshed);
        if let Some(s) = self.unnamed.as_ref().filter(|s| s.catalog_salt != salt) {
            self.unnamed = Some(fresh(self, s));
        }
    }

    /// A statement's analysis under the current catalog: its own when none was loaded since it
    /// was parsed, else the text's again (one analysis-cache lookup; only between a change and
    /// the next `refresh_statements`).
    pub(super) fn current_analysis(&self, s: &ClientStatement) -> Arc<Analysis> {
        if s.catalog_salt == self.shared.router.catalog_salt() {
            s.analysis.clone()
        } else {
            self.analyze(&s.sql)
        }
    }

    pub(super) fn analyze(&self, sql: &[u8]) -> Arc<Analysis> {
        // Text that is not UTF-8 (a LATIN1 client) cannot be parsed: it goes to the primary.
        match std::str::from_utf8(sql) {
            Ok(s) => self
                .shared
                .router
                .analyze_with(s, self.settings.string_rules()),
            Err(_) => self.shared.router.analyze(""),
        }
    }
}

/// A fresh identity for a client's unnamed statement, unique across all sessions: a server
/// connection holds the client's current one only if it was the last to parse it, not merely
/// some earlier statement of the same client (or of a client with a reused pid).
pub fn next_unnamed_id(_previous: u64) -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_keys_depend_on_text_types_and_schema_epoch() {
        let a = statement_key(b"select $1", b"\x00\x00", 0);
        assert_eq!(a, statement_key(b"select $1", b"\x00\x00", 0));
        assert_ne!(a, statement_key(b"select $2", b"\x00\x00", 0));
        assert_ne!(
            a,
            statement_key(b"select $1", b"\x00\x01\x00\x00\x00\x17", 0)
        );
        assert_ne!(a, statement_key(b"select $1", b"\x00\x00", 1));
    }
}
