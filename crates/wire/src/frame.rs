//! The frame message: subject, headers and payload a producer publishes, and their parsing.
//!
//! Parsing is the worker's first step. Every failure is a [`FrameError`] with a stable `kind`,
//! and every one of them is poison: the same bytes will fail the same way on every redelivery.

use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::detection::BBox;
use crate::ids::{CameraId, FrameSeq, IdError};
use crate::kind::ErrorKind;
use crate::trigger::{Trigger, parse_regions};

/// Subject prefix of frames: `frames.<camera>`.
pub const FRAMES_PREFIX: &str = "frames";
/// Subject prefix of interactive frames (`requests.<camera>`, stream REQUESTS): a request waiting
/// on an HTTP client, which workers take before camera frames.
pub const REQUESTS_PREFIX: &str = "requests";
/// Subject prefix of results: `detections.<camera>`.
pub const DETECTIONS_PREFIX: &str = "detections";
/// Subject prefix of dead letters: `deadletter.<camera>`.
pub const DEADLETTER_PREFIX: &str = "deadletter";
/// Subject token used for frames whose subject token is not a valid camera id
/// (ids starting with `_` are reserved, so no camera can collide with it).
pub const INVALID_CAMERA_TOKEN: &str = "_invalid";

/// Header names of the frame message (see `docs/wire.md`).
pub mod header {
    /// `<camera>-<seq>`: JetStream publish deduplication.
    pub const MSG_ID: &str = "Nats-Msg-Id";
    /// `image/jpeg` or `image/png`.
    pub const CONTENT_TYPE: &str = "Content-Type";
    /// The camera's frame sequence number, a decimal u64.
    pub const SEQ: &str = "Edgepool-Seq";
    /// Capture time, RFC 3339 in UTC (nanoseconds allowed).
    pub const CAPTURED_AT: &str = "Edgepool-Captured-At";
    /// Optional W3C trace context, carried into results and logs.
    pub const TRACEPARENT: &str = "traceparent";
    /// Optional: why the camera published the frame, `motion`, `keepalive` or `every`
    /// (see [`crate::trigger::Trigger`]).
    pub const TRIGGER: &str = "Edgepool-Trigger";
    /// Optional: where the camera saw motion, `x_min,y_min,x_max,y_max` normalized boxes
    /// separated by `;` (see [`crate::trigger::format_regions`]).
    pub const MOTION_REGIONS: &str = "Edgepool-Motion-Regions";
    /// On dead letters: the error kind (stable, snake_case).
    pub const ERROR_KIND: &str = "Edgepool-Error-Kind";
    /// On dead letters: the human-readable error.
    pub const ERROR: &str = "Edgepool-Error";
    /// On dead letters: the frame's subject as received.
    pub const ORIGINAL_SUBJECT: &str = "Edgepool-Original-Subject";
    /// On dead letters: the frame's sequence in the FRAMES stream.
    pub const STREAM_SEQ: &str = "Edgepool-Stream-Seq";
    /// Optional: when the frame's answer stops being useful (RFC 3339). A frame with a deadline
    /// is judged by it instead of the workers' staleness bound; past it a worker answers
    /// `stale` without inference.
    pub const DEADLINE: &str = "Edgepool-Deadline";
    /// Required with `image/x-raw-rgb`: the image's width in pixels (1..=65535).
    pub const WIDTH: &str = "Edgepool-Width";
    /// Required with `image/x-raw-rgb`: the image's height in pixels (1..=65535).
    pub const HEIGHT: &str = "Edgepool-Height";
}

/// Image formats the detector accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    Jpeg,
    Png,
    /// Uncompressed 8-bit RGB, rows top to bottom, no padding (`image/x-raw-rgb`): a tensor
    /// as Frigate sends it. Its size is in [`header::WIDTH`] and [`header::HEIGHT`].
    RawRgb,
}

