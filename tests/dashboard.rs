//! The web dashboard and the per-second series: real traffic through an in-process proxy, the series read over HTTP, the page rendered by headless Chromium.

mod common;

use common::{http, unique, TestProxy};
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Runs `statements` reads and a few writes on a fresh table spread over about `secs` seconds,
/// so the once-a-second series sees traffic in more than one interval. Returns the table name.
async fn traffic(proxy: &TestProxy, statements: usize, secs: u64) -> String {
    let table = unique("dash");
    let c = proxy.connect().await;
    c.batch_execute(&format!(
        "create table {table} (id int primary key, note text); \
         insert into {table} select g, 'n' || g from generate_series(1, 100) g"
    ))
    .await
    .unwrap();
    // Reads go to the replica, which must have the table first.
    common::wait_for_replica().await;
    let read = c
        .prepare(&format!("select note from {table} where id = $1"))
        .await
        .unwrap();
    let started = Instant::now();
    let pause = Duration::from_secs(secs) / statements as u32;
    for i in 0..statements {
        c.query(&read, &[&((i % 100) as i32 + 1)]).await.unwrap();
        if i % 50 == 0 {
            c.execute(
                &format!("update {table} set note = note where id = $1"),
                &[&1i32],
            )
            .await
            .unwrap();
        }
        let due = started + pause * (i as u32 + 1);
        tokio::time::sleep_until(due.into()).await;
    }
    table
}

async fn get_json(proxy: &TestProxy, path: &str, token: Option<&str>) -> Value {
    let (status, body) = http(proxy.handle.stats_addr, "GET", path, token).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Waits for the series to have ticked past the traffic.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(2200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_holds_each_second_of_traffic() {
    let proxy = TestProxy::start().await;
    let table = traffic(&proxy, 300, 2).await;
    settle().await;
    let doc = get_json(&proxy, "/stats/timeseries", None).await;
    assert_eq!(doc["interval_s"], 1);
    assert_eq!(doc["capacity"], 600);
    let points = doc["points"].as_array().unwrap();
    assert!(points.len() >= 3, "{doc}");
    let total: u64 = points.iter().map(|p| p["queries"].as_u64().unwrap()).sum();
    // 300 reads, 6 updates, the create and the insert: every statement lands in some second.
    assert!(total >= 306, "{total} statements in the series, {doc}");
    let busy: Vec<&Value> = points.iter().filter(|p| p["queries"] != 0).collect();
    assert!(
        busy.len() >= 2,
        "traffic spread over two seconds at least: {doc}"
    );
    for p in &busy {
        let (p50, p90, p99) = (
            p["p50_ms"].as_f64().unwrap(),
            p["p90_ms"].as_f64().unwrap(),
            p["p99_ms"].as_f64().unwrap(),
        );
        assert!(0.0 < p50 && p50 <= p90 && p90 <= p99, "{p}");
        assert!(p["qps"].as_f64().unwrap() > 0.0, "{p}");
    }
    // Idle seconds carry no percentile rather than a made-up zero.
    for p in points.iter().filter(|p| p["queries"] == 0) {
        assert!(p["p90_ms"].is_null(), "{p}");
    }
    // No cache lookups yet: no hit rate, not 0%.
    if points
        .iter()
        .all(|p| p["cache_hits"] == 0 && p["cache_misses"] == 0)
    {
        assert!(points.iter().all(|p| p["cache_hit_rate"].is_null()));
    }
    // The series and the cumulative table agree on the total.
    let stats = get_json(&proxy, "/stats", None).await;
    let calls: u64 = stats["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(calls, total, "table {table}");
    let last = get_json(&proxy, "/stats/timeseries?last=2", None).await;
    assert_eq!(last["points"].as_array().unwrap().len(), 2);
    proxy.handle.shutdown().await;
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// Chromium, or None with a message when it is absent outside CI; in CI (CI=true) absence fails.
fn chromium_or_skip() -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "chromium is not installed; CI must run the dashboard test (scripts/test.sh installs the Debian package `chromium`)"
        );
        eprintln!("SKIPPED: chromium is not installed (apt-get install chromium); the dashboard was not rendered");
    }
    found
}

/// Loads `url` in headless Chromium and returns the DOM after the page's scripts ran.
async fn dump_dom(chromium: &PathBuf, url: &str) -> String {
    let profile = std::env::temp_dir().join(unique("pgsplit-chromium"));
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1400,2000",
                // Virtual time runs the page's 2 s polling a few times without waiting for it.
                "--virtual-time-budget=7000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finished within 90 s")
    .expect("chromium runs");
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// The opening tag of the element with `id`.
fn tag_with_id<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the DOM:\n{dom}"));
    let start = dom[..at].rfind('<').unwrap();
    let end = at + dom[at..].find('>').unwrap();
    &dom[start..=end]
}

