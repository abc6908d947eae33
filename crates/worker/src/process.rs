//! Processing one frame, in stages: judge it (parse verdict, staleness, inference) into a
//! [`Verdict`], then deliver the verdict (dead letter, result) into an [`Outcome`].

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{AckKind, Message};

use edgepool_detector::{DetectError, StageTimings};
use edgepool_wire::frame::header;
use edgepool_wire::{ErrorKind, FrameMeta, Timings};

use crate::ctx::{Ctx, panic_message};
use crate::engine::{Inferred, Slot};
use crate::envelope::Envelope;
use crate::metrics::WorkerMetrics;
use crate::outcome::{Outcome, RetryReason};
use crate::publish::{DeadLetter, dead_letter, publish_result};
use crate::verdict::{Verdict, ms};

/// A failure of this worker, not of the frame: worth another delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub reason: RetryReason,
    pub message: String,
}

/// Processes one frame and returns what to do with it. Never panics on input (unless the
/// `test-hooks` feature is on and the frame asks for it).
pub(crate) async fn process(ctx: &Ctx, msg: &Message, env: &Envelope, slot: &mut Option<Box<dyn Slot>>) -> Outcome {
    match judge(ctx, msg, env, slot).await {
        Ok(verdict) => deliver(ctx, msg, env, verdict).await,
        Err(failure) => retry_or_give_up(ctx, msg, env, failure).await,
    }
}

/// The outcome of a frame whose processing panicked outside inference (the slot caught it):
/// the same as a panic in inference, a retry until the last delivery, then a dead letter.
pub(crate) async fn after_panic(ctx: &Ctx, msg: &Message, env: &Envelope, why: String) -> Outcome {
    retry_or_give_up(ctx, msg, env, Failure { reason: RetryReason::Panic, message: why }).await
}

/// The verdict on a frame, or the transient failure that kept it from one.
async fn judge(ctx: &Ctx, msg: &Message, env: &Envelope, slot: &mut Option<Box<dyn Slot>>) -> Result<Verdict, Failure> {
    let meta = match &env.meta {
        Ok(meta) => meta,
        Err(e) => return Ok(Verdict::error(e.error_kind(), e.to_string())),
    };
    #[cfg(feature = "test-hooks")]
    crate::test_hooks::panic_if(env.panic_at, crate::test_hooks::PanicPoint::Async);

    let queue_wait = match freshness(env, meta, ctx.cfg.stale_after, ctx.cfg.max_clock_skew) {
        Freshness::Fresh(wait) => wait,
        Freshness::Stale(wait) => {
            return Ok(Verdict::Stale { timings: Timings { queue_wait_ms: ms(wait), ..Timings::default() } });
        }
        Freshness::Future(ahead) => {
            let why = format!("{} is {:.0}s in the future", header::CAPTURED_AT, ahead.as_secs_f64());
            return Ok(Verdict::error(ErrorKind::BadHeader, why));
        }
    };

    let (model, inferred) = match infer(ctx, msg, env, slot).await? {
        Ok(done) => done,
        Err(e) => return classify(&e),
    };
    let emulated = emulate(ctx, msg, inferred.timings.inference).await;
    observe(&ctx.metrics, &inferred.timings, emulated);
    let timings = timings(queue_wait, &inferred.timings, emulated, env.taken.elapsed());
    Ok(Verdict::Ok { model, width: inferred.width, height: inferred.height, detections: inferred.detections, timings })
}

/// How old a frame was when taken, against the staleness bound and the clock-skew limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// Worth processing; it waited this long.
    Fresh(Duration),
    /// Older than `stale_after`: answered `stale` without inference.
    Stale(Duration),
    /// Captured this far in the future, beyond the allowed skew: an absurd header.
    Future(Duration),
}

pub(crate) fn freshness(env: &Envelope, meta: &FrameMeta, stale_after: Duration, max_skew: Duration) -> Freshness {
    let age = env.taken_at - meta.captured_at;
    if age.is_negative() {
        let ahead = Duration::try_from(-age).unwrap_or(Duration::MAX);
        return if ahead > max_skew { Freshness::Future(ahead) } else { Freshness::Fresh(Duration::ZERO) };
    }
    let wait = Duration::try_from(age).unwrap_or(Duration::MAX);
    // A frame with a deadline (a request a client waits for) is judged by it, not by the
    // cameras' staleness bound: worth processing until the client stops waiting.
    let expired = match meta.deadline {
        Some(deadline) => env.taken_at > deadline,
        None => wait > stale_after,
    };
    if expired { Freshness::Stale(wait) } else { Freshness::Fresh(wait) }
}

