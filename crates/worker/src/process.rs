//! Processing one frame: parse, staleness, inference off the reactor, result, dead letter.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, Message};
use bytes::Bytes;
use time::OffsetDateTime;

use edgepool_nats::header_str;
use edgepool_wire::frame::{DEADLETTER_PREFIX, FrameError, INVALID_CAMERA_TOKEN, header, subject_token};
use edgepool_wire::{ErrorInfo, FrameMeta, ResultMessage, SCHEMA_VERSION, Status, Timings, WorkerId};

use crate::config::WorkerConfig;
use crate::engine::{Engine, Inferred, Runner};
use crate::metrics::WorkerMetrics;
use crate::outcome::Outcome;
use crate::run::Counts;

/// Everything the slots share.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub js: jetstream::Context,
    pub id: WorkerId,
    pub engine: Engine,
    pub cfg: WorkerConfig,
    pub metrics: WorkerMetrics,
    pub max_deliver: i64,
    pub counts: Counts,
    pub max_payload: usize,
}

/// What is known of a frame before (or without) parsing it fully.
struct Envelope {
    camera: String,
    seq: Option<u64>,
    stream_seq: u64,
    delivered: u64,
    captured_at: Option<OffsetDateTime>,
    traceparent: Option<String>,
    taken_at: OffsetDateTime,
    /// The model version that computed the result, once inference ran (it may differ from the
    /// engine's current version after a hot-swap).
    model: Option<std::sync::Arc<str>>,
}

/// The message a panic was raised with (`panic!` with a literal or a format string).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What is known of `msg` before processing: its identity as far as it parses (kept even for a bad
/// frame, so subscribers can match the error) and the parsed metadata, or why it is bad.
fn envelope(msg: &Message, taken_at: OffsetDateTime) -> (Envelope, Result<FrameMeta, FrameError>) {
    let (stream_seq, delivered) = match msg.info() {
        Ok(i) => (i.stream_sequence, u64::try_from(i.delivered).unwrap_or(1)),
        Err(_) => (0, 1),
    };
    let headers = msg.headers.as_ref();
    let mut env = Envelope {
        camera: INVALID_CAMERA_TOKEN.to_owned(),
        seq: None,
        stream_seq,
        delivered,
        captured_at: None,
        traceparent: None,
        taken_at,
        model: None,
    };
    let meta = FrameMeta::parse(&msg.subject, |k| header_str(headers, k), &msg.payload);
    match &meta {
        Ok(m) => {
            env.camera = m.camera.to_string();
            env.seq = Some(m.seq.0);
            env.captured_at = Some(m.captured_at);
            env.traceparent.clone_from(&m.traceparent);
        }
        Err(_) => {
            if let Some(Ok(camera)) = subject_token(&msg.subject).map(edgepool_wire::CameraId::new) {
                env.camera = camera.to_string();
                env.seq = header_str(headers, header::SEQ).and_then(|s| s.trim().parse().ok());
            }
        }
    }
    (env, meta)
}

