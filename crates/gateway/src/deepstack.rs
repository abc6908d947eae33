//! The DeepStack / CodeProject.AI object-detection API (docs/integrations.md).
//!
//! `POST /v1/vision/detection` takes a multipart form (`image`, optional `min_confidence` and
//! `api_key`) and answers CodeProject.AI's JSON: `predictions` in integer pixels of the posted
//! image, highest confidence first, with CodeProject.AI's timing and module fields. Every answer
//! is JSON and carries `predictions` (empty on errors): Frigate parses the body whatever the
//! status, and deepstack-python reads `predictions` from any 200. Statuses follow the servers
//! the clients were written for: 400 for a missing or bad image or field and 401 for a wrong
//! key (DeepStack), 200 with `success: false` and `code: 500` for a timeout (CodeProject.AI),
//! 503 at once when `gateway.max_in_flight` requests are waiting or the broker is away, 413
//! for a body over `gateway.max_body`, and a JSON 404 for unknown paths.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use prometheus::{HistogramVec, IntCounterVec, IntGauge, Registry};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use edgepool_runtime::metrics as m;
use edgepool_wire::{ContentType, ResultMessage, Status};

use crate::config::GatewayConfig;
use crate::pool::{Pool, PoolError};

/// Frigate's deepstack detector fills a 20-row array and fails on a 21st qualifying prediction.
pub const MAX_PREDICTIONS: usize = 20;

/// The gateway's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    requests: IntCounterVec,
    seconds: HistogramVec,
    overhead: prometheus::Histogram,
    in_flight: IntGauge,
}

impl Metrics {
    /// Counts one answered request of `api` with `outcome`, which took since `started`.
    pub fn record(&self, api: &str, outcome: &str, started: Instant) {
        self.requests.with_label_values(&[api, outcome]).inc();
        self.seconds.with_label_values(&[api]).observe(started.elapsed().as_secs_f64());
    }

    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            requests: m::GATEWAY_REQUESTS.counter_vec(r)?,
            seconds: m::GATEWAY_SECONDS.histogram_vec(r)?,
            overhead: m::GATEWAY_OVERHEAD.histogram(r)?,
            in_flight: m::GATEWAY_IN_FLIGHT.gauge(r)?,
        })
    }
}

/// What the handlers share.
#[derive(Debug)]
struct Api {
    /// Set once the broker is connected; until then detection answers 503.
    pool: Arc<OnceLock<Pool>>,
    cfg: GatewayConfig,
    slots: Arc<Semaphore>,
    metrics: Metrics,
}

/// The API's routes, with the body limit of `gateway.max_body`.
pub fn router(pool: Arc<OnceLock<Pool>>, cfg: GatewayConfig, metrics: Metrics) -> Router {
    let limit = cfg.max_body;
    let api = Arc::new(Api { pool, slots: Arc::new(Semaphore::new(cfg.max_in_flight)), cfg, metrics });
    Router::new()
        .route("/v1/vision/detection", post(detection))
        .route("/v1/vision/custom/list", post(custom_list).get(custom_list))
        .route("/v1/vision/custom/{model}", post(custom_model))
        .route("/v1/status/ping", get(version))
        .route("/v1/server/status/ping", get(version))
        .route("/v1/status/version", get(version))
        .route("/v1/server/status/version", get(version))
        .route("/v1/status/updateavailable", get(update_available))
        .route("/v1/server/status/updateavailable", get(update_available))
        .route("/", get(index))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(api)
}

/// An answer: the HTTP status, the JSON body and the outcome label.
struct Answer {
    status: StatusCode,
    body: Value,
    outcome: &'static str,
}

impl Answer {
    /// A failure in the shape both DeepStack and CodeProject.AI clients read.
    fn error(status: StatusCode, code: u16, outcome: &'static str, error: impl Into<String>) -> Self {
        let body = json!({
            "success": false, "error": error.into(), "code": code, "predictions": [], "count": 0,
            "moduleId": MODULE_ID, "command": "detect",
        });
        Self { status, body, outcome }
    }

    fn into_response(self, api: &Api, name: &'static str, started: Instant) -> Response {
        api.metrics.record(name, self.outcome, started);
        let mut r = (self.status, [(header::CONTENT_TYPE, "application/json")], self.body.to_string()).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

const MODULE_ID: &str = "edgepool";
const MODULE_NAME: &str = "edgepool pool (SSD-MobileNet-v2 COCO)";

/// The form of one detection request.
#[derive(Default)]
struct Form {
    image: Option<Bytes>,
    min_confidence: Option<String>,
    api_key: Option<String>,
}

async fn read_form(mut multipart: Multipart) -> Result<Form, Answer> {
    let mut form = Form::default();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => return Ok(form),
            Err(e) => return Err(body_error(e.status(), &e.body_text())),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let value = field.bytes().await.map_err(|e| body_error(e.status(), &e.body_text()))?;
        match name.as_str() {
            "image" => form.image = Some(value),
            "min_confidence" => form.min_confidence = Some(String::from_utf8_lossy(&value).into_owned()),
            "api_key" => form.api_key = Some(String::from_utf8_lossy(&value).into_owned()),
            _ => {} // DeepStack ignores other fields too
        }
    }
}

fn body_error(status: StatusCode, why: &str) -> Answer {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        Answer::error(status, 413, "too_large", format!("the request body is larger than gateway.max_body: {why}"))
    } else {
        Answer::error(StatusCode::BAD_REQUEST, 400, "bad_request", format!("invalid multipart/form-data body: {why}"))
    }
}

