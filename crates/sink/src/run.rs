//! The sink loop: DETECTIONS → dedupe → metrics, JSONL, live feed; then ack.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer};
use axum::Router;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use edgepool_nats::DETECTIONS;
use edgepool_nats::Secret;
use edgepool_wire::ResultMessage;

use crate::metrics::{JetStreamMetrics, SinkMetrics};
use crate::stats::SinkStats;
use crate::view::{View, ViewConfig};
use edgepool_runtime::http::Readiness;

/// Sink settings (`[sink]`, `EDGEPOOL_SINK_*`, `edgepool sink` flags).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    /// Durable consumer name on DETECTIONS; sinks sharing a name share the work.
    pub durable: String,
    /// On first creation, start from the oldest stored result instead of new ones only.
    pub replay: bool,
    /// Append every unique result as one JSON line to this file.
    pub jsonl: Option<PathBuf>,
    /// Address of /metrics, /healthz, /readyz, /events, the live page and the camera endpoints.
    pub listen: std::net::SocketAddr,
    /// Watch the bucket `edgepool_snapshots` for each camera's latest frame (the page's images,
    /// `latest.jpg`, the MJPEG streams). Off: the page shows activity and the fleet only.
    pub snapshots: bool,
    /// Open MJPEG streams at most; one more is answered 503 (Retry-After).
    pub max_stream_viewers: usize,
    /// Cameras the page and camera endpoints track at most (bounds the sink's memory).
    pub max_cameras: usize,
    /// A camera with no result for this long is shown `stale`.
    #[serde(with = "humantime_serde")]
    pub camera_stale_after: Duration,
    /// Require this token for the page, `/events`, `/cameras*` and `/fleet`: `Authorization:
    /// Bearer <token>`, or basic auth with the token as the password (what a browser asks for).
    /// `/healthz` and `/readyz` stay open. From a Secret: `EDGEPOOL_SINK_TOKEN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
    /// Require this token for `/metrics` too (default: open, for Prometheus; restrict it by
    /// NetworkPolicy). `EDGEPOOL_SINK_METRICS_TOKEN`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_token: Option<Secret>,
}

/// The sink's default HTTP address: local only; a deployment sets `0.0.0.0:9090`.
pub const DEFAULT_LISTEN: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9090);

impl Default for SinkConfig {
    fn default() -> Self {
        let view = ViewConfig::default();
        Self {
            durable: "sink".into(),
            replay: false,
            jsonl: None,
            listen: DEFAULT_LISTEN,
            snapshots: view.snapshots,
            max_stream_viewers: view.max_stream_viewers,
            max_cameras: view.max_cameras,
            camera_stale_after: view.camera_stale_after,
            token: None,
            metrics_token: None,
        }
    }
}

impl SinkConfig {
    /// The live view's part of the settings.
    #[must_use]
    pub fn view(&self) -> ViewConfig {
        ViewConfig {
            snapshots: self.snapshots,
            max_stream_viewers: self.max_stream_viewers,
            max_cameras: self.max_cameras.max(1),
            camera_stale_after: self.camera_stale_after,
        }
    }
}

/// How long the sink waits for the broker to take an ack (or a final flush) before moving on.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the sink polls stream and consumer info for the JetStream metrics: often enough for
/// a 15 s scrape interval, rare enough to cost the server nothing.
const JETSTREAM_POLL: Duration = Duration::from_secs(5);

/// One event of the live feed.
#[derive(Debug, Clone)]
struct FeedItem {
    camera: String,
    json: Arc<str>,
}

/// A running sink's shared parts.
#[derive(Debug, Clone)]
pub struct Sink {
    stats: Arc<SinkStats>,
    metrics: SinkMetrics,
    js_metrics: JetStreamMetrics,
    feed: broadcast::Sender<FeedItem>,
    ready: Readiness,
    view: Arc<View>,
}

