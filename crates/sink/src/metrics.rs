//! Prometheus metrics of the sink, registered from the catalog in `edgepool-runtime`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use edgepool_runtime::metrics as cat;
use edgepool_wire::{ResultMessage, Status};
use prometheus::{HistogramVec, IntCounter, IntCounterVec, Registry};

/// A worker's `edgepool_sink_results_total` series are removed once it has delivered nothing
/// for this long. Worker ids get a random suffix at every start, so without it each restart
/// would add series for the life of the sink. Twenty fleet-registry TTLs (30 s): a worker that
/// pauses keeps its series, and a dashboard still lists a replaced worker for ten minutes.
pub const WORKER_RETENTION: std::time::Duration = std::time::Duration::from_secs(600);

/// At most this many workers have result series at once; a new worker past it removes the one
/// idle longest. Far above a fleet's size: only a restart storm reaches it.
pub const MAX_WORKERS: usize = 256;

/// How often idle workers are looked for (at most; only when results arrive).
const SWEEP_EVERY_S: f64 = 30.0;

/// Handles created once.
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    results: IntCounterVec,
    workers: Arc<Mutex<Workers>>,
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
            workers: Arc::default(),
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
        if let Ok(mut w) = self.workers.lock() {
            for (worker, gone) in w.seen(r, now_unix) {
                for (arch, camera, status) in gone {
                    // Err only when the series is already gone, which is the goal.
                    let _ = self.results.remove_label_values(&[&arch, &worker, &camera, status]);
                }
            }
        }
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

/// The label sets of one worker's result series.
type Series = Vec<(String, String, &'static str)>;

/// The workers that have result series: when each last delivered, and its label sets (a few:
/// cameras x statuses), so its series can be removed ([`WORKER_RETENTION`], [`MAX_WORKERS`]).
#[derive(Debug, Default)]
struct Workers {
    by_id: HashMap<String, (f64, Series)>,
    next_sweep: f64,
}

impl Workers {
    /// Notes that `r` arrived at `now` (Unix seconds) and returns the workers whose series must go.
    fn seen(&mut self, r: &ResultMessage, now: f64) -> Vec<(String, Series)> {
        let mut gone = Vec::new();
        let (worker, camera) = (r.worker.as_str(), r.camera.as_str());
        if !self.by_id.contains_key(worker) && self.by_id.len() >= MAX_WORKERS {
            let oldest = self.by_id.iter().min_by(|a, b| a.1.0.total_cmp(&b.1.0)).map(|(id, _)| id.clone());
            gone.extend(oldest.and_then(|id| self.by_id.remove_entry(&id)).map(|(id, (_, s))| (id, s)));
        }
        if !self.by_id.contains_key(worker) {
            self.by_id.insert(worker.to_owned(), (now, Series::new()));
        }
        let Some((last, series)) = self.by_id.get_mut(worker) else { return gone };
        *last = now;
        let status = r.status.as_str();
        if !series.iter().any(|(a, c, s)| *a == r.arch && c == camera && *s == status) {
            series.push((r.arch.clone(), camera.to_owned(), status));
        }
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP_EVERY_S;
            let cutoff = now - WORKER_RETENTION.as_secs_f64();
            let idle: Vec<String> =
                self.by_id.iter().filter(|(_, (t, _))| *t < cutoff).map(|(id, _)| id.clone()).collect();
            gone.extend(idle.into_iter().filter_map(|id| self.by_id.remove_entry(&id)).map(|(id, (_, s))| (id, s)));
        }
        gone
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
        use edgepool_nats::{DEADLETTER, DETECTIONS, DETECTORS, FRAMES};
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn result(worker: &str, camera: &str) -> ResultMessage {
        let json = include_str!("../../../fuzz/regressions/result_json/float-ulp-drift.json");
        let mut r: ResultMessage = serde_json::from_str(json).unwrap();
        r.worker = edgepool_wire::WorkerId::new(worker).unwrap();
        r.camera = edgepool_wire::CameraId::new(camera).unwrap().into();
        r
    }

    /// `edgepool_sink_results_total` series per worker id, as a scrape sees them.
    fn workers_with_series(registry: &Registry) -> std::collections::BTreeMap<String, usize> {
        let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
        let mut out = std::collections::BTreeMap::new();
        for line in text.lines().filter(|l| l.starts_with(cat::SINK_RESULTS.name)) {
            let worker = line.split("worker=\"").nth(1).and_then(|r| r.split('"').next()).unwrap();
            *out.entry(worker.to_owned()).or_default() += 1;
        }
        out
    }

    /// Worker ids change at every start: 50 restarts, one a minute, must not leave 50 workers'
    /// series behind; the worker delivering now always has its series.
    #[test]
    fn per_worker_series_stay_bounded_across_restarts() {
        let registry = Registry::new();
        let m = SinkMetrics::register(&registry).unwrap();
        let cameras = ["cam-1", "cam-2"];
        let mut now = 1.7e9;
        let mut peak = 0;
        for restart in 0..50 {
            let worker = format!("pi-{restart:04x}");
            for _ in 0..10 {
                for c in cameras {
                    m.record(&result(&worker, c), Some(0.1), now);
                }
                now += 6.0;
            }
            let seen = workers_with_series(&registry);
            assert_eq!(seen.get(&worker), Some(&cameras.len()), "{seen:?}");
            peak = peak.max(seen.values().sum::<usize>());
        }
        // Each worker lives a minute; those idle for longer than the retention are gone.
        let bound = (WORKER_RETENTION.as_secs() / 60 + 2) as usize * cameras.len();
        assert!(peak <= bound, "{peak} series after 50 restarts (bound {bound})");
    }

    /// Many new workers at once (a crash loop): never more than [`MAX_WORKERS`] have series.
    #[test]
    fn a_restart_storm_is_capped() {
        let registry = Registry::new();
        let m = SinkMetrics::register(&registry).unwrap();
        for i in 0..MAX_WORKERS * 3 {
            m.record(&result(&format!("crashloop-{i}"), "cam-1"), None, 1.7e9 + i as f64 * 0.01);
        }
        let seen = workers_with_series(&registry);
        assert_eq!(seen.len(), MAX_WORKERS);
        assert!(seen.contains_key(&format!("crashloop-{}", MAX_WORKERS * 3 - 1)), "the newest worker was evicted");
    }
}
