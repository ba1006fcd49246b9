//! Tests for `pgsplit report`'s output: parsing canned documents, the printed tables and the export.

use super::export::{build, rfc3339};
use super::model::StatsDoc;
use super::render::{duration, render};
use super::table::WIDTH;
use serde_json::{json, Value};
use std::time::{Duration, UNIX_EPOCH};

const LONG_QUERY: &str = "SELECT l.id, l.address, l.city, l.state, l.zip, l.price, l.bedrooms, l.bathrooms, l.square_feet, l.listing_status, l.created_at FROM properties l WHERE l.agent_id = $1 AND l.listing_status = $2 ORDER BY l.created_at DESC LIMIT $3";

/// Shaped like `admin::snapshot::StatsSnapshot` serialized, with the nulls a young proxy sends.
pub(super) fn realistic() -> Value {
    json!({
        "uptime_s": 11_045,
        "queries": [
            {
                "fingerprint": "0a1b2c3d4e5f6071", "database": "app",
                "query": "SELECT id, name\n  FROM leads WHERE id = $1",
                "calls": 12034, "errors": 0, "rows": 12034, "total_ms": 8123.4, "mean_ms": 0.675,
                "min_ms": 0.21, "max_ms": 48.2, "p50_ms": 0.52, "p90_ms": 1.1, "p95_ms": 1.9,
                "p99_ms": 3.4, "p999_ms": 40.1, "primary_calls": 2407, "replica_calls": 9627,
                "cache_hits": 0, "primary_ms": 1700.0, "replica_ms": 6423.4, "cache_ms": 0.0,
                "pool_wait_ms": 12.0, "first_seen": 1768040000.5, "last_seen": 1768046400.0,
                "future_field": "kept in the export"
            },
            {
                "fingerprint": "1111111111111111", "database": "app", "query": LONG_QUERY,
                "calls": 310, "errors": 2, "rows": 6200, "total_ms": 15210.0, "mean_ms": 49.06,
                "min_ms": 3.0, "max_ms": 910.0, "p50_ms": 31.0, "p90_ms": 88.0, "p95_ms": 120.0,
                "p99_ms": 640.0, "p999_ms": 910.0, "primary_calls": 310, "replica_calls": 0,
                "cache_hits": 0, "primary_ms": 15210.0, "replica_ms": 0.0, "cache_ms": 0.0,
                "pool_wait_ms": 0.4, "first_seen": 1768040000.0, "last_seen": 1768046399.0
            },
            {
                "fingerprint": "2222222222222222", "database": "app",
                "query": "UPDATE leads SET score = $1 WHERE id = $2",
                "calls": 5, "errors": 5, "rows": 0, "total_ms": 2.5, "mean_ms": 0.5,
                "min_ms": 0.4, "max_ms": 0.7, "p50_ms": 0.5, "p90_ms": 0.7, "p95_ms": 0.7,
                "p99_ms": 0.7, "p999_ms": 0.7, "primary_calls": 5, "replica_calls": 0,
                "cache_hits": 0, "primary_ms": 2.5, "replica_ms": 0.0, "cache_ms": 0.0,
                "pool_wait_ms": 0.0, "first_seen": 1768046000.0, "last_seen": 1768046100.0
            }
        ],
        "queries_folded": 3,
        "pools": [
            {
                "name": "app@10.0.0.1:5432/app (primary)", "database": "app", "user": "app",
                "server": "10.0.0.1:5432", "role": "primary", "max_size": 50, "size": 12,
                "idle": 9, "busy": 3, "waiting": 0, "acquisitions": 2722, "acquire_p50_ms": 0.02,
                "acquire_p95_ms": 0.41, "acquire_p99_ms": 2.2, "acquire_max_ms": 9.1,
                "efficiency": 0.952, "timeouts": 0, "connections_opened": 12,
                "connections_closed": 0, "connections_broken": 0, "connect_errors": 0
            },
            {
                "name": "app@10.0.0.2:5432/app (replica)", "database": "app", "user": "app",
                "server": "10.0.0.2:5432", "role": "replica", "max_size": 100, "size": 0,
                "idle": 0, "busy": 0, "waiting": 0, "acquisitions": 0, "acquire_p50_ms": 0.0,
                "acquire_p95_ms": 0.0, "acquire_p99_ms": 0.0, "acquire_max_ms": 0.0,
                "efficiency": null, "timeouts": 0, "connections_opened": 0,
                "connections_closed": 0, "connections_broken": 0, "connect_errors": 1
            }
        ],
        "servers": [
            { "server": "10.0.0.1:5432", "role": "primary", "reachable": true, "outstanding": 3 },
            { "server": "10.0.0.2:5432", "role": "replica", "reachable": false, "outstanding": 0,
              "reads": { "served": 90, "served_after_wait": 12, "wait_p99_ms": 2.5,
                         "to_primary": { "banned": 0, "wait_timed_out": 4, "position_unknown": 6 } } }
        ],
        "cache": { "enabled": false, "hits": 0, "misses": 0, "hit_rate": null, "entries": 0,
                   "bytes": 0, "evictions": 0 },
        "n_plus_one": [],
        "targets": {
            "p90_query_time_ms": { "comparison": "<", "target": 50.0, "actual": 12.3, "status": "met" },
            "p95_query_time_ms": { "comparison": "<", "target": 100.0, "actual": 120.0, "status": "missed" },
            "connection_pool_efficiency": { "comparison": ">", "target": 0.9, "actual": 0.952, "status": "met" },
            "connection_acquisition_p95_ms": { "comparison": "<", "target": 5.0, "actual": 0.41, "status": "met" },
            "cache_hit_rate": { "comparison": ">", "target": 0.7, "actual": null, "status": "no data" },
            "n_plus_one_bursts": { "comparison": "<=", "target": 0.0, "actual": null, "status": "no data" }
        },
        "clients": 42
    })
}

