//! The gateway's side of the pool: each request becomes one frame on the work queue, and waits
//! for that frame's result.
//!
//! Frames go to `requests.<camera>` (stream REQUESTS), which every worker slot asks before the
//! cameras' FRAMES, so a request never queues behind a camera backlog; each carries its
//! deadline (`Edgepool-Deadline`, the request's timeout), past which a worker that has not
//! started it answers `stale` without inference. Results come back on `detections.<camera>`,
//! which the gateway reads with a plain subscription (they are stored in DETECTIONS too, like
//! every result). Every request gets a random 53-bit sequence number, so
//! replicas sharing the camera id never take each other's results, and a restarted gateway never
//! reuses a message id the broker still deduplicates. A waiting request is registered before its
//! frame is published and unregistered when it is answered, times out or its client goes away:
//! nothing is left behind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use futures::StreamExt as _;
use tokio::sync::oneshot;
use tokio::time::Instant;

use edgepool_wire::{CameraId, ContentType, FrameMeta, FrameSeq, ResultMessage};

/// Why a request got no result.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("the broker did not take the frame: {0}")]
    Publish(String),
    #[error("no result within the request's timeout")]
    Timeout,
    #[error("the gateway is stopping")]
    Stopping,
}

type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<ResultMessage>>>>;

/// Publishes frames and routes their results back to the requests waiting for them.
#[derive(Debug, Clone)]
pub struct Pool {
    js: jetstream::Context,
    camera: CameraId,
    /// The subject requests go to: `requests.<camera>`, or `frames.<camera>` without priority.
    subject: String,
    waiting: Waiting,
    /// The task routing results; it stops when the last clone of the pool is dropped.
    _router: Arc<AbortOnDrop>,
}

/// Aborts a task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Removes a waiting request however its handler ends (answer, timeout, dropped future).
struct Registration {
    waiting: Waiting,
    seq: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.seq);
    }
}

impl Pool {
    /// Subscribes to the camera's results and starts routing them; the task ends with the
    /// subscription (the client closing).
    pub async fn start(client: async_nats::Client, camera: CameraId, priority: bool) -> anyhow::Result<Self> {
        let subject = format!("{}.{camera}", edgepool_wire::frame::DETECTIONS_PREFIX);
        let mut results = client.subscribe(subject).await?;
        // The subscription must be on the server before the first frame can be answered.
        client.flush().await?;
        let waiting: Waiting = Arc::default();
        let routes = waiting.clone();
        let router = tokio::spawn(async move {
            while let Some(msg) = results.next().await {
                let Ok(result) = serde_json::from_slice::<ResultMessage>(&msg.payload) else {
                    tracing::warn!(subject = %msg.subject, "a result that does not parse; ignored");
                    continue;
                };
                let Some(seq) = result.seq else { continue };
                // Absent: another replica's request, or one that already gave up.
                let tx = routes.lock().unwrap_or_else(PoisonError::into_inner).remove(&seq);
                if let Some(tx) = tx {
                    let _ = tx.send(result);
                }
            }
        });
        let prefix = if priority { edgepool_wire::frame::REQUESTS_PREFIX } else { edgepool_wire::frame::FRAMES_PREFIX };
        let subject = format!("{prefix}.{camera}");
        Ok(Self { js: jetstream::new(client), camera, subject, waiting, _router: Arc::new(AbortOnDrop(router)) })
    }

    /// Requests waiting for their result now.
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Puts one image on the work queue and waits until `deadline` for its result. `raw` is the
    /// width and height of an `image/x-raw-rgb` image.
    pub async fn detect(
        &self,
        image: Bytes,
        content_type: ContentType,
        raw: Option<(u32, u32)>,
        deadline: Instant,
    ) -> Result<ResultMessage, PoolError> {
        let seq = random_seq();
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner).insert(seq, tx);
        let _registration = Registration { waiting: self.waiting.clone(), seq };

        let now = time::OffsetDateTime::now_utc();
        let meta = FrameMeta {
            camera: self.camera.clone(),
            seq: FrameSeq(seq),
            captured_at: now,
            content_type,
            traceparent: None,
            trigger: None,
            motion_regions: Vec::new(),
            deadline: Some(now + remaining(deadline)),
            raw_size: raw,
        };
        let headers = edgepool_nats::frame_headers(&meta).map_err(|e| PoolError::Publish(e.to_string()))?;
        let publish = async {
            let ack = self.js.publish_with_headers(self.subject.clone(), headers, image).await?;
            ack.await.map(|_| ())
        };
        match tokio::time::timeout_at(deadline, publish).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(PoolError::Publish(e.to_string())),
            Err(_) => return Err(PoolError::Timeout),
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Err(PoolError::Stopping),
            Err(_) => Err(PoolError::Timeout),
        }
    }
}

/// A random sequence number below 2^53, so every JSON reader keeps it exact.
fn random_seq() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        // No system randomness: time is unique enough for one process's requests.
        let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        b = (nanos as u64).to_le_bytes();
    }
    (u64::from_le_bytes(b) & ((1 << 53) - 1)).max(1)
}

/// How long until `deadline`, for messages.
#[must_use]
pub fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_fit_json_and_differ() {
        let a: Vec<u64> = (0..1000).map(|_| random_seq()).collect();
        assert!(a.iter().all(|&s| s > 0 && s < (1 << 53)));
        let unique: std::collections::HashSet<_> = a.iter().collect();
        assert_eq!(unique.len(), a.len());
    }
}
