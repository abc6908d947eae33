//! A worker: binds to the consumer, runs one task per inference slot (and the fleet registry),
//! and on shutdown drains within `drain_timeout`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::PullConsumer};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use edgepool_nats::{DETECTORS, FRAMES, REQUESTS};
use edgepool_wire::WorkerId;

use crate::config::WorkerConfig;
use crate::ctx::{Counts, Ctx, Drain};
use crate::engine::Infer;
use crate::error::StartError;
use crate::metrics::WorkerMetrics;

/// After the drain expires, how long `run` still waits for the slots to give up their awaits
/// (they do at once; inference on a blocking thread cannot be interrupted and is not waited for).
const DRAIN_MARGIN: Duration = Duration::from_millis(250);

/// A default worker id: the host name (the pod name on Kubernetes) and a random suffix.
#[must_use]
pub fn default_worker_id() -> String {
    let host = crate::device::host_name();
    let host: String =
        host.trim().chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).take(48).collect();
    let host = host.trim_start_matches(['-', '_']);
    let suffix = nuid_suffix();
    if host.is_empty() { format!("worker-{suffix}") } else { format!("{host}-{suffix}") }
}

fn nuid_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mixed = (nanos as u64 ^ u64::from(std::process::id()).rotate_left(32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!("{:06x}", mixed >> 40)
}

/// Totals of a worker's run, returned when it stops.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkerReport {
    pub id: String,
    pub ok: u64,
    pub errors: u64,
    pub stale: u64,
    pub naks: u64,
    pub busy_seconds: f64,
}

