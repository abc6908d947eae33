//! What every slot of a worker shares: the connection, the engine, settings, metrics, counters,
//! and the drain clock. Depends on no other stage module, so the arrows point one way:
//! `run` → `slot` → `process` → `publish` → `ctx`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;

use edgepool_wire::WorkerId;

use crate::config::WorkerConfig;
use crate::engine::Infer;
use crate::metrics::WorkerMetrics;
use crate::outcome::Outcome;

/// Everything the slots share.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub js: jetstream::Context,
    pub id: WorkerId,
    pub engine: Arc<dyn Infer>,
    pub cfg: WorkerConfig,
    pub metrics: WorkerMetrics,
    /// The consumer's `max_deliver` (0 or negative: unlimited).
    pub max_deliver: i64,
    pub counts: Counts,
    /// The server's `max_payload`, which bounds dead letters.
    pub max_payload: usize,
    pub drain: Drain,
    pub snapshots: crate::snapshot::Snapshots,
}

/// Totals of the run, for the report and the fleet registry.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub ok: AtomicU64,
    pub errors: AtomicU64,
    pub stale: AtomicU64,
    pub naks: AtomicU64,
    pub busy_micros: AtomicU64,
}

impl Counts {
    pub fn record(&self, outcome: &Outcome) {
        let counter = match outcome {
            Outcome::Done => &self.ok,
            Outcome::Stale => &self.stale,
            Outcome::Poison { .. } => &self.errors,
            Outcome::Retry { .. } => &self.naks,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The end of the drain. Once `drain_timeout` has passed after shutdown, `expired` is
/// cancelled and every await that talks to the broker gives up at once: a frame that was not
/// acked is redelivered by JetStream later, and its result, if it was stored, is deduplicated
/// by msg id, so giving up never costs a frame or duplicates a result.
#[derive(Debug, Default)]
pub(crate) struct Drain {
    expired: CancellationToken,
}

impl Drain {
    /// Ends the drain now.
    pub fn expire(&self) {
        self.expired.cancel();
    }

    #[cfg(test)]
    pub fn is_expired(&self) -> bool {
        self.expired.is_cancelled()
    }

    /// Runs `fut` to completion, or `None` if the drain expires first.
    pub async fn bounded<F: Future>(&self, fut: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            () = self.expired.cancelled() => None,
            out = fut => Some(out),
        }
    }
}

/// The message a panic was raised with (`panic!` with a literal or a format string).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::outcome::RetryReason;

    #[test]
    fn each_outcome_counts_once_in_its_own_total() {
        let c = Counts::default();
        c.record(&Outcome::Done);
        c.record(&Outcome::Stale);
        c.record(&Outcome::Stale);
        c.record(&Outcome::Poison { kind: edgepool_wire::ErrorKind::Panic });
        c.record(&Outcome::Retry { reason: RetryReason::Panic, delay: Duration::ZERO });
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        assert_eq!((get(&c.ok), get(&c.stale), get(&c.errors), get(&c.naks)), (1, 2, 1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_drain_ends_a_pending_await() {
        let drain = Arc::new(Drain::default());
        let d = Arc::clone(&drain);
        let waiting = tokio::spawn(async move { d.bounded(std::future::pending::<()>()).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished());
        drain.expire();
        assert_eq!(waiting.await.unwrap(), None);
        assert_eq!(drain.bounded(async { 7 }).await, None, "after expiry nothing waits any more");
        assert!(drain.is_expired());
    }

    #[test]
    fn panic_messages_of_both_forms() {
        let lit: Box<dyn std::any::Any + Send> = Box::new("boom");
        let fmt: Box<dyn std::any::Any + Send> = Box::new(String::from("boom 2"));
        let other: Box<dyn std::any::Any + Send> = Box::new(3);
        assert_eq!(panic_message(lit.as_ref()), "boom");
        assert_eq!(panic_message(fmt.as_ref()), "boom 2");
        assert_eq!(panic_message(other.as_ref()), "(no message)");
    }
}
