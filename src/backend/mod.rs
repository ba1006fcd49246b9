//! One server connection: connect, log in, and the raw stream the session forwards over.

mod conn;
pub mod control;
mod maybe_tls;
pub mod prepared;
mod stream;

pub use conn::{BackendError, LoginParams, ServerConn, ServerTls};
pub use maybe_tls::MaybeTls;
pub use prepared::ServerPrepared;
pub use stream::{ServerIo, ServerStream};
