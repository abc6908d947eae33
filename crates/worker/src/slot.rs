//! One inference slot: pull one frame, process it, acknowledge it, repeat. Holding at most one
//! frame per slot (in the pull request, in buffers and in processing) is what keeps pulling
//! honest.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::PullConsumer;
use futures::{FutureExt as _, Stream, StreamExt};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::ctx::{Ctx, panic_message};
use crate::engine::Slot;
use crate::envelope::Envelope;
use crate::outcome::{Outcome, RetryReason, acknowledge};
use crate::process::{self, process};

/// How long past its expiry a pull request may stay silent before the watchdog abandons it.
const WATCHDOG_MARGIN: Duration = Duration::from_secs(5);
/// On shutdown, how long an idle slot still waits for a frame the server may already be
/// sending for its pull request; one that arrives is handed back at once. Short, because an
/// idle worker must stop at once, and a frame in transit arrives within a round trip.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_millis(200);
/// Bound on one acknowledgement attempt (a double ack waits for the server's reply).
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Acknowledgement attempts before the frame is left to redelivery.
const ACK_ATTEMPTS: u32 = 4;
/// Pause between acknowledgement attempts.
const ACK_RETRY: Duration = Duration::from_millis(200);

/// What one pull request gave.
#[derive(Debug)]
pub(crate) enum Pulled<M> {
    /// A frame to process.
    Frame(M),
    /// A frame that arrived after shutdown began: hand it back at once.
    Late(M),
    /// Nothing (the request expired or ended with an error): pull again, unless stopping.
    Nothing,
    /// The request outlived its expiry plus a margin: abandoned, pull again.
    Stalled,
}

/// Waits for the one frame of a pull request. While running it waits up to `window` (the
/// request's expiry plus a margin); once `shutdown` is cancelled it waits only
/// [`SHUTDOWN_GRACE`] more, for a frame already in transit.
pub(crate) async fn next_frame<M, E: std::fmt::Display>(
    batch: &mut (impl Stream<Item = Result<M, E>> + Unpin),
    window: Duration,
    shutdown: &CancellationToken,
) -> Pulled<M> {
    enum First<T> {
        Next(Result<Option<T>, tokio::time::error::Elapsed>),
        Shutdown,
    }
    let first = tokio::select! {
        biased;
        next = tokio::time::timeout(window, batch.next()) => First::Next(next),
        () = shutdown.cancelled() => First::Shutdown,
    };
    let next = match first {
        First::Next(next) => next,
        First::Shutdown => tokio::time::timeout(SHUTDOWN_GRACE, batch.next()).await.or(Ok(None)),
    };
    match next {
        Err(_) => Pulled::Stalled,
        Ok(None) => Pulled::Nothing,
        Ok(Some(Err(e))) => {
            tracing::debug!(error = %e, "pull ended with an error");
            Pulled::Nothing
        }
        Ok(Some(Ok(msg))) if shutdown.is_cancelled() => Pulled::Late(msg),
        Ok(Some(Ok(msg))) => Pulled::Frame(msg),
    }
}

/// The slot's loop, until `shutdown`: frames from `consumer`, or, when `urgent` is given,
/// interactive frames from it first ([`urgent_first_loop`]).
pub(crate) async fn slot_loop(
    ctx: Arc<Ctx>,
    consumer: PullConsumer,
    urgent: Option<PullConsumer>,
    shutdown: CancellationToken,
) {
    match urgent {
        Some(urgent) => urgent_first_loop(ctx, consumer, urgent, shutdown).await,
        None => bulk_loop(ctx, consumer, shutdown).await,
    }
}