impl Sink {
    /// Registers metrics in `registry`. `stats` collects the aggregates (see [`SinkStats`]).
    pub fn new(registry: &prometheus::Registry, stats: Arc<SinkStats>) -> anyhow::Result<Self> {
        Self::with_view(registry, stats, ViewConfig::default())
    }

    /// [`Sink::new`] with the live view's settings ([`SinkConfig::view`]).
    pub fn with_view(registry: &prometheus::Registry, stats: Arc<SinkStats>, view: ViewConfig) -> anyhow::Result<Self> {
        let metrics = SinkMetrics::register(registry)?;
        let js_metrics = JetStreamMetrics::register(registry)?;
        let (feed, _) = broadcast::channel(1024);
        let view = Arc::new(View::new(registry, Arc::clone(&stats), view)?);
        Ok(Self { stats, metrics, js_metrics, feed, ready: Readiness::default(), view })
    }

    #[must_use]
    pub fn stats(&self) -> &Arc<SinkStats> {
        &self.stats
    }

    #[must_use]
    pub fn readiness(&self) -> Readiness {
        self.ready.clone()
    }

    /// `/events`: server-sent events, one `result` event per unique result, for subscribers
    /// that do not speak NATS (`?camera=ID` filters); and the live view ([`View::router`]): the
    /// page at `/`, `/cameras`, each camera's `latest.jpg`, `latest.json` and `stream.mjpeg`,
    /// and `/fleet`.
    pub fn router(&self) -> Router {
        Router::new().route("/events", get(events)).with_state(self.feed.clone()).merge(self.view.router())
    }

    #[must_use]
    pub fn view(&self) -> &Arc<View> {
        &self.view
    }

