//! Storing what a frame produced: its result on `detections.<camera>` and, for a poison frame,
//! a dead letter on `deadletter.<camera>`. Every publish waits for the stream's ack and gives
//! up when the drain expires.

use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;

use edgepool_wire::frame::{DEADLETTER_PREFIX, header};
use edgepool_wire::{ErrorKind, ResultMessage};

use crate::ctx::Ctx;

/// Bytes of the frame's own headers a dead letter keeps (names + values); longer values and
/// whatever exceeds the budget are dropped and counted in `Edgepool-Headers-Dropped`.
const DEADLETTER_HEADER_BUDGET: usize = 8 * 1024;
/// Room kept for the headers the dead letter adds (error, subject, sequence: ≤ 2 KiB), with margin.
const DEADLETTER_OWN_HEADERS: usize = 8 * 1024;
/// At most this many values of one header are copied.
const MAX_VALUES_PER_HEADER: usize = 4;
/// Longer header names and values are not copied.
const MAX_HEADER_NAME: usize = 256;
const MAX_HEADER_VALUE: usize = 1024;
/// Longest error and subject text in a dead letter's headers.
const MAX_ERROR_HEADER: usize = 512;

/// Why a result or dead letter was not stored.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    #[error("serializing the result")]
    Serialize(#[source] serde_json::Error),
    #[error("no ack from the stream after {attempts} attempts")]
    Broker {
        attempts: u32,
        #[source]
        source: async_nats::Error,
    },
    #[error("the drain expired before the stream acked")]
    Drained,
}

/// Publishes `result` with its dedupe id and trace context.
pub(crate) async fn publish_result(ctx: &Ctx, result: &ResultMessage) -> Result<(), PublishError> {
    let body = serde_json::to_vec(result).map_err(PublishError::Serialize)?;
    let mut h = HeaderMap::new();
    h.insert(header::MSG_ID, result.msg_id().as_str());
    h.insert(header::CONTENT_TYPE, "application/json");
    if let Some(tp) = &result.traceparent {
        h.insert(header::TRACEPARENT, tp.as_str());
    }
    let started = std::time::Instant::now();
    let r = publish_acked(ctx, result.subject(), h, body.into()).await;
    ctx.metrics.publish.observe(started.elapsed().as_secs_f64());
    r
}

/// What a poison frame's dead letter is made of: the frame as it came, and why it failed.
#[derive(Debug)]
pub(crate) struct DeadLetter<'a> {
    pub subject: &'a str,
    pub headers: Option<&'a HeaderMap>,
    pub payload: &'a Bytes,
    pub stream_seq: u64,
    pub kind: ErrorKind,
    pub why: &'a str,
}

/// Publishes the frame's original bytes and headers plus the reason on `deadletter.<camera>`,
/// with the msg id of its error result.
pub(crate) async fn dead_letter(
    ctx: &Ctx,
    result: &ResultMessage,
    letter: &DeadLetter<'_>,
) -> Result<(), PublishError> {
    let (headers, payload) = letter.build(&result.msg_id(), ctx.max_payload);
    let subject = format!("{DEADLETTER_PREFIX}.{}", result.camera);
    publish_acked(ctx, subject, headers, payload).await
}

impl DeadLetter<'_> {
    /// The headers and payload, within `max_payload`.
    pub fn build(&self, msg_id: &str, max_payload: usize) -> (HeaderMap, Bytes) {
        let mut h = HeaderMap::new();
        // The original headers are copied within a budget: a frame with huge headers and a
        // payload near max_payload would otherwise make a dead letter the broker refuses on
        // every delivery, leaving the frame with no outcome at all.
        let mut budget = DEADLETTER_HEADER_BUDGET;
        let mut dropped = 0usize;
        for (name, values) in self.headers.iter().flat_map(|h| h.iter()) {
            let name: &str = name.as_ref();
            if name.eq_ignore_ascii_case(header::MSG_ID) {
                continue;
            }
            for (i, v) in values.iter().enumerate() {
                let cost = name.len() + v.as_str().len() + 4;
                if i >= MAX_VALUES_PER_HEADER
                    || name.len() > MAX_HEADER_NAME
                    || v.as_str().len() > MAX_HEADER_VALUE
                    || cost > budget
                {
                    dropped += 1;
                    continue;
                }
                budget -= cost;
                h.append(name, v.as_str());
            }
        }
        if dropped > 0 {
            h.insert("Edgepool-Headers-Dropped", dropped.to_string().as_str());
        }
        h.insert(header::MSG_ID, msg_id);
        h.insert(header::ERROR_KIND, self.kind.as_str());
        h.insert(header::ERROR, sanitize_header(self.why).as_str());
        h.insert(header::ORIGINAL_SUBJECT, sanitize_header(self.subject).as_str());
        h.insert(header::STREAM_SEQ, self.stream_seq.to_string().as_str());
        // The copy must fit under max_payload with the copied headers (≤ the budget) and ours;
        // keep the head of a frame that was already at the limit, and say so.
        let room = max_payload.saturating_sub(DEADLETTER_HEADER_BUDGET + DEADLETTER_OWN_HEADERS);
        let mut payload = self.payload.clone();
        if payload.len() > room {
            h.insert("Edgepool-Truncated-From", payload.len().to_string().as_str());
            payload.truncate(room);
        }
        (h, payload)
    }
}

