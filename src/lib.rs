//! pgsplit: a PostgreSQL wire-protocol proxy.