fn parse(v: &Value) -> StatsDoc {
    serde_json::from_value(v.clone()).expect("document parses")
}

fn top(doc: &StatsDoc, limit: usize) -> Vec<usize> {
    super::top_queries(doc, limit)
}

const AT: &str = "2026-01-10T12:00:00Z";
pub(super) const SRC: &str = "http://127.0.0.1:9930";

fn assert_fits(text: &str) {
    for line in text.lines() {
        assert!(
            line.chars().count() <= WIDTH,
            "line wider than {WIDTH}: {line:?}"
        );
    }
}

#[test]
fn renders_every_section_of_a_realistic_document() {
    let doc = parse(&realistic());
    let text = render(&doc, SRC, AT, &top(&doc, 15));
    assert_fits(&text);
    assert!(text.starts_with("pgsplit report — http://127.0.0.1:9930 — 2026-01-10T12:00:00Z\n"));
    assert!(text.contains(
        "uptime 3h 4m 5s · 42 clients · 3 query fingerprints (3 more folded into <other>)"
    ));
    assert!(text.contains("Top queries by total time (all 3)"));
    // Heaviest total first: the long query (15 s) before the hot point lookup (8 s).
    let long = text.find("[app] SELECT l.id").expect("long query shown");
    let point = text
        .find("[app] SELECT id, name FROM leads")
        .expect("newlines collapsed");
    assert!(long < point);
    assert!(text.contains('…'), "the long query is cut");
    assert!(text.contains("replica 80% / primary 20% / cache 0%"));
    assert!(text.contains("replica 0% / primary 100% / cache 0%"));
    let row = text
        .lines()
        .find(|l| l.contains("12034"))
        .expect("point lookup row");
    for cell in ["12034", "0", "8123", "0.68", "0.52", "1.10", "3.40"] {
        assert!(row.contains(cell), "{cell} missing from {row:?}");
    }
    assert!(text.contains("app@10.0.0.1:5432/app (primary)"));
    // Why reads went to the primary, per replica, zero reasons left out.
    let srv = text
        .lines()
        .find(|l| l.contains("10.0.0.2:5432") && l.contains("DOWN"))
        .expect("replica server row");
    for cell in ["90", "12", "2.5 ms", "position_unknown 6, wait_timed_out 4"] {
        assert!(srv.contains(cell), "{cell} missing from {srv:?}");
    }
    assert!(!srv.contains("banned"), "{srv:?}");
    let pool = text.lines().find(|l| l.contains("(primary)")).unwrap_or("");
    assert!(pool.contains("12/50") && pool.contains("95.2%") && pool.contains("0.41"));
    let replica = text.lines().find(|l| l.contains("(replica)")).unwrap_or("");
    assert!(replica.contains("0/100") && replica.contains('–'));
    assert!(text.contains("10.0.0.2:5432  replica  DOWN"));
    assert!(text.contains("disabled (hit rate: no data)"));
    assert!(text.contains("N+1 bursts\n  none detected"));
    let target = |label: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("  {label} ")))
            .unwrap_or_else(|| panic!("no {label} row"))
            .to_string()
    };
    let p90 = target("p90 query time");
    assert!(p90.contains("< 50 ms") && p90.contains("12.3 ms") && p90.ends_with("✓ met"));
    assert!(target("p95 query time").ends_with("✗ missed"));
    let eff = target("pool efficiency");
    assert!(eff.contains("> 90 %") && eff.contains("95.2 %"));
    let cache = target("cache hit rate");
    assert!(cache.contains("> 70 %") && cache.ends_with("– no data"));
    assert!(target("N+1 bursts").contains("<= 0"));
}

