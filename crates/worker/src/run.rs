//! The pull loop: one task per inference slot, each pulling exactly one frame at a time.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, Message, consumer::PullConsumer};
use futures::{FutureExt as _, StreamExt};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use edgepool_nats::FRAMES;
use edgepool_wire::WorkerId;

use crate::config::WorkerConfig;
use crate::engine::{Engine, Runner};
use crate::metrics::WorkerMetrics;
use crate::outcome::{Outcome, acknowledge};
use crate::process::{self, Ctx, panic_message, process};

/// How long past its expiry a pull request may stay silent before the watchdog abandons it.
const WATCHDOG_MARGIN: Duration = Duration::from_secs(5);

/// A default worker id: the host name (the pod name on Kubernetes) and a random suffix.
#[must_use]
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .unwrap_or_else(|| "worker".into());
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

#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub ok: AtomicU64,
    pub errors: AtomicU64,
    pub stale: AtomicU64,
    pub naks: AtomicU64,
    pub busy_micros: AtomicU64,
}

/// A worker bound to the `detectors` consumer.
#[derive(Debug)]
pub struct Worker {
    ctx: Arc<Ctx>,
    consumer: PullConsumer,
    registry: Option<jetstream::kv::Store>,
}

impl Worker {
    /// Binds to the `detectors` consumer (created by `edgepool setup`).
    pub async fn new(
        js: jetstream::Context,
        engine: Engine,
        cfg: WorkerConfig,
        metrics: WorkerMetrics,
    ) -> anyhow::Result<Self> {
        cfg.validate().map_err(anyhow::Error::msg)?;
        let id = WorkerId::new(cfg.id.clone().unwrap_or_else(default_worker_id)).context("worker.id")?;
        let stream = js.get_stream(FRAMES).await.context("FRAMES stream not found; run `edgepool setup`")?;
        let consumer: PullConsumer = stream
            .get_consumer(&cfg.consumer)
            .await
            .map_err(|e| anyhow::anyhow!("consumer {FRAMES}/{} not found ({e}); run `edgepool setup`", cfg.consumer))?;
        let max_deliver = consumer.cached_info().config.max_deliver;
        metrics.slots.set(i64::try_from(cfg.slots).unwrap_or(i64::MAX));
        metrics.slowdown.set(cfg.slowdown);
        let max_payload = js.client().server_info().max_payload;
        let js_for_registry = js.clone();
        let ctx = Arc::new(Ctx { js, id, engine, cfg, metrics, max_deliver, counts: Counts::default(), max_payload });
        let registry = match js_for_registry.get_key_value(edgepool_wire::fleet::BUCKET).await {
            Ok(store) => Some(store),
            Err(e) => {
                tracing::warn!(error = %e, "fleet registry bucket missing (run `edgepool setup`); not registering");
                None
            }
        };
        Ok(Self { ctx, consumer, registry })
    }

    /// The worker's id.
    #[must_use]
    pub fn id(&self) -> &str {
        self.ctx.id.as_str()
    }

    /// Pulls and processes frames until `shutdown` is cancelled, then drains: no new pulls,
    /// in-flight frames finish and are acked, within `drain_timeout`.
    pub async fn run(self, shutdown: CancellationToken) -> WorkerReport {
        let ctx = self.ctx;
        tracing::info!(worker = %ctx.id, arch = crate::ARCH, slots = ctx.cfg.slots, slowdown = ctx.cfg.slowdown,
            model = ctx.engine.version(), "worker started");
        #[cfg(feature = "test-hooks")]
        crate::test_hooks::warn_compiled_in(ctx.id.as_str());
        let tracker = tokio_util::task::TaskTracker::new();
        for slot in 0..ctx.cfg.slots {
            tracker.spawn(slot_loop(Arc::clone(&ctx), self.consumer.clone(), slot, shutdown.clone()));
        }
        if let Some(store) = self.registry {
            tracker.spawn(crate::registry::keep_fresh(Arc::clone(&ctx), store, shutdown.clone()));
        }
        tracker.close();
        shutdown.cancelled().await;
        tracing::info!(worker = %ctx.id, "draining: no new pulls, finishing in-flight frames");
        if tokio::time::timeout(ctx.cfg.drain_timeout, tracker.wait()).await.is_err() {
            tracing::warn!(worker = %ctx.id, "drain timed out; unfinished frames will be redelivered");
        }
        let c = &ctx.counts;
        let report = WorkerReport {
            id: ctx.id.to_string(),
            ok: c.ok.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            stale: c.stale.load(Ordering::Relaxed),
            naks: c.naks.load(Ordering::Relaxed),
            busy_seconds: c.busy_micros.load(Ordering::Relaxed) as f64 / 1e6,
        };
        tracing::info!(
            worker = %ctx.id,
            ok = report.ok,
            errors = report.errors,
            stale = report.stale,
            "worker stopped"
        );
        report
    }
}