fn attr<'a>(tag: &'a str, name: &str) -> &'a str {
    let key = format!("{name}=\"");
    let at = tag
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {tag}"))
        + key.len();
    &tag[at..at + tag[at..].find('"').unwrap()]
}

fn num_attr(tag: &str, name: &str) -> f64 {
    attr(tag, name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number in {tag}"))
}

/// The inner HTML of the table with `id`.
fn table<'a>(dom: &'a str, id: &str) -> &'a str {
    let open = dom.find(&format!("id=\"{id}\"")).unwrap();
    &dom[open..open + dom[open..].find("</table>").unwrap()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_real_traffic_in_chromium() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let proxy = TestProxy::start_with_stats("token = \"dash-s3cret\"").await;
    let table_name = traffic(&proxy, 300, 2).await;
    settle().await;
    let stats = get_json(&proxy, "/stats", Some("dash-s3cret")).await;
    let base = format!("http://{}/", proxy.handle.stats_addr);

    let dom = dump_dom(&chromium, &format!("{base}?token=dash-s3cret")).await;
    assert!(
        attr(tag_with_id(&dom, "status"), "class").is_empty(),
        "the page reports an error: {}",
        tag_with_id(&dom, "status")
    );

    // The top-queries table has a row with the statement this test ran, with its calls.
    let queries = table(&dom, "queries");
    let needle = format!("select note from {table_name} where id = $1");
    assert!(queries.contains(&needle), "{needle} not in:\n{queries}");
    let row_start = queries[..queries.find(&needle).unwrap()]
        .rfind("<tr")
        .unwrap();
    let row = &queries[row_start..];
    assert_eq!(attr(row, "data-calls"), "300", "{row}");
    assert!(row.contains("replica"), "route split shown: {row}");

    // Charts: points from the series, non-zero QPS and latency.
    let qps = tag_with_id(&dom, "chart-qps");
    assert_eq!(attr(qps, "data-state"), "data", "{qps}");
    assert!(num_attr(qps, "data-points") >= 3.0, "{qps}");
    assert!(num_attr(qps, "data-nonzero") >= 2.0, "{qps}");
    assert!(num_attr(qps, "data-max") > 10.0, "{qps}");
    let latency = tag_with_id(&dom, "chart-latency");
    assert_eq!(attr(latency, "data-state"), "data", "{latency}");
    assert!(num_attr(latency, "data-nonzero") >= 6.0, "{latency}");

    // Pools: the replica pool served the reads, with an efficiency.
    let pools = table(&dom, "pools");
    assert!(
        pools.contains("replica") && pools.contains("primary"),
        "{pools}"
    );
    assert!(pools.contains("data-efficiency=\"0.") || pools.contains("data-efficiency=\"1\""));

    // Targets: the p90 target is judged from the measured traffic.
    let targets = table(&dom, "targets");
    assert!(
        targets.contains("data-target=\"p90_query_time_ms\" data-status=\"met\"")
            || targets.contains("data-target=\"p90_query_time_ms\" data-status=\"missed\""),
        "{targets}"
    );

    // Absent data is said to be absent, never drawn as zero.
    let cache = &stats["cache"];
    if cache["hits"] == 0 && cache["misses"] == 0 {
        assert_eq!(
            attr(tag_with_id(&dom, "chart-cache"), "data-state"),
            "empty"
        );
        assert!(dom.contains("no data yet"));
    }
    let nplusone = table(&dom, "nplusone");
    if stats["n_plus_one"].as_array().is_some_and(|a| a.is_empty()) {
        assert!(nplusone.contains("no data yet"), "{nplusone}");
    } else {
        assert!(nplusone.contains("<td class=\"text fix\">"), "{nplusone}");
    }

    // Without the token the page loads but shows no data and asks for the token.
    let locked = dump_dom(&chromium, &base).await;
    assert_eq!(attr(tag_with_id(&locked, "tokenform"), "class"), "show");
    assert!(!locked.contains(&table_name));
    proxy.handle.shutdown().await;
}

#[tokio::test]
async fn the_page_is_served_without_the_token_and_fetches_nothing_elsewhere() {
    let proxy = TestProxy::start_with_stats("token = \"page-s3cret\"").await;
    let (status, body) = http(proxy.handle.stats_addr, "GET", "/", None).await;
    assert_eq!(status, 200);
    assert!(body.contains("<canvas id=\"chart-qps\""));
    let (status, _) = http(proxy.handle.stats_addr, "GET", "/stats/timeseries", None).await;
    assert_eq!(status, 401, "the data stays behind the token");
    proxy.handle.shutdown().await;
}

