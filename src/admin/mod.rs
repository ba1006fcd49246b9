//! The operator's view: one snapshot of queries, pools, servers and targets, and the SQL admin console over it.

pub mod console;
pub mod show;
pub mod snapshot;
pub mod table;

pub use snapshot::{PoolSnapshot, ServerSnapshot, StatsSnapshot};
