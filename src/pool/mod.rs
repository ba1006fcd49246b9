//! Server pools: one deadpool of raw connections per server per database/user, and the choice among them.

mod cap;
mod manager;
mod set;

pub use manager::{ServerManager, ServerSettings};
pub use set::{AcquireError, Lease, PoolSet, Pools, Role, ServerInfo, ServerPool};
