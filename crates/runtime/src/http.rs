//! The small HTTP surface every long-running component serves: `/metrics`, `/healthz`,
//! `/readyz`; the sink adds `/events`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Whether a component is ready to serve (connected, consumer bound). `/readyz` reports it.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
    #[must_use]
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct Probe {
    registry: Registry,
    ready: Readiness,
}

/// `/metrics` (Prometheus text format), `/healthz` (the process answers) and `/readyz`.
pub fn probes(registry: Registry, ready: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Probe { registry, ready })
}

async fn metrics(State(p): State<Probe>) -> impl IntoResponse {
    let mut buf = Vec::with_capacity(16 * 1024);
    match TextEncoder::new().encode(&p.registry.gather(), &mut buf) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], buf).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn readyz(State(p): State<Probe>) -> impl IntoResponse {
    if p.ready.get() { (StatusCode::OK, "ready\n") } else { (StatusCode::SERVICE_UNAVAILABLE, "not ready\n") }
}

/// Binds `addr` (port 0 picks a free port) and serves `router` until `shutdown`.
/// Returns the bound address.
pub async fn serve(addr: SocketAddr, router: Router, shutdown: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        let r = axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
        if let Err(e) = r {
            tracing::error!(error = %e, "http server failed");
        }
    });
    Ok(local)
}
