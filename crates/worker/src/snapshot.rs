//! Camera snapshots: after an `ok` result is stored, the frame and its result go to the bucket
//! `edgepool_snapshots` (key = camera id), at most once per camera per `snapshot_interval`.
//!
//! A snapshot is a convenience for viewers, never part of a frame's outcome: it is written in the
//! background after the result is acked, a failed or slow write is counted and forgotten, and at
//! most [`IN_FLIGHT`] writes are pending at once, so a slow broker costs the pipeline nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Semaphore;

use edgepool_wire::{ResultMessage, snapshot};

use crate::config::WorkerConfig;
use crate::metrics::WorkerMetrics;

/// Snapshot writes pending at once; more are skipped (`outcome="busy"`).
const IN_FLIGHT: usize = 4;

/// How long a write may wait for the stream's ack.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Cameras remembered for rate limiting before old entries are pruned.
const MAX_TRACKED: usize = 4096;

#[derive(Debug)]
pub(crate) struct Snapshots {
    enabled: bool,
    interval: Duration,
    last: Mutex<HashMap<String, Instant>>,
    in_flight: Arc<Semaphore>,
    warned: Arc<AtomicBool>,
}

impl Snapshots {
    pub fn new(cfg: &WorkerConfig) -> Self {
        Self {
            enabled: cfg.snapshots,
            interval: cfg.snapshot_interval,
            last: Mutex::default(),
            in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
            warned: Arc::default(),
        }
    }

    /// Whether `camera` is due for a snapshot at `now`; if so, marks it taken.
    fn due(&self, camera: &str, now: Instant) -> bool {
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = last.get(camera)
            && now.duration_since(*t) < self.interval
        {
            return false;
        }
        if last.len() >= MAX_TRACKED {
            let interval = self.interval;
            last.retain(|_, t| now.duration_since(*t) < interval);
        }
        last.insert(camera.to_owned(), now);
        true
    }

    /// Stores `frame` with `result` in the background when the camera is due.
    pub fn offer(
        &self,
        js: &async_nats::jetstream::Context,
        metrics: &WorkerMetrics,
        result: &ResultMessage,
        frame: &Bytes,
    ) {
        if !self.enabled || !self.due(result.camera.as_str(), Instant::now()) {
            return;
        }
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            metrics.snapshot_busy.inc();
            return;
        };
        let Ok(json) = serde_json::to_vec(result) else { return };
        let value = snapshot::encode(&json, frame);
        let subject = format!("$KV.{}.{}", snapshot::BUCKET, result.camera.as_str());
        let (js, metrics, warned) = (js.clone(), metrics.clone(), Arc::clone(&self.warned));
        tokio::spawn(async move {
            let _permit = permit;
            let len = value.len() as u64;
            let stored = async {
                let ack = js.publish(subject, value.into()).await.map_err(|e| e.to_string())?;
                ack.await.map_err(|e| e.to_string())
            };
            match tokio::time::timeout(ACK_TIMEOUT, stored).await {
                Ok(Ok(_)) => {
                    metrics.snapshot_stored.inc();
                    metrics.snapshot_bytes.inc_by(len);
                }
                Ok(Err(e)) => {
                    metrics.snapshot_failed.inc();
                    if !warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            error = %e,
                            bucket = snapshot::BUCKET,
                            "could not store a camera snapshot (run `edgepool setup`, or set \
                             worker.snapshots = false); results are not affected. Further failures are only counted \
                             (edgepool_worker_snapshots_total{{outcome=\"failed\"}})"
                        );
                    }
                }
                Err(_) => metrics.snapshot_failed.inc(),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_snapshot_per_camera_per_interval() {
        let s = Snapshots::new(&WorkerConfig::default());
        let t0 = Instant::now();
        assert!(s.due("cam-1", t0));
        assert!(!s.due("cam-1", t0 + Duration::from_millis(499)));
        assert!(s.due("cam-2", t0 + Duration::from_millis(10)), "each camera has its own clock");
        assert!(s.due("cam-1", t0 + Duration::from_millis(500)));
    }

    #[test]
    fn the_rate_table_stays_bounded() {
        let s = Snapshots::new(&WorkerConfig::default());
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED {
            assert!(s.due(&format!("cam-{i}"), t0));
        }
        assert!(s.due("one-more", t0 + Duration::from_secs(1)));
        assert_eq!(s.last.lock().unwrap().len(), 1, "entries past their interval were pruned");
    }
}
