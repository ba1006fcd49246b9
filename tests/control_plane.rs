//! migrate / seed-data / analyze against the real local cluster, each test in its own scratch database.
//!
//! Needs the cluster from scripts/cluster.sh (PGSPLIT_TEST_PRIMARY, default 127.0.0.1:15432, user
//! app/app; PGSPLIT_TEST_SUPERUSER_URL for CREATE DATABASE / CREATE EXTENSION) with PostGIS and
//! pg_stat_statements installed on the server.

use std::time::Duration;

use pgsplit::control::analyze::{self, AnalyzeArgs};
use pgsplit::control::critical;
use pgsplit::control::migrate::{self, MigrateArgs};
use pgsplit::control::seed::{self, SeedArgs};
use pgsplit::control::ControlError;
use serde_json::Value;
use tokio_postgres::{Client, NoTls};

const SIXTEEN: [&str; 16] = [
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

fn primary() -> String {
    std::env::var("PGSPLIT_TEST_PRIMARY").unwrap_or_else(|_| "127.0.0.1:15432".into())
}

fn superuser_url() -> String {
    std::env::var("PGSPLIT_TEST_SUPERUSER_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:15432/postgres".into())
}

async fn connect(url: &str) -> Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to the test cluster");
    tokio::spawn(conn);
    client
}

/// A scratch database owned by app, dropped (WITH FORCE) when the test ends, even on panic.
struct Scratch {
    name: String,
    url: String,
}

