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

/// What a component adds to its probes: whether it is ready beyond [`Readiness`], and a JSON
/// body describing its parts (a camera's sources, say).
pub type Detail = Arc<dyn Fn() -> (bool, serde_json::Value) + Send + Sync>;

#[derive(Clone)]
struct Probe {
    registry: Registry,
    ready: Readiness,
    detail: Option<Detail>,
}

/// `/metrics` (Prometheus text format), `/healthz` (the process answers) and `/readyz`.
pub fn probes(registry: Registry, ready: Readiness) -> Router {
    router(Probe { registry, ready, detail: None })
}

/// [`probes`] with `/metrics` behind `metrics_auth` when given; `/healthz` and `/readyz` stay
/// open for the kubelet.
pub fn probes_guarded(registry: Registry, ready: Readiness, metrics_auth: Option<HttpAuth>) -> Router {
    let probe = Probe { registry, ready, detail: None };
    let metrics_route = guard(Router::new().route("/metrics", get(metrics)).with_state(probe.clone()), metrics_auth);
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).with_state(probe).merge(metrics_route)
}

/// HTTP authentication for what people and scrapers read: a bearer token
/// (`Authorization: Bearer <token>`), or basic auth with the token as the password and any user
/// name, which browsers ask for once and then send with every request of the page (its images,
/// its MJPEG streams and its event stream included). Compared in constant time; a refusal is
/// `401` with `WWW-Authenticate` and never echoes what was sent.
#[derive(Clone)]
pub struct HttpAuth {
    token: Arc<str>,
    realm: &'static str,
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuth").field("realm", &self.realm).finish_non_exhaustive()
    }
}

impl HttpAuth {
    /// `None` for an empty token: no authentication.
    #[must_use]
    pub fn new(token: &str, realm: &'static str) -> Option<Self> {
        (!token.is_empty()).then(|| Self { token: Arc::from(token), realm })
    }

    /// Whether `headers` carry the token.
    #[must_use]
    pub fn allows(&self, headers: &axum::http::HeaderMap) -> bool {
        use base64::Engine as _;
        let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return false };
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
        let presented = if scheme.eq_ignore_ascii_case("bearer") {
            rest.trim().as_bytes().to_vec()
        } else if scheme.eq_ignore_ascii_case("basic") {
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else { return false };
            // `user:password`; the user name is free, the password is the token.
            match decoded.iter().position(|b| *b == b':') {
                Some(i) => decoded[i + 1..].to_vec(),
                None => return false,
            }
        } else {
            return false;
        };
        constant_time_eq(&presented, self.token.as_bytes())
    }
}

/// Equal without an early exit on the first differing byte (the length still shows).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `router` behind `auth` (unchanged without it).
pub fn guard(router: Router, auth: Option<HttpAuth>) -> Router {
    match auth {
        None => router,
        Some(auth) => router.layer(axum::middleware::from_fn_with_state(auth, check_auth)),
    }
}

async fn check_auth(
    State(auth): State<HttpAuth>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if auth.allows(req.headers()) {
        return next.run(req).await;
    }
    let challenge = format!("Basic realm=\"{}\", charset=\"UTF-8\"", auth.realm);
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge), (header::CACHE_CONTROL, "no-store".to_owned())],
        "401: authentication required (a bearer token, or basic auth with the token as the password)\n",
    )
        .into_response()
}

/// [`probes`] with a [`Detail`]: `/healthz` answers 200 with `{"status": "ok", "detail": …}`,
/// `/readyz` answers 200 only when `ready` is set and the detail says ready, with the same body
/// (`"status": "not ready"` and 503 otherwise).
pub fn probes_with_detail(registry: Registry, ready: Readiness, detail: Detail) -> Router {
    router(Probe { registry, ready, detail: Some(detail) })
}

fn router(probe: Probe) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(probe)
}

async fn healthz(State(p): State<Probe>) -> axum::response::Response {
    match &p.detail {
        None => "ok\n".into_response(),
        Some(detail) => json(StatusCode::OK, &serde_json::json!({"status": "ok", "detail": detail().1})),
    }
}

async fn metrics(State(p): State<Probe>) -> impl IntoResponse {
    let mut buf = Vec::with_capacity(16 * 1024);
    match TextEncoder::new().encode(&p.registry.gather(), &mut buf) {
        Ok(()) => (StatusCode::OK, [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], buf).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn readyz(State(p): State<Probe>) -> axum::response::Response {
    match &p.detail {
        None if p.ready.get() => (StatusCode::OK, "ready\n").into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response(),
        Some(detail) => {
            let (parts_ready, body) = detail();
            let ready = p.ready.get() && parts_ready;
            let code = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            let status = if ready { "ready" } else { "not ready" };
            json(code, &serde_json::json!({"status": status, "detail": body}))
        }
    }
}

fn json(code: StatusCode, body: &serde_json::Value) -> axum::response::Response {
    (code, [(header::CONTENT_TYPE, "application/json")], format!("{body}\n")).into_response()
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

/// The CPU priority ([nice](https://man7.org/linux/man-pages/man2/setpriority.2.html)) of the
/// threads that serve the sink's page, images and streams: under contention the pipeline's own
/// threads (inference above all) go first, and viewers get the CPU that is left.
pub const VIEW_NICE: i32 = 10;

/// Like [`serve`], but on a runtime of its own (one worker thread, plus its blocking pool for
/// renders) whose threads run at nice `nice`. For what people look at: on a device that also
/// runs a worker, or in `edgepool demo` where every role shares one process, viewers must not
/// take CPU from inference. Returns the bound address; the server stops at `shutdown`.
pub fn serve_yielding(
    addr: SocketAddr,
    router: Router,
    shutdown: CancellationToken,
    nice: i32,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("edgepool-view")
        .enable_all()
        .on_thread_start(move || lower_priority(nice))
        .build()?;
    std::thread::Builder::new().name("edgepool-view".into()).spawn(move || {
        lower_priority(nice);
        runtime.block_on(async move {
            let r = async {
                let listener = TcpListener::from_std(listener)?;
                axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
            };
            if let Err(e) = r.await {
                tracing::error!(error = %e, "http server failed");
            }
        });
        // Streams that never end on their own (SSE) must not hold the process: drop the
        // runtime without waiting for its tasks.
        runtime.shutdown_background();
    })?;
    Ok(local)
}

/// Sets the calling thread's nice value (Linux: per thread). Failure is harmless and logged once
/// per thread at debug: the thread keeps the default priority.
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
            tracing::debug!(error = %e, nice, "could not lower an HTTP thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}
