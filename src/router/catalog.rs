//! Which functions and operators are read-only or immutable, from the server's pg_proc or a built-in list.
//!
//! Volatility is kept per name, not per overload: statements are classified before the server
//! resolves overloads, so a name counts as read-only only if all its overloads (in every schema)
//! are, and as immutable only if all are immutable.

use std::borrow::Cow;

use ahash::AHashMap;

use super::builtin;

/// What routing may assume about every function or operator of one name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Volatility {
    /// All overloads immutable: read-only, cacheable.
    Immutable,
    /// All overloads immutable or stable: read-only, not cacheable.
    Stable,
    /// Volatile but without side effects (`random`, `pg_sleep`, ...): read-only, not cacheable.
    VolatileReadOnly,
    /// May write, lock, or change session state: primary only.
    Volatile,
}

impl Volatility {
    pub fn is_read_only(self) -> bool {
        self != Volatility::Volatile
    }

    pub fn is_immutable(self) -> bool {
        self == Volatility::Immutable
    }
}

/// Function and operator volatility by lowercased name.
#[derive(Clone, Debug, Default)]
pub struct FunctionCatalog {
    functions: AHashMap<Box<str>, Volatility>,
    operators: AHashMap<Box<str>, Volatility>,
    /// Known functions that may change session settings invisibly (see `setters`).
    session_setters: ahash::AHashSet<Box<str>>,
    /// Functions may have changed since the load: only built-in names are trusted not to set.
    stale: bool,
    /// Write reach and read dependencies (see `reach`).
    reach: std::sync::Arc<super::reach::Reach>,
}

const FUNCTIONS_SQL: &str = "\
    SELECT lower(p.proname) AS name, \
           bool_and(p.provolatile = 'i') AS immutable, \
           bool_and(p.provolatile IN ('i', 's')) AS stable, \
           bool_and(p.provolatile IN ('i', 's') \
                    OR (n.nspname = 'pg_catalog' AND p.proname = ANY($1::text[]))) AS read_only \
      FROM pg_catalog.pg_proc p \
      JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
     GROUP BY 1";

const OPERATORS_SQL: &str = "\
    SELECT o.oprname::text AS name, \
           bool_and(p.provolatile = 'i') AS immutable, \
           bool_and(p.provolatile IN ('i', 's')) AS stable \
      FROM pg_catalog.pg_operator o \
      JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode::oid \
     GROUP BY 1";

impl FunctionCatalog {
    /// Knows nothing: every function call and operator routes to the primary.
    pub fn empty() -> Self {
        Self::default()
    }

    /// A conservative list usable before the server's catalog is loaded.
    pub fn builtin() -> Self {
        let mut catalog = Self::empty();
        let lists = [
            (builtin::IMMUTABLE, Volatility::Immutable),
            (builtin::STABLE, Volatility::Stable),
            (builtin::VOLATILE_READ_ONLY, Volatility::VolatileReadOnly),
            (builtin::VOLATILE, Volatility::Volatile),
        ];
        for (names, volatility) in lists {
            for name in names {
                catalog.insert_function(name, volatility);
            }
        }
        for op in builtin::OPERATORS {
            catalog.insert_operator(op, Volatility::Stable);
        }
        catalog
    }

    /// Reads every function and operator of the connected database. A name is read-only if all
    /// its overloads are immutable or stable, or are pg_catalog functions on the built-in
    /// volatile-but-read-only list; immutable if all are immutable.
    pub async fn load(client: &tokio_postgres::Client) -> Result<Self, tokio_postgres::Error> {
        let read_only: Vec<&str> = builtin::VOLATILE_READ_ONLY.to_vec();
        let mut catalog = Self::empty();
        for row in client.query(FUNCTIONS_SQL, &[&read_only]).await? {
            let name: String = row.try_get("name")?;
            let volatility = classify(
                row.try_get("immutable")?,
                row.try_get("stable")?,
                row.try_get("read_only")?,
            );
            catalog.insert_function(&name, volatility);
        }
        for row in client.query(OPERATORS_SQL, &[]).await? {
            let name: String = row.try_get("name")?;
            let stable: bool = row.try_get("stable")?;
            catalog.insert_operator(&name, classify(row.try_get("immutable")?, stable, stable));
        }
        Ok(catalog)
    }

    /// Records (or overrides) what is known about a function name.
    pub fn insert_function(&mut self, name: &str, volatility: Volatility) {
        self.functions
            .insert(name.to_lowercase().into(), volatility);
    }

    /// Records (or overrides) what is known about an operator name.
    pub fn insert_operator(&mut self, name: &str, volatility: Volatility) {
        self.operators.insert(name.into(), volatility);
    }

    /// What is known about a function name; `None` when unknown. Functions that assign a
    /// transaction id are `Volatile` whatever pg_proc says.
    pub fn function(&self, name: &str) -> Option<Volatility> {
        let name: Cow<'_, str> = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        if builtin::PRIMARY_ONLY.contains(&name.as_ref()) {
            return Some(Volatility::Volatile);
        }
        self.functions.get(name.as_ref()).copied()
    }

    /// What is known about an operator name; `None` when unknown.
    pub fn operator(&self, name: &str) -> Option<Volatility> {
        self.operators.get(name).copied()
    }

    /// Known, and safe to run on a replica.
    pub fn is_read_only(&self, name: &str) -> bool {
        self.function(name).is_some_and(Volatility::is_read_only)
    }

    /// Known, and every overload immutable.
    pub fn is_immutable(&self, name: &str) -> bool {
        self.function(name).is_some_and(Volatility::is_immutable)
    }

    /// Records which known function names may change session settings (from their bodies).
    pub fn set_session_setters(&mut self, names: ahash::AHashSet<Box<str>>) {
        self.session_setters = names;
    }

    /// The function may leave settings on the server connection that no statement text shows:
    /// a known setter, or a name the catalog does not know. `set_config` itself is judged by
    /// its literal arguments instead.
    pub fn may_set_session(&self, name: &str) -> bool {
        if name == "set_config" {
            return false;
        }
        if self.stale && !builtin::is_builtin(name) {
            return true;
        }
        self.function(name).is_none() || self.session_setters.contains(name)
    }

    /// A name called inside a body (a DO block's) may change settings. Unlike
    /// [`Self::may_set_session`], unknown words there are mostly SQL (`VALUES (`, `EXISTS (`)
    /// and count only while the catalog is stale.
    pub fn body_call_may_set_session(&self, name: &str) -> bool {
        if self.function(name).is_none() {
            return self.stale && !builtin::is_builtin(name);
        }
        self.may_set_session(name)
    }

    /// Records what writes reach and reads depend on, from the same catalog.
    pub fn set_reach(&mut self, reach: super::reach::Reach) {
        self.reach = std::sync::Arc::new(reach);
    }

    pub(super) fn reach(&self) -> &super::reach::Reach {
        &self.reach
    }

    /// DDL went through since this catalog was read: reach is unknown.
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// Functions changed after this catalog was read (see `Router::catalog_changed`).
    pub fn mark_stale(&mut self) {
        self.stale = true;
    }

    /// Number of function names known.
    pub fn len(&self) -> usize {
        self.functions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }
}

fn classify(immutable: bool, stable: bool, read_only: bool) -> Volatility {
    if immutable {
        Volatility::Immutable
    } else if stable {
        Volatility::Stable
    } else if read_only {
        Volatility::VolatileReadOnly
    } else {
        Volatility::Volatile
    }
}
