//! [`Publisher`]: acked, deduplicated, bounded publishing of frames.

use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use time::OffsetDateTime;

use edgepool_nats::frame_headers;
use edgepool_wire::frame::FRAMES_PREFIX;
use edgepool_wire::{BBox, CameraId, ContentType, FrameMeta, FrameSeq, TimeOutOfRange, Trigger};

use crate::metrics::CameraMetrics;
use crate::outcome::{AckResult, Outcome};

/// One frame to publish: the encoded image as-is, its type and capture time.
#[derive(Debug, Clone)]
pub struct Frame {
    pub payload: Bytes,
    pub content_type: ContentType,
    pub captured_at: OffsetDateTime,
    /// W3C `traceparent` to carry through the pipeline, if the producer traces.
    pub traceparent: Option<String>,
    /// Why the camera publishes it (`Edgepool-Trigger`), if it gates on motion.
    pub trigger: Option<Trigger>,
    /// Where it saw motion (`Edgepool-Motion-Regions`).
    pub motion_regions: Vec<BBox>,
}

impl Frame {
    /// A frame captured now.
    #[must_use]
    pub fn now(payload: Bytes, content_type: ContentType) -> Self {
        Self {
            payload,
            content_type,
            captured_at: OffsetDateTime::now_utc(),
            traceparent: None,
            trigger: None,
            motion_regions: Vec::new(),
        }
    }
}

/// Tuning of a [`Publisher`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublisherConfig {
    /// Publishes awaiting their ack at once; the bound on what a camera buffers.
    pub max_in_flight: usize,
    /// Attempts per frame (the first plus retries), each with the same `Nats-Msg-Id`.
    pub attempts: u32,
    /// Delay before the first retry; doubles up to 8x.
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// How long one attempt waits for the JetStream ack.
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// When `max_in_flight` is reached: drop the new frame (live cameras: an old frame in
    /// hand is worth less than the next one) instead of waiting.
    pub drop_when_full: bool,
    /// On shutdown, how long to wait for the acks of frames in flight; frames still unacked
    /// then are abandoned (counted, never acknowledged, so nothing acknowledged is lost).
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 32,
            attempts: 6,
            retry_backoff: Duration::from_millis(250),
            ack_timeout: Duration::from_secs(5),
            drop_when_full: false,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// Counts of what happened to the frames given to a [`Publisher`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Frames handed to `publish`.
    pub published: u64,
    /// Stored by JetStream (ack received, not a duplicate).
    pub acked: u64,
    /// Acked as duplicates: an earlier attempt had been stored already.
    pub duplicates: u64,
    /// Given up after all attempts.
    pub failed: u64,
    /// Dropped because `max_in_flight` was reached with `drop_when_full`.
    pub dropped: u64,
    /// Retried attempts (not frames).
    pub retries: u64,
    /// Still unacked when a shutdown's drain timeout ran out: not stored as far as the camera
    /// knows, and never reported as acknowledged.
    pub abandoned: u64,
}

/// What `publish` did with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// In flight with this sequence number.
    Sent(FrameSeq),
    /// Dropped because the in-flight bound was reached (see `drop_when_full`).
    Dropped(FrameSeq),
}