impl ContentType {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::RawRgb => "image/x-raw-rgb",
        }
    }

    /// Parses a `Content-Type` header value (parameters after `;` are ignored).
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        let essence = value.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("image/jpeg") || essence.eq_ignore_ascii_case("image/jpg") {
            Some(Self::Jpeg)
        } else if essence.eq_ignore_ascii_case("image/png") {
            Some(Self::Png)
        } else if essence.eq_ignore_ascii_case("image/x-raw-rgb") {
            Some(Self::RawRgb)
        } else {
            None
        }
    }

    /// Guesses from a file extension, for cameras that replay files.
    #[must_use]
    pub fn from_extension(ext: &str) -> Option<Self> {
        match ext.to_ascii_lowercase().as_str() {
            "jpg" | "jpeg" => Some(Self::Jpeg),
            "png" => Some(Self::Png),
            _ => None,
        }
    }

    /// Whether `payload` starts with this format's magic bytes.
    #[must_use]
    pub fn matches_magic(self, payload: &[u8]) -> bool {
        match self {
            Self::Jpeg => payload.starts_with(&[0xFF, 0xD8, 0xFF]),
            Self::Png => payload.starts_with(b"\x89PNG\r\n\x1a\n"),
            // No magic: its length is checked against the dimension headers instead.
            Self::RawRgb => true,
        }
    }
}

/// Why a frame message was refused before decoding. All are poison.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("subject {0:?} is not frames.<camera>")]
    BadSubject(String),
    #[error("invalid camera id in subject: {0}")]
    BadCamera(#[source] IdError),
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("header {name} has an invalid value {value:?}: {why}")]
    BadHeader { name: &'static str, value: String, why: &'static str },
    #[error("Content-Type {0:?} is not image/jpeg or image/png")]
    UnsupportedContentType(String),
    #[error("payload does not start with the magic bytes of {0}")]
    ContentTypeMismatch(&'static str),
    #[error("payload is empty")]
    EmptyPayload,
}

impl FrameError {
    /// The kind of error results and dead letters, and the metric label.
    #[must_use]
    pub fn error_kind(&self) -> ErrorKind {
        match self {
            Self::BadSubject(_) => ErrorKind::BadSubject,
            Self::BadCamera(_) => ErrorKind::BadCameraId,
            Self::MissingHeader(_) => ErrorKind::MissingHeader,
            Self::BadHeader { .. } => ErrorKind::BadHeader,
            Self::UnsupportedContentType(_) => ErrorKind::UnsupportedContentType,
            Self::ContentTypeMismatch(_) => ErrorKind::ContentTypeMismatch,
            Self::EmptyPayload => ErrorKind::EmptyPayload,
        }
    }

    /// A stable snake_case name: [`FrameError::error_kind`] as a string.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        self.error_kind().as_str()
    }
}

/// The parsed, validated envelope of one frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameMeta {
    pub camera: CameraId,
    pub seq: FrameSeq,
    pub captured_at: OffsetDateTime,
    pub content_type: ContentType,
    pub traceparent: Option<String>,
    /// Why the camera published it, when it said.
    pub trigger: Option<Trigger>,
    /// Where the camera saw motion (empty when it did not say).
    pub motion_regions: Vec<BBox>,
    /// When the answer stops being useful (requests waiting on a client), if the sender said.
    pub deadline: Option<OffsetDateTime>,
    /// Width and height of an `image/x-raw-rgb` frame (`None` for encoded ones).
    pub raw_size: Option<(u32, u32)>,
}

/// The camera token of a `frames.<camera>` or `requests.<camera>` subject, validated or not.
///
/// Used to route error results when the rest of the frame is bad.
#[must_use]
pub fn subject_token(subject: &str) -> Option<&str> {
    let rest = subject.strip_prefix(FRAMES_PREFIX).or_else(|| subject.strip_prefix(REQUESTS_PREFIX))?;
    rest.strip_prefix('.').filter(|t| !t.contains('.'))
}

