//! `pgsplit migrate` against the real local cluster, each test in its own scratch database.

mod control_support;

use control_support::*;
use pgsplit::control::migrate::MigrateArgs;
use pgsplit::control::ControlError;

#[tokio::test]
async fn migrate_builds_sixteen_valid_indexes_reruns_as_noop_and_rolls_back_exactly() {
    let db = Scratch::new(&["postgis"]).await;
    let c = db.app().await;
    migrate(MigrateArgs {
        target: Some("000".into()),
        ..migrate_args(&db.url)
    })
    .await
    .expect("migrate to 000");
    let before_001 = snapshot(&c).await;

    migrate(MigrateArgs {
        dry_run: true,
        ..migrate_args(&db.url)
    })
    .await
    .expect("dry run");
    assert_eq!(snapshot(&c).await, before_001, "--dry-run changed nothing");

    let started = std::time::Instant::now();
    migrate(migrate_args(&db.url)).await.expect("migrate");
    println!("migrate 001 on empty tables took {:?}", started.elapsed());
    let rows = validation(&c).await;
    assert_eq!(
        rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(),
        SIXTEEN
    );
    for (name, exists, valid, ready, required) in &rows {
        assert!(
            *exists && *valid && *ready && *required,
            "{name}: exists {exists} valid {valid} ready {ready}"
        );
        assert_eq!(
            catalog_valid(&c, name).await,
            Some(true),
            "pg_index agrees about {name}"
        );
    }
    let migrated = snapshot(&c).await;
    assert_eq!(
        migrated.2.iter().map(|v| v.0.as_str()).collect::<Vec<_>>(),
        ["000", "001"]
    );

    migrate(migrate_args(&db.url))
        .await
        .expect("second migrate");
    assert_eq!(
        snapshot(&c).await,
        migrated,
        "a second migrate is a no-op: same indexes (same oids), same ledger"
    );

    migrate(MigrateArgs {
        down: Some("001".into()),
        ..migrate_args(&db.url)
    })
    .await
    .expect("down 001");
    assert_eq!(
        snapshot(&c).await,
        before_001,
        "--down 001 removes exactly what 001 added"
    );
}

#[tokio::test]
async fn without_postgis_the_gist_index_is_skipped_and_added_once_postgis_arrives() {
    let db = Scratch::new(&[]).await;
    let c = db.app().await;
    migrate(migrate_args(&db.url))
        .await
        .expect("migrate without PostGIS");
    let rows = validation(&c).await;
    for (name, exists, valid, _, required) in &rows {
        if name == "idx_properties_location_price" {
            assert!(!exists && !required, "GiST index skipped and not required");
        } else {
            assert!(*exists && *valid && *required, "{name}");
        }
    }
    let skipped: Vec<String> = c
        .query_one(
            "SELECT skipped FROM schema_migrations WHERE version = '001'",
            &[],
        )
        .await
        .expect("ledger")
        .get(0);
    assert_eq!(skipped, ["7:postgis"]);

    db.superuser()
        .await
        .batch_execute("CREATE EXTENSION postgis")
        .await
        .expect("postgis");
    migrate(migrate_args(&db.url))
        .await
        .expect("migrate after CREATE EXTENSION postgis");
    assert_eq!(
        catalog_valid(&c, "idx_properties_location_price").await,
        Some(true)
    );
    let skipped: Vec<String> = c
        .query_one(
            "SELECT skipped FROM schema_migrations WHERE version = '001'",
            &[],
        )
        .await
        .expect("ledger")
        .get(0);
    assert!(skipped.is_empty());
}

#[tokio::test]
async fn migrate_repairs_invalid_indexes_left_by_interrupted_concurrent_builds() {
    let db = Scratch::new(&["postgis"]).await;
    let c = db.app().await;
    migrate(MigrateArgs {
        target: Some("000".into()),
        ..migrate_args(&db.url)
    })
    .await
    .expect("migrate to 000");
    // A concurrent UNIQUE build that fails on duplicates leaves an INVALID index behind, under
    // the very name 001 is about to create.
    c.batch_execute(
        "INSERT INTO leads (contact_id, name, status) VALUES ('a', 'A', 'active'), ('b', 'B', 'active')",
    )
    .await
    .expect("duplicates");
    let err = c
        .batch_execute(
            "CREATE UNIQUE INDEX CONCURRENTLY idx_leads_status_updated ON leads (status)",
        )
        .await;
    assert!(err.is_err(), "the unique build fails");
    assert_eq!(
        catalog_valid(&c, "idx_leads_status_updated").await,
        Some(false),
        "an INVALID index is left"
    );

    migrate(migrate_args(&db.url))
        .await
        .expect("migrate repairs and completes");
    assert_eq!(
        catalog_valid(&c, "idx_leads_status_updated").await,
        Some(true)
    );
    let def: String = c
        .query_one(
            "SELECT pg_get_indexdef(to_regclass('idx_leads_status_updated'))",
            &[],
        )
        .await
        .expect("indexdef")
        .get(0);
    assert_eq!(def, "CREATE INDEX idx_leads_status_updated ON public.leads USING btree (status, updated_at DESC)");

    // An index of an applied version that became INVALID (as after a failed REINDEX
    // CONCURRENTLY) is rebuilt by the next plain `migrate`.
    db.superuser()
        .await
        .batch_execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'idx_leads_hot_leads'::regclass")
        .await
        .expect("invalidate");
    migrate(migrate_args(&db.url))
        .await
        .expect("migrate repairs an applied version");
    assert_eq!(catalog_valid(&c, "idx_leads_hot_leads").await, Some(true));

    // One dropped by hand is missing, which validation reports; migrate builds it again.
    c.batch_execute("DROP INDEX idx_properties_featured")
        .await
        .expect("drop");
    migrate(migrate_args(&db.url))
        .await
        .expect("migrate rebuilds a missing index");
    assert_eq!(
        catalog_valid(&c, "idx_properties_featured").await,
        Some(true)
    );
}

