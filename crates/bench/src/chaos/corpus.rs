//! Generated malformed frames (issue #5 item 6): truncated and random payloads, decompression
//! bombs, absurd image headers, wrong or missing message headers, invalid camera ids and
//! payloads at and above `max_payload`, each with what the worker must answer.
//!
//! Deterministic for a seed, built in memory from the good photos; large payloads are slices of
//! shared buffers, so a corpus of thousands of frames costs a few tens of MB.

mod build;
mod craft;
#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use edgepool_wire::frame::header;
use edgepool_wire::{CameraId, ContentType};
use time::OffsetDateTime;

use build::Gen;

/// What the pipeline must do with a [`BadFrame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The worker must dead-letter it with this `Edgepool-Error-Kind` and answer with an error
    /// result of that kind.
    Poison { kind: &'static str },
    /// Above `max_payload` with its headers: the publish is refused (async-nats already refuses
    /// it before sending, the server would too), so nothing may come out.
    RefusedByBroker,
}

/// One malformed frame, ready to publish.
#[derive(Clone)]
pub struct BadFrame {
    /// Which defect, e.g. `truncated_jpeg` (see `SPECS` for them all).
    pub case: &'static str,
    /// `frames.<token>`; the token is an invalid camera id on purpose for `invalid_camera`.
    pub subject: String,
    /// Including a `Nats-Msg-Id` unique within the corpus.
    pub headers: HeaderMap,
    pub payload: Bytes,
    pub expect: Expect,
    clock: Clock,
}

impl fmt::Debug for BadFrame {
    // The payload may be 8 MiB: show its size, not its bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BadFrame")
            .field("case", &self.case)
            .field("subject", &self.subject)
            .field("headers", &self.headers)
            .field("payload_len", &self.payload.len())
            .field("expect", &self.expect)
            .finish_non_exhaustive()
    }
}

/// How `Edgepool-Captured-At` follows the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clock {
    /// Capture time is "now": the frame must not go stale before the worker sees it.
    Now,
    /// This far in the future (clock-skew cases).
    Ahead(Duration),
    /// The value is the defect, or absent; leave it alone.
    Fixed,
}

impl BadFrame {
    /// The headers with the capture time moved to `now` (or to `now` plus the case's offset),
    /// for publishing a while after [`generate`]: image defects are only found when the frame
    /// is fresh, a stale frame gets a `stale` result instead. The value has a fixed width, so an
    /// `at_max_payload` frame stays exactly at the limit.
    #[must_use]
    pub fn stamped_headers(&self, now: OffsetDateTime) -> HeaderMap {
        let mut h = self.headers.clone();
        match self.clock {
            Clock::Now => h.insert(header::CAPTURED_AT, rfc3339(now)),
            Clock::Ahead(d) => h.insert(header::CAPTURED_AT, rfc3339(now + d)),
            Clock::Fixed => {}
        }
        h
    }

    /// Bytes on the wire, as the server counts them against `max_payload`: the header block
    /// (`NATS/1.0\r\n`, `name: value\r\n` each, `\r\n`) plus the payload.
    #[must_use]
    pub fn wire_size(&self) -> usize {
        headers_wire_size(&self.headers) + self.payload.len()
    }
}

fn headers_wire_size(h: &HeaderMap) -> usize {
    let lines: usize = h
        .iter()
        .map(|(name, values)| {
            let name: &str = name.as_ref();
            values.iter().map(|v| name.len() + 2 + v.as_str().len() + 2).sum::<usize>()
        })
        .sum();
    if lines == 0 { 0 } else { "NATS/1.0\r\n".len() + lines + 2 }
}

/// RFC 3339 in UTC with all nine fraction digits, so every stamp has the same length.
fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.nanosecond()
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    TruncatedJpeg,
    TruncatedPng,
    ZeroBytes,
    RandomBytes,
    JunkAfterJpegMagic,
    JunkAfterPngMagic,
    BombPng,
    HugePngHeader,
    HugeJpegHeader,
    ZeroSizePng,
    ZeroSizeJpeg,
    BadCrcPng,
    WrongContentType,
    SwappedContentType,
    DuplicateContentType,
    MissingSeq,
    MissingCapturedAt,
    MissingContentType,
    OnlyMsgId,
    LowercaseHeaderNames,
    BadSeq,
    HugeHeaderValue,
    AbsurdCapturedAt,
    FutureCapturedAt,
    BadMsgId,
    InvalidCamera,
    AtMaxPayload,
    HugeHeadersAtMaxPayload,
    OverMaxPayload,
}

/// One case: its name, what the worker answers, and whether it is heavy (8 MiB through the
/// broker and its disk twice: stored, then dead-lettered), so it comes every `HEAVY_EVERY`
/// rounds only.
struct Spec {
    case: Case,
    name: &'static str,
    expect: Expect,
    heavy: bool,
}

