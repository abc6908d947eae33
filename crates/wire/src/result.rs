//! The result message a worker publishes on `detections.<camera>` for every frame it takes.
//!
//! Its JSON Schema is `docs/result.schema.json`; a test validates real results against it.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::detection::{BBox, Detection};
use crate::frame::INVALID_CAMERA_TOKEN;
use crate::ids::{CameraId, IdError, WorkerId};
pub use crate::kind::ErrorKind;
use crate::trigger::Trigger;

/// Bumped on any incompatible change of [`ResultMessage`]; additive fields do not bump it.
pub const SCHEMA_VERSION: u32 = 1;

/// What happened to a frame. Every frame a worker takes gets exactly one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Inference ran; `detections` holds what was found (possibly nothing).
    Ok,
    /// The frame was bad for good (see `error`); its bytes are in DEADLETTER.
    Error,
    /// The frame was older than the staleness bound when a worker took it; no inference ran.
    Stale,
}

impl Status {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Stale => "stale",
        }
    }
}

/// The camera a result is about: a valid id, or [`INVALID_CAMERA_TOKEN`] (`_invalid`) when the
/// frame's subject token was not one. Serialized as the plain string either way.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResultCamera {
    Camera(CameraId),
    Invalid,
}

impl ResultCamera {
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Camera(c) => c.as_str(),
            Self::Invalid => INVALID_CAMERA_TOKEN,
        }
    }

    /// Parses the wire string: `_invalid` or a valid camera id.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s == INVALID_CAMERA_TOKEN { Ok(Self::Invalid) } else { CameraId::new(s).map(Self::Camera) }
    }
}

impl From<CameraId> for ResultCamera {
    fn from(c: CameraId) -> Self {
        Self::Camera(c)
    }
}

impl fmt::Display for ResultCamera {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl PartialEq<String> for ResultCamera {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<str> for ResultCamera {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ResultCamera {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for ResultCamera {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ResultCamera {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a frame failed, when `status` is `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorInfo {
    /// Stable snake_case kind, e.g. `missing_header`, `too_many_pixels`, `corrupt`.
    pub kind: ErrorKind,
    /// Human-readable detail; not for matching.
    pub message: String,
}

/// Per-stage timings of one frame, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timings {
    /// From capture (`captured_at`) to the worker taking the frame: network plus queue wait.
    pub queue_wait_ms: f64,
    pub decode_ms: f64,
    pub preprocess_ms: f64,
    pub inference_ms: f64,
    pub postprocess_ms: f64,
    /// Extra delay added by `--slowdown` device emulation; 0 on real hardware.
    #[serde(default)]
    pub emulated_delay_ms: f64,
    /// From the worker taking the frame to the result being ready to publish.
    pub total_ms: f64,
}

/// The result of one frame, as published on `detections.<camera>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultMessage {
    pub schema_version: u32,
    /// The camera id; `_invalid` when the frame's subject token was not a valid id.
    pub camera: ResultCamera,
    /// The camera's frame sequence; absent when the frame carried none that parsed.
    pub seq: Option<u64>,
    /// The frame's sequence in the FRAMES stream (always known; identifies frames without seq).
    pub stream_seq: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub captured_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub processed_at: OffsetDateTime,
    pub worker: WorkerId,
    /// CPU architecture of the worker binary (`x86_64`, `aarch64`, ...).
    pub arch: String,
    /// Operator-given device label (`pi4`, `laptop`, ...), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_label: Option<String>,
    /// Device emulation factor (`--slowdown`); 1 on real hardware. Never hidden.
    pub slowdown: f64,
    /// Model id and version, e.g. `ssd_mobilenet_v2_coco@sha256:1a2b3c4d5e6f`.
    pub model: String,
    /// Original frame size in pixels (0 when the frame could not be decoded).
    pub width: u32,
    pub height: u32,
    /// How many times JetStream delivered this frame (1 unless a worker failed before acking).
    pub delivery: u64,
    pub timings: Timings,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    /// W3C trace context of the frame, when it carried a valid one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Why the camera published the frame (`Edgepool-Trigger`), when it said: a motion frame,
    /// a keepalive, or every sampled frame with motion gating off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<Trigger>,
    /// Where the camera saw motion (`Edgepool-Motion-Regions`); absent when it did not say.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub motion_regions: Vec<BBox>,
    /// Sorted by descending score; empty unless `status` is `ok`.
    pub detections: Vec<Detection>,
}

impl ResultMessage {
    /// The result's dedupe id: `<camera>-<seq>` like its frame, or `<camera>-stream-<n>` when the
    /// frame had no usable sequence number.
    #[must_use]
    pub fn msg_id(&self) -> String {
        match self.seq {
            Some(seq) => format!("{}-{seq}", self.camera),
            None => format!("{}-stream-{}", self.camera, self.stream_seq),
        }
    }

