//! Keeps this worker's entry in the fleet registry (see `edgepool_wire::fleet`) fresh: what it
//! is, and what it measurably does and could do.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use edgepool_wire::fleet::{REFRESH, WorkerEntry};

use crate::ctx::Ctx;

/// Bound on one registry update; a missed one is retried at the next refresh.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on removing the entry at shutdown; if the broker is gone, the entry expires by itself.
const DELETE_TIMEOUT: Duration = Duration::from_secs(1);

/// Measured numbers from two snapshots of the counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    pub fps: f64,
    pub busy_ratio: f64,
    /// slots × frames / busy seconds, when frames were finished.
    pub capacity_fps: Option<f64>,
}

/// Rates from counter deltas over `elapsed` for a worker with `slots` slots.
#[must_use]
pub fn rates(frames: u64, busy: Duration, elapsed: Duration, slots: usize) -> Rates {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let busy_s = busy.as_secs_f64();
    Rates {
        fps: frames as f64 / secs,
        busy_ratio: (busy_s / (secs * slots.max(1) as f64)).min(1.0),
        capacity_fps: (frames > 0 && busy_s > 0.0).then(|| slots as f64 * frames as f64 / busy_s),
    }
}

fn totals(ctx: &Ctx) -> (u64, Duration) {
    let c = &ctx.counts;
    let frames = c.ok.load(Ordering::Relaxed) + c.errors.load(Ordering::Relaxed) + c.stale.load(Ordering::Relaxed);
    (frames, Duration::from_micros(c.busy_micros.load(Ordering::Relaxed)))
}

/// Refreshes the entry every [`REFRESH`] until `shutdown`, then deletes it.
pub(crate) async fn keep_fresh(ctx: Arc<Ctx>, store: kv::Store, shutdown: CancellationToken) {
    let mut last = (Instant::now(), totals(&ctx));
    let mut capacity = None;
    let facts = crate::device::Facts::read(ctx.cfg.node.as_deref());
    let mut device = crate::device::DeviceProbe::new(facts, ctx.cfg.sysfs_root.clone());
    loop {
        tokio::select! {
            () = tokio::time::sleep(REFRESH) => {}
            () = shutdown.cancelled() => break,
        }
        let now = (Instant::now(), totals(&ctx));
        let r = rates(now.1.0 - last.1.0, now.1.1.saturating_sub(last.1.1), now.0 - last.0, ctx.cfg.slots);
        // Capacity is only measurable while frames flow; keep the last known value when idle.
        capacity = r.capacity_fps.or(capacity);
        last = now;
        let entry = WorkerEntry {
            id: ctx.id.to_string(),
            arch: crate::ARCH.to_owned(),
            label: ctx.cfg.label.clone(),
            slots: ctx.cfg.slots,
            slowdown: ctx.cfg.slowdown,
            model: ctx.engine.version().to_owned(),
            fps: r.fps,
            capacity_fps: capacity,
            busy_ratio: r.busy_ratio,
            frames_total: now.1.0,
            updated_at: OffsetDateTime::now_utc(),
            device: Some(device.entry()),
        };
        match serde_json::to_vec(&entry) {
            Ok(body) => match tokio::time::timeout(UPDATE_TIMEOUT, store.put(ctx.id.as_str(), body.into())).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "fleet registry update failed"),
                Err(_) => tracing::debug!("fleet registry update timed out"),
            },
            Err(e) => tracing::warn!(error = %e, "fleet entry not serializable"),
        }
    }
    // Bounded twice: by its own timeout, and by the drain's end.
    let _ = ctx.drain.bounded(tokio::time::timeout(DELETE_TIMEOUT, store.delete(ctx.id.as_str()))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_from_counter_deltas() {
        let r = rates(10, Duration::from_secs(4), Duration::from_secs(5), 1);
        assert!((r.fps - 2.0).abs() < 1e-9);
        assert!((r.busy_ratio - 0.8).abs() < 1e-9);
        assert!((r.capacity_fps.unwrap() - 2.5).abs() < 1e-9, "10 frames in 4 busy seconds");
        let idle = rates(0, Duration::ZERO, Duration::from_secs(5), 2);
        assert_eq!(idle.capacity_fps, None);
        assert_eq!(idle.busy_ratio, 0.0);
        let two = rates(10, Duration::from_secs(8), Duration::from_secs(5), 2);
        assert!((two.capacity_fps.unwrap() - 2.5).abs() < 1e-9, "2 slots x 10 frames / 8 slot-seconds");
    }
}
