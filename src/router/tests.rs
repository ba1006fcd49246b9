//! Unit tests of statement analysis: routes, session effects, shapes, fingerprints, the catalog.

mod catalog;
mod effects;
mod fingerprints;
mod lexing;
mod routes;

use std::sync::Arc;

use super::{Analysis, FunctionCatalog, Router, Volatility};

/// The built-in catalog plus user functions of each kind, as a loaded catalog would hold them.
fn catalog() -> FunctionCatalog {
    let mut catalog = FunctionCatalog::builtin();
    catalog.insert_function("stable_user_fn", Volatility::Stable);
    catalog.insert_function("immutable_user_fn", Volatility::Immutable);
    catalog.insert_function("volatile_user_fn", Volatility::Volatile);
    catalog
}

fn router() -> Router {
    Router::new(catalog(), 10_000)
}

fn analyze(sql: &str) -> Arc<Analysis> {
    router().analyze(sql)
}
