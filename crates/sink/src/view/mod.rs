//! What people look at: the live page (`GET /`), the camera list, each camera's latest frame
//! with its boxes drawn (`latest.jpg`, `latest.json`), an MJPEG stream per camera, and the fleet
//! as `edgepool status` sees it (`/fleet`). docs/view.md documents every endpoint.
//!
//! Nothing here touches the results pipeline: snapshots come from their own bucket watch,
//! renders are cached per snapshot, and a viewer that stops reading only lags its own broadcast
//! receiver. The number of open streams is bounded (`sink.max_stream_viewers`, then 503).

mod cameras;
mod fleet;
mod mjpeg;
mod snapshots;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use edgepool_runtime::metrics as cat;
use edgepool_wire::ResultMessage;

use crate::stats::SinkStats;
pub use cameras::{Activity, FPS_WINDOW, Tracker};
pub use snapshots::{RenderKey, Snapshot, SnapshotSummary, Store};

/// The page, compiled in: one HTML file with its CSS and JavaScript, no external resources.
pub const PAGE: &str = include_str!("../page.html");

/// Smallest and largest height `?h=` accepts.
pub const MIN_HEIGHT: u32 = 16;
pub const MAX_HEIGHT: u32 = 4320;

/// The live view's settings (from [`crate::SinkConfig`]).
#[derive(Debug, Clone)]
pub struct ViewConfig {
    /// Watch the snapshot bucket (off: no images, the page shows activity only).
    pub snapshots: bool,
    pub max_stream_viewers: usize,
    pub max_cameras: usize,
    pub camera_stale_after: Duration,
}

impl Default for ViewConfig {
    fn default() -> Self {
        Self { snapshots: true, max_stream_viewers: 32, max_cameras: 256, camera_stale_after: Duration::from_secs(10) }
    }
}

/// The view's shared state.
#[derive(Debug)]
pub struct View {
    pub cfg: ViewConfig,
    pub store: Store,
    pub tracker: Tracker,
    pub fleet: fleet::Fleet,
    stats: Arc<SinkStats>,
    viewers: Arc<Semaphore>,
    viewers_open: prometheus::IntGauge,
    viewers_refused: prometheus::IntCounter,
    renders: prometheus::IntCounter,
    /// Ends the MJPEG streams when the sink stops.
    pub closing: CancellationToken,
}

impl View {
    pub fn new(registry: &prometheus::Registry, stats: Arc<SinkStats>, cfg: ViewConfig) -> prometheus::Result<Self> {
        let snaps = cat::SINK_SNAPSHOTS.counter_vec(registry)?;
        let metrics = snapshots::StoreMetrics {
            kept: snaps.with_label_values(&["kept"]),
            invalid: snaps.with_label_values(&["invalid"]),
            dropped: snaps.with_label_values(&["dropped"]),
        };
        Ok(Self {
            store: Store::new(cfg.max_cameras, metrics),
            tracker: Tracker::new(cfg.max_cameras, cfg.camera_stale_after),
            fleet: fleet::Fleet::default(),
            stats,
            viewers: Arc::new(Semaphore::new(cfg.max_stream_viewers)),
            viewers_open: cat::SINK_VIEWERS.gauge(registry)?,
            viewers_refused: cat::SINK_VIEWS_REFUSED.counter(registry)?,
            renders: cat::SINK_RENDERS.counter(registry)?,
            closing: CancellationToken::new(),
            cfg,
        })
    }

    /// MJPEG streams open now.
    #[must_use]
    pub fn viewers_open(&self) -> i64 {
        self.viewers_open.get()
    }

    /// Counts a unique result for the camera list.
    pub fn observe(&self, r: &ResultMessage) {
        self.tracker.observe(r, Instant::now());
    }

    /// The snapshot watch and the fleet poller, until `shutdown`.
    pub async fn follow(self: Arc<Self>, js: async_nats::jetstream::Context, shutdown: CancellationToken) {
        let fleet = {
            let (v, js, stop) = (Arc::clone(&self), js.clone(), shutdown.clone());
            tokio::spawn(async move { v.fleet.poll(js, stop).await })
        };
        if self.cfg.snapshots {
            self.store.watch(js, shutdown.clone()).await;
        } else {
            shutdown.cancelled().await;
        }
        self.closing.cancel();
        let _ = fleet.await;
    }