#[test]
fn columns_line_up() {
    let doc = parse(&realistic());
    let text = render(&doc, SRC, AT, &top(&doc, 15));
    let header = text
        .lines()
        .find(|l| l.contains("calls") && l.contains("total ms"))
        .expect("header");
    let end = header.find("total ms").expect("column") + "total ms".len();
    for row in text.lines().filter(|l| l.contains("/ primary")) {
        // Right-aligned numbers end where their header ends.
        let before: String = row.chars().take(end).collect();
        assert!(before.ends_with(|c: char| c.is_ascii_digit()), "{row:?}");
    }
}

#[test]
fn limit_keeps_the_heaviest() {
    let doc = parse(&realistic());
    let order = top(&doc, 2);
    assert_eq!(order, vec![1, 0]);
    let text = render(&doc, SRC, AT, &order);
    assert!(text.contains("Top queries by total time (top 2 of 3)"));
    assert!(!text.contains("UPDATE leads"));
}

#[test]
fn an_empty_document_renders() {
    let doc = parse(&json!({}));
    let text = render(&doc, SRC, AT, &top(&doc, 15));
    assert_fits(&text);
    assert!(text.contains("uptime 0s · 0 clients · 0 query fingerprints\n"));
    assert!(text.contains("no queries recorded yet"));
    assert!(text.contains("Pools\n  no pools"));
    assert!(text.contains("Servers\n  no servers"));
    assert!(text.contains("none detected"));
    // Every seed target is still listed, against the seed's thresholds.
    assert_eq!(text.matches("– no data").count(), 6);
    assert!(text.contains("< 50 ms"));
}

#[test]
fn missing_and_null_fields_do_not_fail() {
    let doc = parse(&json!({
        "uptime_s": null,
        "queries": [ { "fingerprint": "abc", "calls": 3 }, { "query": "SELECT 1", "p99_ms": null } ],
        "pools": [ { "name": "only a name" } ],
        "servers": [ {} ],
        "cache": null,
        "n_plus_one": [ { "query": "SELECT * FROM notes WHERE lead_id = $1", "occurrences": 4 } ],
        "targets": {
            "p90_query_time_ms": { "status": "met" },
            "new_target_ratio_rate": { "comparison": ">", "target": 0.5, "actual": 0.25, "status": "missed" }
        },
        "some_new_section": { "x": 1 }
    }));
    assert_eq!(doc.queries.len(), 2);
    assert_eq!(doc.queries[0].calls, 3);
    assert_eq!(doc.queries[1].p99_ms, 0.0);
    assert_eq!(doc.pools[0].efficiency, None);
    let text = render(&doc, SRC, AT, &top(&doc, 15));
    assert!(text.contains("only a name"));
    assert!(text.contains("SELECT * FROM notes WHERE lead_id = $1"));
    let new = text
        .lines()
        .find(|l| l.contains("new_target_ratio_rate"))
        .expect("unknown target shown");
    assert!(new.contains("> 50 %") && new.contains("25.0 %") && new.ends_with("✗ missed"));
}

