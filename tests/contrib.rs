//! The operations files stay true to the code: every metric the Grafana dashboard queries is one pgsplit exports.

mod common;

use common::{http, TestProxy};

#[tokio::test]
async fn grafana_queries_only_exported_metrics() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/grafana/pgsplit.json");
    let text = std::fs::read_to_string(path).expect("contrib/grafana/pgsplit.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("expr").to_string());
        }
    }
    assert!(exprs.len() >= 10, "{exprs:?}");

    let proxy = TestProxy::start().await;
    proxy
        .connect()
        .await
        .simple_query("select 1")
        .await
        .unwrap();
    let (status, metrics) = http(proxy.handle.stats_addr, "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    for expr in &exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("pgsplit_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            assert!(
                metrics.contains(&format!("# TYPE {name} ")),
                "the Grafana dashboard queries {name}, which /metrics does not export (in {expr})"
            );
            rest = &rest[at + name.len()..];
        }
    }
    proxy.handle.shutdown().await;
}