/// Inference on a blocking thread with this slot's own buffers; progress acks keep the frame
/// ours while it runs (a Raspberry Pi may need longer than ack_wait on a bad day). The slot's
/// state is rebuilt only when the model was hot-swapped since its last frame.
async fn infer(
    ctx: &Ctx,
    msg: &Message,
    env: &Envelope,
    slot: &mut Option<Box<dyn Slot>>,
) -> Result<Result<(Arc<str>, Inferred), DetectError>, Failure> {
    let mut state = ctx.engine.slot(slot.take());
    let model = Arc::clone(state.version());
    let payload = msg.payload.clone();
    let raw = env.meta.as_ref().ok().and_then(|m| m.raw_size);
    #[cfg(feature = "test-hooks")]
    let hook = env.panic_at;
    let job = tokio::task::spawn_blocking(move || {
        #[cfg(feature = "test-hooks")]
        crate::test_hooks::panic_if(hook, crate::test_hooks::PanicPoint::Blocking);
        let out = state.run(&payload, raw);
        (state, out)
    });
    match with_progress(msg, ctx.cfg.progress_interval, job).await {
        Err(join) => {
            // A panic lost this slot's state; the next frame gets a fresh one.
            let message = match join.try_into_panic() {
                Ok(payload) => format!("inference panicked: {}", panic_message(payload.as_ref())),
                Err(_) => "inference task cancelled".to_owned(),
            };
            tracing::error!(error = %message, "inference failed");
            Err(Failure { reason: RetryReason::Panic, message })
        }
        Ok((state, out)) => {
            *slot = Some(state);
            Ok(out.map(|inferred| (model, inferred)))
        }
    }
}

/// The verdict or failure of a detector error: bad input is poison with its kind, anything
/// else is this worker's failure.
pub(crate) fn classify(e: &DetectError) -> Result<Verdict, Failure> {
    let poison = |kind| Ok(Verdict::error(kind, e.to_string()));
    match e {
        DetectError::TooLarge { .. } => poison(ErrorKind::TooLarge),
        DetectError::TooManyPixels { .. } => poison(ErrorKind::TooManyPixels),
        DetectError::Empty => poison(ErrorKind::Empty),
        DetectError::UnsupportedFormat => poison(ErrorKind::UnsupportedFormat),
        DetectError::Corrupt(_) => poison(ErrorKind::Corrupt),
        DetectError::InputShape { .. } => poison(ErrorKind::InputShape),
        // A variant added to the detector later: bad input is still poison, kept as corrupt.
        _ if e.is_poison() => poison(ErrorKind::Corrupt),
        _ => Err(Failure { reason: RetryReason::InferenceFailed, message: e.to_string() }),
    }
}

/// Device emulation: the slot stays busy as a device `slowdown` times slower would. Returns
/// the added delay.
async fn emulate(ctx: &Ctx, msg: &Message, inference: Duration) -> Duration {
    let emulated = emulated_delay(inference, ctx.cfg.slowdown);
    if !emulated.is_zero() {
        with_progress(msg, ctx.cfg.progress_interval, tokio::time::sleep(emulated)).await;
    }
    emulated
}

/// (slowdown - 1) × the measured inference time; nothing on real hardware (slowdown 1).
pub(crate) fn emulated_delay(inference: Duration, slowdown: f64) -> Duration {
    if slowdown > 1.0 { inference.mul_f64(slowdown - 1.0) } else { Duration::ZERO }
}

fn observe(m: &WorkerMetrics, t: &StageTimings, emulated: Duration) {
    m.decode.observe(t.decode.as_secs_f64());
    m.preprocess.observe(t.preprocess.as_secs_f64());
    m.inference.observe(t.inference.as_secs_f64());
    m.postprocess.observe(t.postprocess.as_secs_f64());
    m.emulated_delay.observe(emulated.as_secs_f64());
}

pub(crate) fn timings(queue_wait: Duration, t: &StageTimings, emulated: Duration, total: Duration) -> Timings {
    Timings {
        queue_wait_ms: ms(queue_wait),
        decode_ms: ms(t.decode),
        preprocess_ms: ms(t.preprocess),
        inference_ms: ms(t.inference),
        postprocess_ms: ms(t.postprocess),
        emulated_delay_ms: ms(emulated),
        total_ms: ms(total),
    }
}

/// Awaits `fut`, sending an in-progress ack for `msg` every `every`.
async fn with_progress<F: Future>(msg: &Message, every: Duration, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            out = &mut fut => return out,
            _ = tick.tick() => {
                if let Err(e) = msg.ack_with(AckKind::Progress).await {
                    tracing::debug!(error = %e, "in-progress ack failed");
                }
            }
        }
    }
}