/// One slot on one consumer.
async fn bulk_loop(ctx: Arc<Ctx>, consumer: PullConsumer, shutdown: CancellationToken) {
    let mut state: Option<Box<dyn Slot>> = None;
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let mut request = consumer.batch().max_messages(1).expires(ctx.cfg.pull_expires);
        if let Some(group) = &ctx.cfg.priority_group {
            request = request.group(group.as_str());
            if let Some(min) = ctx.cfg.overflow_min_pending {
                request = request.min_pending(usize::try_from(min).unwrap_or(usize::MAX));
            }
        }
        let batch = tokio::select! {
            batch = request.messages() => batch,
            () = shutdown.cancelled() => break,
        };
        let mut batch = match batch {
            Ok(b) => {
                failures = 0;
                b
            }
            Err(e) => {
                failures += 1;
                let backoff = Duration::from_millis(100 * u64::from(failures.min(20)));
                tracing::warn!(error = %e, "pull request failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => {}
                }
                continue;
            }
        };
        let msg = match next_frame(&mut batch, ctx.cfg.pull_expires + WATCHDOG_MARGIN, &shutdown).await {
            Pulled::Frame(msg) => msg,
            Pulled::Late(msg) => {
                hand_back(&ctx, &msg).await;
                break;
            }
            Pulled::Nothing => continue,
            Pulled::Stalled => {
                ctx.metrics.stalls.inc();
                tracing::warn!("pull request outlived its expiry; the watchdog recreates it");
                continue;
            }
        };
        drop(batch);
        take(&ctx, &msg, &mut state).await;
    }
}

/// An open pull request for one frame, and when it must have ended.
struct Request {
    batch: async_nats::jetstream::consumer::pull::Batch,
    watchdog: tokio::time::Instant,
}

/// What one of the slot's two requests gave.
enum Got {
    Frame(Box<Message>),
    /// Expired, failed, or stalled past its watchdog: ask again.
    Ended,
}

/// Asks `consumer` for one frame (a request that waits up to `pull_expires`).
async fn ask(ctx: &Ctx, consumer: &PullConsumer, bulk: bool) -> Result<Request, String> {
    let mut request = consumer.batch().max_messages(1).expires(ctx.cfg.pull_expires);
    if bulk && let Some(group) = &ctx.cfg.priority_group {
        request = request.group(group.as_str());
        if let Some(min) = ctx.cfg.overflow_min_pending {
            request = request.min_pending(usize::try_from(min).unwrap_or(usize::MAX));
        }
    }
    let batch = request.messages().await.map_err(|e| e.to_string())?;
    Ok(Request { batch, watchdog: tokio::time::Instant::now() + ctx.cfg.pull_expires + WATCHDOG_MARGIN })
}

/// The next thing `request` gives; pending forever when there is no request.
async fn next_of(request: &mut Option<Request>) -> Got {
    let Some(r) = request else { return std::future::pending().await };
    match tokio::time::timeout_at(r.watchdog, r.batch.next()).await {
        Ok(Some(Ok(msg))) => Got::Frame(Box::new(msg)),
        Ok(Some(Err(e))) => {
            tracing::debug!(error = %e, "pull request ended with an error");
            Got::Ended
        }
        Ok(None) => Got::Ended,
        Err(_) => {
            tracing::warn!("pull request outlived its expiry; the watchdog recreates it");
            Got::Ended
        }
    }
}

