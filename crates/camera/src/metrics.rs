//! Prometheus metrics of a camera (publisher), registered from the catalog in `edgepool-runtime`.

use edgepool_runtime::metrics as cat;
use prometheus::{Histogram, IntCounter, IntGauge, Registry};

use crate::outcome::{AckResult, Outcome};

/// Handles created once; the publish path only increments.
#[derive(Debug, Clone)]
pub struct CameraMetrics {
    pub published: IntCounter,
    pub dropped: IntCounter,
    retries: IntCounter,
    stored: IntCounter,
    duplicate: IntCounter,
    failed: IntCounter,
}

impl CameraMetrics {
    /// Registers the camera metrics in `registry` for `camera`.
    pub fn register(registry: &Registry, camera: &str) -> prometheus::Result<Self> {
        let published = cat::CAMERA_PUBLISHED.counter_vec(registry)?.with_label_values(&[camera]);
        let dropped = cat::CAMERA_DROPPED.counter_vec(registry)?.with_label_values(&[camera]);
        let retries = cat::CAMERA_RETRIES.counter_vec(registry)?.with_label_values(&[camera]);
        let outcomes = cat::CAMERA_OUTCOMES.counter_vec(registry)?;
        let stored = outcomes.with_label_values(&[camera, "stored"]);
        let duplicate = outcomes.with_label_values(&[camera, "duplicate"]);
        let failed = outcomes.with_label_values(&[camera, "failed"]);
        Ok(Self { published, dropped, retries, stored, duplicate, failed })
    }

    pub(crate) fn record(&self, o: Outcome) {
        self.retries.inc_by(u64::from(o.retries));
        match o.result {
            AckResult::Stored => self.stored.inc(),
            AckResult::Duplicate => self.duplicate.inc(),
            AckResult::Failed => self.failed.inc(),
        }
    }
}

/// Metrics of a video source (ffmpeg, the motion gate).
#[derive(Debug, Clone)]
pub struct VideoMetrics {
    pub motion: IntCounter,
    pub keepalive: IntCounter,
    pub every: IntCounter,
    pub still: IntCounter,
    pub motion_check: Histogram,
    pub up: IntGauge,
    pub restarts: IntCounter,
}

impl VideoMetrics {
    /// Registers the video-source metrics in `registry` for `camera`.
    pub fn register(registry: &Registry, camera: &str) -> prometheus::Result<Self> {
        let frames = cat::CAMERA_VIDEO_FRAMES.counter_vec(registry)?;
        Ok(Self {
            motion: frames.with_label_values(&[camera, "motion"]),
            keepalive: frames.with_label_values(&[camera, "keepalive"]),
            every: frames.with_label_values(&[camera, "every"]),
            still: frames.with_label_values(&[camera, "still"]),
            motion_check: cat::CAMERA_MOTION_SECONDS.histogram_vec(registry)?.with_label_values(&[camera]),
            up: cat::CAMERA_SOURCE_UP.gauge_vec(registry)?.with_label_values(&[camera]),
            restarts: cat::CAMERA_SOURCE_RESTARTS.counter_vec(registry)?.with_label_values(&[camera]),
        })
    }
}
