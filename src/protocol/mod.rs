//! PostgreSQL wire protocol: frame reading, tags, the few typed messages the proxy inspects, and SQLSTATEs.

pub mod build;
pub mod frame;
pub mod lsn;
pub mod message;
pub mod messages;
pub mod sqlstate;
pub mod startup;
pub mod tags;

pub use frame::{Frame, ProtocolError};
