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
        self.results.with_label_values(&[&r.arch, r.worker.as_str(), r.camera.as_str(), r.status.as_str()]).inc();
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
            self.detections.with_label_values(&[r.camera.as_str(), d.label.as_str()]).inc();
        }
    }
}

/// The JetStream view: stream and consumer state, polled by the sink so one scrape target
/// answers "is the queue growing?" without a separate NATS exporter.
#[derive(Debug, Clone)]
pub struct JetStreamMetrics {
    stream_messages: prometheus::IntGaugeVec,
    stream_bytes: prometheus::IntGaugeVec,
    pending: prometheus::IntGaugeVec,
    ack_pending: prometheus::IntGaugeVec,
    redelivered: prometheus::IntGaugeVec,
    waiting: prometheus::IntGaugeVec,
    up: prometheus::IntGauge,
}

impl JetStreamMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            stream_messages: cat::JS_STREAM_MESSAGES.gauge_vec(registry)?,
            stream_bytes: cat::JS_STREAM_BYTES.gauge_vec(registry)?,
            pending: cat::JS_CONSUMER_PENDING.gauge_vec(registry)?,
            ack_pending: cat::JS_CONSUMER_ACK_PENDING.gauge_vec(registry)?,
            redelivered: cat::JS_CONSUMER_REDELIVERED.gauge_vec(registry)?,
            waiting: cat::JS_CONSUMER_WAITING.gauge_vec(registry)?,
            up: cat::JS_UP.gauge(registry)?,
        })
    }

    /// Polls every `every` until `shutdown`.
    pub async fn poll(
        &self,
        js: async_nats::jetstream::Context,
        every: std::time::Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        use edgepool_wire::nats::{DEADLETTER, DETECTIONS, DETECTORS, FRAMES};
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        loop {
            let mut ok = true;
            for name in [FRAMES, DETECTIONS, DEADLETTER] {
                match js.get_stream(name).await {
                    Ok(s) => match s.get_info().await {
                        Ok(info) => {
                            self.stream_messages.with_label_values(&[name]).set(g(info.state.messages));
                            self.stream_bytes.with_label_values(&[name]).set(g(info.state.bytes));
                        }
                        Err(_) => ok = false,
                    },
                    Err(_) => ok = false,
                }
            }
            match js.get_stream(FRAMES).await {
                Ok(s) => match s.consumer_info(DETECTORS).await {
                    Ok(c) => {
                        let l = [FRAMES, DETECTORS];
                        self.pending.with_label_values(&l).set(g(c.num_pending));
                        self.ack_pending
                            .with_label_values(&l)
                            .set(i64::try_from(c.num_ack_pending).unwrap_or(i64::MAX));
                        self.redelivered
                            .with_label_values(&l)
                            .set(i64::try_from(c.num_redelivered).unwrap_or(i64::MAX));
                        self.waiting.with_label_values(&l).set(i64::try_from(c.num_waiting).unwrap_or(i64::MAX));
                    }
                    Err(_) => ok = false,
                },
                Err(_) => ok = false,
            }
            self.up.set(i64::from(ok));
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}
