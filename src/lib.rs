//! pgsplit: a PostgreSQL wire-protocol proxy that pools, splits reads from writes, and measures every query.

pub mod admin;
pub mod auth;
pub mod backend;
pub mod cache;
pub mod civil;
pub mod clients;
pub mod config;
pub mod control;
pub mod demo;
pub mod docs;
pub mod error;
pub mod frontend;
pub mod http;
#[cfg(test)]
mod layering;
pub mod nplusone;
pub mod pool;
pub mod protocol;
pub mod proxy;
pub mod reload;
pub mod report;
pub mod router;
pub mod shared;
pub mod stats;

pub use proxy::{bind, start, ProxyHandle};
pub use shared::Shared;
