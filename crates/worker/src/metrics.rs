//! Prometheus metrics of one worker, registered from the catalog in `edgepool-wire`.

use edgepool_runtime::metrics as cat;
use edgepool_wire::ErrorKind;
use prometheus::{Counter, Histogram, IntCounter, IntCounterVec, IntGauge, Registry};

use crate::outcome::RetryReason;

/// Handles created once; the per-frame path only increments.
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    worker: String,
    arch: &'static str,
    pub ok: IntCounter,
    pub error: IntCounter,
    pub stale: IntCounter,
    errors: IntCounterVec,
    naks: IntCounterVec,
    pub decode: Histogram,
    pub preprocess: Histogram,
    pub inference: Histogram,
    pub postprocess: Histogram,
    pub emulated_delay: Histogram,
    pub publish: Histogram,
    pub busy: Counter,
    pub slots: IntGauge,
    pub in_flight: IntGauge,
    pub stalls: IntCounter,
    pub slowdown: prometheus::Gauge,
    pub snapshot_stored: IntCounter,
    pub snapshot_failed: IntCounter,
    pub snapshot_busy: IntCounter,
    pub snapshot_bytes: IntCounter,
}

impl WorkerMetrics {
    pub fn register(registry: &Registry, worker: &str, arch: &'static str) -> prometheus::Result<Self> {
        let l = [worker, arch];
        let frames = cat::WORKER_FRAMES.counter_vec(registry)?;
        let stage = cat::WORKER_STAGE.histogram_vec(registry)?;
        let h = |s: &str| stage.with_label_values(&[worker, arch, s]);
        let snapshots = cat::WORKER_SNAPSHOTS.counter_vec(registry)?;
        let snapshot = |outcome: &str| snapshots.with_label_values(&[worker, arch, outcome]);
        Ok(Self {
            worker: worker.to_owned(),
            arch,
            ok: frames.with_label_values(&[worker, arch, "ok"]),
            error: frames.with_label_values(&[worker, arch, "error"]),
            stale: frames.with_label_values(&[worker, arch, "stale"]),
            errors: cat::WORKER_ERRORS.counter_vec(registry)?,
            naks: cat::WORKER_RETRIES.counter_vec(registry)?,
            decode: h("decode"),
            preprocess: h("preprocess"),
            inference: h("inference"),
            postprocess: h("postprocess"),
            emulated_delay: h("emulated_delay"),
            publish: h("publish"),
            busy: cat::WORKER_BUSY.float_counter_vec(registry)?.with_label_values(&l),
            slots: cat::WORKER_SLOTS.gauge_vec(registry)?.with_label_values(&l),
            in_flight: cat::WORKER_IN_FLIGHT.gauge_vec(registry)?.with_label_values(&l),
            stalls: cat::WORKER_STALLS.counter_vec(registry)?.with_label_values(&l),
            slowdown: cat::WORKER_SLOWDOWN.float_gauge_vec(registry)?.with_label_values(&l),
            snapshot_stored: snapshot("stored"),
            snapshot_failed: snapshot("failed"),
            snapshot_busy: snapshot("busy"),
            snapshot_bytes: cat::WORKER_SNAPSHOT_BYTES.counter_vec(registry)?.with_label_values(&l),
        })
    }

    /// The label comes from the [`ErrorKind`] enum, so it stays bounded.
    pub fn error_kind(&self, kind: ErrorKind) {
        self.errors.with_label_values(&[&self.worker, self.arch, kind.as_str()]).inc();
    }

    /// The label comes from the [`RetryReason`] enum, so it stays bounded.
    pub fn nak(&self, reason: RetryReason) {
        self.naks.with_label_values(&[&self.worker, self.arch, reason.as_str()]).inc();
    }
}
