//! Statement analysis shared by routing, the result cache, per-query stats and N+1 detection.
//!
//! [`Router::analyze`] is on every query's path: a hand-written lexer ([`shape`]) hashes the text
//! with literals masked, and a bounded cache maps that hash to an [`Analysis`] built once per shape
//! by PostgreSQL's own parser (pg_query). Anything the analysis does not understand routes to the
//! primary.

mod analyze;
mod builtin;
mod catalog;
mod clock_reads;
mod facts;
mod forced;
mod front;
mod lexer;
mod reach;
mod reach_check;
pub mod setters;
mod shape;
mod statement;
mod walk;
pub mod write_reach;
mod writes;

#[cfg(test)]
mod tests;

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

pub use catalog::{FunctionCatalog, Volatility};
pub use facts::is_time_literal;
pub use forced::ForcedPrimary;
pub use lexer::{Strings, Token, TokenKind};
pub use shape::{normalize as normalize_literals, shape, shape_with, Keyword, Shape};
pub use writes::{relation_key, WriteSet};

/// Where a statement text may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    Replica,
    Primary,
}

/// Why a client must keep its server connection for the rest of its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PinReason {
    /// `LISTEN`: notifications arrive on that connection.
    Listen,
    /// A session-level advisory lock (`pg_advisory_lock`, `pg_try_advisory_lock`, shared forms).
    AdvisoryLock,
    /// `CREATE TEMP TABLE/SEQUENCE/VIEW`, `SELECT INTO TEMP`, or a relation created in `pg_temp`.
    TempTable,
    /// SQL-level `PREPARE`.
    SqlPrepare,
    /// `DECLARE ... WITH HOLD`: the cursor outlives the transaction.
    HoldCursor,
    /// `LOAD`.
    Other,
    /// Settings the proxy cannot see may have changed: `set_config(..)` not provably
    /// transaction-local, a DO block, CALL or function whose body may run SET/RESET/set_config
    /// or dynamic SQL. `RESET ALL` and `DISCARD ALL` lift it.
    SessionState,
}

/// A session setting change to replay on whichever server connection serves the client next.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SessionEffect {
    /// `name`: lowercased canonical GUC name (`timezone` for SET TIME ZONE, `role`,
    /// `session_authorization`, `client_encoding` for SET NAMES, `search_path` for SET SCHEMA).
    /// `statement`: the SET statement exactly as the client wrote it, without the trailing `;`.
    Set {
        name: String,
        statement: String,
    },
    Reset {
        name: String,
    },
    /// `RESET ALL`, and `DISCARD ALL` (which implies it).
    ResetAll,
}

/// A SQL-level `DEALLOCATE`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Deallocate {
    Name(String),
    All,
}