/// Compares in time independent of where the strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn detection(
    State(api): State<Arc<Api>>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let started = Instant::now();
    let answer = detect(&api, multipart, started).await;
    answer.into_response(&api, "detection", started)
}

async fn detect(
    api: &Api,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
    started: Instant,
) -> Answer {
    // Refused before the body is read: overload answers at once.
    let Ok(_permit) = api.slots.clone().try_acquire_owned() else {
        return Answer::error(
            StatusCode::SERVICE_UNAVAILABLE,
            503,
            "overloaded",
            format!(
                "the gateway has {} requests waiting (gateway.max_in_flight); retry shortly",
                api.cfg.max_in_flight
            ),
        );
    };
    api.metrics.in_flight.inc();
    let _in_flight = scopeguard(|| api.metrics.in_flight.dec());

    let multipart = match multipart {
        Ok(m) => m,
        Err(e) => return Answer::error(StatusCode::BAD_REQUEST, 400, "bad_request", e.body_text()),
    };
    let form = match read_form(multipart).await {
        Ok(f) => f,
        Err(a) => return a,
    };
    let mut keys = api.cfg.keys().peekable();
    if keys.peek().is_some() {
        let given = form.api_key.as_deref().unwrap_or_default();
        if !keys.any(|k| same(k, given)) {
            return Answer::error(StatusCode::UNAUTHORIZED, 401, "unauthorized", "Incorrect api key");
        }
    }
    let min_confidence = match form.min_confidence.as_deref().map(str::trim) {
        None | Some("") => api.cfg.min_confidence,
        Some(v) => match v.parse::<f32>() {
            Ok(c) if (0.0..=1.0).contains(&c) => c,
            _ => {
                return Answer::error(
                    StatusCode::BAD_REQUEST,
                    400,
                    "bad_request",
                    format!("Invalid value for min_confidence: {:?} is not a number between 0 and 1", truncate(v)),
                );
            }
        },
    };
    let Some(image) = form.image.filter(|i| !i.is_empty()) else {
        return Answer::error(
            StatusCode::BAD_REQUEST,
            400,
            "bad_request",
            "No valid image file found (form field `image`)",
        );
    };
    let Some(content_type) = [ContentType::Jpeg, ContentType::Png].into_iter().find(|c| c.matches_magic(&image)) else {
        return Answer::error(StatusCode::BAD_REQUEST, 400, "bad_request", "invalid image file: not a JPEG or PNG");
    };

    let Some(pool) = api.pool.get() else {
        return Answer::error(
            StatusCode::SERVICE_UNAVAILABLE,
            503,
            "unavailable",
            "the gateway is not connected to the broker yet",
        );
    };
    let deadline = started + api.cfg.timeout;
    match pool.detect(image, content_type, None, deadline).await {
        Ok(result) => answer(api, &result, min_confidence, started),
        Err(PoolError::Timeout) => Answer::error(
            StatusCode::OK,
            500,
            "timeout",
            format!(
                "The request timed out: no result within gateway.timeout ({})",
                humantime::format_duration(api.cfg.timeout)
            ),
        ),
        Err(e @ (PoolError::Publish(_) | PoolError::Stopping)) => {
            Answer::error(StatusCode::SERVICE_UNAVAILABLE, 503, "unavailable", e.to_string())
        }
    }
}