#[test]
fn a_wrong_type_is_an_error_not_a_panic() {
    let r: Result<StatsDoc, _> = serde_json::from_value(json!({ "queries": "many" }));
    assert!(r.is_err());
}

#[test]
fn n_plus_one_bursts_render_with_their_fix() {
    let mut v = realistic();
    v["n_plus_one"] = json!([{
        "query": "SELECT * FROM notes WHERE lead_id = $1",
        "parent_query": "SELECT id FROM leads WHERE agent_id = $1",
        "kind": "loop", "occurrences": 17, "last_count": 50, "max_count": 200,
        "total_ms": 812.5, "suggestion": "fetch notes with WHERE lead_id = ANY($1)",
        "application_name": "billing", "database": "app"
    }, {
        "query": "SELECT id, channel FROM conversations WHERE contact_id = $1",
        "parent_query": "SELECT id, contact_id FROM leads",
        "kind": "n_plus_one", "occurrences": 2, "last_count": 10, "max_count": 10,
        "flow": "conversations.contact_id takes leads.contact_id",
        "suggestion": "conversations.contact_id takes leads.contact_id: fetch the rows for all parents in one query: SELECT id, channel, score, last_message_at FROM conversations WHERE contact_id = ANY($1) ORDER BY last_message_at DESC NULLS LAST LIMIT 5 with $1 bound to an array of the leads.contact_id values of the parent's rows, or join it into the parent query: ... JOIN conversations ON conversations.contact_id = leads.contact_id"
    }, {
        "query": "SELECT status, count(*) FROM leads GROUP BY status",
        "kind": "repeated_identical", "occurrences": 1, "last_count": 900, "max_count": 900,
        "cached_share": 0.981, "suggestion": "the same statement ran with the same parameters each time"
    }]);
    let doc = parse(&v);
    let text = render(&doc, SRC, AT, &top(&doc, 15));
    assert_fits(&text);
    assert!(
        text.contains("flow:  conversations.contact_id takes leads.contact_id\n"),
        "{text}"
    );
    // A long fix is wrapped, not cut: all of it is there.
    let mut lines = text
        .lines()
        .skip_while(|l| !l.contains("fix:   conversations.contact_id"));
    let first = lines.next().expect("the fix line");
    let fix: String = std::iter::once(first.trim().trim_start_matches("fix:").trim())
        .chain(
            lines
                .take_while(|l| l.starts_with(&" ".repeat(13)))
                .map(str::trim),
        )
        .collect::<Vec<_>>()
        .join(" ");
    assert!(fix.contains("contact_id = ANY($1) ORDER BY"), "{fix}");
    assert!(
        fix.ends_with("JOIN conversations ON conversations.contact_id = leads.contact_id"),
        "{fix}"
    );
    assert!(
        text.contains("cache: 98% answered by pgsplit's result cache"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.contains("loop"))
        .expect("burst row");
    assert!(row.contains("17") && row.contains("200") && row.contains("812.5"));
    assert!(text.contains("query: SELECT * FROM notes WHERE lead_id = $1"));
    assert!(text.contains("after: SELECT id FROM leads WHERE agent_id = $1"));
    assert!(text.contains("fix:   fetch notes with WHERE lead_id = ANY($1)"));
    assert!(text.contains("from:  billing on app"));
    assert!(!text.contains("none detected"));
}

#[test]
fn export_has_every_target_as_the_seed_writes_it() {
    let raw = realistic();
    let doc = parse(&raw);
    let order = top(&doc, 2);
    let e = serde_json::to_value(build(&doc, &raw, SRC, AT, &order)).expect("serializes");
    let t = &e["performance_targets"];
    let expect = [
        ("p90_query_time_ms", "<50ms", "12.3ms", "met"),
        ("p95_query_time_ms", "<100ms", "120.0ms", "missed"),
        ("connection_pool_efficiency", ">90%", "95.2%", "met"),
        ("connection_acquisition_p95_ms", "<5ms", "0.41ms", "met"),
        ("cache_hit_rate", ">70%", "no data", "no data"),
        ("n_plus_one_queries", "<=0", "no data", "no data"),
    ];
    assert_eq!(t.as_object().map(|o| o.len()), Some(expect.len()));
    for (key, target, actual, status) in expect {
        assert_eq!(
            t[key],
            json!({ "target": target, "actual": actual, "status": status }),
            "{key}"
        );
    }
    assert_eq!(e["generated_at"], AT);
    assert_eq!(e["source"], SRC);
    let queries = e["top_queries"].as_array().expect("array");
    assert_eq!(queries.len(), 2);
    assert_eq!(queries[0]["fingerprint"], "1111111111111111");
    // Raw objects: fields this client does not model survive.
    assert_eq!(queries[1]["future_field"], "kept in the export");
    assert_eq!(queries[1]["p999_ms"], 40.1);
    assert_eq!(e["pools"], raw["pools"]);
    assert_eq!(e["n_plus_one"], json!([]));
}

#[test]
fn export_of_an_empty_document_says_no_data() {
    let raw = json!({});
    let doc = parse(&raw);
    let e = serde_json::to_value(build(&doc, &raw, SRC, AT, &[])).expect("serializes");
    let t = e["performance_targets"].as_object().expect("object");
    assert_eq!(t.len(), 6);
    for v in t.values() {
        assert_eq!(v["actual"], "no data");
        assert_eq!(v["status"], "no data");
    }
    assert_eq!(
        e["performance_targets"]["p90_query_time_ms"]["target"],
        "<50ms"
    );
    assert_eq!(e["top_queries"], json!([]));
    assert_eq!(e["pools"], json!([]));
}

#[test]
fn export_keys_keep_the_seed_order() {
    let raw = realistic();
    let doc = parse(&raw);
    let text = serde_json::to_string(&build(&doc, &raw, SRC, AT, &[])).expect("serializes");
    let pos = |k: &str| text.find(k).unwrap_or(usize::MAX);
    assert!(pos("generated_at") < pos("performance_targets"));
    assert!(pos("p90_query_time_ms") < pos("n_plus_one_queries"));
    assert!(pos("performance_targets") < pos("top_queries"));
}

#[test]
fn rfc3339_by_hand() {
    let at = |s: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(s));
    assert_eq!(at(0), "1970-01-01T00:00:00Z");
    assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(at(1_768_046_400), "2026-01-10T12:00:00Z");
    assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
}

#[test]
fn durations() {
    assert_eq!(duration(0), "0s");
    assert_eq!(duration(65), "1m 5s");
    assert_eq!(duration(11_045), "3h 4m 5s");
    assert_eq!(duration(3 * 86_400 + 7200 + 60), "3d 2h 1m");
}

#[test]
fn thresholds_are_written_plainly() {
    use super::model::Target;
    use super::targets::{threshold, Unit};
    let t = |comparison: &str, target: f64| Target {
        comparison: comparison.to_string(),
        target,
        actual: None,
        status: "no data".to_string(),
    };
    assert_eq!(threshold(Unit::Ratio, &t(">", 0.57), false), ">57%");
    assert_eq!(threshold(Unit::Ratio, &t(">", 0.925), true), "> 92.5 %");
    assert_eq!(threshold(Unit::Ms, &t("<", 2.5), true), "< 2.5 ms");
    assert_eq!(threshold(Unit::Count, &t("<=", 0.0), false), "<=0");
}
