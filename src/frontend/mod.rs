//! Client side: the listener, the handshake, and one session task per client that drives requests through the pools.

mod action;
mod attachment;
mod cached;
mod columns;
mod consistency;
mod copy;
mod deadline;
mod listener;
mod live;
mod n_plus_one;
pub mod plan;
mod refusal;
mod request;
mod responses;
mod sequences;
mod session;
pub mod settings;
mod shed;
mod startup;
mod statements;
pub mod stream;
mod translate;
mod verify;
pub mod workers;

pub use listener::serve;
pub use session::Session;