/// One slot on two consumers, interactive frames first. The slot keeps one pull request open
/// on each, so an idle slot takes an interactive frame the moment it is published, and a busy
/// one takes it as soon as its current frame is done, ahead of any camera backlog. Both
/// requests can deliver at the same moment: the interactive frame is processed first, and the
/// camera frame, already this slot's, right after it (before the next interactive one), so it
/// waits at most one inference and the slot never holds more than two frames.
async fn urgent_first_loop(ctx: Arc<Ctx>, bulk: PullConsumer, urgent: PullConsumer, shutdown: CancellationToken) {
    let mut state: Option<Box<dyn Slot>> = None;
    let (mut bulk_req, mut urgent_req): (Option<Request>, Option<Request>) = (None, None);
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        // A camera frame that arrived while an interactive one was processed goes next.
        if let Some(Got::Frame(msg)) = next_of(&mut bulk_req).now_or_never() {
            bulk_req = None;
            take(&ctx, &msg, &mut state).await;
            continue;
        }
        for (req, consumer, is_bulk) in [(&mut urgent_req, &urgent, false), (&mut bulk_req, &bulk, true)] {
            if req.is_none() {
                match ask(&ctx, consumer, is_bulk).await {
                    Ok(r) => {
                        *req = Some(r);
                        failures = 0;
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::warn!(error = %e, "pull request failed; retrying");
                    }
                }
            }
        }
        if urgent_req.is_none() && bulk_req.is_none() {
            let backoff = Duration::from_millis(100 * u64::from(failures.min(20)));
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => {}
            }
            continue;
        }
        let (got, from_urgent) = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            got = next_of(&mut urgent_req) => (got, true),
            got = next_of(&mut bulk_req) => (got, false),
        };
        // A request gives at most one frame: whatever it gave, it is done.
        if from_urgent {
            urgent_req = None;
        } else {
            bulk_req = None;
        }
        if let Got::Frame(msg) = got {
            take(&ctx, &msg, &mut state).await;
        }
    }
    // Stopping: a frame the server may already be sending for an open request goes back now.
    for req in [&mut urgent_req, &mut bulk_req] {
        if let Some(r) = req.as_mut()
            && let Ok(Some(Ok(msg))) = tokio::time::timeout(SHUTDOWN_GRACE, r.batch.next()).await
        {
            hand_back(&ctx, &msg).await;
        }
    }
}

