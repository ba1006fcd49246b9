//! Per-query stats through the real proxy: exact counts, routes, errors, percentiles, Prometheus, the console.

mod common;
use common::*;
use serde_json::Value;

fn find<'a>(stats: &'a Value, needle: &str) -> &'a Value {
    stats["queries"]
        .as_array()
        .and_then(|q| {
            q.iter()
                .find(|r| r["query"].as_str().is_some_and(|t| t.contains(needle)))
        })
        .unwrap_or_else(|| panic!("no query containing {needle:?} in {stats}"))
}

#[tokio::test]
async fn a_known_mix_is_counted_exactly() {
    let proxy = TestProxy::start().await;
    let c = proxy.connect().await;
    let t = unique("st");
    c.batch_execute(&format!("create table {t} (id int primary key, v text)"))
        .await
        .unwrap();
    wait_for_replica().await;
    let read = c
        .prepare(&format!("select v from {t} where id = $1"))
        .await
        .unwrap();
    for i in 0..20 {
        c.query(&read, &[&i]).await.unwrap();
    }
    for i in 0..5 {
        c.execute(&format!("insert into {t} values ({i}, 'x{i}')"), &[])
            .await
            .unwrap();
    }
    for _ in 0..3 {
        assert!(c
            .simple_query(&format!("select 1/0 from {t}"))
            .await
            .is_err());
    }
    c.simple_query(&format!("select 4242 as answer from {t} limit 0"))
        .await
        .unwrap();

    let (status, body) = http(proxy.handle.stats_addr, "GET", "/stats", None).await;
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_str(&body).unwrap();
    let r = find(&stats, &format!("select v from {t}"));
    assert_eq!(r["calls"], 20);
    assert_eq!(r["replica_calls"], 20);
    assert_eq!(r["primary_calls"], 0);
    assert_eq!(r["errors"], 0);
    let p: Vec<f64> = ["p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms"]
        .iter()
        .map(|k| r[*k].as_f64().unwrap())
        .collect();
    assert!(
        p[0] > 0.0 && p.windows(2).all(|w| w[0] <= w[1] * 1.01),
        "percentiles out of order: {p:?}"
    );
    assert!(p[5] < 10_000.0, "implausible latency {p:?}");
    let w = find(&stats, &format!("insert into {t}"));
    assert_eq!(
        w["calls"], 5,
        "literals differ, fingerprint is the same: {w}"
    );
    assert_eq!(w["rows"], 5);
    assert_eq!(w["primary_calls"], 5);
    let e = find(&stats, &format!("$1/$2 from {t}"));
    assert_eq!(e["calls"], 3);
    assert_eq!(e["errors"], 3);
    let a = find(&stats, "as answer");
    assert!(
        !a["query"].as_str().unwrap().contains("4242"),
        "normalized text leaks a literal: {a}"
    );
    assert_eq!(a["rows"], 0);
    assert!(stats["pools"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["role"] == "replica" && p["acquisitions"].as_u64().unwrap() >= 20));
    for key in [
        "p90_query_time_ms",
        "p95_query_time_ms",
        "connection_pool_efficiency",
        "connection_acquisition_p95_ms",
        "cache_hit_rate",
        "n_plus_one_bursts",
    ] {
        let s = stats["targets"][key]["status"].as_str().unwrap();
        assert!(["met", "missed", "no data"].contains(&s), "{key}: {s}");
    }
    assert_eq!(stats["targets"]["cache_hit_rate"]["status"], "no data");

    // Ordering and limits.
    let (_, body) = http(
        proxy.handle.stats_addr,
        "GET",
        "/stats/queries?order_by=calls&limit=1",
        None,
    )
    .await;
    let top: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(top.as_array().unwrap().len(), 1);
    assert_eq!(top[0]["calls"], 20);
    let (status, _) = http(
        proxy.handle.stats_addr,
        "GET",
        "/stats/queries?order_by=nonsense",
        None,
    )
    .await;
    assert_eq!(status, 400);

    // Reset clears the table.
    let (status, _) = http(proxy.handle.stats_addr, "POST", "/stats/reset", None).await;
    assert_eq!(status, 200);
    let (_, body) = http(proxy.handle.stats_addr, "GET", "/stats", None).await;
    let stats: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["queries"].as_array().unwrap().len(), 0);
    c.batch_execute(&format!("drop table {t}")).await.unwrap();
    proxy.handle.shutdown().await;
}