/// Everything the proxy needs to know about one statement text (one simple Query or one Parse).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Analysis {
    pub route: Route,
    /// Short why, e.g. "read-only", "insert", "for update", "volatile function nextval", "hint",
    /// "unparsed", "empty". For a multi-statement text, the first statement that forced Primary.
    pub reason: &'static str,
    /// pg_query fingerprint, PostgreSQL 17 compatible and with full relation names, so that
    /// different tables (even `public.t` vs `audit.t`, or `orders_2024` vs `orders_2025`) never
    /// share one; equal across literal values and IN-list lengths. For unparsable text, the shape hash.
    pub fingerprint: u64,
    /// The text with every literal replaced by `$n`, comments dropped: safe to log and export.
    pub normalized: Arc<str>,
    /// Relations read, lowercased, schema-qualified exactly when the text qualified them
    /// (`public.leads` and `leads` are reported as written). CTE names are left out.
    pub tables_read: Vec<String>,
    /// Targets of INSERT/UPDATE/DELETE/MERGE/TRUNCATE/COPY FROM, SELECT INTO / CREATE TABLE AS,
    /// and DDL, named as in `tables_read`.
    pub tables_written: Vec<String>,
    /// Called functions, lowercased, unqualified, deduplicated.
    pub functions: Vec<String>,
    /// Why the result cache may not answer this text, or None when it is a read-only,
    /// deterministic and session-independent one: every function immutable, no
    /// `CURRENT_*`/`SESSION_USER`-style values, no TABLESAMPLE, no system catalog, no hint,
    /// nothing reached through views and policies that reads the clock. Results still depend
    /// on session settings (search_path, TimeZone, DateStyle, role) that a result cache must
    /// key on. Set where each check is made; read through [`Analysis::cache_refusal`].
    pub not_cacheable: Option<Arc<str>>,
    /// What makes the result depend on the login user beyond the settings the key holds
    /// (row-level security, `current_user` inside a view): cacheable only while the key holds
    /// the user (`cache.share_across_users = false`).
    pub user_dependent: Option<Arc<str>>,
    pub session: Vec<SessionEffect>,
    pub pin: Option<PinReason>,
    pub deallocate: Option<Deallocate>,
    /// `DISCARD ALL`: the server connection loses its prepared statements.
    pub discard_all: bool,
    /// Some statement is BEGIN/START/COMMIT/END/ROLLBACK/SAVEPOINT/RELEASE/PREPARE TRANSACTION/...
    pub is_transaction_control: bool,
    /// Statements in the text (a simple Query may carry several).
    pub statement_count: usize,
    /// Whether this analysis may be reused for another text of the same shape: false when it
    /// carries literal-dependent content (SET statement text, `set_config`'s is_local flag).
    pub reuse_by_shape: bool,
    /// The text may write relations it does not name: CALL, DO, EXECUTE, a call of a function
    /// not known read-only, or a text the parser could not take apart. A result cache should
    /// treat it as a write to everything. (Triggers, rules and FK cascades are never listed.)
    pub writes_unknown: bool,
    /// DDL that changes functions, privileges or policies: until a catalog loaded after it
    /// lands, the router assumes any user function may change session settings.
    pub reloads_catalog: bool,
    /// `ALTER ROLE/DATABASE ... SET/RESET`: server connections opened before it carry the old
    /// defaults, so the pools must not hand them out again.
    pub changes_defaults: bool,
}

impl Analysis {
    /// Whether the result cache may answer this text, when entries are keyed by user.
    pub fn cacheable(&self) -> bool {
        self.not_cacheable.is_none()
    }

    /// The one answer to "may the cache answer this?": None if it may, else why not (shown
    /// per fingerprint in /stats).
    pub fn cache_refusal(&self, share_across_users: bool) -> Option<&str> {
        if let Some(r) = &self.not_cacheable {
            return Some(r);
        }
        if self.statement_count != 1 {
            return Some("several statements in one query");
        }
        match &self.user_dependent {
            Some(r) if share_across_users => Some(r),
            _ => None,
        }
    }

    /// Marks the text not cacheable for `why`, keeping the first reason found.
    pub(crate) fn refuse_cache(&mut self, why: impl Into<Arc<str>>) {
        if self.not_cacheable.is_none() {
            self.not_cacheable = Some(why.into());
        }
    }
}

/// Longest text whose analysis is cached.
const MAX_CACHED_TEXT: usize = 64 * 1024;

/// The statement analyzer shared by all client tasks (`Arc<Router>`).
pub struct Router {
    /// Tells this router's entries in the per-thread memo (router/front.rs) from another's.
    id: u64,
    cache: moka::sync::Cache<u64, Arc<Analysis>, PassThrough>,
    catalog: RwLock<CatalogState>,
    /// Mirrors `catalog.salt` so a cache hit takes no lock.
    salt: AtomicU64,
    misses: AtomicU64,
    /// Fingerprints a replica refused: primary from then on (router/forced.rs).
    forced: forced::Forced,
    /// DDL ran through the proxy: the catalog loader should look again now.
    ddl: tokio::sync::Notify,
    catalog_loads: AtomicU64,
    /// Bumped when DDL through the proxy ends (its statement, or the transaction holding it).
    schema_epoch: AtomicU64,
}

struct CatalogState {
    catalog: Arc<FunctionCatalog>,
    /// Bumped by every catalog-changing DDL; a load started before the last bump is stale.
    changes: u64,
    /// Mixed into cache keys: analyses made under an older catalog become unreachable at once.
    salt: u64,
}

/// Counters for the stats endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouterStats {
    pub cached_shapes: u64,
    pub misses: u64,
}

