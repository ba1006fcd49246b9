//! Server pools: one deadpool of raw connections per server per database/user, server health and lag, and the choice among them.

mod cap;
pub mod checker;
pub mod global;
mod health;
mod lsn;
mod manager;
mod replica_choice;
mod retire;
mod role;
mod routing;
mod server_pool;
mod set;
mod wal_history;
pub mod worker;

pub use health::{HealthPolicy, ServerHealth};
pub use lsn::{load_plain_tables, ReadNeed, WriteLsns, WriteSet};
pub use manager::{ServerManager, ServerSettings};
pub use replica_choice::REPLAY_POSITION_SQL;
pub use role::Role;
pub use routing::{PrimaryReason, RouteStats};
pub use server_pool::ServerPool;
pub use set::{AcquireError, Lease, PoolSet, Pools, ServerInfo};
pub use wal_history::WalHistory;
