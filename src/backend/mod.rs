//! One server connection: connect, log in, and the raw stream the session forwards over.

mod conn;
pub mod prepared;

pub use conn::{BackendError, LoginParams, ServerConn};
pub use prepared::ServerPrepared;