/// The `<tr ...>` opening tags of a table's body rows.
fn body_rows(table: &str) -> Vec<&str> {
    let body = &table[table.find("<tbody").unwrap()..];
    body.split("<tr")
        .skip(1)
        .map(|r| &r[..r.find('>').unwrap()])
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_same_n_plus_one_findings_as_stats_and_the_report() {
    let Some(chromium) = chromium_or_skip() else {
        return;
    };
    let proxy = TestProxy::start_with("[cache]\nenabled = true\n").await;
    let (parents, children) = (unique("dash_n1_p"), unique("dash_n1_c"));
    common::superuser()
        .await
        .batch_execute(&format!(
            "create table {parents} (id int primary key, code text);
             insert into {parents} select g, 'k' || g from generate_series(1, 12) g;
             create table {children} (id serial primary key, parent_code text, note text);
             insert into {children} (parent_code, note) select 'k' || (g % 12 + 1), 'n' || g
               from generate_series(1, 36) g;
             grant select on {parents}, {children} to app;"
        ))
        .await
        .unwrap();
    common::wait_for_replica().await;
    let c = proxy.connect().await;
    // A loop over a column of the parent's rows, then a cacheable summary run again and again.
    let rows = c
        .query(&format!("select id, code from {parents} order by id"), &[])
        .await
        .unwrap();
    let child = format!("select note from {children} where parent_code = $1");
    for r in &rows {
        let code: String = r.get(1);
        c.query(&child, &[&code]).await.unwrap();
    }
    for _ in 0..30 {
        c.simple_query(&format!("select count(*) from {parents}"))
            .await
            .unwrap();
    }
    let stats = get_json(&proxy, "/stats", None).await;
    let findings = stats["n_plus_one"].as_array().unwrap();
    let kinds: Vec<&str> = findings
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 2, "{findings:#?}");
    assert!(kinds.contains(&"n_plus_one") && kinds.contains(&"repeated_identical"));
    let mut report = Vec::new();
    pgsplit::report::run_to(
        &pgsplit::report::ReportArgs {
            url: format!("http://{}", proxy.handle.stats_addr),
            token: None,
            limit: 15,
            export: None,
        },
        &mut report,
    )
    .await
    .unwrap();
    let report = String::from_utf8(report).unwrap();
    let dom = dump_dom(&chromium, &format!("http://{}/", proxy.handle.stats_addr)).await;
    let table = table(&dom, "nplusone");
    let rows = body_rows(table);
    // One row per finding, in /stats order, the order of the report's list.
    assert_eq!(rows.len(), findings.len(), "{table}");
    let mut at = 0;
    for (row, f) in rows.iter().zip(findings) {
        assert_eq!(attr(row, "data-kind"), f["kind"], "{row}");
        assert_eq!(attr(row, "data-fingerprint"), f["fingerprint"], "{row}");
        let q = f["query"].as_str().unwrap();
        let seen = report[at..]
            .find(&format!("query: {q}"))
            .unwrap_or_else(|| panic!("{q} not in the report after {at}:\n{report}"));
        at += seen + 1;
    }
    let n1 = findings.iter().find(|f| f["kind"] == "n_plus_one").unwrap();
    let flow = format!("{children}.parent_code takes {parents}.code");
    assert_eq!(n1["flow"], flow.as_str(), "{n1}");
    assert!(
        table.contains(&format!("<td class=\"text flow\">{flow}</td>")),
        "{table}"
    );
    assert!(report.contains(&format!("flow:  {flow}\n")), "{report}");
    let fix = n1["suggestion"].as_str().unwrap();
    assert!(fix.contains("parent_code = ANY($1)"), "{fix}");
    assert!(
        table.contains(&format!("<td class=\"text fix\">{fix}</td>")),
        "{table}"
    );
    let rep = findings
        .iter()
        .find(|f| f["kind"] == "repeated_identical")
        .unwrap();
    let share = rep["cached_share"].as_f64().unwrap();
    assert!(share > 0.9, "{rep}");
    assert!(
        table.contains(&format!("cache answers {:.1}%", share * 100.0)),
        "{table}"
    );
    assert!(
        report.contains(&format!("cache: {:.0}% answered", share * 100.0)),
        "{report}"
    );
    assert!(
        !rep["suggestion"].as_str().unwrap().contains("turn on"),
        "{rep}"
    );
    drop(c);
    proxy.handle.shutdown().await;
    common::superuser()
        .await
        .batch_execute(&format!("drop table {parents}, {children}"))
        .await
        .unwrap();
}
