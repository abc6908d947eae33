//! The typed envelope of one frame, parsed once when it is taken: everything later stages need
//! to know about the frame (its identity as far as it parses, delivery count, trace context,
//! the parse verdict). No later stage reads the frame's headers again.

use std::time::Instant;

use async_nats::HeaderMap;
use async_nats::jetstream::Message;
use time::OffsetDateTime;

use edgepool_nats::header_str;
use edgepool_wire::frame::{header, subject_token};
use edgepool_wire::{CameraId, FrameError, FrameMeta, FrameSeq, ResultCamera};

/// One frame as taken from the queue.
#[derive(Debug)]
pub(crate) struct Envelope {
    /// The camera the result and dead letter go to: the subject's camera when it is a valid id
    /// (even if the rest of the frame is bad, so subscribers can match the error).
    pub camera: ResultCamera,
    /// The camera's sequence, when it parsed.
    pub seq: Option<FrameSeq>,
    /// The frame's sequence in the FRAMES stream.
    pub stream_seq: u64,
    /// How many times JetStream delivered it (1 the first time).
    pub delivered: u64,
    pub captured_at: Option<OffsetDateTime>,
    pub traceparent: Option<String>,
    /// When this worker took it (wall clock for results, monotonic for timings).
    pub taken_at: OffsetDateTime,
    pub taken: Instant,
    /// The parse verdict: the validated metadata, or why the frame is poison.
    pub meta: Result<FrameMeta, FrameError>,
    /// Where the frame asks processing to panic (fault injection, `test-hooks` builds only).
    #[cfg(feature = "test-hooks")]
    pub panic_at: Option<crate::test_hooks::PanicPoint>,
}

impl Envelope {
    /// Parses `msg` as taken at `taken_at`.
    pub fn of(msg: &Message, taken_at: OffsetDateTime) -> Self {
        let (stream_seq, delivered) = match msg.info() {
            Ok(i) => (i.stream_sequence, u64::try_from(i.delivered).unwrap_or(1)),
            Err(_) => (0, 1),
        };
        let env = Self::parse(&msg.subject, msg.headers.as_ref(), &msg.payload, stream_seq, delivered, taken_at);
        #[cfg(feature = "test-hooks")]
        let env = Self { panic_at: crate::test_hooks::panic_point(msg.headers.as_ref()), ..env };
        env
    }

    /// Parses a frame's subject, headers and payload; `stream_seq` and `delivered` come from
    /// the JetStream delivery.
    pub fn parse(
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: &[u8],
        stream_seq: u64,
        delivered: u64,
        taken_at: OffsetDateTime,
    ) -> Self {
        let meta = FrameMeta::parse(subject, |k| header_str(headers, k), payload);
        let (camera, seq, captured_at, traceparent) = match &meta {
            Ok(m) => (ResultCamera::Camera(m.camera.clone()), Some(m.seq), Some(m.captured_at), m.traceparent.clone()),
            Err(_) => match subject_token(subject).map(CameraId::new) {
                // A bad frame keeps as much identity as parses, so its error can be matched.
                Some(Ok(camera)) => {
                    let seq = header_str(headers, header::SEQ).and_then(|s| s.trim().parse().ok()).map(FrameSeq);
                    (ResultCamera::Camera(camera), seq, None, None)
                }
                _ => (ResultCamera::Invalid, None, None, None),
            },
        };
        Self {
            camera,
            seq,
            stream_seq,
            delivered,
            captured_at,
            traceparent,
            taken_at,
            taken: Instant::now(),
            meta,
            #[cfg(feature = "test-hooks")]
            panic_at: None,
        }
    }

    /// Whether this is the consumer's last delivery (`max_deliver`; ≤ 0 means unlimited).
    pub fn is_last_delivery(&self, max_deliver: i64) -> bool {
        max_deliver > 0 && self.delivered >= u64::try_from(max_deliver).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const JPEG: &[u8] = b"\xff\xd8\xff\xe0rest";

    pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, *v);
        }
        h
    }

    pub fn good_headers() -> HeaderMap {
        headers(&[
            (header::SEQ, "42"),
            (header::CAPTURED_AT, "2026-01-01T00:00:00Z"),
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::TRACEPARENT, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ])
    }

    pub fn parse(subject: &str, h: &HeaderMap, payload: &[u8]) -> Envelope {
        Envelope::parse(subject, Some(h), payload, 9, 1, OffsetDateTime::now_utc())
    }

    #[test]
    fn a_good_frame_is_parsed_once_into_typed_fields() {
        let env = parse("frames.cam-1", &good_headers(), JPEG);
        assert!(env.meta.is_ok());
        assert_eq!(env.camera, "cam-1");
        assert_eq!(env.seq, Some(FrameSeq(42)));
        assert!(env.captured_at.is_some());
        assert!(env.traceparent.is_some());
    }

    #[test]
    fn a_bad_frame_keeps_the_identity_that_parses() {
        let env = parse("frames.cam-1", &good_headers(), b"");
        assert_eq!(env.meta.as_ref().unwrap_err(), &FrameError::EmptyPayload);
        assert_eq!((env.camera.as_str(), env.seq), ("cam-1", Some(FrameSeq(42))));
        assert_eq!(env.traceparent, None, "only a frame that parsed carries its trace context on");

        let env = parse("frames.cam-1", &headers(&[(header::SEQ, "x")]), JPEG);
        assert_eq!((env.seq, env.stream_seq), (None, 9));
    }

    #[test]
    fn a_bad_camera_goes_to_the_invalid_token() {
        let env = parse("frames.c%m", &good_headers(), JPEG);
        assert_eq!(env.camera, ResultCamera::Invalid);
        assert_eq!(env.seq, None, "a sequence means nothing without its camera");
        assert_eq!(env.meta.unwrap_err().error_kind(), edgepool_wire::ErrorKind::BadCameraId);
    }

    #[test]
    fn last_delivery_follows_max_deliver() {
        let mut env = parse("frames.cam-1", &good_headers(), JPEG);
        env.delivered = 3;
        assert!(env.is_last_delivery(3));
        assert!(!env.is_last_delivery(4));
        assert!(!env.is_last_delivery(-1), "unlimited deliveries have no last one");
        assert!(!env.is_last_delivery(0));
    }
}
