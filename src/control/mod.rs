//! Control-plane commands that `main.rs` exposes as `pgsplit migrate | seed-data | analyze`.
//!
//! Each command is a clap `Args` struct plus `async fn run(&Args) -> Result<(), ControlError>`
//! that prints human-readable progress to stdout. They talk to PostgreSQL directly with
//! tokio-postgres, never through the proxy, and import nothing from the data path.

pub mod analyze;
pub mod critical;
mod db;
mod error;
pub mod migrate;
pub mod seed;

pub use error::{ControlError, MigrationFailure};