/// The success (or the worker's refusal) as the clients read it.
fn answer(api: &Api, r: &ResultMessage, min_confidence: f32, started: Instant) -> Answer {
    match r.status {
        Status::Ok => {}
        Status::Error => {
            let why =
                r.error.as_ref().map_or_else(|| "the worker could not decode it".to_owned(), |e| e.message.clone());
            return Answer::error(StatusCode::BAD_REQUEST, 400, "bad_request", format!("invalid image file: {why}"));
        }
        Status::Stale => {
            return Answer::error(
                StatusCode::OK,
                500,
                "timeout",
                "The request timed out: the frame waited in the queue past the workers' staleness bound",
            );
        }
    }
    let (w, h) = (f64::from(r.width), f64::from(r.height));
    let px = |v: f32, size: f64| (f64::from(v) * size).round().clamp(0.0, size) as i64;
    let mut dets: Vec<_> = r.detections.iter().filter(|d| d.score >= min_confidence).collect();
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    dets.truncate(MAX_PREDICTIONS);
    let predictions: Vec<Value> = dets
        .iter()
        .map(|d| {
            json!({
                "label": d.label, "confidence": d.score,
                "x_min": px(d.bbox.x_min, w), "y_min": px(d.bbox.y_min, h),
                "x_max": px(d.bbox.x_max, w), "y_max": px(d.bbox.y_max, h),
            })
        })
        .collect();
    let mut labels: Vec<&str> = Vec::new();
    for d in &dets {
        if !labels.contains(&d.label.as_str()) {
            labels.push(&d.label);
        }
    }
    let message = match labels.len() {
        0 => "No objects found".to_owned(),
        1..=3 => format!("Found {}", labels.join(", ")),
        _ => format!("Found {}...", labels[..3].join(", ")),
    };
    let round_trip = started.elapsed();
    let t = &r.timings;
    let worker_ms = t.decode_ms + t.preprocess_ms + t.inference_ms + t.postprocess_ms;
    api.metrics.overhead.observe((round_trip.as_secs_f64() - worker_ms / 1000.0).max(0.0));
    let body = json!({
        "success": true,
        "message": message,
        "count": predictions.len(),
        "predictions": predictions,
        "inferenceMs": t.inference_ms.round() as i64,
        "processMs": worker_ms.round() as i64,
        "analysisRoundTripMs": round_trip.as_millis() as i64,
        "moduleId": MODULE_ID,
        "moduleName": MODULE_NAME,
        "command": "detect",
        "requestId": r.seq.map(|s| s.to_string()),
        "inferenceDevice": "CPU",
        "executionProvider": "CPU",
        "canUseGPU": false,
        "processedBy": r.worker.as_str(),
        "timestampUTC": rfc1123(r.processed_at),
        "code": 200,
    });
    Answer { status: StatusCode::OK, body, outcome: "ok" }
}

async fn custom_list(State(api): State<Arc<Api>>) -> Response {
    let started = Instant::now();
    let body = json!({"success": true, "models": [], "moduleId": MODULE_ID, "command": "list-custom", "code": 200});
    Answer { status: StatusCode::OK, body, outcome: "ok" }.into_response(&api, "list", started)
}

async fn custom_model(State(api): State<Arc<Api>>) -> Response {
    let started = Instant::now();
    Answer::error(
        StatusCode::BAD_REQUEST,
        400,
        "bad_request",
        "edgepool serves one model, at /v1/vision/detection; it has no custom models",
    )
    .into_response(&api, "detection", started)
}

fn version_body() -> Value {
    let v = env!("CARGO_PKG_VERSION");
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor, patch) = (parts.next(), parts.next(), parts.next());
    json!({
        "success": true, "code": 200, "message": format!("edgepool {v}"),
        "version": {"major": major, "minor": minor, "patch": patch, "preRelease": null, "securityUpdate": false,
                    "build": 0, "file": null, "releaseNotes": "edgepool gateway"},
    })
}

async fn version(State(api): State<Arc<Api>>) -> Response {
    let started = Instant::now();
    Answer { status: StatusCode::OK, body: version_body(), outcome: "ok" }.into_response(&api, "status", started)
}

async fn update_available(State(api): State<Arc<Api>>) -> Response {
    let started = Instant::now();
    let v = env!("CARGO_PKG_VERSION");
    let body =
        json!({"success": true, "message": "", "version": v, "current": v, "latest": v, "updateAvailable": false});
    Answer { status: StatusCode::OK, body, outcome: "ok" }.into_response(&api, "status", started)
}

async fn index(State(api): State<Arc<Api>>) -> Response {
    let started = Instant::now();
    let body = json!({
        "success": true,
        "message": "edgepool gateway: the DeepStack / CodeProject.AI object detection API in front of an edgepool pool",
        "endpoints": ["POST /v1/vision/detection", "POST /v1/vision/custom/list", "GET /v1/server/status/ping",
                      "GET /metrics", "GET /healthz", "GET /readyz"],
    });
    Answer { status: StatusCode::OK, body, outcome: "ok" }.into_response(&api, "status", started)
}

async fn not_found(State(api): State<Arc<Api>>, method: Method, uri: Uri) -> Response {
    let started = Instant::now();
    let path = truncate(uri.path());
    Answer::error(StatusCode::NOT_FOUND, 404, "bad_request", format!("no such endpoint: {method} {path}"))
        .into_response(&api, "other", started)
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

/// `Mon, 04 Aug 2025 12:34:56 GMT`, as CodeProject.AI's `timestampUTC`.
fn rfc1123(t: time::OffsetDateTime) -> String {
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.to_offset(time::UtcOffset::UTC).format(&f).unwrap_or_default()
}

/// Runs `f` when dropped.
fn scopeguard<F: FnOnce()>(f: F) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_exactly() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd") && !same("abc", "ab") && !same("", "a"));
    }

    #[test]
    fn timestamps_read_like_codeproject_ais() {
        let t = time::macros::datetime!(2025-08-04 12:34:56 UTC);
        assert_eq!(rfc1123(t), "Mon, 04 Aug 2025 12:34:56 GMT");
    }
}