    /// The subject it is published on.
    #[must_use]
    pub fn subject(&self) -> String {
        format!("{}.{}", crate::frame::DETECTIONS_PREFIX, self.camera)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_serialize_as_their_names() {
        for k in ErrorKind::ALL {
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<ErrorKind>(&format!("\"{k}\"")).unwrap(), k);
        }
    }

    #[test]
    fn result_camera_is_the_plain_string_on_the_wire() {
        let cam = ResultCamera::Camera(CameraId::new("cam-1").unwrap());
        assert_eq!(serde_json::to_string(&cam).unwrap(), r#""cam-1""#);
        assert_eq!(serde_json::to_string(&ResultCamera::Invalid).unwrap(), r#""_invalid""#);
        assert_eq!(serde_json::from_str::<ResultCamera>(r#""_invalid""#).unwrap(), ResultCamera::Invalid);
        assert_eq!(serde_json::from_str::<ResultCamera>(r#""cam-1""#).unwrap(), cam);
        assert!(serde_json::from_str::<ResultCamera>(r#""a.b""#).is_err());
    }

    /// The typed fields change nothing on the wire: camera and worker are plain strings, and a
    /// result written, parsed and written again gives the same bytes.
    #[test]
    fn typed_fields_keep_the_json_byte_identical() {
        let input = include_str!("../../../fuzz/regressions/result_json/score-out-of-range.json")
            .replace(r#""score":7"#, r#""score":0.7"#);
        let parsed: ResultMessage = serde_json::from_str(&input).unwrap();
        let json = serde_json::to_string(&parsed).unwrap();
        assert!(json.contains(r#""camera":"cam-1""#) && json.contains(r#""worker":"w""#), "{json}");
        let again = serde_json::to_string(&serde_json::from_str::<ResultMessage>(&json).unwrap()).unwrap();
        assert_eq!(again, json);
    }

    /// Fuzzing finding 1 (docs/reliability.md): a 100-digit `decode_ms` parsed to a double that
    /// serialized and parsed back one ULP away. With serde_json's `float_roundtrip` the round
    /// trip is exact.
    #[test]
    fn floats_survive_a_json_round_trip_exactly() {
        let input = include_str!("../../../fuzz/regressions/result_json/float-ulp-drift.json");
        let parsed: ResultMessage = serde_json::from_str(input).unwrap();
        let json = serde_json::to_string(&parsed).unwrap();
        let back: ResultMessage = serde_json::from_str(&json).unwrap();
        assert_eq!(back.timings.decode_ms.to_bits(), parsed.timings.decode_ms.to_bits(), "{json}");
        assert_eq!(back, parsed);
    }

    /// Fuzzing finding 3 (docs/reliability.md): a result with a score of 7 parsed. The same
    /// result with a score in range parses, so the score alone is what is refused.
    #[test]
    fn a_result_with_a_score_outside_0_1_is_refused() {
        let input = include_str!("../../../fuzz/regressions/result_json/score-out-of-range.json");
        let err = serde_json::from_str::<ResultMessage>(input).unwrap_err();
        assert!(err.to_string().contains("invalid score 7"), "{err}");
        let fixed: ResultMessage = serde_json::from_str(&input.replace(r#""score":7"#, r#""score":0.7"#)).unwrap();
        assert_eq!(fixed.detections[0].score, 0.7);
    }
}
