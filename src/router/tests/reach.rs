//! Reads that reach a writer without naming it: views, aggregates, casts, domains, operators, attribute notation, SQL-text functions; and texts the lexer must read as PostgreSQL does.

use super::super::{FunctionCatalog, Route, Router, Strings, Volatility};

/// What a loaded catalog holds for the issue's objects (router/reach.rs resolves these from
/// the server; tests/routing_corpus.rs checks the same against real objects).
fn catalog() -> FunctionCatalog {
    let mut c = super::catalog();
    c.insert_relation("v2", Volatility::Volatile);
    c.insert_relation("app_s.v2", Volatility::Volatile);
    c.insert_relation("plain_view", Volatility::Stable);
    c.insert_type("ct", Volatility::Volatile);
    c.insert_type("dom", Volatility::Volatile);
    c.insert_type("app_s.dom", Volatility::Volatile);
    c.insert_type("safe_dom", Volatility::Immutable);
    // An aggregate is an ordinary name once its support functions are resolved.
    c.insert_function("agg", Volatility::Volatile);
    c.insert_function("f", Volatility::Volatile);
    c.insert_attribute_call("f");
    c.insert_operator("===", Volatility::Volatile);
    c
}

fn route(sql: &str) -> (Route, &'static str) {
    let a = Router::new(catalog(), 100).analyze(sql);
    (a.route, a.reason)
}

fn primary(sql: &str, reason: &str) {
    let (r, why) = route(sql);
    assert_eq!((r, why), (Route::Primary, reason), "{sql:?}");
}

fn replica(sql: &str) {
    assert_eq!(route(sql).0, Route::Replica, "{sql:?}");
}

#[test]
fn views_that_reach_a_writer_go_to_the_primary() {
    let why = "relation reaches a volatile function";
    primary("SELECT * FROM v2", why);
    primary("SELECT * FROM app_s.v2", why);
    primary("SELECT * FROM t JOIN v2 USING (id)", why);
    primary("SELECT (SELECT count(*) FROM v2)", why);
    primary("WITH x AS (SELECT * FROM v2) SELECT * FROM x", why);
    replica("SELECT * FROM plain_view");
    // A CTE named like the view hides it.
    replica("WITH v2 AS (SELECT 1) SELECT * FROM v2");
}

#[test]
fn casts_domains_and_types_that_reach_a_writer_go_to_the_primary() {
    let why = "type reaches a volatile function";
    primary("SELECT 5::ct", why);
    primary("SELECT CAST(6 AS ct)", why);
    primary("SELECT ct '7'", why);
    primary("SELECT '{1}'::ct[]", why);
    primary("SELECT 5::dom", why);
    primary("SELECT 5::app_s.dom", why);
    primary("SELECT * FROM t WHERE id = 5::dom", why);
    replica("SELECT 5::safe_dom");
    replica("SELECT 5::int, 'x'::text");
}

#[test]
fn aggregates_operators_and_attribute_notation() {
    primary("SELECT agg(v) FROM t", "volatile function");
    primary(
        "SELECT t.f FROM t t",
        "attribute notation may call a volatile function",
    );
    primary(
        "SELECT (t).f FROM t",
        "attribute notation may call a volatile function",
    );
    primary(
        "SELECT s.t.f FROM s.t",
        "attribute notation may call a volatile function",
    );
    replica("SELECT t.g FROM t t");
    replica("SELECT f2 FROM t");
    primary("SELECT 1 === 2", "volatile operator");
    primary("SELECT a FROM t ORDER BY a USING ===", "volatile operator");
    primary("SELECT 1 === ANY (SELECT 1)", "volatile operator");
    primary("SELECT 1 OPERATOR(public.===) 2", "volatile operator");
}

#[test]
fn functions_that_run_sql_text_go_to_the_primary() {
    for sql in [
        "SELECT table_to_xml('writer_view', true, false, '')",
        "SELECT query_to_xml('SELECT 1', true, false, '')",
        "SELECT cursor_to_xml('c', 1, true, false, '')",
    ] {
        primary(sql, "function runs sql text");
    }
}

#[test]
fn the_issue_texts_with_carriage_returns() {
    let router = Router::new(catalog(), 100);
    // The plain read first, so a shape collision would hand its analysis to the rest.
    assert_eq!(
        router.analyze("SELECT id FROM t WHERE id = 1").route,
        Route::Replica
    );
    assert_eq!(router.analyze("SELECT 3").route, Route::Replica);
    assert_eq!(router.analyze("SELECT 2").route, Route::Replica);
    let a = router.analyze("SELECT id FROM t WHERE id = 1 --\rFOR UPDATE");
    assert_eq!((a.route, a.reason), (Route::Primary, "for update"));
    let a = router.analyze("SELECT 3 --\r, nextval('s')");
    assert_eq!(
        (a.route, a.reason),
        (Route::Primary, "volatile function nextval")
    );
    let a = router.analyze("SELECT 2 --\r; UPDATE t SET v = v WHERE id = 1");
    assert_eq!((a.route, a.reason), (Route::Primary, "update"));
    assert_eq!(a.statement_count, 2);
}

#[test]
fn standard_conforming_strings_off() {
    let router = Router::new(catalog(), 100);
    // On: the string ends at the second quote and FOR UPDATE is SQL.
    let on = router.analyze("SELECT 'a\\' FOR UPDATE --'");
    assert_eq!(on.route, Route::Primary);
    // Off: `\'` is an escaped quote and FOR UPDATE is inside the string.
    let off = router.analyze_with("SELECT 'a\\' FOR UPDATE --'", Strings::Backslash);
    assert_eq!(off.route, Route::Replica);
    // And the other way round: on, a string; off, a write after it.
    let text = "SELECT 'x\\' , '; DELETE FROM t; --'";
    assert_eq!(router.analyze(text).route, Route::Replica);
    let off = router.analyze_with(text, Strings::Backslash);
    assert_eq!((off.route, off.reason), (Route::Primary, "delete"));
    // A text without backslashes is analyzed once for both.
    let misses = router.stats().misses;
    router.analyze_with("SELECT 'a'", Strings::Backslash);
    router.analyze("SELECT 'b'");
    assert_eq!(router.stats().misses, misses + 1);
}