    /// Binds the durable consumer, then processes results until `shutdown`.
    pub async fn run(
        &self,
        js: jetstream::Context,
        cfg: SinkConfig,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let stream = js.get_stream(DETECTIONS).await.context("DETECTIONS stream not found; run `edgepool setup`")?;
        // The consumer is defined in nats/consumers/DETECTIONS.sink.json; only its durable name
        // and where a new one starts (replay or not) come from the sink's configuration.
        let definition = edgepool_nats::sink_consumer(&cfg.durable, cfg.replay)
            .context("nats/consumers/DETECTIONS.sink.json does not parse")?;
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(&cfg.durable, definition)
            .await
            .with_context(|| format!("binding consumer DETECTIONS/{}", cfg.durable))?;
        let mut jsonl = match &cfg.jsonl {
            Some(path) => Some(tokio::io::BufWriter::new(
                tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await
                    .with_context(|| format!("opening {}", path.display()))?,
            )),
            None => None,
        };
        self.ready.set(true);
        tracing::info!(durable = %cfg.durable, "sink started");
        let poller = {
            let (m, js, stop) = (self.js_metrics.clone(), js.clone(), shutdown.clone());
            tokio::spawn(async move { m.poll(js, JETSTREAM_POLL, stop).await })
        };
        let view = tokio::spawn(Arc::clone(&self.view).follow(js.clone(), shutdown.clone()));

        while !shutdown.is_cancelled() {
            let start = consumer
                .stream()
                .max_messages_per_batch(256)
                .max_bytes_per_batch(4 << 20)
                .heartbeat(Duration::from_secs(5))
                .expires(Duration::from_secs(15))
                .messages();
            // Starting can wait on a broker that is gone: a shutdown must not.
            let started = tokio::select! {
                s = start => s,
                () = shutdown.cancelled() => break,
            };
            let mut messages = match started {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "could not start consuming results; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = shutdown.cancelled() => break,
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    n = messages.next() => n,
                    () = shutdown.cancelled() => None,
                };
                let msg = match next {
                    None => break,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "result stream hiccup");
                        continue;
                    }
                    Some(Ok(m)) => m,
                };
                self.handle(&msg.payload, jsonl.as_mut()).await;
                // A plain ack only queues a publish, but with the broker gone that queue fills.
                match tokio::time::timeout(ACK_TIMEOUT, msg.ack()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "result ack failed; it will be redelivered and deduplicated");
                    }
                    Err(_) => tracing::debug!("result ack timed out; it will be redelivered and deduplicated"),
                }
                if messages_idle(&msg)
                    && let Some(w) = jsonl.as_mut()
                {
                    let _ = w.flush().await;
                }
            }
        }
        if let Some(w) = jsonl.as_mut() {
            w.flush().await.context("flushing the JSONL file")?;
        }
        self.ready.set(false);
        // Everything below waits on the broker, which may be gone: each wait is bounded, and
        // what is not acked by then is redelivered to the next sink and deduplicated.
        if tokio::time::timeout(ACK_TIMEOUT, poller).await.is_err() {
            tracing::debug!("the JetStream poller did not stop in time");
        }
        if tokio::time::timeout(ACK_TIMEOUT, view).await.is_err() {
            tracing::debug!("the snapshot watch did not stop in time");
        }
        // Plain acks are fire-and-forget: flush them before leaving, unless the broker is
        // unreachable (then the flush could only time out).
        if js.client().connection_state() == async_nats::connection::State::Disconnected {
            tracing::warn!(
                "NATS is unreachable: the last result acks are not flushed; those results will be \
                 redelivered (deduplicated)"
            );
        } else if tokio::time::timeout(ACK_TIMEOUT, js.client().flush()).await.is_err() {
            tracing::warn!("could not flush the last result acks; those results will be redelivered (deduplicated)");
        }
        Ok(())
    }

    async fn handle(&self, payload: &[u8], jsonl: Option<&mut tokio::io::BufWriter<tokio::fs::File>>) {
        let result: ResultMessage = match serde_json::from_slice(payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "invalid result message");
                self.metrics.invalid.inc();
                self.stats.invalid();
                return;
            }
        };
        let now = OffsetDateTime::now_utc();
        let e2e = result.captured_at.map(|c| (now - c).as_seconds_f64());
        if !self.stats.record(&result, e2e) {
            self.metrics.duplicates.inc();
            return;
        }
        self.metrics.record(&result, e2e, now.unix_timestamp_nanos() as f64 / 1e9);
        self.view.observe(&result);
        tracing::debug!(
            camera = %result.camera, seq = ?result.seq, worker = %result.worker, status = result.status.as_str(),
            traceparent = result.traceparent.as_deref().unwrap_or(""), e2e_s = e2e.unwrap_or(f64::NAN), "result"
        );
        let json: Arc<str> = String::from_utf8_lossy(payload).into();
        if let Some(w) = jsonl {
            let mut line = Vec::with_capacity(json.len() + 1);
            line.extend_from_slice(json.as_bytes());
            line.push(b'\n');
            if let Err(e) = w.write_all(&line).await {
                tracing::error!(error = %e, "writing JSONL failed");
            }
        }
        let _ = self.feed.send(FeedItem { camera: result.camera.to_string(), json });
    }
}

/// Flush the JSONL buffer when the server says nothing more is pending right now.
fn messages_idle(msg: &jetstream::Message) -> bool {
    msg.info().map(|i| i.pending == 0).unwrap_or(true)
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    camera: Option<String>,
}

async fn events(
    State(feed): State<broadcast::Sender<FeedItem>>,
    Query(q): Query<EventsQuery>,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let rx = feed.subscribe();
    let stream = futures::stream::unfold((rx, q.camera), |(mut rx, camera)| async move {
        loop {
            match rx.recv().await {
                Ok(item) if camera.as_ref().is_none_or(|c| *c == item.camera) => {
                    let ev = Event::default().event("result").data(&item.json);
                    return Some((Ok(ev), (rx, camera)));
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let ev = Event::default().event("lagged").data(n.to_string());
                    return Some((Ok(ev), (rx, camera)));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