impl Scratch {
    async fn new(extensions: &[&str]) -> Scratch {
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

    async fn app(&self) -> Client {
        connect(&self.url).await
    }

    async fn superuser(&self) -> Client {
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

fn with_db(url: &str, db: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{db}"),
        None => url.to_string(),
    }
}

fn migrate_args(url: &str) -> MigrateArgs {
    MigrateArgs {
        database_url: url.into(),
        dry_run: false,
        down: None,
        target: None,
        dir: None,
    }
}

async fn migrate(args: MigrateArgs) -> Result<(), ControlError> {
    tokio::time::timeout(Duration::from_secs(60), migrate::run(&args))
        .await
        .expect("migrate finishes within 60s")
}

/// (index name, definition, oid) of user indexes, plus non-extension functions and ledger rows:
/// what a migration can add or remove.
async fn snapshot(
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
async fn validation(c: &Client) -> Vec<(String, bool, bool, bool, bool)> {
    c.query("SELECT index_name, index_exists, is_valid, is_ready, required FROM validate_performance_indexes()", &[])
        .await
        .expect("validate_performance_indexes()")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

/// Whether each of `names` is a valid, ready index, straight from pg_index.
async fn catalog_valid(c: &Client, name: &str) -> Option<bool> {
    c.query_opt(
        "SELECT indisvalid AND indisready FROM pg_index WHERE indexrelid = to_regclass($1)",
        &[&name],
    )
    .await
    .expect("pg_index")
    .map(|r| r.get(0))
}

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

#[tokio::test]
async fn critical_queries_use_their_indexes_on_seeded_data_and_seeding_is_deterministic() {
    let db = Scratch::new(&["postgis"]).await;
    migrate(migrate_args(&db.url)).await.expect("migrate");
    let seed_args = SeedArgs {
        database_url: db.url.clone(),
        scale: 1.0,
        seed: 7,
        anchor_date: "2026-01-10".into(),
        truncate: false,
    };
    let started = std::time::Instant::now();
    seed::run(&seed_args).await.expect("seed");
    println!("seed scale 1 took {:?}", started.elapsed());
    let c = db.app().await;
    let count = |t: &'static str| {
        let c = &c;
        async move {
            c.query_one(&format!("SELECT count(*) FROM {t}"), &[])
                .await
                .expect("count")
                .get::<_, i64>(0)
        }
    };
    assert_eq!(count("leads").await, 10_000);
    assert_eq!(count("properties").await, 5_000);
    assert_eq!(count("conversations").await, 20_000);
    assert_eq!(count("property_interactions").await, 50_000);
    assert!(
        seed::run(&seed_args).await.is_err(),
        "refuses to load twice without --truncate"
    );

    // Scale 1 is large enough for the planner on its own: enable_seqscan stays on.
    for q in critical::ALL {
        let plan: String = c
            .simple_query(&format!("EXPLAIN (FORMAT JSON) {}", q.sql))
            .await
            .expect("explain")
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .expect("a plan");
        let plan: Value = serde_json::from_str(&plan).expect("json plan");
        let used = critical::plan_indexes(&plan);
        assert!(
            used.iter().any(|u| u == q.index),
            "{}: wanted {}, plan uses {used:?}\n{plan:#}",
            q.name,
            q.index
        );
    }

    let digest = |t: &'static str| {
        let c = &c;
        async move {
            c.query_one(
                &format!("SELECT md5(string_agg(x::text, ',' ORDER BY id)) FROM {t} x"),
                &[],
            )
            .await
            .expect("digest")
            .get::<_, String>(0)
        }
    };
    let first = (
        digest("leads").await,
        digest("properties").await,
        digest("conversations").await,
    );
    seed::run(&SeedArgs {
        truncate: true,
        ..seed_args
    })
    .await
    .expect("reseed");
    let again = (
        digest("leads").await,
        digest("properties").await,
        digest("conversations").await,
    );
    assert_eq!(first, again, "the same seed reloads the same rows");
}

fn analyze_args(url: &str, stats_url: &str, export: &std::path::Path) -> AnalyzeArgs {
    AnalyzeArgs {
        database_url: url.into(),
        stats_url: stats_url.into(),
        threshold_ms: 50.0,
        export: Some(export.to_path_buf()),
        min_table_rows: 10_000,
        explain_top: 25,
    }
}

async fn analyze_report(args: &AnalyzeArgs) -> Value {
    analyze::run(args).await.expect("analyze");
    let path = args.export.as_ref().expect("export path");
    let text = std::fs::read_to_string(path).expect("report written");
    serde_json::from_str(&text).expect("report is JSON")
}

fn recommendations(report: &Value, kind: &str) -> Vec<Value> {
    report["recommendations"]
        .as_array()
        .expect("recommendations")
        .iter()
        .filter(|r| r["kind"] == kind)
        .cloned()
        .collect()
}

/// Serves one canned /stats document on 127.0.0.1 (pgsplit's endpoint is built in parallel).
async fn fake_stats_endpoint(body: Value) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let body = body.to_string();
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let response =
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            let _ = s.write_all(response.as_bytes()).await;
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn analyze_recommends_the_missing_index_for_a_planted_seq_scan_and_nothing_on_a_clean_workload(
) {
    let db = Scratch::new(&["postgis", "pg_stat_statements"]).await;
    migrate(migrate_args(&db.url)).await.expect("migrate");
    let seed_args = SeedArgs {
        database_url: db.url.clone(),
        scale: 1.0,
        seed: 11,
        anchor_date: "2026-01-10".into(),
        truncate: false,
    };
    seed::run(&seed_args).await.expect("seed");
    let c = db.app().await;
    let dir = std::env::temp_dir().join(&db.name);
    std::fs::create_dir_all(&dir).expect("temp dir");

    // Clean workload: the seed's critical paths, as an application would send them.
    for _ in 0..20 {
        for q in critical::ALL {
            c.simple_query(q.sql).await.expect("critical query");
        }
        c.query(
            "SELECT id, name FROM leads WHERE status = $1 ORDER BY updated_at DESC LIMIT 20",
            &[&"new"],
        )
        .await
        .expect("follow-up queue");
    }
    let unreachable = "http://127.0.0.1:9"; // discard port: nothing listens
    let clean = analyze_report(&analyze_args(&db.url, unreachable, &dir.join("clean.json"))).await;
    assert!(
        recommendations(&clean, "create_index").is_empty(),
        "clean workload: {:#}",
        clean["recommendations"]
    );
    let skipped = clean["skipped"].to_string();
    assert!(
        skipped.contains("pgsplit statistics"),
        "the pgsplit part is skipped with a reason: {skipped}"
    );
    assert_eq!(
        clean["performance_targets"]["index_usage_critical_paths"]["status"],
        "met"
    );
    assert_eq!(
        clean["performance_targets"]["p90_query_time_ms"]["status"],
        "no data"
    );

    // Planted: lookups by email, which no index covers, on a 10k-row table.
    let emails: Vec<String> = c
        .query("SELECT email FROM leads ORDER BY id LIMIT 60", &[])
        .await
        .expect("emails")
        .iter()
        .filter_map(|r| r.get::<_, Option<String>>(0))
        .collect();
    for e in &emails {
        c.query("SELECT id, name FROM leads WHERE email = $1", &[e])
            .await
            .expect("planted query");
    }
    let planted = analyze_report(&analyze_args(
        &db.url,
        unreachable,
        &dir.join("planted.json"),
    ))
    .await;
    let create = recommendations(&planted, "create_index");
    assert_eq!(
        create.len(),
        1,
        "exactly one index: {:#}",
        planted["recommendations"]
    );
    assert_eq!(
        create[0]["sql"],
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_leads_email ON public.leads (email);"
    );

    // With pgsplit's statistics: N+1 → batch_query, targets filled in, sampled parameters used.
    let stats = serde_json::json!({
        "queries": [{"fingerprint": "x", "query": "SELECT id, name FROM leads WHERE email = $1", "calls": 500,
                     "errors": 0, "rows": 500, "total_ms": 800.0, "mean_ms": 1.6, "p50_ms": 1.2, "p90_ms": 3.0,
                     "p95_ms": 4.0, "p99_ms": 9.0, "sample_parameters": [[emails[0]]]}],
        "pools": [{"efficiency": 0.95, "acquire_p95_ms": 0.4}, {"efficiency": 0.92}],
        "cache": {"hit_rate": 0.5},
        "n_plus_one": [{"query": "SELECT * FROM conversations WHERE contact_id = $1", "parent_query": "SELECT * FROM leads",
                        "kind": "select", "last_count": 50,
                        "suggestion": "SELECT * FROM conversations WHERE contact_id = ANY($1)"}],
        "targets": {}
    });
    let url = fake_stats_endpoint(stats).await;
    let with_stats = analyze_report(&AnalyzeArgs {
        threshold_ms: 0.0,
        ..analyze_args(&db.url, &url, &dir.join("stats.json"))
    })
    .await;
    let t = &with_stats["performance_targets"];
    assert_eq!(t["p90_query_time_ms"]["status"], "met");
    assert_eq!(t["connection_pool_efficiency"]["status"], "met");
    assert_eq!(t["cache_hit_rate"]["status"], "missed");
    assert_eq!(t["n_plus_one_queries"]["status"], "missed");
    let batch = recommendations(&with_stats, "batch_query");
    assert_eq!(batch.len(), 1);
    assert_eq!(
        batch[0]["sql"],
        "SELECT * FROM conversations WHERE contact_id = ANY($1)"
    );
    assert_eq!(recommendations(&with_stats, "cache_query").len(), 1);
    let planted_entry = with_stats["slow_queries"]
        .as_array()
        .expect("slow queries")
        .iter()
        .find(|q| {
            q["source"] == "postgres"
                && q["query"]
                    .as_str()
                    .is_some_and(|s| s.contains("WHERE email = $1"))
        })
        .cloned()
        .expect("the planted statement is listed");
    assert_eq!(
        planted_entry["plan_source"],
        "parameters sampled by pgsplit"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Timings for the report, not a check: `cargo test --test control_plane -- --ignored --nocapture`
/// (PGSPLIT_TEST_SCALE, default 10). Seeds into the bare schema, then builds the 16 indexes.
#[tokio::test]
#[ignore]
async fn timings_seed_then_migrate_at_scale() {
    let scale: f64 = std::env::var("PGSPLIT_TEST_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let db = Scratch::new(&["postgis", "pg_stat_statements"]).await;
    migrate(MigrateArgs {
        target: Some("000".into()),
        ..migrate_args(&db.url)
    })
    .await
    .expect("000");
    let t = std::time::Instant::now();
    let args = SeedArgs {
        database_url: db.url.clone(),
        scale,
        seed: 1,
        anchor_date: "2026-01-10".into(),
        truncate: false,
    };
    seed::run(&args).await.expect("seed");
    let seeded = t.elapsed();
    let t = std::time::Instant::now();
    let full = migrate_args(&db.url);
    let run = migrate::run(&full);
    tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("in time")
        .expect("migrate 001");
    println!(
        "scale {scale}: seed-data {seeded:?}, migrate 001 on the seeded tables {:?}",
        t.elapsed()
    );
    let t = std::time::Instant::now();
    seed::run(&SeedArgs {
        truncate: true,
        ..args
    })
    .await
    .expect("reseed with indexes");
    println!(
        "scale {scale}: seed-data --truncate with the 16 indexes present {:?}",
        t.elapsed()
    );
}