/// Processes one frame and returns what to do with it. Never panics on input (unless the
/// `test-hooks` feature is on and the frame asks for it).
pub(crate) async fn process(ctx: &Ctx, msg: &Message, runner: &mut Option<Runner>) -> Outcome {
    let taken_at = OffsetDateTime::now_utc();
    let taken = std::time::Instant::now();
    let (mut env, meta) = envelope(msg, taken_at);
    let delivered = env.delivered;
    let meta = match meta {
        Ok(m) => m,
        Err(e) => return poison(ctx, msg, &env, e.kind(), &e.to_string(), Timings::default()).await,
    };

    #[cfg(feature = "test-hooks")]
    let hook = crate::test_hooks::panic_point(msg);
    #[cfg(feature = "test-hooks")]
    crate::test_hooks::panic_if(hook, crate::test_hooks::PanicPoint::Async);

    let age = taken_at - meta.captured_at;
    let queue_wait = Duration::try_from(age).unwrap_or(Duration::ZERO);
    if age > ctx.cfg.stale_after {
        let timings = Timings { queue_wait_ms: ms(queue_wait), ..Timings::default() };
        return match publish_result(ctx, &env, Status::Stale, None, None, timings).await {
            Ok(()) => {
                ctx.metrics.stale.inc();
                Outcome::Stale
            }
            Err(e) => retry(ctx, "publish_failed", &e.to_string(), delivered),
        };
    }
    if -age > ctx.cfg.max_clock_skew {
        let why = format!("{} is {:.0}s in the future", header::CAPTURED_AT, (-age).as_seconds_f64());
        return poison(ctx, msg, &env, "bad_header", &why, Timings::default()).await;
    }

    // Inference runs on a blocking thread with this slot's own buffers; progress acks keep the
    // frame ours while it runs (a Raspberry Pi may need longer than ack_wait on a bad day).
    // The slot's runner is rebuilt only when the model was hot-swapped since its last frame.
    let mut slot = ctx.engine.runner_for(runner.take());
    env.model = Some(std::sync::Arc::clone(slot.version()));
    let payload: Bytes = msg.payload.clone();
    let job = tokio::task::spawn_blocking(move || {
        #[cfg(feature = "test-hooks")]
        crate::test_hooks::panic_if(hook, crate::test_hooks::PanicPoint::Blocking);
        let out = slot.run(&payload);
        (slot, out)
    });
    let joined = with_progress(msg, ctx.cfg.progress_interval, job).await;
    let inferred: Inferred = match joined {
        Err(join) => {
            // A panic lost this slot's runner; the next frame gets a fresh one.
            let why = match join.try_into_panic() {
                Ok(payload) => format!("inference panicked: {}", panic_message(payload.as_ref())),
                Err(_) => "inference task cancelled".to_owned(),
            };
            tracing::error!(worker = %ctx.id, error = %why, "inference failed");
            return retry_or_poison(ctx, msg, &env, "panic", &why).await;
        }
        Ok((slot, out)) => {
            *runner = Some(slot);
            match out {
                Ok(i) => i,
                Err(e) if e.is_poison() => {
                    return poison(ctx, msg, &env, e.kind(), &e.to_string(), Timings::default()).await;
                }
                Err(e) => return retry_or_poison(ctx, msg, &env, "inference_failed", &e.to_string()).await,
            }
        }
    };

    let t = &inferred.timings;
    let mut emulated = Duration::ZERO;
    if ctx.cfg.slowdown > 1.0 {
        // Device emulation: the slot stays busy as a device `slowdown` times slower would.
        emulated = t.inference.mul_f64(ctx.cfg.slowdown - 1.0);
        with_progress(msg, ctx.cfg.progress_interval, tokio::time::sleep(emulated)).await;
    }
    let m = &ctx.metrics;
    m.decode.observe(t.decode.as_secs_f64());
    m.preprocess.observe(t.preprocess.as_secs_f64());
    m.inference.observe(t.inference.as_secs_f64());
    m.postprocess.observe(t.postprocess.as_secs_f64());
    m.emulated_delay.observe(emulated.as_secs_f64());
    let timings = Timings {
        queue_wait_ms: ms(queue_wait),
        decode_ms: ms(t.decode),
        preprocess_ms: ms(t.preprocess),
        inference_ms: ms(t.inference),
        postprocess_ms: ms(t.postprocess),
        emulated_delay_ms: ms(emulated),
        total_ms: ms(taken.elapsed()),
    };
    let size = Some((inferred.width, inferred.height));
    let found = inferred.detections.len();
    match publish_result(ctx, &env, Status::Ok, None, Some((size, inferred.detections)), timings).await {
        Ok(()) => {
            // One line per frame at debug: with the W3C trace id, a frame can be followed from
            // the camera through the worker to the sink (RUST_LOG=edgepool_worker=debug).
            tracing::debug!(
                worker = %ctx.id, camera = %env.camera, seq = ?env.seq,
                traceparent = env.traceparent.as_deref().unwrap_or(""), detections = found,
                total_ms = timings.total_ms, "frame done"
            );
            m.ok.inc();
            Outcome::Done
        }
        Err(e) => retry(ctx, "publish_failed", &e.to_string(), delivered),
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

/// The outcome of a frame whose processing panicked outside inference (the slot caught it): the
/// same as a panic in inference, a retry until the last delivery, then a dead letter of kind
/// `panic`. Everything about the first attempt is lost, so the envelope is parsed again.
pub(crate) async fn after_panic(ctx: &Ctx, msg: &Message, why: &str) -> Outcome {
    let (env, _) = envelope(msg, OffsetDateTime::now_utc());
    retry_or_poison(ctx, msg, &env, "panic", why).await
}

fn retry(ctx: &Ctx, reason: &'static str, why: &str, delivered: u64) -> Outcome {
    tracing::warn!(worker = %ctx.id, reason, delivered, error = why, "handing frame back for redelivery");
    ctx.metrics.nak(reason);
    Outcome::Retry { reason, delay: ctx.cfg.nak_delay }
}

/// A transient failure is retried, until the last delivery: then the frame is dead-lettered so
/// that it still has an outcome (the server would otherwise drop it silently after max_deliver).
async fn retry_or_poison(ctx: &Ctx, msg: &Message, env: &Envelope, reason: &'static str, why: &str) -> Outcome {
    if ctx.max_deliver > 0 && env.delivered >= u64::try_from(ctx.max_deliver).unwrap_or(u64::MAX) {
        let why = format!("{why} (delivery {} of {}, giving up)", env.delivered, ctx.max_deliver);
        return poison(ctx, msg, env, reason, &why, Timings::default()).await;
    }
    retry(ctx, reason, why, env.delivered)
}

/// Dead-letters the frame with its reason, publishes an error result, and terminates it.
async fn poison(ctx: &Ctx, msg: &Message, env: &Envelope, kind: &str, why: &str, timings: Timings) -> Outcome {
    tracing::info!(
        worker = %ctx.id, camera = %env.camera, seq = ?env.seq, traceparent = env.traceparent.as_deref().unwrap_or(""),
        kind, error = why, "poison frame"
    );
    if let Err(e) = dead_letter(ctx, msg, env, kind, why).await {
        return retry(ctx, "deadletter_failed", &e.to_string(), env.delivered);
    }
    let error = ErrorInfo { kind: kind.to_owned(), message: why.chars().take(1024).collect() };
    if let Err(e) = publish_result(ctx, env, Status::Error, Some(error), None, timings).await {
        return retry(ctx, "publish_failed", &e.to_string(), env.delivered);
    }
    ctx.metrics.error.inc();
    ctx.metrics.error_kind(kind);
    Outcome::Poison { kind: kind.to_owned() }
}

fn result_msg_id(env: &Envelope) -> String {
    match env.seq {
        Some(seq) => format!("{}-{seq}", env.camera),
        None => format!("{}-stream-{}", env.camera, env.stream_seq),
    }
}

/// Bytes of the frame's own headers a dead letter keeps (names + values); longer values and
/// whatever exceeds the budget are dropped and counted in `Edgepool-Headers-Dropped`.
const DEADLETTER_HEADER_BUDGET: usize = 8 * 1024;

/// The frame's original bytes and headers plus the reason, on `deadletter.<camera>`.
async fn dead_letter(ctx: &Ctx, msg: &Message, env: &Envelope, kind: &str, why: &str) -> Result<(), async_nats::Error> {
    let mut h = HeaderMap::new();
    // The original headers are copied within a budget: a frame with huge headers and a payload
    // near max_payload would otherwise make a dead letter the broker refuses on every delivery,
    // leaving the frame with no outcome at all.
    let mut budget = DEADLETTER_HEADER_BUDGET;
    let mut dropped = 0usize;
    if let Some(orig) = msg.headers.as_ref() {
        for (name, values) in orig.iter() {
            let name: &str = name.as_ref();
            if name.eq_ignore_ascii_case(header::MSG_ID) {
                continue;
            }
            for (i, v) in values.iter().enumerate() {
                let cost = name.len() + v.as_str().len() + 4;
                if i >= 4 || name.len() > 256 || v.as_str().len() > 1024 || cost > budget {
                    dropped += 1;
                    continue;
                }
                budget -= cost;
                h.append(name, v.as_str());
            }
        }
    }
    if dropped > 0 {
        h.insert("Edgepool-Headers-Dropped", dropped.to_string().as_str());
    }
    h.insert(header::MSG_ID, result_msg_id(env).as_str());
    h.insert(header::ERROR_KIND, kind);
    h.insert(header::ERROR, sanitize_header(why).as_str());
    h.insert(header::ORIGINAL_SUBJECT, sanitize_header(&msg.subject).as_str());
    h.insert(header::STREAM_SEQ, env.stream_seq.to_string().as_str());
    // The copy must fit under max_payload with the copied headers (≤ the budget) and ours
    // (≤ 2 KiB); keep the head of a frame that was already at the limit, and say so.
    let room = ctx.max_payload.saturating_sub(DEADLETTER_HEADER_BUDGET + 8 * 1024);
    let mut payload = msg.payload.clone();
    if payload.len() > room {
        h.insert("Edgepool-Truncated-From", payload.len().to_string().as_str());
        payload.truncate(room);
    }
    let subject = format!("{DEADLETTER_PREFIX}.{}", env.camera);
    publish_acked(ctx, subject, h, payload).await
}

fn sanitize_header(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(512).collect()
}

async fn publish_result(
    ctx: &Ctx,
    env: &Envelope,
    status: Status,
    error: Option<ErrorInfo>,
    ok: Option<(Option<(u32, u32)>, Vec<edgepool_wire::Detection>)>,
    mut timings: Timings,
) -> Result<(), async_nats::Error> {
    let (size, detections) = ok.unwrap_or((None, Vec::new()));
    let (width, height) = size.unwrap_or((0, 0));
    if timings.total_ms == 0.0 {
        timings.total_ms = ms(Duration::try_from(OffsetDateTime::now_utc() - env.taken_at).unwrap_or_default());
    }
    let result = ResultMessage {
        schema_version: SCHEMA_VERSION,
        camera: env.camera.clone(),
        seq: env.seq,
        stream_seq: env.stream_seq,
        captured_at: env.captured_at,
        processed_at: OffsetDateTime::now_utc(),
        worker: ctx.id.to_string(),
        arch: crate::ARCH.to_owned(),
        device_label: ctx.cfg.label.clone(),
        slowdown: ctx.cfg.slowdown,
        model: env.model.as_deref().map_or_else(|| ctx.engine.version(), str::to_owned),
        width,
        height,
        delivery: env.delivered,
        timings,
        status,
        error,
        traceparent: env.traceparent.clone(),
        detections,
    };
    let body = serde_json::to_vec(&result)?;
    let mut h = HeaderMap::new();
    h.insert(header::MSG_ID, result_msg_id(env).as_str());
    h.insert(header::CONTENT_TYPE, "application/json");
    if let Some(tp) = &env.traceparent {
        h.insert(header::TRACEPARENT, tp.as_str());
    }
    let started = std::time::Instant::now();
    let r = publish_acked(ctx, result.subject(), h, body.into()).await;
    ctx.metrics.publish.observe(started.elapsed().as_secs_f64());
    r
}

/// Publishes and awaits the JetStream ack, retrying with the same msg id (duplicates are
/// dropped by the stream, so a retry after a lost ack is harmless).
async fn publish_acked(
    ctx: &Ctx,
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<(), async_nats::Error> {
    let mut last: Option<async_nats::Error> = None;
    for attempt in 0..ctx.cfg.publish_attempts {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
        }
        match ctx.js.publish_with_headers(subject.clone(), headers.clone(), payload.clone()).await {
            Ok(ack) => match ack.await {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e.into()),
            },
            Err(e) => last = Some(e.into()),
        }
    }
    Err(last.unwrap_or_else(|| "no publish attempt".into()))
}
