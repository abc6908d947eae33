//! Prometheus metrics of a camera (publisher), registered from the catalog in `edgepool-runtime`.

use edgepool_runtime::metrics as cat;
use prometheus::{IntCounter, Registry};

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