/// Processes and acknowledges one frame, in the frame's span.
async fn take(ctx: &Ctx, msg: &Message, state: &mut Option<Box<dyn Slot>>) {
    let env = Envelope::of(msg, OffsetDateTime::now_utc());
    let span =
        tracing::info_span!("frame", camera = %env.camera, seq = ?env.seq.map(|s| s.0), delivery = env.delivered);
    async {
        let started = Instant::now();
        ctx.metrics.in_flight.inc();
        // A panic in this frame's processing must not end the loop: the worker would lose the
        // slot for good while looking healthy. The slot's state may be half-updated, so it
        // goes; the frame is treated like a panic in inference.
        let outcome = match AssertUnwindSafe(process_and_ack(ctx, msg, &env, state)).catch_unwind().await {
            Ok(outcome) => outcome,
            Err(payload) => {
                *state = None;
                let why = format!("processing panicked: {}", panic_message(payload.as_ref()));
                tracing::error!(error = %why, "a frame's processing panicked; the slot carries on");
                after_panic(ctx, msg, &env, why).await
            }
        };
        let busy = started.elapsed();
        ctx.metrics.in_flight.dec();
        ctx.metrics.busy.inc_by(busy.as_secs_f64());
        ctx.counts.busy_micros.fetch_add(u64::try_from(busy.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        ctx.counts.record(&outcome);
    }
    .instrument(span)
    .await;
}

async fn process_and_ack(ctx: &Ctx, msg: &Message, env: &Envelope, state: &mut Option<Box<dyn Slot>>) -> Outcome {
    let outcome = process(ctx, msg, env, state).await;
    settle(ctx, msg, &outcome).await;
    outcome
}

/// The outcome of a frame whose processing panicked, acknowledged. Handling it publishes too,
/// so the bug that panicked may strike again: then the frame is only handed back (on its last
/// delivery the server then drops it without a dead letter), and the slot still lives.
async fn after_panic(ctx: &Ctx, msg: &Message, env: &Envelope, why: String) -> Outcome {
    let handled = AssertUnwindSafe(async {
        let outcome = process::after_panic(ctx, msg, env, why).await;
        settle(ctx, msg, &outcome).await;
        outcome
    })
    .catch_unwind()
    .await;
    match handled {
        Ok(outcome) => outcome,
        Err(payload) => {
            let error = panic_message(payload.as_ref());
            tracing::error!(error, "handling a panicked frame panicked too; handing it back");
            ctx.metrics.nak(RetryReason::Panic);
            let outcome = Outcome::Retry { reason: RetryReason::Panic, delay: ctx.cfg.nak_delay };
            settle(ctx, msg, &outcome).await;
            outcome
        }
    }
}

/// Hands a frame that arrived after shutdown began back at once, so another worker takes it
/// now instead of after `ack_wait`.
async fn hand_back(ctx: &Ctx, msg: &Message) {
    tracing::debug!("a frame arrived after shutdown began; handing it back at once");
    let outcome = Outcome::Retry { reason: RetryReason::Shutdown, delay: Duration::ZERO };
    ctx.metrics.nak(RetryReason::Shutdown);
    ctx.counts.record(&outcome);
    settle(ctx, msg, &outcome).await;
}

/// Acknowledges `msg` according to `outcome`: a few bounded attempts, and none once the
/// drain has expired. A frame left unacknowledged is redelivered after `ack_wait`; its result,
/// if stored, is deduplicated by msg id, so that cannot produce a second one.
async fn settle(ctx: &Ctx, msg: &Message, outcome: &Outcome) {
    let mut last = String::new();
    for attempt in 0..ACK_ATTEMPTS {
        if attempt > 0 && ctx.drain.bounded(tokio::time::sleep(ACK_RETRY)).await.is_none() {
            break;
        }
        match ctx.drain.bounded(tokio::time::timeout(ACK_TIMEOUT, acknowledge(msg, outcome))).await {
            Some(Ok(Ok(()))) => return,
            Some(Ok(Err(e))) => last = e.to_string(),
            Some(Err(_)) => last = format!("no reply within {ACK_TIMEOUT:?}"),
            None => {
                last = "the drain expired".to_owned();
                break;
            }
        }
    }
    tracing::warn!(error = %last, "could not acknowledge a frame; it will be redelivered");
}

#[cfg(test)]
mod tests {
    use futures::channel::mpsc;

    use super::*;

    type Item = Result<u32, String>;

    fn pull() -> (mpsc::UnboundedSender<Item>, mpsc::UnboundedReceiver<Item>) {
        mpsc::unbounded()
    }

    const WINDOW: Duration = Duration::from_secs(8);

    #[tokio::test(start_paused = true)]
    async fn a_frame_before_shutdown_is_processed() {
        let (tx, mut rx) = pull();
        tx.unbounded_send(Ok(1)).unwrap();
        let r = next_frame(&mut rx, WINDOW, &CancellationToken::new()).await;
        assert!(matches!(r, Pulled::Frame(1)), "{r:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_slot_stops_within_the_grace_not_the_pull_expiry() {
        let (_tx, mut rx) = pull();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stop.cancel();
        });
        let started = tokio::time::Instant::now();
        let r = next_frame(&mut rx, WINDOW, &shutdown).await;
        assert!(matches!(r, Pulled::Nothing), "{r:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(1) + SHUTDOWN_GRACE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_in_transit_at_shutdown_is_handed_back() {
        let (tx, mut rx) = pull();
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        tokio::spawn(async move {
            tokio::time::sleep(SHUTDOWN_GRACE / 2).await;
            tx.unbounded_send(Ok(7)).unwrap();
        });
        let r = next_frame(&mut rx, WINDOW, &shutdown).await;
        assert!(matches!(r, Pulled::Late(7)), "{r:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_pull_request_is_abandoned_by_the_watchdog() {
        let (_tx, mut rx) = pull();
        let started = tokio::time::Instant::now();
        let r = next_frame(&mut rx, WINDOW, &CancellationToken::new()).await;
        assert!(matches!(r, Pulled::Stalled), "{r:?}");
        assert_eq!(started.elapsed(), WINDOW);
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_or_failed_request_gives_nothing() {
        let (tx, mut rx) = pull();
        tx.unbounded_send(Err("408 request timeout".into())).unwrap();
        assert!(matches!(next_frame(&mut rx, WINDOW, &CancellationToken::new()).await, Pulled::Nothing));
        drop(tx);
        assert!(matches!(next_frame(&mut rx, WINDOW, &CancellationToken::new()).await, Pulled::Nothing));
    }
}
