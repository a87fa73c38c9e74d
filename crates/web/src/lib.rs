//! The HTTP listener: `/healthz`, `/metrics` (Prometheus) and the pages
//! behind the one-click links in notice mails (`links`); the sender,
//! approver and admin UI will live here too.

pub mod links;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tomare_model::Metrics;
use tomare_store::Store;

#[derive(Clone)]
struct App {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

pub fn router(store: Arc<dyn Store>, metrics: Arc<Metrics>, links: Arc<links::Links>) -> Router {
    let actions = Router::new()
        .route("/a/{action}/{token}", get(links::show).post(links::act))
        .with_state(links::LinkApp { store: store.clone(), links });
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(App { store, metrics })
        .merge(actions)
}

pub async fn serve(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|down| *down).await;
        })
        .await
}

/// `200 ok` when the database answers and nothing is wrong; `503` with
/// `"status": "degraded"` and the problems (`disk`: free space below
/// `[storage] min_free`, so new mail is refused; `archive`: behind for 10
/// minutes or more; `delivery`: the last 20 attempts all failed for every
/// recipient), or `"error"` when the database does not answer.
async fn healthz(State(app): State<App>) -> impl IntoResponse {
    let h = &app.metrics.health;
    let problems = h.problems();
    let disk = serde_json::json!({
        "free_bytes": h.disk_free.load(Relaxed),
        "reserve_bytes": h.disk_reserve.load(Relaxed),
    });
    match app.store.depth().await {
        Ok(depth) => {
            let queued: i64 = depth.iter().filter(|(s, _)| !s.is_final()).map(|(_, n)| n).sum();
            let (code, status) = if problems.is_empty() {
                (StatusCode::OK, "ok")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "degraded")
            };
            let body = serde_json::json!({
                "status": status,
                "problems": problems,
                "queued": queued,
                "disk": disk,
                "archive_lag_seconds": h.archive_lag.load(Relaxed),
                "delivery_failures_in_row": h.delivery_failures_in_row.load(Relaxed),
            });
            (code, axum::Json(body))
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "error", "error": e.to_string(), "problems": problems })),
        ),
    }
}

async fn metrics_text(State(app): State<App>) -> impl IntoResponse {
    let depth = app.store.depth().await.unwrap_or_default();
    let depth: Vec<(&str, i64)> = depth.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render(&depth))
}
