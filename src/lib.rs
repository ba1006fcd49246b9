//! pgsplit: a PostgreSQL wire-protocol proxy.
pub mod control;
