//! Client side: the listener, the handshake, and one session task per client that drives requests through the pools.

mod listener;
pub mod plan;
mod request;
mod responses;
mod session;
pub mod settings;
mod startup;
pub mod stream;

pub use listener::{serve, ClientSlots};
pub use session::Session;