impl WorkerReport {
    fn of(id: &WorkerId, c: &Counts) -> Self {
        Self {
            id: id.to_string(),
            ok: c.ok.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            stale: c.stale.load(Ordering::Relaxed),
            naks: c.naks.load(Ordering::Relaxed),
            busy_seconds: c.busy_micros.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// A worker bound to the `detectors` consumer.
#[derive(Debug)]
pub struct Worker {
    ctx: Arc<Ctx>,
    consumer: PullConsumer,
    /// The consumer of interactive frames (REQUESTS), which each slot asks first.
    urgent: Option<PullConsumer>,
    registry: Option<jetstream::kv::Store>,
}

impl Worker {
    /// Binds to the consumer `cfg.consumer` (created by `edgepool setup`). `engine` is the
    /// detector ([`crate::Engine`]) or, in benchmarks, any other [`Infer`].
    pub async fn new(
        js: jetstream::Context,
        engine: impl Into<Arc<dyn Infer>>,
        cfg: WorkerConfig,
        metrics: WorkerMetrics,
    ) -> Result<Self, StartError> {
        cfg.validate()?;
        let id = WorkerId::new(cfg.id.clone().unwrap_or_else(default_worker_id)).map_err(StartError::Id)?;
        let stream = js.get_stream(FRAMES).await.map_err(|source| StartError::Stream { stream: FRAMES, source })?;
        let consumer: PullConsumer = stream
            .get_consumer(&cfg.consumer)
            .await
            .map_err(|source| StartError::Consumer { stream: FRAMES, consumer: cfg.consumer.clone(), source })?;
        let max_deliver = consumer.cached_info().config.max_deliver;
        // Interactive frames: optional, so a broker set up before REQUESTS existed still works
        // (its gateway requests then wait in FRAMES like camera frames).
        let urgent = match js.get_stream(REQUESTS).await {
            Ok(s) => match s.get_consumer::<jetstream::consumer::pull::Config>(DETECTORS).await {
                Ok(c) => Some(c),
                Err(e) => {
                    let why = "consumer REQUESTS/detectors missing (run `edgepool setup`); taking FRAMES only";
                    tracing::warn!(error = %e, "{why}");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "stream REQUESTS missing (run `edgepool setup`); taking FRAMES only");
                None
            }
        };
        metrics.slots.set(i64::try_from(cfg.slots).unwrap_or(i64::MAX));
        metrics.slowdown.set(cfg.slowdown);
        let max_payload = js.client().server_info().max_payload;
        let registry = match js.get_key_value(edgepool_wire::fleet::BUCKET).await {
            Ok(store) => Some(store),
            Err(e) => {
                tracing::warn!(error = %e, "fleet registry bucket missing (run `edgepool setup`); not registering");
                None
            }
        };
        let snapshots = crate::snapshot::Snapshots::new(&cfg);
        let ctx = Arc::new(Ctx {
            js,
            id,
            engine: engine.into(),
            cfg,
            metrics,
            max_deliver,
            counts: Counts::default(),
            max_payload,
            drain: Drain::default(),
            snapshots,
        });
        Ok(Self { ctx, consumer, urgent, registry })
    }

    /// The worker's id.
    #[must_use]
    pub fn id(&self) -> &str {
        self.ctx.id.as_str()
    }

    /// Pulls and processes frames until `shutdown` is cancelled, then drains: no new pulls,
    /// in-flight frames finish and are acked. Returns within `drain_timeout` plus a fraction
    /// of a second whether the broker is up or not; what could not be acked by then is
    /// redelivered by JetStream.
    pub async fn run(self, shutdown: CancellationToken) -> WorkerReport {
        let span = tracing::info_span!("worker", worker = %self.ctx.id);
        self.run_in_span(shutdown).instrument(span).await
    }

    async fn run_in_span(self, shutdown: CancellationToken) -> WorkerReport {
        let ctx = self.ctx;
        tracing::info!(
            arch = crate::ARCH,
            slots = ctx.cfg.slots,
            slowdown = ctx.cfg.slowdown,
            model = ctx.engine.version(),
            "worker started"
        );
        #[cfg(feature = "test-hooks")]
        crate::test_hooks::warn_compiled_in();
        let tracker = tokio_util::task::TaskTracker::new();
        for slot in 0..ctx.cfg.slots {
            let (bulk, urgent) = (self.consumer.clone(), self.urgent.clone());
            let task = crate::slot::slot_loop(Arc::clone(&ctx), bulk, urgent, shutdown.clone());
            tracker.spawn(task.instrument(tracing::info_span!("slot", slot)));
        }
        if let Some(store) = self.registry {
            let task = crate::registry::keep_fresh(Arc::clone(&ctx), store, shutdown.clone());
            tracker.spawn(task.in_current_span());
        }
        tracker.close();
        shutdown.cancelled().await;
        tracing::info!("draining: no new pulls, finishing in-flight frames");
        if tokio::time::timeout(ctx.cfg.drain_timeout, tracker.wait()).await.is_err() {
            ctx.drain.expire();
            tracing::warn!("drain timed out; unfinished frames will be redelivered");
            if tokio::time::timeout(DRAIN_MARGIN, tracker.wait()).await.is_err() {
                tracing::warn!("an inference is still running; not waiting for it");
            }
        }
        let report = WorkerReport::of(&ctx.id, &ctx.counts);
        tracing::info!(ok = report.ok, errors = report.errors, stale = report.stale, "worker stopped");
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ids_are_valid_worker_ids() {
        let id = default_worker_id();
        assert!(WorkerId::new(id.clone()).is_ok(), "{id}");
    }

    #[test]
    fn the_report_reads_the_counters() {
        let c = Counts::default();
        c.ok.store(3, Ordering::Relaxed);
        c.naks.store(1, Ordering::Relaxed);
        c.busy_micros.store(1_500_000, Ordering::Relaxed);
        let r = WorkerReport::of(&WorkerId::new("w").unwrap(), &c);
        assert_eq!((r.id.as_str(), r.ok, r.naks, r.errors), ("w", 3, 1, 0));
        assert!((r.busy_seconds - 1.5).abs() < 1e-9);
    }
}
