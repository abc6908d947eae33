//! The latest snapshot of each camera, read from the bucket `edgepool_snapshots`, and the
//! annotated JPEGs rendered from it.
//!
//! The store holds one snapshot per camera, at most `max_cameras` of them, and each snapshot
//! caches at most [`MAX_RENDERS`] rendered sizes: the sink's memory is bounded by
//! `max_cameras × (frame + renders)` whatever the number of viewers. A restarted sink reads the
//! last value of every key first (a watch with history), so the page shows every camera at once.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::StreamExt;
use image::RgbImage;
use prometheus::IntCounter;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use edgepool_wire::{ResultMessage, snapshot};

/// Rendered variants (boxes or not, height) kept per snapshot.
const MAX_RENDERS: usize = 4;

/// Largest frame the sink decodes to draw on (each side), and the decoder's memory cap. Frames
/// got here through a worker that decoded them with the detector's limits; these are a second
/// fence for values written to the bucket by anything else.
const MAX_SIDE: u32 = 8192;
const MAX_ALLOC: u64 = 256 << 20;

/// JPEG quality of rendered images.
const JPEG_QUALITY: u8 = 80;

/// What a viewer asks for: boxes drawn or not, and an optional height to scale to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RenderKey {
    pub boxes: bool,
    pub height: Option<u32>,
}

impl RenderKey {
    /// The ETag of this rendering of snapshot `revision`.
    #[must_use]
    pub fn etag(&self, revision: u64) -> String {
        format!("\"{revision}-{}-{}\"", u8::from(self.boxes), self.height.unwrap_or(0))
    }
}

/// Why a snapshot could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the stored frame does not decode: {0}")]
    Decode(#[from] image::ImageError),
    #[error("the stored frame's format is not recognised: {0}")]
    Format(#[from] std::io::Error),
}

/// One camera's latest snapshot.
#[derive(Debug)]
pub struct Snapshot {
    pub camera: String,
    /// The bucket revision: changes with every new snapshot (ETags, the page's refresh).
    pub revision: u64,
    pub result: ResultMessage,
    value: Bytes,
    image_at: usize,
    renders: Mutex<Vec<(RenderKey, Bytes)>>,
}

impl Snapshot {
    /// The result JSON as the worker stored it.
    #[must_use]
    pub fn result_json(&self) -> Bytes {
        self.value.slice(..self.image_at - 1)
    }

    /// The frame's bytes as the camera published them.
    #[must_use]
    pub fn frame(&self) -> Bytes {
        self.value.slice(self.image_at..)
    }

    /// The JPEG for `key`, rendered once per snapshot and key (call from a blocking thread).
    /// Returns whether it was rendered now (false: served from the cache).
    pub fn render(&self, key: RenderKey) -> Result<(Bytes, bool), RenderError> {
        let mut renders = self.renders.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, b)) = renders.iter().find(|(k, _)| *k == key) {
            return Ok((b.clone(), false));
        }
        let frame = self.frame();
        let is_jpeg = frame.starts_with(&[0xFF, 0xD8, 0xFF]);
        let bytes = if !key.boxes && key.height.is_none() && is_jpeg {
            frame
        } else {
            Bytes::from(draw(&frame, &self.result, key)?)
        };
        if renders.len() >= MAX_RENDERS {
            renders.remove(0);
        }
        renders.push((key, bytes.clone()));
        Ok((bytes, true))
    }

    /// What the camera list shows about it.
    #[must_use]
    pub fn summary(&self) -> SnapshotSummary {
        SnapshotSummary {
            revision: self.revision,
            seq: self.result.seq,
            captured_at: self.result.captured_at,
            processed_at: self.result.processed_at,
            width: self.result.width,
            height: self.result.height,
            worker: self.result.worker.to_string(),
            status: self.result.status.as_str(),
            detections: self.result.detections.len(),
            labels: self.result.detections.iter().map(|d| d.label.clone()).collect(),
        }
    }
}

/// A snapshot in `GET /cameras`.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotSummary {
    pub revision: u64,
    pub seq: Option<u64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub captured_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub processed_at: OffsetDateTime,
    pub width: u32,
    pub height: u32,
    pub worker: String,
    pub status: &'static str,
    pub detections: usize,
    /// The label of each detection in this frame, most confident first (what its image shows).
    pub labels: Vec<String>,
}

