//! The admin listener: Prometheus `/metrics`, `/healthz` (the process is alive) and `/readyz`
//! (listeners bound, configuration loaded and the default resolver has a healthy target), for
//! Kubernetes probes.
//!
//! Its connections are capped and timed out ([`AdminLimits`]): idle admin clients must never
//! hold the file descriptors the DNS listeners need.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use dohgate_core::config::AdminLimits;
use dohgate_inbound::accept::accept;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus::{Encoder, IntCounter, Registry, TextEncoder};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{sleep, timeout};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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

/// How long one admin connection may live, however busy: a client that never reads its
/// response (which no request-head timeout sees) is let go at this.
const MAX_CONNECTION_LIFE: Duration = Duration::from_secs(300);

/// Serves the admin routes on an already bound listener until `shutdown` is cancelled.
///
/// At most `limits.max_connections` connections are served at once; past it a new connection
/// is closed at once and counted in `refused`. A connection that sends no complete request head
/// for `limits.idle_timeout` (before its first request or between keep-alive requests) is
/// closed.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    health: Arc<Health>,
    limits: AdminLimits,
    refused: IntCounter,
    shutdown: CancellationToken,
) {
    let app = router(registry, health);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let tracker = TaskTracker::new();
    loop {
        let Some((stream, _)) = accept(&listener, &shutdown, "admin").await else {
            break;
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            refused.inc();
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            connection(stream, service, limits.idle_timeout, &shutdown).await;
            drop(permit);
        });
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
}

/// Serves one admin connection until the client closes it, it idles out, it reaches
/// [`MAX_CONNECTION_LIFE`], or shutdown; the last two let a request in flight finish first.
async fn connection(
    stream: TcpStream,
    service: TowerToHyperService<Router>,
    idle_timeout: Duration,
    shutdown: &CancellationToken,
) {
    let mut builder = http1::Builder::new();
    // hyper's request-head timer runs from the connection's start and again from the end of
    // each response: it is the idle timeout as well as the slow-client one.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
            return;
        }
        _ = shutdown.cancelled() => {}
        _ = sleep(MAX_CONNECTION_LIFE) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = timeout(idle_timeout, conn).await;
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
    let resolver = h.current.resolver();
    let targets = resolver.default_targets().targets();
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