fn sanitize_header(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_ERROR_HEADER).collect()
}

/// Publishes and awaits the JetStream ack, retrying with the same msg id (duplicates are
/// dropped by the stream, so a retry after a lost ack is harmless). Gives up at once when the
/// drain expires.
async fn publish_acked(ctx: &Ctx, subject: String, headers: HeaderMap, payload: Bytes) -> Result<(), PublishError> {
    let attempts = ctx.cfg.publish_attempts;
    let mut last: Option<async_nats::Error> = None;
    for attempt in 0..attempts {
        if attempt > 0 {
            ctx.drain.bounded(tokio::time::sleep(backoff(attempt))).await.ok_or(PublishError::Drained)?;
        }
        let once = async {
            let ack = ctx.js.publish_with_headers(subject.clone(), headers.clone(), payload.clone()).await?;
            ack.await.map(drop)
        };
        match ctx.drain.bounded(once).await {
            None => return Err(PublishError::Drained),
            Some(Ok(())) => return Ok(()),
            Some(Err(e)) => last = Some(e.into()),
        }
    }
    Err(PublishError::Broker { attempts, source: last.unwrap_or_else(|| "no publish attempt".into()) })
}

/// Pause before publish attempt `attempt` (1, 2, ...): 200 ms doubling, at most 3.2 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 << attempt.min(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter<'a>(headers: &'a HeaderMap, payload: &'a Bytes) -> DeadLetter<'a> {
        DeadLetter {
            subject: "frames.cam-1",
            headers: Some(headers),
            payload,
            stream_seq: 7,
            kind: ErrorKind::Corrupt,
            why: "bad\nbytes",
        }
    }

    #[test]
    fn a_dead_letter_keeps_the_frame_and_says_why() {
        let mut orig = HeaderMap::new();
        orig.insert(header::MSG_ID, "cam-1-42");
        orig.insert(header::SEQ, "42");
        let payload = Bytes::from_static(b"jpeg");
        let (h, p) = letter(&orig, &payload).build("cam-1-42", 1 << 20);
        assert_eq!(p, payload);
        let get = |k: &str| h.get(k).map(|v| v.as_str().to_owned());
        assert_eq!(get(header::SEQ).as_deref(), Some("42"));
        assert_eq!(get(header::MSG_ID).as_deref(), Some("cam-1-42"), "the result's id, not a copy of the frame's");
        assert_eq!(get(header::ERROR_KIND).as_deref(), Some("corrupt"));
        assert_eq!(get(header::ERROR).as_deref(), Some("bad bytes"), "control characters are blanked");
        assert_eq!(get(header::ORIGINAL_SUBJECT).as_deref(), Some("frames.cam-1"));
        assert_eq!(get(header::STREAM_SEQ).as_deref(), Some("7"));
        assert_eq!(get("Edgepool-Headers-Dropped"), None);
        assert_eq!(get("Edgepool-Truncated-From"), None);
    }

    #[test]
    fn the_header_budget_drops_and_counts_what_does_not_fit() {
        let mut orig = HeaderMap::new();
        let value = "v".repeat(1000);
        for i in 0..10 {
            orig.insert(format!("X-H{i}").as_str(), value.as_str());
        }
        orig.insert("X-Huge", "h".repeat(MAX_HEADER_VALUE + 1).as_str());
        for i in 0..6 {
            orig.append("X-Many", i.to_string().as_str());
        }
        let payload = Bytes::from_static(b"jpeg");
        let (h, _) = letter(&orig, &payload).build("id", 1 << 20);
        let copied = (0..10).filter(|i| h.get(format!("X-H{i}").as_str()).is_some()).count();
        assert_eq!(copied, 8, "8 values of ~1 KiB fit in the 8 KiB budget");
        assert!(h.get("X-Huge").is_none());
        // 2 of the long headers, the huge one and 2 values of X-Many beyond the fourth.
        assert_eq!(h.get("Edgepool-Headers-Dropped").unwrap().as_str(), "5");
    }

    #[test]
    fn a_frame_at_the_size_limit_is_truncated_to_fit() {
        let orig = HeaderMap::new();
        let payload = Bytes::from(vec![0u8; 100 * 1024]);
        let (h, p) = letter(&orig, &payload).build("id", 64 * 1024);
        assert_eq!(p.len(), 64 * 1024 - DEADLETTER_HEADER_BUDGET - DEADLETTER_OWN_HEADERS);
        assert_eq!(h.get("Edgepool-Truncated-From").unwrap().as_str(), "102400");
    }

    #[test]
    fn publish_backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(2), Duration::from_millis(400));
        assert_eq!(backoff(9), Duration::from_millis(3200));
    }
}