/// Processes `msg` and acknowledges it according to the outcome, retrying the ack a few times.
async fn process_and_ack(ctx: &Ctx, msg: &Message, runner: &mut Option<Runner>) -> Outcome {
    let outcome = process(ctx, msg, runner).await;
    settle(ctx, msg, &outcome).await;
    outcome
}

/// The outcome of a frame whose processing panicked, acknowledged. Handling it publishes too, so
/// the bug that panicked may strike again: then the frame is only handed back (on its last
/// delivery the server then drops it without a dead letter), and the slot still lives.
async fn after_panic(ctx: &Ctx, msg: &Message, why: &str) -> Outcome {
    let handled = AssertUnwindSafe(async {
        let outcome = process::after_panic(ctx, msg, why).await;
        settle(ctx, msg, &outcome).await;
        outcome
    })
    .catch_unwind()
    .await;
    match handled {
        Ok(outcome) => outcome,
        Err(payload) => {
            let error = panic_message(payload.as_ref());
            tracing::error!(worker = %ctx.id, error, "handling a panicked frame panicked too; handing it back");
            ctx.metrics.nak("panic");
            let outcome = Outcome::Retry { reason: "panic", delay: ctx.cfg.nak_delay };
            if let Err(e) = acknowledge(msg, &outcome).await {
                tracing::warn!(worker = %ctx.id, error = %e, "could not hand a frame back; it will be redelivered");
            }
            outcome
        }
    }
}

async fn settle(ctx: &Ctx, msg: &Message, outcome: &Outcome) {
    let mut ack = acknowledge(msg, outcome).await;
    for _ in 0..3 {
        if ack.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        ack = acknowledge(msg, outcome).await;
    }
    if let Err(e) = ack {
        // The frame will be redelivered after ack_wait; its result is already stored and
        // deduplicated by msg id, so the retry cannot produce a second one.
        tracing::warn!(worker = %ctx.id, error = %e, "could not acknowledge a frame; it will be redelivered");
    }
}

/// One slot: pull one frame, process it, acknowledge it, repeat. Holding at most one frame per
/// slot (in the pull request, in buffers and in processing) is what keeps pulling honest.
async fn slot_loop(ctx: Arc<Ctx>, consumer: PullConsumer, slot: usize, shutdown: CancellationToken) {
    let mut runner: Option<Runner> = None;
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let mut request = consumer.batch().max_messages(1).expires(ctx.cfg.pull_expires);
        if let Some(group) = &ctx.cfg.priority_group {
            request = request.group(group.as_str());
            if let Some(min) = ctx.cfg.overflow_min_pending {
                request = request.min_pending(usize::try_from(min).unwrap_or(usize::MAX));
            }
        }
        let batch = request.messages().await;
        let mut batch = match batch {
            Ok(b) => {
                failures = 0;
                b
            }
            Err(e) => {
                failures += 1;
                let backoff = Duration::from_millis(100 * u64::from(failures.min(20)));
                tracing::warn!(worker = %ctx.id, slot, error = %e, "pull request failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => {}
                }
                continue;
            }
        };
        // Not cancelled on shutdown on purpose: the server may already be sending a frame for
        // this request, and a dropped one would wait `ack_wait` for redelivery. The request
        // ends by itself within `pull_expires`.
        let next = tokio::time::timeout(ctx.cfg.pull_expires + WATCHDOG_MARGIN, batch.next()).await;
        let msg = match next {
            Err(_) => {
                ctx.metrics.stalls.inc();
                tracing::warn!(worker = %ctx.id, slot, "pull request outlived its expiry; the watchdog recreates it");
                continue;
            }
            Ok(None) => continue,
            Ok(Some(Err(e))) => {
                tracing::debug!(worker = %ctx.id, slot, error = %e, "pull ended with an error");
                continue;
            }
            Ok(Some(Ok(msg))) => msg,
        };
        drop(batch);

        let started = Instant::now();
        ctx.metrics.in_flight.inc();
        // A panic in this frame's processing must not end the loop: the worker would lose the
        // slot for good while looking healthy. The runner may be half-updated, so it goes; the
        // frame is treated like a panic in inference (retried, dead-lettered on its last delivery).
        let outcome = match AssertUnwindSafe(process_and_ack(&ctx, &msg, &mut runner)).catch_unwind().await {
            Ok(outcome) => outcome,
            Err(payload) => {
                runner = None;
                let why = format!("processing panicked: {}", panic_message(payload.as_ref()));
                tracing::error!(
                    worker = %ctx.id,
                    slot,
                    error = %why,
                    "a frame's processing panicked; the slot carries on"
                );
                after_panic(&ctx, &msg, &why).await
            }
        };
        let busy = started.elapsed();
        ctx.metrics.in_flight.dec();
        ctx.metrics.busy.inc_by(busy.as_secs_f64());
        ctx.counts.busy_micros.fetch_add(u64::try_from(busy.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        let counter = match outcome {
            Outcome::Done => &ctx.counts.ok,
            Outcome::Stale => &ctx.counts.stale,
            Outcome::Poison { .. } => &ctx.counts.errors,
            Outcome::Retry { .. } => &ctx.counts.naks,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
