//! Unit tests of migration loading and splitting (no database).

use super::*;

#[test]
fn embedded_migrations_load_in_order_with_down_files() {
    let all = load(None).expect("embedded migrations load");
    let versions: Vec<_> = all.iter().map(|m| m.version.as_str()).collect();
    assert_eq!(versions, ["000", "001"]);
    assert!(all.iter().all(|m| m.down.is_some()));
    assert_eq!(all[1].name, "performance_indexes");
    assert_eq!(all[1].checksum.len(), 64);
}

#[test]
fn performance_migration_has_sixteen_concurrent_indexes_and_one_function() {
    let all = load(None).expect("embedded migrations load");
    let stmts = split("001", &all[1].up).expect("001 splits");
    assert_eq!(stmts.len(), 17);
    assert!(!stmts[0].alone, "the function runs in a transaction");
    assert!(stmts[0]
        .sql
        .starts_with("CREATE OR REPLACE FUNCTION validate_performance_indexes()"));
    let indexes: Vec<_> = stmts
        .iter()
        .filter_map(|s| s.concurrent_index.clone())
        .collect();
    assert_eq!(indexes.len(), 16);
    assert!(stmts[1..].iter().all(|s| s.alone));
    let gist: Vec<_> = stmts.iter().filter(|s| !s.requires.is_empty()).collect();
    assert_eq!(gist.len(), 1);
    assert_eq!(
        gist[0].concurrent_index.as_deref(),
        Some("idx_properties_location_price")
    );
    assert_eq!(gist[0].requires, ["postgis"]);
    assert_eq!(
        gist[0].targets,
        [(
            Target::Table("properties".into()),
            LockMode::ShareUpdateExclusive
        )]
    );
}

#[test]
fn rollback_is_sixteen_concurrent_drops_then_the_function() {
    let all = load(None).expect("embedded migrations load");
    let down = all[1].down.as_deref().expect("001 has a down file");
    let stmts = split("001.down", down).expect("down splits");
    assert_eq!(stmts.len(), 17);
    assert!(stmts[..16]
        .iter()
        .all(|s| s.alone && matches!(s.targets[0].0, Target::Index(_))));
    assert!(!stmts[16].alone);
}

#[test]
fn dollar_quotes_comments_and_quoted_semicolons_stay_in_one_statement() {
    let text = "-- a; comment\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\n\
                /* x; y */ SELECT ';' AS s;\n\n-- pgsplit:requires postgis, pg_trgm\nSELECT 2;";
    let stmts = split("t", text).expect("splits");
    assert_eq!(stmts.len(), 3);
    assert!(stmts[0].sql.ends_with("$$ SELECT 1; $$"));
    assert_eq!(stmts[0].line, 2);
    assert!(stmts[0].requires.is_empty());
    assert!(stmts[1].sql.contains("';'"));
    assert_eq!(stmts[2].sql, "SELECT 2");
    assert_eq!(stmts[2].line, 6);
    assert_eq!(stmts[2].requires, ["postgis", "pg_trgm"]);
}

#[test]
fn unknown_directive_is_an_error_naming_it() {
    let err = split("t", "-- pgsplit:require postgis\nSELECT 1;")
        .unwrap_err()
        .to_string();
    assert!(err.contains("pgsplit:require postgis"), "{err}");
}

#[test]
fn bad_file_names_are_rejected_with_the_expected_shape() {
    let err = assemble(vec![("schema.sql".into(), "SELECT 1;".into())])
        .unwrap_err()
        .to_string();
    assert!(err.contains("NNN_name.sql"), "{err}");
    let err = assemble(vec![("002_x.down.sql".into(), "SELECT 1;".into())])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no matching 002_x.sql"), "{err}");
}

#[test]
fn versions_sort_numerically() {
    let files = vec![
        ("10_b.sql".into(), "SELECT 1;".into()),
        ("9_a.sql".into(), "SELECT 1;".into()),
    ];
    let all = assemble(files).expect("assembles");
    assert_eq!(all[0].version, "9");
    assert_eq!(all[1].version, "10");
}

#[test]
fn a_version_with_concurrent_statements_must_be_safe_to_rerun() {
    let text = "CREATE TABLE t (id int);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (id);";
    let err = split("002_x.sql", text).unwrap_err().to_string();
    assert!(err.contains("statement 1 (line 1)"), "{err}");
    let ok = "CREATE TABLE IF NOT EXISTS t (id int);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (id);";
    assert!(split("002_x.sql", ok).is_ok());
    // A purely transactional version is atomic, so it need not be re-runnable.
    assert!(split("003_y.sql", "CREATE TABLE t (id int);").is_ok());
}