/// What becomes of a transient failure: a retry, until the last delivery; then the frame is
/// dead-lettered so that it still has an outcome (the server would otherwise drop it silently
/// after max_deliver).
pub(crate) fn after_failure(env: &Envelope, max_deliver: i64, failure: Failure) -> Result<Verdict, Failure> {
    match failure.reason.last_delivery_kind() {
        Some(kind) if env.is_last_delivery(max_deliver) => {
            let why = format!("{} (delivery {} of {max_deliver}, giving up)", failure.message, env.delivered);
            Ok(Verdict::error(kind, why))
        }
        _ => Err(failure),
    }
}

async fn retry_or_give_up(ctx: &Ctx, msg: &Message, env: &Envelope, failure: Failure) -> Outcome {
    match after_failure(env, ctx.max_deliver, failure) {
        Ok(verdict) => deliver(ctx, msg, env, verdict).await,
        Err(failure) => retry(ctx, env, failure.reason, &failure.message),
    }
}

fn retry(ctx: &Ctx, env: &Envelope, reason: RetryReason, why: &str) -> Outcome {
    tracing::warn!(
        reason = reason.as_str(),
        delivered = env.delivered,
        error = why,
        "handing frame back for redelivery"
    );
    ctx.metrics.nak(reason);
    Outcome::Retry { reason, delay: ctx.cfg.nak_delay }
}

/// Stores the verdict: for an error the dead letter first, then the result. The outcome is the
/// verdict's only once both are acked by their streams; until then the frame is retried.
async fn deliver(ctx: &Ctx, msg: &Message, env: &Envelope, verdict: Verdict) -> Outcome {
    let outcome = verdict.outcome();
    let poison = match &verdict {
        Verdict::Error { kind, message, .. } => Some((*kind, message.clone())),
        Verdict::Ok { .. } | Verdict::Stale { .. } => None,
    };
    let result = verdict.into_result(env, &ctx.id, &ctx.cfg, || ctx.engine.version(), env.taken.elapsed());
    if let Some((kind, why)) = &poison {
        tracing::info!(kind = kind.as_str(), error = why.as_str(), "poison frame");
        let letter = DeadLetter {
            subject: &msg.subject,
            headers: msg.headers.as_ref(),
            payload: &msg.payload,
            stream_seq: env.stream_seq,
            kind: *kind,
            why,
        };
        if let Err(e) = dead_letter(ctx, &result, &letter).await {
            return retry(ctx, env, RetryReason::DeadletterFailed, &error_chain(&e));
        }
    }
    if let Err(e) = publish_result(ctx, &result).await {
        return retry(ctx, env, RetryReason::PublishFailed, &error_chain(&e));
    }
    match &outcome {
        Outcome::Done => {
            // One line per frame at debug, inside the frame's span: with the W3C trace id, a
            // frame can be followed from the camera through the worker to the sink.
            tracing::debug!(
                traceparent = result.traceparent.as_deref().unwrap_or(""),
                detections = result.detections.len(),
                total_ms = result.timings.total_ms,
                "frame done"
            );
            ctx.metrics.ok.inc();
            // The page shows encoded images; a raw tensor (a Frigate request) has no snapshot.
            if env.meta.as_ref().is_ok_and(|m| m.raw_size.is_none()) {
                ctx.snapshots.offer(&ctx.js, &ctx.metrics, &result, &msg.payload);
            }
        }
        Outcome::Stale => ctx.metrics.stale.inc(),
        Outcome::Poison { kind } => {
            ctx.metrics.error.inc();
            ctx.metrics.error_kind(*kind);
        }
        Outcome::Retry { .. } => {}
    }
    outcome
}

