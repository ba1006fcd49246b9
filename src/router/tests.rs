//! Unit tests of statement analysis: routes, session effects, shapes, fingerprints, the catalog.

mod catalog;
mod effects;
mod fingerprints;
mod lexing;
mod reach;
mod routes;
mod write_reach;

use std::sync::Arc;

use super::{Analysis, FunctionCatalog, Router, Volatility};

/// The built-in catalog plus user functions of each kind, as a loaded catalog would hold them.
fn catalog() -> FunctionCatalog {
    let mut catalog = FunctionCatalog::builtin();
    catalog.insert_function("stable_user_fn", Volatility::Stable);
    catalog.insert_function("immutable_user_fn", Volatility::Immutable);
    catalog.insert_function("volatile_user_fn", Volatility::Volatile);
    catalog.insert_function("set_tenant", Volatility::Volatile);
    catalog.insert_function("set_tenant_proc", Volatility::Volatile);
    catalog.insert_function("wraps_setter", Volatility::Stable);
    catalog.set_session_setters(super::setters::setters([
        (
            "set_tenant",
            "plpgsql",
            "BEGIN PERFORM set_config('app.tenant_id', $1::text, false); END",
        ),
        ("set_tenant_proc", "sql", "SELECT set_tenant($1)"),
        ("wraps_setter", "sql", "SELECT set_tenant_proc($1)"),
        (
            "volatile_user_fn",
            "plpgsql",
            "BEGIN UPDATE t SET a = 1; END",
        ),
    ]));
    catalog
}

fn router() -> Router {
    Router::new(catalog(), 10_000)
}

fn analyze(sql: &str) -> Arc<Analysis> {
    router().analyze(sql)
}

#[test]
fn router_and_analysis_are_shareable_across_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Router>();
    shareable::<Analysis>();
    shareable::<FunctionCatalog>();
}

#[test]
fn huge_texts_are_analyzed_but_not_cached() {
    let router = router();
    let rows = vec!["(1, 'x')"; 20_000].join(", ");
    let sql = format!("INSERT INTO t VALUES {rows}");
    assert!(sql.len() > 64 * 1024);
    assert_eq!(router.analyze(&sql).reason, "insert");
    assert_eq!(router.analyze(&sql).reason, "insert");
    assert_eq!(router.stats().misses, 2);
}
