//! `/healthz`, `/readyz` and `/metrics` on one small HTTP listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::metrics::Metrics;
use crate::store::Store;

/// What readiness depends on besides the store answering.
#[derive(Clone, Default)]
pub struct Readiness {
    /// Watches are synced (leader), or the lease is being watched (standby).
    pub synced: Arc<AtomicBool>,
}

#[derive(Clone)]
struct Health {
    readiness: Readiness,
    store: Store,
    metrics: Metrics,
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    readiness: Readiness,
    store: Store,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Health {
            readiness,
            store,
            metrics,
        });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn readyz(State(h): State<Health>) -> impl IntoResponse {
    if !h.readiness.synced.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "watches not synced");
    }
    match tokio::time::timeout(std::time::Duration::from_secs(2), h.store.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ok"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "store not answering"),
    }
}

async fn metrics_text(State(h): State<Health>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        h.metrics.render(),
    )
}