    /// `/`, `/cameras`, `/cameras/{id}/latest.jpg|latest.json|stream.mjpeg` and `/fleet`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(page))
            .route("/cameras", get(camera_list))
            .route("/cameras/{id}/latest.jpg", get(latest_jpg))
            .route("/cameras/{id}/latest.json", get(latest_json))
            .route("/cameras/{id}/stream.mjpeg", get(mjpeg::stream))
            .route("/fleet", get(fleet_view))
            .with_state(Arc::clone(self))
    }

    /// Renders `snap` for `key` on a blocking thread.
    async fn render(&self, snap: Arc<Snapshot>, key: RenderKey) -> Result<bytes::Bytes, snapshots::RenderError> {
        let renders = self.renders.clone();
        let r = tokio::task::spawn_blocking(move || snap.render(key))
            .await
            .unwrap_or_else(|e| Err(snapshots::RenderError::Format(std::io::Error::other(e.to_string()))))?;
        if r.1 {
            renders.inc();
        }
        Ok(r.0)
    }
}

/// A JSON error body: `{"error": "..."}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct Body {
        error: String,
    }
    json_with(status, &Body { error: message.into() })
}

fn json_with<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-store")], body)
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], PAGE).into_response()
}

/// Parses `boxes` and `h`; `v` (a cache-buster the page adds) is accepted and ignored. Anything
/// else is refused, so a typo does not silently give the default.
pub fn render_key(q: &BTreeMap<String, String>) -> Result<RenderKey, String> {
    let mut key = RenderKey { boxes: true, height: None };
    for (k, v) in q {
        match k.as_str() {
            "boxes" => {
                key.boxes = match v.as_str() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(format!("boxes must be 0 or 1, not {v:?}")),
                }
            }
            "h" => {
                let h: u32 = v.parse().map_err(|_| format!("h must be a height in pixels, not {v:?}"))?;
                if !(MIN_HEIGHT..=MAX_HEIGHT).contains(&h) {
                    return Err(format!("h must be between {MIN_HEIGHT} and {MAX_HEIGHT}, not {h}"));
                }
                key.height = Some(h);
            }
            "v" => {}
            other => return Err(format!("unknown query parameter {other:?} (known: boxes, h, v)")),
        }
    }
    Ok(key)
}

fn unknown_camera(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("no snapshot of camera {id:?} (unknown camera, or snapshots are off)"))
}

async fn latest_jpg(
    State(view): State<Arc<View>>,
    Path(id): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let key = match render_key(&q) {
        Ok(k) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Some(snap) = view.store.get(&id) else { return unknown_camera(&id) };
    let etag = key.etag(snap.revision);
    let cache = [(header::CACHE_CONTROL, "no-cache"), (header::ETAG, etag.as_str())];
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains(&etag)) {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    let revision = snap.revision;
    match view.render(snap, key).await {
        Ok(jpeg) => {
            let mut r = (cache, [(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response();
            if let Ok(v) = HeaderValue::from_str(&revision.to_string()) {
                r.headers_mut().insert("edgepool-snapshot-revision", v);
            }
            r
        }
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, format!("camera {id:?}: {e}")),
    }
}

async fn latest_json(State(view): State<Arc<View>>, Path(id): Path<String>) -> Response {
    let Some(snap) = view.store.get(&id) else { return unknown_camera(&id) };
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::ETAG, &format!("\"{}\"", snap.revision)),
        ],
        snap.result_json(),
    )
        .into_response()
}

/// One camera in `GET /cameras`.
#[derive(Debug, Serialize)]
struct CameraView {
    id: String,
    /// `ok`, `stale` (nothing for `camera_stale_after`) or `error` (an error result within it).
    status: &'static str,
    #[serde(with = "time::serde::rfc3339::option")]
    last_seen: Option<OffsetDateTime>,
    age_s: Option<f64>,
    fps: f64,
    results_total: u64,
    errors_total: u64,
    stale_total: u64,
    last_status: Option<&'static str>,
    last_labels: Vec<String>,
    snapshot: Option<SnapshotSummary>,
    image: String,
    stream: String,
}