/// Why a publish could not even start.
#[derive(Debug, Error)]
pub enum PublishError {
    #[error("frame is empty")]
    Empty,
    #[error("frame is {size} bytes; the broker accepts at most {max}")]
    TooLarge { size: usize, max: usize },
    /// `captured_at` cannot be written as the contract's RFC 3339 UTC time.
    #[error("frame's capture time: {0}")]
    BadCaptureTime(#[from] TimeOutOfRange),
}

type AckFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Publishes one camera's frames. Sequence numbers are assigned here, strictly increasing.
pub struct Publisher {
    js: jetstream::Context,
    camera: CameraId,
    subject: String,
    next_seq: u64,
    cfg: PublisherConfig,
    in_flight: FuturesUnordered<AckFuture>,
    stats: Stats,
    metrics: Option<CameraMetrics>,
    on_outcome: Option<Box<dyn FnMut(Outcome) + Send>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("camera", &self.camera)
            .field("next_seq", &self.next_seq)
            .field("in_flight", &self.in_flight.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher for `camera` whose first frame gets sequence `first_seq`.
    ///
    /// Sequence numbers must never repeat for a camera within the FRAMES `duplicate_window`
    /// (the broker would drop the new frame as a duplicate). `edgepool camera` starts at the
    /// current Unix time in microseconds so a restarted camera never reuses one.
    #[must_use]
    pub fn new(js: jetstream::Context, camera: CameraId, first_seq: u64, cfg: PublisherConfig) -> Self {
        let subject = format!("{FRAMES_PREFIX}.{camera}");
        Self {
            js,
            camera,
            subject,
            next_seq: first_seq,
            cfg,
            in_flight: FuturesUnordered::new(),
            stats: Stats::default(),
            metrics: None,
            on_outcome: None,
        }
    }

    /// Records counts into these metrics as well.
    #[must_use]
    pub fn with_metrics(mut self, metrics: CameraMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Calls `f` with the final outcome of every frame (checkers record the acked set with it).
    #[must_use]
    pub fn on_outcome(mut self, f: impl FnMut(Outcome) + Send + 'static) -> Self {
        self.on_outcome = Some(Box::new(f));
        self
    }

    #[must_use]
    pub fn camera(&self) -> &CameraId {
        &self.camera
    }

    /// Counts so far (in-flight frames are in `published` only).
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Frames awaiting their ack.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Starts publishing `frame`. Waits only while `max_in_flight` frames are awaiting their ack
    /// (or drops the frame instead, with `drop_when_full`). The ack itself is awaited in the
    /// background; call [`Publisher::flush`] to wait for all of them.
    pub async fn publish(&mut self, frame: Frame) -> Result<Submitted, PublishError> {
        if frame.payload.is_empty() {
            return Err(PublishError::Empty);
        }
        let max = self.js.client().server_info().max_payload;
        if max > 0 && frame.payload.len() > max {
            return Err(PublishError::TooLarge { size: frame.payload.len(), max });
        }
        let seq = FrameSeq(self.next_seq);
        // Headers before anything counts the frame: one the contract cannot carry takes no seq.
        let meta = FrameMeta {
            camera: self.camera.clone(),
            seq,
            captured_at: frame.captured_at,
            content_type: frame.content_type,
            traceparent: frame.traceparent,
            trigger: frame.trigger,
            motion_regions: frame.motion_regions,
            deadline: None,
            raw_size: None,
        };
        let headers = frame_headers(&meta)?;
        self.next_seq += 1;
        self.stats.published += 1;
        if let Some(m) = &self.metrics {
            m.published.inc();
        }

        // Reap what has finished, then respect the bound.
        while let Some(Some(done)) = futures::FutureExt::now_or_never(self.in_flight.next()) {
            self.record(done);
        }
        if self.in_flight.len() >= self.cfg.max_in_flight.max(1) {
            if self.cfg.drop_when_full {
                self.stats.dropped += 1;
                if let Some(m) = &self.metrics {
                    m.dropped.inc();
                }
                return Ok(Submitted::Dropped(seq));
            }
            while self.in_flight.len() >= self.cfg.max_in_flight.max(1) {
                if let Some(done) = self.in_flight.next().await {
                    self.record(done);
                }
            }
        }

        let traceparent = meta.traceparent.clone();
        let js = self.js.clone();
        let subject = self.subject.clone();
        let cfg = self.cfg.clone();
        let payload = frame.payload;
        self.in_flight.push(Box::pin(async move {
            let mut backoff = cfg.retry_backoff;
            let mut retries = 0;
            for attempt in 0..cfg.attempts.max(1) {
                if attempt > 0 {
                    retries += 1;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(cfg.retry_backoff * 8);
                }
                let sent = js.publish_with_headers(subject.clone(), headers.clone(), payload.clone()).await;
                let ack = match sent {
                    Ok(ack) => tokio::time::timeout(cfg.ack_timeout, ack.into_future()).await,
                    Err(e) => {
                        tracing::debug!(%e, %seq, "publish failed, retrying with the same msg id");
                        continue;
                    }
                };
                match ack {
                    Ok(Ok(ack)) if ack.duplicate => return Outcome { seq, result: AckResult::Duplicate, retries },
                    Ok(Ok(ack)) => {
                        tracing::debug!(
                            %subject,
                            %seq,
                            stream_seq = ack.sequence,
                            traceparent = traceparent.as_deref().unwrap_or(""),
                            "frame stored"
                        );
                        return Outcome { seq, result: AckResult::Stored, retries };
                    }
                    Ok(Err(e)) => tracing::debug!(%e, %seq, "publish not acked, retrying"),
                    Err(_) => tracing::debug!(%seq, "publish ack timed out, retrying"),
                }
            }
            Outcome { seq, result: AckResult::Failed, retries }
        }));
        Ok(Submitted::Sent(seq))
    }

    fn record(&mut self, o: Outcome) {
        self.stats.retries += u64::from(o.retries);
        match o.result {
            AckResult::Stored => self.stats.acked += 1,
            AckResult::Duplicate => self.stats.duplicates += 1,
            AckResult::Failed => {
                self.stats.failed += 1;
                tracing::warn!(camera = %self.camera, seq = %o.seq, "frame not stored after all attempts");
            }
        }
        if let Some(m) = &self.metrics {
            m.record(o);
        }
        if let Some(f) = &mut self.on_outcome {
            f(o);
        }
    }

    /// Waits for every in-flight frame's final outcome and returns the totals.
    pub async fn flush(&mut self) -> Stats {
        while let Some(done) = self.in_flight.next().await {
            self.record(done);
        }
        self.stats
    }

    /// Like [`Publisher::flush`], but gives up after `drain_timeout` (the broker may be gone):
    /// frames still in flight are counted as `abandoned` and dropped.
    pub async fn drain(&mut self) -> Stats {
        let deadline = tokio::time::Instant::now() + self.cfg.drain_timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.in_flight.next()).await {
                Ok(Some(done)) => self.record(done),
                Ok(None) => break,
                Err(_) => {
                    let left = self.in_flight.len() as u64;
                    tracing::warn!(camera = %self.camera, frames = left, "frames still unacked at shutdown; abandoned");
                    self.stats.abandoned += left;
                    self.in_flight = FuturesUnordered::new();
                    break;
                }
            }
        }
        self.stats
    }
}