impl Router {
    /// `capacity`: statement shapes kept in the analysis cache. An analysis counts one entry
    /// per started KiB of its normalized text, so the cache holds about `capacity` KiB of text
    /// at most, whatever the statements.
    pub fn new(catalog: FunctionCatalog, capacity: u64) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|_, analysis: &Arc<Analysis>| {
                u32::try_from(analysis.normalized.len() / 1024 + 1).unwrap_or(u32::MAX)
            })
            .build_with_hasher(PassThrough);
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            cache,
            catalog: RwLock::new(CatalogState {
                catalog: Arc::new(catalog),
                changes: 0,
                salt: 0,
            }),
            salt: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            forced: forced::Forced::default(),
            ddl: tokio::sync::Notify::new(),
            catalog_loads: AtomicU64::new(0),
            schema_epoch: AtomicU64::new(0),
        }
    }

    /// Replaces the catalog (after loading it from the server, or on a periodic refresh) and
    /// forgets every analysis made under the old one.
    pub fn set_catalog(&self, catalog: FunctionCatalog) {
        {
            let mut state = self.catalog.write();
            state.catalog = Arc::new(catalog);
            state.salt = state.salt.wrapping_add(0x9e37_79b9_7f4a_7c15);
            self.salt.store(state.salt, Ordering::Release);
        }
        self.cache.invalidate_all();
        self.catalog_loads.fetch_add(1, Ordering::Release);
    }

    /// Changes whenever the catalog analyses are made with changes (a load, a catalog-changing
    /// statement): an analysis kept from before, a prepared statement's, is out of date.
    pub fn catalog_salt(&self) -> u64 {
        self.salt.load(Ordering::Acquire)
    }

    /// What a change the WAL logged to `tables` changes for readers (the cache's WAL follower):
    /// the tables and the relations their rows show through, from the same reach routing
    /// uses. None while a write to one of them has unknown reach, or DDL made reach unknown.
    pub fn logged_reach<T: AsRef<str>>(&self, tables: &[T]) -> Option<Vec<String>> {
        let catalog = self.catalog.read().catalog.clone();
        let mut out = Vec::with_capacity(tables.len());
        let known = catalog.write_reach().logged_reach(tables, &mut out);
        (known && !catalog.is_stale()).then_some(out)
    }

    /// Catalogs loaded so far (tests wait for the load that follows their DDL).
    pub fn catalog_loads(&self) -> u64 {
        self.catalog_loads.load(Ordering::Acquire)
    }

    /// DDL went through the proxy: views, casts, domains, aggregates or functions may have
    /// changed, so the loader should read the catalog again without waiting for its period.
    pub fn note_ddl(&self) {
        self.ddl.notify_one();
    }

    /// DDL through the proxy finished, or the transaction holding it ended: a statement text
    /// parsed from now on may infer other parameter types or return other columns than the
    /// same text parsed before, so server statements are named per epoch (frontend/request.rs).
    pub fn bump_schema_epoch(&self) {
        self.schema_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The current schema epoch (see [`Router::bump_schema_epoch`]).
    pub fn schema_epoch(&self) -> u64 {
        self.schema_epoch.load(Ordering::Acquire)
    }

    /// Resolves after [`Router::note_ddl`] (one wake-up for any number of calls before it).
    pub async fn ddl_noted(&self) {
        self.ddl.notified().await
    }

    /// A replica refused this fingerprint because it writes: every session sends it to the
    /// primary from now on. `reason`: the replica's SQLSTATE and message.
    pub fn force_primary(&self, fingerprint: u64, normalized: &str, reason: String) {
        self.forced.mark(fingerprint, normalized, reason);
    }

    /// Whether a replica refused this fingerprint before.
    pub fn is_forced_primary(&self, fingerprint: u64) -> bool {
        self.forced.contains(fingerprint)
    }

    /// The fingerprints pinned to the primary by refusals, oldest first, and refusals in all.
    pub fn forced_primary(&self) -> (Vec<ForcedPrimary>, u64) {
        (self.forced.snapshot(), self.forced.refusals())
    }

    /// How many catalog-changing statements went through so far: read before a load, handed
    /// to [`Router::set_catalog_loaded`].
    pub fn catalog_changes(&self) -> u64 {
        self.catalog.read().changes
    }

    /// A catalog loaded after `changes` catalog-changing statements: it replaces the current
    /// one, but stays pessimistic if more such statements went through during the load.
    ///
    /// A load equal to the current catalog (the periodic one, with nothing changed) keeps the
    /// salt and the analysis cache: bumping them would make every prepared statement's next
    /// Bind analyze its text again, and every shape miss once, for nothing.
    pub fn set_catalog_loaded(&self, mut catalog: FunctionCatalog, changes: u64) {
        {
            let state = self.catalog.read();
            if state.changes != changes {
                catalog.mark_stale();
            } else if *state.catalog == catalog {
                drop(state);
                self.catalog_loads.fetch_add(1, Ordering::Release);
                return;
            }
        }
        self.set_catalog(catalog);
    }

    /// A statement changed functions, privileges or policies: until a fresh catalog is loaded,
    /// analyses assume every function outside the built-in lists may change session settings.
    pub fn catalog_changed(&self) {
        {
            let mut state = self.catalog.write();
            let mut stale = (*state.catalog).clone();
            stale.mark_stale();
            state.catalog = Arc::new(stale);
            state.changes += 1;
            state.salt = state.salt.wrapping_add(0x9e37_79b9_7f4a_7c15);
            self.salt.store(state.salt, Ordering::Release);
        }
        self.cache.invalidate_all();
    }

    /// The catalog analyses are currently made with.
    pub fn catalog(&self) -> Arc<FunctionCatalog> {
        self.catalog.read().catalog.clone()
    }

    /// Analyzes a statement text: a lexer pass and a cache lookup when its shape was seen before,
    /// a full parse otherwise.
    pub fn analyze(&self, sql: &str) -> Arc<Analysis> {
        self.analyze_with(sql, Strings::Standard)
    }

    /// [`Router::analyze`] for a session whose `standard_conforming_strings` gives `strings`.
    pub fn analyze_with(&self, sql: &str, strings: Strings) -> Arc<Analysis> {
        use front::By;
        let strings = shape::effective(sql, strings);
        let salt = self.salt.load(Ordering::Acquire);
        let text = front::text_key(sql.as_bytes(), strings);
        if let Some(t) = text {
            if let Some(hit) = front::get(By::Text, self.id, t ^ salt) {
                return hit;
            }
        }
        let shape = shape::shape_with(sql, strings);
        let key = shape.hash ^ salt;
        let shared = front::get(By::Shape, self.id, key).or_else(|| {
            let hit = self.cache.get(&key)?;
            front::put(By::Shape, self.id, key, &hit);
            Some(hit)
        });
        if let Some(hit) = shared {
            // A text key exists only for short texts (front::MAX_TEXT_KEY).
            if let Some(t) = text {
                front::put(By::Text, self.id, t ^ salt, &hit);
            }
            return hit;
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        // Take the salt and the catalog together so an entry is never filed under the wrong one.
        let (salt, catalog) = {
            let state = self.catalog.read();
            (state.salt, state.catalog.clone())
        };
        let analysis = Arc::new(match strings {
            Strings::Standard => analyze::analyze(sql, &shape, &catalog),
            Strings::Backslash => analyze::analyze(&shape::escape_form(sql), &shape, &catalog),
        });
        // Huge texts (bulk INSERTs) rarely repeat their shape and would crowd out the rest.
        if analysis.reuse_by_shape && sql.len() <= MAX_CACHED_TEXT {
            self.cache.insert(shape.hash ^ salt, analysis.clone());
            if let Some(t) = text {
                front::put(By::Text, self.id, t ^ salt, &analysis);
            }
        }
        analysis
    }

    pub fn stats(&self) -> RouterStats {
        RouterStats {
            cached_shapes: self.cache.entry_count(),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

/// Analyzes one text without any cache: the slow path of [`Router::analyze`], for tools and
/// benchmarks.
pub fn analyze_uncached(sql: &str, catalog: &FunctionCatalog) -> Analysis {
    analyze::analyze(sql, &shape::shape(sql), catalog)
}

/// The cheap lexer's tokens of a text (for the differential fuzz target, which holds them
/// against PostgreSQL's own scanner), and whether it found text the server's scanner rejects.
pub fn tokens(sql: &str) -> (Vec<Token>, bool) {
    let mut lexer = lexer::Lexer::new(sql);
    let tokens = lexer.by_ref().collect();
    (tokens, lexer.unterminated)
}

/// Cache keys are already well-mixed 64-bit hashes; hashing them again is wasted time.
#[derive(Clone, Copy, Debug, Default)]
struct PassThrough;

impl BuildHasher for PassThrough {
    type Hasher = PassThroughHasher;
    fn build_hasher(&self) -> PassThroughHasher {
        PassThroughHasher(0)
    }
}

struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; fold anything else rather than lose it.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