#[derive(Debug, Serialize)]
struct CameraList {
    #[serde(with = "time::serde::rfc3339")]
    now: OffsetDateTime,
    stale_after_s: f64,
    cameras: Vec<CameraView>,
}

async fn camera_list(State(view): State<Arc<View>>) -> Response {
    let now = OffsetDateTime::now_utc();
    let activity = view.tracker.activity(Instant::now());
    let snaps: BTreeMap<String, Arc<Snapshot>> = view.store.all().into_iter().map(|s| (s.camera.clone(), s)).collect();
    let ids: BTreeSet<&String> = activity.keys().chain(snaps.keys()).collect();
    let stale_after = view.cfg.camera_stale_after.as_secs_f64();
    let cameras = ids
        .into_iter()
        .map(|id| {
            let a = activity.get(id);
            let s = snaps.get(id);
            // A sink that just started knows a camera from its snapshot only.
            let last_seen = a.map(|a| a.last_seen).or_else(|| s.map(|s| s.result.processed_at));
            let age_s = last_seen.map(|t| (now - t).as_seconds_f64().max(0.0));
            let status = if age_s.is_none_or(|a| a > stale_after) {
                "stale"
            } else if a.is_some_and(|a| a.recent_errors) {
                "error"
            } else {
                "ok"
            };
            let labels = match (a, s) {
                (Some(a), _) if a.results_total > 0 && a.last_status == "ok" => a.last_labels.clone(),
                (_, Some(s)) => {
                    let mut l: Vec<String> = Vec::new();
                    for d in &s.result.detections {
                        if !l.contains(&d.label) {
                            l.push(d.label.clone());
                        }
                    }
                    l
                }
                (Some(a), None) => a.last_labels.clone(),
                (None, None) => Vec::new(),
            };
            CameraView {
                id: id.clone(),
                status,
                last_seen,
                age_s,
                fps: a.map_or(0.0, |a| a.fps),
                results_total: a.map_or(0, |a| a.results_total),
                errors_total: a.map_or(0, |a| a.errors_total),
                stale_total: a.map_or(0, |a| a.stale_total),
                last_status: a.map(|a| a.last_status),
                last_labels: labels,
                snapshot: s.map(|s| s.summary()),
                image: format!("/cameras/{id}/latest.jpg"),
                stream: format!("/cameras/{id}/stream.mjpeg"),
            }
        })
        .collect();
    json_with(StatusCode::OK, &CameraList { now, stale_after_s: stale_after, cameras })
}

async fn fleet_view(State(view): State<Arc<View>>) -> Response {
    let (p50, p99, samples) = view.stats.recent_latency();
    json_with(StatusCode::OK, &view.fleet.view(p50, p99, samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn queries_parse_or_name_the_problem() {
        assert_eq!(render_key(&q(&[])), Ok(RenderKey { boxes: true, height: None }));
        assert_eq!(
            render_key(&q(&[("boxes", "0"), ("h", "240"), ("v", "17")])),
            Ok(RenderKey { boxes: false, height: Some(240) })
        );
        assert!(render_key(&q(&[("h", "abc")])).unwrap_err().contains("height in pixels"));
        assert!(render_key(&q(&[("h", "0")])).unwrap_err().contains("between 16 and 4320"));
        assert!(render_key(&q(&[("boxes", "yes")])).unwrap_err().contains("boxes must be 0 or 1"));
        assert!(render_key(&q(&[("hh", "1")])).unwrap_err().contains("unknown query parameter \"hh\""));
    }

    #[test]
    fn etags_differ_per_snapshot_and_variant() {
        let a = RenderKey { boxes: true, height: None };
        let b = RenderKey { boxes: true, height: Some(240) };
        assert_ne!(a.etag(7), a.etag(8));
        assert_ne!(a.etag(7), b.etag(7));
        assert!(a.etag(7).starts_with('"') && a.etag(7).ends_with('"'));
    }
}