impl FrameMeta {
    /// Parses subject, headers and payload. `header` looks up one header's first value.
    pub fn parse<'h>(
        subject: &str,
        header: impl Fn(&str) -> Option<&'h str>,
        payload: &[u8],
    ) -> Result<Self, FrameError> {
        let token = subject_token(subject).ok_or_else(|| FrameError::BadSubject(subject.to_owned()))?;
        let camera = CameraId::new(token).map_err(FrameError::BadCamera)?;

        let seq_raw = header(header::SEQ).ok_or(FrameError::MissingHeader(header::SEQ))?;
        let seq = seq_raw.trim().parse::<u64>().map(FrameSeq).map_err(|_| FrameError::BadHeader {
            name: header::SEQ,
            value: truncate(seq_raw),
            why: "not a decimal u64",
        })?;

        let at_raw = header(header::CAPTURED_AT).ok_or(FrameError::MissingHeader(header::CAPTURED_AT))?;
        let bad_time = |why| FrameError::BadHeader { name: header::CAPTURED_AT, value: truncate(at_raw), why };
        let captured_at =
            OffsetDateTime::parse(at_raw.trim(), &Rfc3339).map_err(|_| bad_time("not an RFC 3339 timestamp"))?;
        // A valid timestamp with an offset can still leave RFC 3339's years in UTC
        // (`0000-01-01T00:00:00+00:01` is year -1): refused here, so every accepted frame can be
        // written out again with `format_time`.
        to_utc(captured_at).map_err(|_| bad_time("its UTC year is outside 0000..=9999"))?;

        let ct_raw = header(header::CONTENT_TYPE).ok_or(FrameError::MissingHeader(header::CONTENT_TYPE))?;
        let content_type =
            ContentType::parse(ct_raw).ok_or_else(|| FrameError::UnsupportedContentType(truncate(ct_raw)))?;

        if let Some(id) = header(header::MSG_ID) {
            let expected = crate::ids::msg_id(&camera, seq);
            if id != expected {
                return Err(FrameError::BadHeader {
                    name: header::MSG_ID,
                    value: truncate(id),
                    why: "must be <camera>-<seq>",
                });
            }
        }

        if payload.is_empty() {
            return Err(FrameError::EmptyPayload);
        }
        if !content_type.matches_magic(payload) {
            return Err(FrameError::ContentTypeMismatch(content_type.as_str()));
        }

        let traceparent = header(header::TRACEPARENT).filter(|t| is_traceparent(t)).map(str::to_owned);
        let trigger = match header(header::TRIGGER) {
            None => None,
            Some(v) => Some(Trigger::parse(v).ok_or_else(|| FrameError::BadHeader {
                name: header::TRIGGER,
                value: truncate(v),
                why: "not motion, keepalive or every",
            })?),
        };
        let motion_regions = match header(header::MOTION_REGIONS) {
            None => Vec::new(),
            Some(v) => parse_regions(v).map_err(|why| FrameError::BadHeader {
                name: header::MOTION_REGIONS,
                value: truncate(v),
                why,
            })?,
        };
        let deadline = match header(header::DEADLINE) {
            None => None,
            Some(v) => {
                let bad = |why| FrameError::BadHeader { name: header::DEADLINE, value: truncate(v), why };
                let t = OffsetDateTime::parse(v.trim(), &Rfc3339).map_err(|_| bad("not an RFC 3339 timestamp"))?;
                Some(to_utc(t).map_err(|_| bad("its UTC year is outside 0000..=9999"))?)
            }
        };
        let raw_size = match content_type {
            ContentType::RawRgb => Some(raw_size(&header, payload.len())?),
            ContentType::Jpeg | ContentType::Png => None,
        };
        Ok(Self { camera, seq, captured_at, content_type, traceparent, trigger, motion_regions, deadline, raw_size })
    }
}

/// The width and height headers of a raw RGB frame, checked against its payload's length.
fn raw_size<'h>(header: &impl Fn(&str) -> Option<&'h str>, len: usize) -> Result<(u32, u32), FrameError> {
    let dim = |name: &'static str| {
        let v = header(name).ok_or(FrameError::MissingHeader(name))?;
        v.trim().parse::<u32>().ok().filter(|n| (1..=65_535).contains(n)).ok_or_else(|| FrameError::BadHeader {
            name,
            value: truncate(v),
            why: "not a decimal between 1 and 65535",
        })
    };
    let (width, height) = (dim(header::WIDTH)?, dim(header::HEIGHT)?);
    if u64::from(width) * u64::from(height) * 3 != len as u64 {
        return Err(FrameError::BadHeader {
            name: header::WIDTH,
            value: format!("{width}x{height}"),
            why: "width x height x 3 is not the payload's length",
        });
    }
    Ok((width, height))
}

/// W3C trace context `version-traceid-parentid-flags`; invalid values are ignored, as the
/// specification asks.
#[must_use]
pub fn is_traceparent(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2)
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// A time the contract cannot carry: in UTC its year is outside `0000..=9999`, the four digits of
/// RFC 3339.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
#[error("time {0} is outside the years 0000..=9999 in UTC, which RFC 3339 cannot write")]
pub struct TimeOutOfRange(pub OffsetDateTime);

/// `t` in UTC, if RFC 3339 can write it.
fn to_utc(t: OffsetDateTime) -> Result<OffsetDateTime, TimeOutOfRange> {
    // `checked_`: moving a time at the edge of the `time` crate's range to UTC can leave it.
    t.checked_to_offset(UtcOffset::UTC).filter(|u| (0..=9999).contains(&u.year())).ok_or(TimeOutOfRange(t))
}

