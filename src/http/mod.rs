//! The operator's HTTP endpoint: the dashboard at /, /stats JSON, /stats/timeseries, /metrics for Prometheus, /health and /ready.

mod dashboard;
pub mod metrics;

use crate::admin::snapshot;
use crate::Shared;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves the endpoint on `listener` until `shutdown` turns true.
pub async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    // The per-second series exists for this endpoint, so it ticks while the endpoint serves.
    tokio::spawn(crate::stats::timeseries::run(
        shared.stats.clone(),
        shutdown.clone(),
    ));
    let app = router(shared);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|v| *v).await;
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "stats endpoint stopped");
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    let protected = Router::new()
        .route("/stats", get(stats))
        .route("/stats/queries", get(queries))
        .route("/stats/timeseries", get(timeseries))
        .route("/stats/reset", post(reset))
        .route("/metrics", get(metrics_text))
        .route_layer(middleware::from_fn_with_state(
            shared.clone(),
            require_token,
        ));
    // The page holds no data, only code; it asks for the token (see dashboard.rs) to fetch any.
    Router::new()
        .route("/", get(dashboard::page))
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .merge(protected)
        .with_state(shared)
}

/// With `stats.token` set, every route but /health and /ready needs `Authorization: Bearer TOKEN`.
async fn require_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    if let Some(token) = &shared.config.stats.token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()));
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "missing or wrong bearer token\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

async fn stats(State(shared): State<Arc<Shared>>) -> Json<snapshot::StatsSnapshot> {
    Json(snapshot::snapshot(&shared))
}

#[derive(Deserialize)]
struct QueriesParams {
    order_by: Option<String>,
    limit: Option<usize>,
}

async fn queries(State(shared): State<Arc<Shared>>, Query(p): Query<QueriesParams>) -> Response {
    let mut rows = shared.stats.queries.snapshot();
    let key = p.order_by.as_deref().unwrap_or("total_ms");
    match key {
        "total_ms" => rows.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms)),
        "p99_ms" => rows.sort_by(|a, b| b.percentiles.p99_ms.total_cmp(&a.percentiles.p99_ms)),
        "calls" => rows.sort_by_key(|r| std::cmp::Reverse(r.calls)),
        "errors" => rows.sort_by_key(|r| std::cmp::Reverse(r.errors)),
        other => {
            return (
                StatusCode::BAD_REQUEST,
                format!("order_by must be one of total_ms, p99_ms, calls, errors (got {other})\n"),
            )
                .into_response()
        }
    }
    rows.truncate(p.limit.unwrap_or(100));
    Json(rows).into_response()
}

#[derive(Deserialize)]
struct TimeseriesParams {
    /// Only the newest N points.
    last: Option<usize>,
}

#[derive(Serialize)]
struct TimeseriesDoc {
    interval_s: u64,
    capacity: usize,
    points: Vec<crate::stats::timeseries::Point>,
}

async fn timeseries(
    State(shared): State<Arc<Shared>>,
    Query(p): Query<TimeseriesParams>,
) -> Json<TimeseriesDoc> {
    let ts = &shared.stats.timeseries;
    Json(TimeseriesDoc {
        interval_s: 1,
        capacity: ts.capacity(),
        points: ts.points(p.last),
    })
}

async fn reset(State(shared): State<Arc<Shared>>) -> &'static str {
    snapshot::reset(&shared);
    "reset\n"
}

async fn metrics_text(State(shared): State<Arc<Shared>>) -> Response {
    match metrics::render(snapshot::snapshot(&shared)) {
        Ok(body) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], body).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot render metrics\n").into_response(),
    }
}

/// Ready when the primary accepts TCP connections: writes would fail otherwise.
async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    let p = &shared.config.primary;
    let reachable = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect((p.host.as_str(), p.port)),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if reachable {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("primary {p} unreachable\n"),
        )
            .into_response()
    }
}
