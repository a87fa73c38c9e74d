//! The HTTP listener: `/healthz` and `/metrics` (Prometheus) today; the
//! sender, approver and admin UI will live here too.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tomare_model::Metrics;
use tomare_store::Store;

#[derive(Clone)]
struct App {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

pub fn router(store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(App { store, metrics })
}

pub async fn serve(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|down| *down).await;
        })
        .await
}

/// Healthy when the database answers.
async fn healthz(State(app): State<App>) -> impl IntoResponse {
    match app.store.depth().await {
        Ok(depth) => {
            let queued: i64 = depth.iter().filter(|(s, _)| !s.is_final()).map(|(_, n)| n).sum();
            (StatusCode::OK, axum::Json(serde_json::json!({ "status": "ok", "queued": queued })))
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "error", "error": e.to_string() })),
        ),
    }
}

async fn metrics_text(State(app): State<App>) -> impl IntoResponse {
    let depth = app.store.depth().await.unwrap_or_default();
    let depth: Vec<(&str, i64)> = depth.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.metrics.render(&depth))
}
