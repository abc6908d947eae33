//! Prometheus metrics of a camera (publisher), registered from the catalog in `edgepool-runtime`.

use edgepool_runtime::metrics as cat;
use prometheus::{CounterVec, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry};

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
    /// Registers the camera metrics in `registry` for one `camera` (several cameras in one
    /// registry: [`CameraFamily`]).
    pub fn register(registry: &Registry, camera: &str) -> prometheus::Result<Self> {
        Ok(CameraFamily::register(registry)?.camera(camera))
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

/// The labelled camera metrics of a registry, registered once for any number of cameras.
#[derive(Debug, Clone)]
pub struct CameraFamily {
    published: IntCounterVec,
    dropped: IntCounterVec,
    retries: IntCounterVec,
    outcomes: IntCounterVec,
}

impl CameraFamily {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            published: cat::CAMERA_PUBLISHED.counter_vec(registry)?,
            dropped: cat::CAMERA_DROPPED.counter_vec(registry)?,
            retries: cat::CAMERA_RETRIES.counter_vec(registry)?,
            outcomes: cat::CAMERA_OUTCOMES.counter_vec(registry)?,
        })
    }

    /// One camera's handles.
    #[must_use]
    pub fn camera(&self, camera: &str) -> CameraMetrics {
        CameraMetrics {
            published: self.published.with_label_values(&[camera]),
            dropped: self.dropped.with_label_values(&[camera]),
            retries: self.retries.with_label_values(&[camera]),
            stored: self.outcomes.with_label_values(&[camera, "stored"]),
            duplicate: self.outcomes.with_label_values(&[camera, "duplicate"]),
            failed: self.outcomes.with_label_values(&[camera, "failed"]),
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
    pub ffmpeg_cpu: prometheus::Counter,
}

impl VideoMetrics {
    /// Registers the video-source metrics in `registry` for one `camera` (several cameras in
    /// one registry: [`VideoFamily`]).
    pub fn register(registry: &Registry, camera: &str) -> prometheus::Result<Self> {
        Ok(VideoFamily::register(registry)?.camera(camera))
    }
}

/// The labelled video-source metrics of a registry, registered once for any number of cameras.
#[derive(Debug, Clone)]
pub struct VideoFamily {
    frames: IntCounterVec,
    motion_check: HistogramVec,
    up: IntGaugeVec,
    restarts: IntCounterVec,
    ffmpeg_cpu: CounterVec,
}

impl VideoFamily {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            frames: cat::CAMERA_VIDEO_FRAMES.counter_vec(registry)?,
            motion_check: cat::CAMERA_MOTION_SECONDS.histogram_vec(registry)?,
            up: cat::CAMERA_SOURCE_UP.gauge_vec(registry)?,
            restarts: cat::CAMERA_SOURCE_RESTARTS.counter_vec(registry)?,
            ffmpeg_cpu: cat::CAMERA_FFMPEG_CPU.float_counter_vec(registry)?,
        })
    }

    /// One camera's handles.
    #[must_use]
    pub fn camera(&self, camera: &str) -> VideoMetrics {
        VideoMetrics {
            motion: self.frames.with_label_values(&[camera, "motion"]),
            keepalive: self.frames.with_label_values(&[camera, "keepalive"]),
            every: self.frames.with_label_values(&[camera, "every"]),
            still: self.frames.with_label_values(&[camera, "still"]),
            motion_check: self.motion_check.with_label_values(&[camera]),
            up: self.up.with_label_values(&[camera]),
            restarts: self.restarts.with_label_values(&[camera]),
            ffmpeg_cpu: self.ffmpeg_cpu.with_label_values(&[camera]),
        }
    }
}