/// Formats a capture time the way the contract wants it: RFC 3339, UTC, nanoseconds.
///
/// Every `captured_at` that [`FrameMeta::parse`] accepts formats, and so does any clock reading
/// near now; a time RFC 3339 cannot express is an error rather than a made-up date.
pub fn format_time(t: OffsetDateTime) -> Result<String, TimeOutOfRange> {
    // For a UTC time in range, the year is Rfc3339's only failure; map it all the same.
    to_utc(t)?.format(&Rfc3339).map_err(|_| TimeOutOfRange(t))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0];

    fn headers(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    fn good() -> HashMap<&'static str, &'static str> {
        headers(&[
            (header::SEQ, "7"),
            (header::CAPTURED_AT, "2026-11-27T10:00:00.123456789Z"),
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::MSG_ID, "cam-1-7"),
        ])
    }

    fn parse(subject: &str, h: &HashMap<&'static str, &'static str>, p: &[u8]) -> Result<FrameMeta, FrameError> {
        FrameMeta::parse(subject, |k| h.get(k).copied(), p)
    }

    #[test]
    fn parses_a_good_frame() {
        let m = parse("frames.cam-1", &good(), JPEG).unwrap();
        assert_eq!(m.camera.as_str(), "cam-1");
        assert_eq!(m.seq, FrameSeq(7));
        assert_eq!(m.content_type, ContentType::Jpeg);
        assert_eq!(m.captured_at.nanosecond(), 123_456_789);
    }

    #[test]
    fn requests_and_raw_rgb_frames_parse_with_their_size_and_deadline() {
        let mut h = good();
        h.insert(header::CONTENT_TYPE, "image/x-raw-rgb");
        h.insert(header::WIDTH, "4");
        h.insert(header::HEIGHT, "2");
        h.insert(header::DEADLINE, "2026-11-27T10:00:10Z");
        let m = parse("requests.cam-1", &h, &[0; 24]).unwrap();
        assert_eq!((m.content_type, m.raw_size), (ContentType::RawRgb, Some((4, 2))));
        assert_eq!(m.deadline.map(|d| d.second()), Some(10));
        let kind = |h: &HashMap<_, _>, p: &[u8]| parse("requests.cam-1", h, p).unwrap_err().kind();
        assert_eq!(kind(&h, &[0; 23]), "bad_header", "size does not match the payload");
        let mut no_width = h.clone();
        no_width.remove(header::WIDTH);
        assert_eq!(kind(&no_width, &[0; 24]), "missing_header");
        let mut zero = h.clone();
        zero.insert(header::HEIGHT, "0");
        assert_eq!(kind(&zero, &[]), "empty_payload");
        assert_eq!(kind(&zero, &[0; 24]), "bad_header");
        let mut late = h;
        late.insert(header::DEADLINE, "soon");
        assert_eq!(kind(&late, &[0; 24]), "bad_header");
    }

    #[test]
    fn every_defect_has_its_kind() {
        let kind = |subject: &str, h: HashMap<_, _>, p: &[u8]| parse(subject, &h, p).unwrap_err().kind();
        assert_eq!(kind("frames.a.b", good(), JPEG), "bad_subject");
        assert_eq!(kind("frames.c%m", good(), JPEG), "bad_camera_id");
        let mut h = good();
        h.remove(header::SEQ);
        assert_eq!(kind("frames.cam-1", h, JPEG), "missing_header");
        let mut h = good();
        h.insert(header::SEQ, "-3");
        assert_eq!(kind("frames.cam-1", h, JPEG), "bad_header");
        let mut h = good();
        h.insert(header::CAPTURED_AT, "yesterday");
        assert_eq!(kind("frames.cam-1", h, JPEG), "bad_header");
        let mut h = good();
        h.insert(header::CONTENT_TYPE, "text/plain");
        assert_eq!(kind("frames.cam-1", h, JPEG), "unsupported_content_type");
        let mut h = good();
        h.insert(header::MSG_ID, "cam-1-8");
        assert_eq!(kind("frames.cam-1", h, JPEG), "bad_header");
        assert_eq!(kind("frames.cam-1", good(), b""), "empty_payload");
        assert_eq!(kind("frames.cam-1", good(), b"\x89PNG\r\n\x1a\n"), "content_type_mismatch");
    }

    /// A good frame whose `Edgepool-Captured-At` is `at`.
    fn parse_captured_at(at: &'static str) -> Result<FrameMeta, FrameError> {
        let mut h = good();
        h.insert(header::CAPTURED_AT, at);
        parse("frames.cam-1", &h, JPEG)
    }

    /// Fuzzing finding 2 (docs/reliability.md): a valid RFC 3339 time whose UTC year leaves
    /// 0000..=9999 was accepted, and `format_time` then wrote 1970-01-01 for it.
    #[test]
    fn capture_times_rfc3339_cannot_write_in_utc_are_refused() {
        for at in ["0000-01-01T00:00:00+00:01", "9999-12-31T23:59:59-00:01", "0000-01-01T00:00:00.5+23:59"] {
            let e = parse_captured_at(at).unwrap_err();
            assert_eq!(e.kind(), "bad_header", "{at}");
            assert!(e.to_string().contains("0000..=9999"), "{at}: {e}");
        }
    }

    #[test]
    fn format_time_writes_utc_or_refuses() {
        let t = OffsetDateTime::parse("2026-11-27T11:00:00.123456789+01:00", &Rfc3339).unwrap();
        assert_eq!(format_time(t).unwrap(), "2026-11-27T10:00:00.123456789Z");
        let out = OffsetDateTime::parse("0000-01-01T00:00:00+00:01", &Rfc3339).unwrap();
        assert_eq!(format_time(out), Err(TimeOutOfRange(out)));
        let out = OffsetDateTime::parse("9999-12-31T23:59:59-00:01", &Rfc3339).unwrap();
        assert!(format_time(out).is_err());
        assert!(format_time(OffsetDateTime::now_utc()).is_ok());
    }

    /// Whatever `parse` accepts, `format_time` writes, and that parses back to the same instant:
    /// the edges of the range, and offsets that stay within it, included.
    #[test]
    fn accepted_capture_times_format_and_parse_back() {
        let accepted = [
            "2026-11-27T10:00:00.123456789Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
            "0000-01-01T00:01:00+00:01",
            "9999-12-31T22:59:59-01:00",
        ];
        for at in accepted {
            let m = parse_captured_at(at).unwrap();
            let written = format_time(m.captured_at).unwrap();
            assert_eq!(OffsetDateTime::parse(&written, &Rfc3339).unwrap(), m.captured_at, "{at} -> {written}");
        }
    }

    #[test]
    fn trigger_and_motion_regions_are_optional_and_strict() {
        let m = parse("frames.cam-1", &good(), JPEG).unwrap();
        assert_eq!((m.trigger, m.motion_regions.len()), (None, 0));
        let mut h = good();
        h.insert(header::TRIGGER, "motion");
        h.insert(header::MOTION_REGIONS, "0.1,0.2,0.3,0.4;0.5,0.5,0.6,0.9");
        let m = parse("frames.cam-1", &h, JPEG).unwrap();
        assert_eq!(m.trigger, Some(Trigger::Motion));
        assert_eq!(m.motion_regions.len(), 2);
        assert!((m.motion_regions[1].y_max - 0.9).abs() < 1e-6);
        h.insert(header::TRIGGER, "sometimes");
        assert_eq!(parse("frames.cam-1", &h, JPEG).unwrap_err().kind(), "bad_header");
        h.insert(header::TRIGGER, "keepalive");
        h.insert(header::MOTION_REGIONS, "0.1,0.2");
        let e = parse("frames.cam-1", &h, JPEG).unwrap_err();
        assert_eq!(e.kind(), "bad_header");
        assert!(e.to_string().contains("Edgepool-Motion-Regions"), "{e}");
    }

    #[test]
    fn invalid_traceparent_is_ignored() {
        let mut h = good();
        h.insert(header::TRACEPARENT, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        assert!(parse("frames.cam-1", &h, JPEG).unwrap().traceparent.is_some());
        h.insert(header::TRACEPARENT, "00-zzz-b7ad6b7169203331-01");
        assert!(parse("frames.cam-1", &h, JPEG).unwrap().traceparent.is_none());
    }

    #[test]
    fn subject_token_extracts_one_token() {
        assert_eq!(subject_token("frames.cam"), Some("cam"));
        assert_eq!(subject_token("frames.a.b"), None);
        assert_eq!(subject_token("detections.cam"), None);
    }
}