/// Decodes the frame, scales it, draws the result's boxes and encodes a JPEG.
fn draw(frame: &[u8], result: &ResultMessage, key: RenderKey) -> Result<Vec<u8>, RenderError> {
    let mut reader = image::ImageReader::new(Cursor::new(frame)).with_guessed_format()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let mut img: RgbImage = reader.decode()?.to_rgb8();
    if let Some(h) = key.height
        && h != img.height()
    {
        let w = ((u64::from(img.width()) * u64::from(h) + u64::from(img.height()) / 2) / u64::from(img.height())).max(1)
            as u32;
        img = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
    }
    if key.boxes {
        edgepool_detector::draw::detections(&mut img, &result.detections);
    }
    let mut out = Vec::with_capacity(64 * 1024);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY).encode_image(&img)?;
    Ok(out)
}

/// Counters of what the store saw.
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    pub kept: IntCounter,
    pub invalid: IntCounter,
    pub dropped: IntCounter,
}

/// Every camera's latest snapshot, and a channel announcing new ones.
#[derive(Debug)]
pub struct Store {
    max_cameras: usize,
    latest: RwLock<HashMap<String, Arc<Snapshot>>>,
    updates: broadcast::Sender<Arc<Snapshot>>,
    metrics: StoreMetrics,
}

impl Store {
    #[must_use]
    pub fn new(max_cameras: usize, metrics: StoreMetrics) -> Self {
        let (updates, _) = broadcast::channel(64);
        Self { max_cameras, latest: RwLock::default(), updates, metrics }
    }

    #[must_use]
    pub fn get(&self, camera: &str) -> Option<Arc<Snapshot>> {
        self.latest.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(camera).cloned()
    }

    #[must_use]
    pub fn all(&self) -> Vec<Arc<Snapshot>> {
        self.latest.read().unwrap_or_else(std::sync::PoisonError::into_inner).values().cloned().collect()
    }

    /// New snapshots as they arrive; a receiver that falls behind skips (never blocks the store).
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Snapshot>> {
        self.updates.subscribe()
    }

    /// Keeps a bucket entry as `camera`'s latest snapshot; deletes and purges remove it.
    pub fn apply(&self, entry: kv::Entry) {
        if entry.operation != kv::Operation::Put {
            self.latest.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&entry.key);
            return;
        }
        let (result, image_at) = match snapshot::decode(&entry.value) {
            Ok(d) => d,
            Err(e) => {
                self.metrics.invalid.inc();
                tracing::debug!(key = %entry.key, error = %e, "not a snapshot");
                return;
            }
        };
        let snap = Arc::new(Snapshot {
            camera: entry.key.clone(),
            revision: entry.revision,
            result,
            value: entry.value,
            image_at,
            renders: Mutex::default(),
        });
        {
            let mut latest = self.latest.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !latest.contains_key(&snap.camera) && latest.len() >= self.max_cameras {
                self.metrics.dropped.inc();
                return;
            }
            latest.insert(snap.camera.clone(), Arc::clone(&snap));
        }
        self.metrics.kept.inc();
        let _ = self.updates.send(snap);
    }

    /// Follows the bucket until `shutdown`: the last value of every camera first, then each new
    /// one. A lost watch (broker restart) is opened again.
    pub async fn watch(&self, js: jetstream::Context, shutdown: CancellationToken) {
        let mut warned = false;
        while !shutdown.is_cancelled() {
            let opened = async {
                let kv = js.get_key_value(snapshot::BUCKET).await.map_err(|e| e.to_string())?;
                kv.watch_with_history(">").await.map_err(|e| e.to_string())
            };
            let mut watch = tokio::select! {
                w = opened => match w {
                    Ok(w) => { warned = false; w }
                    Err(e) => {
                        if !warned {
                            tracing::warn!(
                                bucket = snapshot::BUCKET, error = %e,
                                "cannot watch camera snapshots (run `edgepool setup`); the page and \
                                 /cameras/<id>/latest.jpg stay empty; retrying"
                            );
                            warned = true;
                        }
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(5)) => continue,
                            () = shutdown.cancelled() => return,
                        }
                    }
                },
                () = shutdown.cancelled() => return,
            };
            loop {
                let next = tokio::select! {
                    n = watch.next() => n,
                    () = shutdown.cancelled() => return,
                };
                match next {
                    Some(Ok(entry)) => self.apply(entry),
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "snapshot watch ended; reopening");
                        break;
                    }
                    None => break,
                }
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}