#[tokio::test]
async fn metrics_pass_promtool_and_health_answers() {
    let proxy = TestProxy::start().await;
    let c = proxy.connect().await;
    for i in 0..10i32 {
        c.query_one("select $1::int", &[&i]).await.unwrap();
    }
    let (status, body) = http(proxy.handle.stats_addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    assert!(body.contains("pgsplit_fingerprint_calls_total{"), "{body}");
    assert!(body.contains("pgsplit_pool_acquisitions_total{"), "{body}");
    let mut child = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed");
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(body.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        http(proxy.handle.stats_addr, "GET", "/health", None)
            .await
            .0,
        200
    );
    assert_eq!(
        http(proxy.handle.stats_addr, "GET", "/ready", None).await.0,
        200
    );
    proxy.handle.shutdown().await;
}

#[tokio::test]
async fn the_token_guards_everything_but_health() {
    let proxy = TestProxy::start_with_stats("token = \"s3cret\"\n").await;
    let a = proxy.handle.stats_addr;
    assert_eq!(http(a, "GET", "/stats", None).await.0, 401);
    assert_eq!(http(a, "GET", "/metrics", Some("wrong")).await.0, 401);
    assert_eq!(http(a, "GET", "/stats", Some("s3cret")).await.0, 200);
    assert_eq!(http(a, "GET", "/health", None).await.0, 200);
    proxy.handle.shutdown().await;
}

#[tokio::test]
async fn the_sql_console_answers_in_psql() {
    let proxy = TestProxy::start().await;
    let c = proxy.connect().await;
    c.simple_query("select 'console marker' as m")
        .await
        .unwrap();
    let port = proxy.port();
    let shows = [
        "SHOW QUERIES",
        "show pools",
        "SHOW CLIENTS",
        "SHOW TARGETS",
        "SHOW STATS",
        "SHOW SERVERS",
        "SHOW CACHE",
        "SHOW N_PLUS_ONE",
    ];
    let mut args = vec!["-At", "-F", "|"];
    for s in &shows {
        args.extend(["-c", s]);
    }
    let out = psql(port, "app", "app", "pgsplit", &args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("select $1 as m"), "{stdout}");
    assert!(stdout.contains("(replica)|replica|"), "{stdout}");
    assert!(
        stdout.contains("|app|app|"),
        "the connected client is listed: {stdout}"
    );
    assert!(stdout.contains("p90_query_time_ms|<|50|"), "{stdout}");
    // A non-admin user is refused, and an unknown command is an error, not a crash.
    let out = psql(port, "app_md5", "app_md5", "pgsplit", &["-c", "SHOW STATS"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin console"));
    let verbose = ["-v", "VERBOSITY=verbose"];
    let out = psql(
        port,
        "app",
        "app",
        "pgsplit",
        &[&verbose[..], &["-c", "DROP TABLE x"]].concat(),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("42601: unknown admin command"), "{stderr}");
    let out = psql(
        port,
        "app",
        "app",
        "pgsplit",
        &[&verbose[..], &["-c", "SHOW nothing"]].concat(),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("42704: unknown SHOW NOTHING"), "{stderr}");
    proxy.handle.shutdown().await;
}

#[tokio::test]
async fn report_prints_and_exports_the_seed_shape() {
    let proxy = TestProxy::start().await;
    let c = proxy.connect().await;
    for i in 0..5i32 {
        c.query_one("select $1::int + 1", &[&i]).await.unwrap();
    }
    let path = std::env::temp_dir().join(format!("{}.json", unique("report")));
    let args = pgsplit::report::ReportArgs {
        url: format!("http://{}", proxy.handle.stats_addr),
        token: None,
        limit: 10,
        export: Some(path.clone()),
    };
    pgsplit::report::run(&args).await.expect("report");
    let exported: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let targets = &exported["performance_targets"];
    for key in [
        "p90_query_time_ms",
        "p95_query_time_ms",
        "connection_pool_efficiency",
        "cache_hit_rate",
    ] {
        let status = targets[key]["status"]
            .as_str()
            .unwrap_or_else(|| panic!("{key} in {exported}"));
        assert!(
            ["met", "missed", "no data"].contains(&status),
            "{key}: {status}"
        );
    }
    assert_eq!(targets["p90_query_time_ms"]["status"], "met", "{exported}");
    assert!(
        exported["top_queries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["calls"] == 5),
        "{exported}"
    );
    let _ = std::fs::remove_file(&path);
    proxy.handle.shutdown().await;
}
