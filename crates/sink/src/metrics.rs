//! Prometheus metrics of the sink, registered from the catalog in `edgepool-wire`.

use edgepool_wire::metrics as cat;
use edgepool_wire::{ResultMessage, Status};
use prometheus::{HistogramVec, IntCounter, IntCounterVec, Registry};

/// Handles created once.
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    results: IntCounterVec,
    pub duplicates: IntCounter,
    pub invalid: IntCounter,
    latency: HistogramVec,
    stage: HistogramVec,
    detections: IntCounterVec,
    last: prometheus::Gauge,
}

impl SinkMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            results: cat::SINK_RESULTS.counter_vec(registry)?,
            duplicates: cat::SINK_DUPLICATES.counter(registry)?,
            invalid: cat::SINK_INVALID.counter(registry)?,
            latency: cat::SINK_LATENCY.histogram_vec(registry)?,
            stage: cat::SINK_STAGE.histogram_vec(registry)?,
            detections: cat::SINK_DETECTIONS.counter_vec(registry)?,
            last: cat::SINK_LAST_RESULT.float_gauge(registry)?,
        })
    }

    /// Records one unique result. `e2e` is capture-to-sink latency in seconds, when known.
    pub fn record(&self, r: &ResultMessage, e2e: Option<f64>, now_unix: f64) {
        self.results.with_label_values(&[&r.arch, &r.worker, &r.camera, r.status.as_str()]).inc();
        self.last.set(now_unix);
        if r.status != Status::Ok {
            return;
        }
        if let Some(s) = e2e {
            self.latency.with_label_values(&[&r.arch]).observe(s.max(0.0));
        }
        let t = &r.timings;
        for (stage, v) in [
            ("queue_wait", t.queue_wait_ms),
            ("decode", t.decode_ms),
            ("preprocess", t.preprocess_ms),
            ("inference", t.inference_ms),
            ("postprocess", t.postprocess_ms),
        ] {
            self.stage.with_label_values(&[&r.arch, stage]).observe(v / 1e3);
        }
        for d in &r.detections {
            self.detections.with_label_values(&[&r.camera, &d.label]).inc();
        }
    }
}
