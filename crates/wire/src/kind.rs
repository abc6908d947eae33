//! The stable kinds of failed frames, shared by frame parsing and results.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The stable kind of a failed frame (`docs/wire.md`, "Error kinds"): the `kind` of error
/// results and dead letters, and the `kind` label of `edgepool_worker_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    // The frame message itself (see `FrameError`).
    BadSubject,
    BadCameraId,
    MissingHeader,
    BadHeader,
    UnsupportedContentType,
    ContentTypeMismatch,
    EmptyPayload,
    // The image bytes (the detector's input errors).
    Empty,
    TooLarge,
    TooManyPixels,
    UnsupportedFormat,
    Corrupt,
    InputShape,
    // Internal failures, after the last delivery.
    Panic,
    InferenceFailed,
}

impl ErrorKind {
    /// Every kind, in documentation order.
    pub const ALL: [Self; 15] = [
        Self::BadSubject,
        Self::BadCameraId,
        Self::MissingHeader,
        Self::BadHeader,
        Self::UnsupportedContentType,
        Self::ContentTypeMismatch,
        Self::EmptyPayload,
        Self::Empty,
        Self::TooLarge,
        Self::TooManyPixels,
        Self::UnsupportedFormat,
        Self::Corrupt,
        Self::InputShape,
        Self::Panic,
        Self::InferenceFailed,
    ];

    /// The snake_case name, as serialized.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadSubject => "bad_subject",
            Self::BadCameraId => "bad_camera_id",
            Self::MissingHeader => "missing_header",
            Self::BadHeader => "bad_header",
            Self::UnsupportedContentType => "unsupported_content_type",
            Self::ContentTypeMismatch => "content_type_mismatch",
            Self::EmptyPayload => "empty_payload",
            Self::Empty => "empty",
            Self::TooLarge => "too_large",
            Self::TooManyPixels => "too_many_pixels",
            Self::UnsupportedFormat => "unsupported_format",
            Self::Corrupt => "corrupt",
            Self::InputShape => "input_shape",
            Self::Panic => "panic",
            Self::InferenceFailed => "inference_failed",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl PartialEq<str> for ErrorKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}