#[tokio::test]
async fn preflight_refuses_while_another_session_holds_a_blocking_lock() {
    let db = Scratch::new(&[]).await;
    migrate(MigrateArgs {
        target: Some("000".into()),
        ..migrate_args(&db.url)
    })
    .await
    .expect("migrate to 000");
    let locker = db.app().await;
    let pid: i32 = locker
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    locker
        .batch_execute("BEGIN; LOCK TABLE leads IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");

    let err = migrate(migrate_args(&db.url))
        .await
        .expect_err("pre-flight refuses");
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, ControlError::Refused(_)), "{msg}");
    for needle in [
        "leads",
        &format!("pid {pid}"),
        "AccessExclusiveLock",
        "LOCK TABLE leads",
        "pg_terminate_backend",
    ] {
        assert!(msg.contains(needle), "message names {needle:?}: {msg}");
    }
    let c = db.app().await;
    let versions: Vec<String> = c
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .expect("ledger")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, ["000"], "nothing recorded");

    locker.batch_execute("COMMIT").await.expect("unlock");
    migrate(migrate_args(&db.url))
        .await
        .expect("migrate once the lock is gone");
}

/// A directory with the repository's migrations plus `extra` files.
fn migrations_dir(name: &str, extra: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for entry in std::fs::read_dir(repo).expect("migrations/") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, dir.join(path.file_name().expect("name"))).expect("copy");
    }
    for (file, text) in extra {
        std::fs::write(dir.join(file), text).expect("write");
    }
    dir
}

#[tokio::test]
async fn a_failed_migration_is_not_recorded_says_how_to_resume_and_resumes() {
    let db = Scratch::new(&[]).await;
    let c = db.app().await;
    let broken = "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_leads_email ON leads (email);\n\
                  CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_leads_source ON leads (no_such_column);\n";
    let dir = migrations_dir(&db.name, &[("002_lead_lookups.sql", broken)]);
    let with_dir = || MigrateArgs {
        dir: Some(dir.clone()),
        ..migrate_args(&db.url)
    };

    let err = migrate(with_dir()).await.expect_err("002 fails");
    let ControlError::MigrationFailed(f) = &err else {
        panic!("unexpected error: {err}")
    };
    println!("{err}");
    assert_eq!((f.version.as_str(), f.ordinal, f.line), ("002", 2, 2));
    assert!(f.message.contains("no_such_column"), "{}", f.message);
    assert!(
        f.state.contains("version 002 is not recorded"),
        "{}",
        f.state
    );
    assert!(
        err.to_string().contains("run `pgsplit migrate` again"),
        "{err}"
    );
    let recorded: Vec<String> = c
        .query("SELECT version FROM schema_migrations ORDER BY 1", &[])
        .await
        .expect("ledger")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        recorded,
        ["000", "001"],
        "002 is recorded only when fully applied"
    );
    assert_eq!(
        catalog_valid(&c, "idx_leads_email").await,
        Some(true),
        "statement 1 ran outside a transaction"
    );

    std::fs::write(
        dir.join("002_lead_lookups.sql"),
        broken.replace("no_such_column", "source"),
    )
    .expect("fix the file");
    migrate(with_dir()).await.expect("resume after the fix");
    assert_eq!(catalog_valid(&c, "idx_leads_source").await, Some(true));

    // A failure inside a transaction leaves nothing of that transaction behind.
    let tx_broken = "CREATE TABLE lead_notes (id bigint PRIMARY KEY, note text);\n\
                     INSERT INTO no_such_table VALUES (1);\n";
    std::fs::write(dir.join("003_notes.sql"), tx_broken).expect("write 003");
    let err = migrate(with_dir()).await.expect_err("003 fails");
    assert!(err.to_string().contains("rolled back"), "{err}");
    let exists: bool = c
        .query_one("SELECT to_regclass('lead_notes') IS NOT NULL", &[])
        .await
        .expect("regclass")
        .get(0);
    assert!(
        !exists,
        "the CREATE TABLE of the failed transaction was rolled back"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