const HEAVY_EVERY: usize = 8;

const fn spec(case: Case, name: &'static str, kind: &'static str) -> Spec {
    Spec { case, name, expect: Expect::Poison { kind }, heavy: false }
}

/// Every case, in the order [`generate`] cycles through them. The kinds are what the worker
/// really answers; `tests` checks each generated frame against the real parsing and decoding.
const SPECS: &[Spec] = &[
    spec(Case::TruncatedJpeg, "truncated_jpeg", "corrupt"),
    spec(Case::TruncatedPng, "truncated_png", "corrupt"),
    spec(Case::ZeroBytes, "zero_bytes", "empty_payload"),
    spec(Case::RandomBytes, "random_bytes", "content_type_mismatch"),
    spec(Case::JunkAfterJpegMagic, "junk_after_jpeg_magic", "corrupt"),
    spec(Case::JunkAfterPngMagic, "junk_after_png_magic", "corrupt"),
    spec(Case::BombPng, "bomb_png", "too_many_pixels"),
    spec(Case::HugePngHeader, "huge_png_header", "too_many_pixels"),
    spec(Case::HugeJpegHeader, "huge_jpeg_header", "too_many_pixels"),
    spec(Case::ZeroSizePng, "zero_size_png", "corrupt"),
    spec(Case::ZeroSizeJpeg, "zero_size_jpeg", "corrupt"),
    spec(Case::BadCrcPng, "bad_crc_png", "corrupt"),
    spec(Case::WrongContentType, "wrong_content_type", "unsupported_content_type"),
    spec(Case::SwappedContentType, "swapped_content_type", "content_type_mismatch"),
    spec(Case::DuplicateContentType, "duplicate_content_type", "unsupported_content_type"),
    spec(Case::MissingSeq, "missing_seq", "missing_header"),
    spec(Case::MissingCapturedAt, "missing_captured_at", "missing_header"),
    spec(Case::MissingContentType, "missing_content_type", "missing_header"),
    spec(Case::OnlyMsgId, "only_msg_id", "missing_header"),
    spec(Case::LowercaseHeaderNames, "lowercase_header_names", "missing_header"),
    spec(Case::BadSeq, "bad_seq", "bad_header"),
    spec(Case::HugeHeaderValue, "huge_header_value", "bad_header"),
    spec(Case::AbsurdCapturedAt, "absurd_captured_at", "bad_header"),
    spec(Case::FutureCapturedAt, "future_captured_at", "bad_header"),
    spec(Case::BadMsgId, "bad_msg_id", "bad_header"),
    spec(Case::InvalidCamera, "invalid_camera", "bad_camera_id"),
    Spec { case: Case::AtMaxPayload, name: "at_max_payload", expect: Expect::Poison { kind: "corrupt" }, heavy: true },
    // 8–32 KB of an extra header plus a payload filling the rest: the dead letter must still fit.
    Spec {
        case: Case::HugeHeadersAtMaxPayload,
        name: "huge_headers_at_max_payload",
        expect: Expect::Poison { kind: "corrupt" },
        heavy: true,
    },
    Spec { case: Case::OverMaxPayload, name: "over_max_payload", expect: Expect::RefusedByBroker, heavy: false },
];

/// [`generate_at`] with capture times of now.
#[must_use]
pub fn generate(
    good: &[(String, ContentType, Bytes)],
    camera: &CameraId,
    first_seq: u64,
    n: usize,
    max_payload: usize,
    seed: u64,
) -> Vec<BadFrame> {
    generate_at(good, camera, first_seq, n, max_payload, seed, OffsetDateTime::now_utc())
}

/// `n` malformed frames made from the `good` photos (as `edgepool::cmd::load_images` returns
/// them), cycling through every case with random variations. Frame `i` carries `Edgepool-Seq`
/// (where it has one) and `Nats-Msg-Id` built from `first_seq + i`, so ids never repeat and
/// `(camera, seq)` identifies the frames with a valid camera. Capture times are `now` unless the
/// time is the defect; see [`BadFrame::stamped_headers`] to refresh them.
///
/// `max_payload` is the smaller of the server's `max_payload` and FRAMES' `max_msg_size`.
#[must_use]
pub fn generate_at(
    good: &[(String, ContentType, Bytes)],
    camera: &CameraId,
    first_seq: u64,
    n: usize,
    max_payload: usize,
    seed: u64,
    now: OffsetDateTime,
) -> Vec<BadFrame> {
    let mut g = Gen::new(good, camera, max_payload, seed, now);
    let mut out = Vec::with_capacity(n);
    let mut round = 0;
    while out.len() < n {
        for spec in SPECS.iter().filter(|s| !s.heavy || round % HEAVY_EVERY == 0) {
            if out.len() == n {
                break;
            }
            let seq = first_seq + out.len() as u64;
            out.push(g.build(spec, seq));
        }
        round += 1;
    }
    out
}
