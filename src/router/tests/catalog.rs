//! FunctionCatalog: the built-in lists, and loading pg_proc from a live server when one is reachable.

use std::time::Duration;

use super::super::builtin;
use super::super::{FunctionCatalog, Volatility};

#[test]
fn builtin_catalog() {
    let c = FunctionCatalog::builtin();
    assert!(c.is_immutable("lower") && c.is_immutable("count"));
    assert!(c.is_read_only("now") && !c.is_immutable("now"));
    assert!(c.is_read_only("random") && !c.is_immutable("random"));
    assert!(!c.is_read_only("nextval") && !c.is_read_only("pg_advisory_lock"));
    assert_eq!(c.function("Lower"), Some(Volatility::Immutable));
    assert_eq!(c.function("no_such_function"), None);
    assert!(!c.is_read_only("no_such_function"));
    // Stable in pg_proc, but they assign a transaction id.
    assert_eq!(c.function("txid_current"), Some(Volatility::Volatile));
    let mut overridden = FunctionCatalog::builtin();
    overridden.insert_function("txid_current", Volatility::Stable);
    assert!(!overridden.is_read_only("txid_current"));
}

#[test]
fn builtin_lists_do_not_overlap() {
    let lists = [
        builtin::IMMUTABLE,
        builtin::STABLE,
        builtin::VOLATILE_READ_ONLY,
        builtin::VOLATILE,
    ];
    for (i, a) in lists.iter().enumerate() {
        for b in &lists[i + 1..] {
            for name in *a {
                assert!(!b.contains(name), "{name} is in two lists");
            }
        }
    }
}

/// The local cluster from scripts/cluster.sh, when it is up.
async fn connect() -> Option<tokio_postgres::Client> {
    let config = std::env::var("PGSPLIT_TEST_PRIMARY").unwrap_or_else(|_| {
        "host=127.0.0.1 port=15432 user=app password=app dbname=app".to_owned()
    });
    let connecting = tokio_postgres::connect(&config, tokio_postgres::NoTls);
    match tokio::time::timeout(Duration::from_secs(3), connecting).await {
        Ok(Ok((client, connection))) => {
            tokio::spawn(connection);
            Some(client)
        }
        // The connection string may hold a password: name the variable, not its value.
        Ok(Err(e)) => {
            println!("skipping: no PostgreSQL for the catalog test (PGSPLIT_TEST_PRIMARY): {e}");
            None
        }
        Err(_) => {
            println!(
                "skipping: no PostgreSQL for the catalog test (PGSPLIT_TEST_PRIMARY): timed out"
            );
            None
        }
    }
}

#[tokio::test]
async fn load_from_server() -> Result<(), tokio_postgres::Error> {
    let Some(client) = connect().await else {
        return Ok(());
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let volatile = format!("pgsplit_test_volatile_{}_{nanos}", std::process::id());
    let stable = format!("pgsplit_test_stable_{}_{nanos}", std::process::id());
    // pg_temp: dropped with the session even if an assertion below fails.
    client
        .batch_execute(&format!(
            "CREATE FUNCTION pg_temp.{volatile}() RETURNS int VOLATILE LANGUAGE sql AS 'SELECT 1';
             CREATE FUNCTION pg_temp.{stable}() RETURNS int STABLE LANGUAGE sql AS 'SELECT 1';"
        ))
        .await?;
    let catalog = FunctionCatalog::load(&client).await;
    client
        .batch_execute(&format!(
            "DROP FUNCTION pg_temp.{volatile}(); DROP FUNCTION pg_temp.{stable}();"
        ))
        .await?;
    let catalog = catalog?;

    assert!(catalog.len() > 1000, "pg_proc has thousands of names");
    assert_eq!(catalog.function("nextval"), Some(Volatility::Volatile));
    assert!(!catalog.is_read_only("nextval"));
    assert!(catalog.is_immutable("lower"));
    assert!(catalog.is_read_only("now") && !catalog.is_immutable("now"));
    assert_eq!(
        catalog.function("random"),
        Some(Volatility::VolatileReadOnly)
    );
    assert!(!catalog.is_read_only("txid_current"));
    assert_eq!(catalog.function(&volatile), Some(Volatility::Volatile));
    assert_eq!(catalog.function(&stable), Some(Volatility::Stable));
    assert!(catalog.operator("=").is_some_and(Volatility::is_read_only));
    assert!(catalog.operator("@>").is_some_and(Volatility::is_read_only));

    // The built-in lists must not promise more than the server grants.
    let builtin = FunctionCatalog::builtin();
    let mut wrong = Vec::new();
    for name in builtin::IMMUTABLE
        .iter()
        .chain(builtin::STABLE)
        .chain(builtin::VOLATILE_READ_ONLY)
    {
        let Some(server) = catalog.function(name) else {
            continue; // newer than this server
        };
        let promised = builtin.function(name);
        let ok = match promised {
            Some(Volatility::Immutable) => server.is_immutable(),
            Some(Volatility::Stable) => {
                matches!(server, Volatility::Immutable | Volatility::Stable)
            }
            Some(Volatility::VolatileReadOnly) => server.is_read_only(),
            _ => true,
        };
        if !ok {
            wrong.push(format!("{name}: builtin {promised:?}, server {server:?}"));
        }
    }
    for op in builtin::OPERATORS {
        if catalog.operator(op).is_some_and(|v| !v.is_read_only()) {
            wrong.push(format!("operator {op} is volatile on the server"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // With the server's catalog a router sends the user function where it belongs.
    let router = super::super::Router::new(catalog, 100);
    assert_eq!(
        router.analyze(&format!("SELECT {stable}()")).route,
        super::super::Route::Replica
    );
    assert_eq!(
        router.analyze(&format!("SELECT {volatile}()")).route,
        super::super::Route::Primary
    );
    Ok(())
}