/// An error and its sources on one line, for a log field.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::tests::{JPEG, good_headers, parse};

    const STALE_AFTER: Duration = Duration::from_secs(30);
    const MAX_SKEW: Duration = Duration::from_secs(300);

    fn taken(after_capture: time::Duration) -> Freshness {
        let mut env = parse("frames.cam-1", &good_headers(), JPEG);
        let meta = env.meta.as_ref().unwrap().clone();
        env.taken_at = meta.captured_at + after_capture;
        freshness(&env, &meta, STALE_AFTER, MAX_SKEW)
    }

    #[test]
    fn staleness_decisions() {
        assert_eq!(taken(time::Duration::seconds(2)), Freshness::Fresh(Duration::from_secs(2)));
        assert_eq!(
            taken(time::Duration::seconds(30)),
            Freshness::Fresh(Duration::from_secs(30)),
            "the bound is inclusive"
        );
        assert_eq!(taken(time::Duration::seconds(31)), Freshness::Stale(Duration::from_secs(31)));
        // A camera clock slightly ahead is tolerated (the frame waited "no time"); far ahead is
        // an absurd header.
        assert_eq!(taken(time::Duration::seconds(-10)), Freshness::Fresh(Duration::ZERO));
        assert_eq!(taken(time::Duration::seconds(-301)), Freshness::Future(Duration::from_secs(301)));
    }

    #[test]
    fn a_request_is_judged_by_its_deadline_not_the_staleness_bound() {
        let mut env = parse("requests.gateway", &good_headers(), JPEG);
        let mut meta = env.meta.as_ref().unwrap().clone();
        meta.deadline = Some(meta.captured_at + time::Duration::seconds(60));
        env.taken_at = meta.captured_at + time::Duration::seconds(45);
        assert_eq!(freshness(&env, &meta, STALE_AFTER, MAX_SKEW), Freshness::Fresh(Duration::from_secs(45)));
        env.taken_at = meta.captured_at + time::Duration::seconds(61);
        assert_eq!(freshness(&env, &meta, STALE_AFTER, MAX_SKEW), Freshness::Stale(Duration::from_secs(61)));
        meta.deadline = Some(meta.captured_at + time::Duration::seconds(1));
        env.taken_at = meta.captured_at + time::Duration::seconds(2);
        assert_eq!(freshness(&env, &meta, STALE_AFTER, MAX_SKEW), Freshness::Stale(Duration::from_secs(2)));
    }

    #[test]
    fn bad_input_is_poison_with_its_kind_and_worker_failures_are_retried() {
        let verdict = classify(&DetectError::Corrupt("eof".into())).unwrap();
        assert_eq!(verdict.outcome(), Outcome::Poison { kind: ErrorKind::Corrupt });
        let verdict = classify(&DetectError::TooManyPixels { width: 1, height: 1, max: 0 }).unwrap();
        assert_eq!(verdict.outcome(), Outcome::Poison { kind: ErrorKind::TooManyPixels });
        for e in [DetectError::NoImage, DetectError::Inference("oom".into())] {
            assert!(!e.is_poison());
            assert_eq!(classify(&e).unwrap_err().reason, RetryReason::InferenceFailed);
        }
        for e in [DetectError::Empty, DetectError::UnsupportedFormat, DetectError::InputShape { len: 1, expected: 2 }] {
            assert!(e.is_poison() && classify(&e).is_ok(), "{e}");
        }
    }

    #[test]
    fn a_failure_is_retried_until_the_last_delivery_then_dead_lettered() {
        let mut env = parse("frames.cam-1", &good_headers(), JPEG);
        let panic = || Failure { reason: RetryReason::Panic, message: "boom".into() };
        env.delivered = 2;
        assert_eq!(after_failure(&env, 3, panic()), Err(panic()));
        assert_eq!(after_failure(&env, -1, panic()), Err(panic()), "unlimited deliveries retry for ever");
        env.delivered = 3;
        match after_failure(&env, 3, panic()) {
            Ok(Verdict::Error { kind, message, .. }) => {
                assert_eq!(kind, ErrorKind::Panic);
                assert_eq!(message, "boom (delivery 3 of 3, giving up)");
            }
            other => panic!("{other:?}"),
        }
        // A publish failure is never dead-lettered: the dead letter would fail the same way.
        let publish = Failure { reason: RetryReason::PublishFailed, message: "timed out".into() };
        assert_eq!(after_failure(&env, 3, publish.clone()), Err(publish));
    }

    #[test]
    fn a_bad_frame_is_judged_from_its_envelope() {
        let env = parse("frames.cam-1", &good_headers(), b"");
        let e = env.meta.as_ref().unwrap_err();
        assert_eq!(e.error_kind(), ErrorKind::EmptyPayload);
    }

    #[test]
    fn emulation_and_timings() {
        let inference = Duration::from_millis(100);
        assert_eq!(emulated_delay(inference, 1.0), Duration::ZERO);
        assert_eq!(emulated_delay(inference, 3.0), Duration::from_millis(200));
        let stages = StageTimings {
            decode: Duration::from_millis(1),
            preprocess: Duration::from_millis(2),
            inference,
            postprocess: Duration::from_millis(3),
        };
        let t = timings(Duration::from_millis(50), &stages, Duration::from_millis(200), Duration::from_millis(310));
        assert_eq!((t.queue_wait_ms, t.decode_ms, t.inference_ms), (50.0, 1.0, 100.0));
        assert_eq!((t.emulated_delay_ms, t.total_ms), (200.0, 310.0));
    }

    #[test]
    fn error_chains_keep_every_source() {
        let e = crate::publish::PublishError::Broker { attempts: 2, source: "timed out".into() };
        assert_eq!(error_chain(&e), "no ack from the stream after 2 attempts: timed out");
    }
}
