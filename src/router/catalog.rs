//! Which functions and operators are read-only or immutable, from the server's pg_proc or a built-in list.
//!
//! Volatility is kept per name, not per overload: statements are classified before the server
//! resolves overloads, so a name counts as read-only only if all its overloads (in every schema)
//! are, and as immutable only if all are immutable.

use std::borrow::Cow;

use ahash::AHashMap;

use super::builtin;
use super::reach::{self, Reach};

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
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FunctionCatalog {
    functions: AHashMap<Box<str>, Volatility>,
    operators: AHashMap<Box<str>, Volatility>,
    /// Known functions that may change session settings invisibly (see `setters`).
    session_setters: ahash::AHashSet<Box<str>>,
    /// Functions may have changed since the load: only built-in names are trusted not to set.
    stale: bool,
    /// Write reach and read dependencies (see `write_reach`).
    write_reach: std::sync::Arc<super::write_reach::WriteReach>,
    /// Views, types and `x.f` calls that reach a function (router/reach.rs).
    reach: Reach,
}

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

    /// Reads every function and operator of the connected database, each with the worst
    /// volatility it can reach (an aggregate's support functions, an operator's function, a
    /// SQL-standard body's calls), and the views and types that reach a function. A name is
    /// read-only if all its overloads are; immutable if all are immutable. pg_catalog functions
    /// on the built-in volatile-but-read-only list count as read-only.
    pub async fn load(client: &tokio_postgres::Client) -> Result<Self, tokio_postgres::Error> {
        let loaded = reach::load(client).await?;
        let mut catalog = Self::empty();
        for (name, volatility) in loaded.functions {
            catalog.insert_function(&name, volatility);
        }
        for (name, volatility) in loaded.operators {
            catalog.insert_operator(&name, volatility);
        }
        catalog.reach = loaded.reach;
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
    /// transaction id, or run SQL given as text, are `Volatile` whatever pg_proc says.
    pub fn function(&self, name: &str) -> Option<Volatility> {
        let name: Cow<'_, str> = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        if builtin::PRIMARY_ONLY.contains(&name.as_ref())
            || builtin::RUNS_SQL_TEXT.contains(&name.as_ref())
        {
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

    /// The worst a read of this relation (lowercased, bare or schema-qualified) can run: its
    /// view definition's calls, its row-level security policies, its columns' output functions
    /// (never their domains' checks or casts, which run only when a value is made).
    /// `None` when it reaches nothing but immutable functions, or is unknown.
    pub fn relation(&self, name: &str) -> Option<Volatility> {
        self.reach.relation(name)
    }

    /// The worst a value of this type (lowercased name) can run when cast or read in: its
    /// input and output functions, casts to and from it, a domain's CHECK constraints.
    pub fn type_reach(&self, name: &str) -> Option<Volatility> {
        self.reach.type_(name)
    }

    /// Whether `x.name` may be attribute notation for a call of a function that may write.
    pub fn attribute_call(&self, name: &str) -> bool {
        self.reach.attribute_call(name)
    }

    /// Records what a read of a relation reaches (tests, and configured overrides).
    pub fn insert_relation(&mut self, name: &str, volatility: Volatility) {
        self.reach.insert_relation(name, volatility);
    }

    /// Records what a value of a type reaches.
    pub fn insert_type(&mut self, name: &str, volatility: Volatility) {
        self.reach.insert_type(name, volatility);
    }

    /// Records a function that `x.name` may call and that may write.
    pub fn insert_attribute_call(&mut self, name: &str) {
        self.reach.insert_attribute_call(name);
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
    pub fn set_write_reach(&mut self, reach: super::write_reach::WriteReach) {
        self.write_reach = std::sync::Arc::new(reach);
    }

    pub(super) fn write_reach(&self) -> &super::write_reach::WriteReach {
        &self.write_reach
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
