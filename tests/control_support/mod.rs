//! Shared helpers of the control-plane integration tests: scratch databases and catalog snapshots.
//!
//! Needs the cluster from scripts/cluster.sh (PGSPLIT_TEST_PRIMARY, default 127.0.0.1:15432, user
//! app/app; PGSPLIT_TEST_SUPERUSER_URL for CREATE DATABASE / CREATE EXTENSION) with PostGIS and
//! pg_stat_statements installed on the server. Lives in a folder so Cargo does not build it as a
//! test target of its own.
#![allow(dead_code)]

use std::time::Duration;

use pgsplit::control::migrate::{self, MigrateArgs};
use pgsplit::control::ControlError;
use tokio_postgres::{Client, NoTls};

pub const SIXTEEN: [&str; 16] = [
    "idx_leads_created_scored",
    "idx_leads_score_status_created",
    "idx_leads_hot_leads",
    "idx_leads_search_gin",
    "idx_leads_status_updated",
    "idx_properties_location_price",
    "idx_properties_location_btree",
    "idx_properties_search_common",
    "idx_properties_listing_page",
    "idx_properties_featured",
    "idx_properties_amenities_gin",
    "idx_properties_location_text",
    "idx_conversations_tenant_contact_enhanced",
    "idx_conversations_recent_high_score",
    "idx_property_interactions_analysis",
    "idx_property_interactions_popularity",
];

pub fn primary() -> String {
    std::env::var("PGSPLIT_TEST_PRIMARY").unwrap_or_else(|_| "127.0.0.1:15432".into())
}

pub fn superuser_url() -> String {
    std::env::var("PGSPLIT_TEST_SUPERUSER_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:15432/postgres".into())
}

pub async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to the test cluster");
    tokio::spawn(conn);
    client
}

/// A scratch database owned by app, dropped (WITH FORCE) when the test ends, even on panic.
pub struct Scratch {
    pub name: String,
    pub url: String,
}

impl Scratch {
    pub async fn new(extensions: &[&str]) -> Scratch {
        let name = format!("t_control_{:016x}", rand::random::<u64>());
        let admin = connect(&superuser_url()).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name} OWNER app"))
            .await
            .expect("create scratch db");
        let in_db = connect(&with_db(&superuser_url(), &name)).await;
        for ext in extensions {
            in_db
                .batch_execute(&format!("CREATE EXTENSION IF NOT EXISTS {ext}"))
                .await
                .expect("create extension");
        }
        Scratch {
            url: format!("postgres://app:app@{}/{name}", primary()),
            name,
        }
    }

    pub async fn app(&self) -> Client {
        connect(&self.url).await
    }

    pub async fn superuser(&self) -> Client {
        connect(&with_db(&superuser_url(), &self.name)).await
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on itself: use a fresh one.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let admin = connect(&superuser_url()).await;
                let _ = admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
            });
        })
        .join();
    }
}

pub fn with_db(url: &str, db: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => url.to_string(),
    }
}

pub fn migrate_args(url: &str) -> MigrateArgs {
    MigrateArgs {
        database_url: url.into(),
        dry_run: false,
        down: None,
        target: None,
        dir: None,
    }
}

pub async fn migrate(args: MigrateArgs) -> Result<(), ControlError> {
    tokio::time::timeout(Duration::from_secs(60), migrate::run(&args))
        .await
        .expect("migrate finishes within 60s")
}

/// (index name, definition, oid) of user indexes, plus non-extension functions and ledger rows:
/// what a migration can add or remove.
pub async fn snapshot(
    c: &Client,
) -> (
    Vec<(String, String, u32)>,
    Vec<String>,
    Vec<(String, String)>,
) {
    let indexes = c
        .query(
            "SELECT indexname::text, indexdef, to_regclass(quote_ident(indexname))::oid \
             FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .expect("indexes")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let functions = c
        .query(
            "SELECT p.oid::regprocedure::text FROM pg_proc p \
             WHERE p.pronamespace = 'public'::regnamespace \
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e') ORDER BY 1",
            &[],
        )
        .await
        .expect("functions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let ledger = c
        .query(
            "SELECT version, applied_at::text FROM schema_migrations ORDER BY 1",
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        .unwrap_or_default();
    (indexes, functions, ledger)
}

/// validate_performance_indexes() rows: (name, exists, valid, ready, required).
pub async fn validation(c: &Client) -> Vec<(String, bool, bool, bool, bool)> {
    c.query("SELECT index_name, index_exists, is_valid, is_ready, required FROM validate_performance_indexes()", &[])
        .await
        .expect("validate_performance_indexes()")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

/// Whether each of `names` is a valid, ready index, straight from pg_index.
pub async fn catalog_valid(c: &Client, name: &str) -> Option<bool> {
    c.query_opt(
        "SELECT indisvalid AND indisready FROM pg_index WHERE indexrelid = to_regclass($1)",
        &[&name],
    )
    .await
    .expect("pg_index")
    .map(|r| r.get(0))
}
