//! The admin listener: Prometheus `/metrics`, `/healthz` (the process is alive) and `/readyz`
//! (listeners bound, configuration loaded and the default resolver has a healthy target), for
//! Kubernetes probes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Health;

#[derive(Clone)]
struct AdminState {
    registry: Registry,
    health: Arc<Health>,
}

/// The admin routes.
pub fn router(registry: Registry, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(AdminState { registry, health })
}

/// Serves the admin routes on an already bound listener until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    let app = router(registry, health);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::warn!(error = %e, "admin listener failed");
    }
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let mut body = Vec::with_capacity(16 * 1024);
    match TextEncoder::new().encode(&state.registry.gather(), &mut body) {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}\n"),
        )
            .into_response(),
    }
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let h = &state.health;
    let listening = h.listening.load(Ordering::Acquire);
    let config = h.config_loaded.load(Ordering::Acquire);
    let targets = h.resolver.default_targets().targets();
    let healthy = targets.iter().filter(|t| t.is_healthy()).count();
    let ready = listening && config && healthy > 0;
    // Every check is listed, passing or not, so one look at a failing probe tells why.
    let body = format!(
        "{}\nlisteners: {}\nconfig: {}\ndefault resolver: {healthy} of {} targets healthy\n",
        if ready { "ready" } else { "not ready" },
        if listening { "bound" } else { "not bound yet" },
        if config { "loaded" } else { "not loaded" },
        targets.len(),
    );
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}
