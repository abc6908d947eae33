//! Errors of loading the model and of detecting one frame; each variant is a decision.

use std::path::PathBuf;

use thiserror::Error;

/// Why [`crate::Model::load`] failed. All of these stop the process: there is nothing to retry.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LoadError {
    /// No file at the model path: it has not been fetched yet.
    #[error(
        "no model at {}: run `cargo xtask model` (or `python3 tools/model/fetch_model.py`) once to download and \
         convert it",
        path.display()
    )]
    Missing { path: PathBuf },
    /// The config has values out of range.
    #[error("invalid detector config")]
    Config(#[from] ConfigError),
    /// tract could not read, type, optimize or plan the model.
    #[error("cannot load model {}", path.display())]
    Model {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The model loads but is not SSD-MobileNet-v2 COCO as exported by `cargo xtask model`.
    #[error("{} is not the expected detector model", path.display())]
    Outputs {
        path: PathBuf,
        #[source]
        source: OutputsError,
    },
    /// The OS refused the inference threads (tract panics then).
    #[error("cannot start {threads} inference threads for model {}", path.display())]
    Threads { path: PathBuf, threads: usize },
}

/// A detector setting out of range (what serde cannot express).
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("detector.threads must be at least 1")]
    NoThreads,
    #[error("detector.score_threshold {0} is not within 0..=1")]
    ScoreThreshold(f32),
    #[error("detector.iou_threshold {0} is not within 0..=1")]
    IouThreshold(f32),
    #[error("detector.max_detections must be at least 1")]
    NoDetections,
    #[error("detector.limits.max_bytes and detector.limits.max_pixels must be at least 1")]
    NoLimits,
}

/// Why a model's outputs are not `boxes [1,1917,4]` and `scores [1,1917,91]`.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum OutputsError {
    #[error("expected 2 outputs (boxes, scores), found {0}")]
    Count(usize),
    #[error("output {index} is {found}, expected f32 {expected:?}")]
    Shape { index: usize, found: String, expected: Vec<usize> },
    #[error("cannot read the type of output {index}")]
    Fact {
        index: usize,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Why one frame produced no detections.
///
/// [`DetectError::is_poison`] is the decision the worker needs: a poison frame will fail the same
/// way on any worker, so it is dropped (terminated), never retried.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum DetectError {
    /// The encoded frame is larger than `limits.max_bytes`.
    #[error("encoded image is {bytes} bytes, more than the limit of {max}")]
    TooLarge { bytes: usize, max: usize },
    /// The header declares more than `limits.max_pixels` pixels.
    #[error("image is {width}x{height}, more than the limit of {max} pixels")]
    TooManyPixels { width: u32, height: u32, max: u64 },
    /// Zero bytes.
    #[error("empty image")]
    Empty,
    /// Not a JPEG or PNG, or a variant of them the decoder does not support.
    #[error("unsupported image format (JPEG and PNG are supported)")]
    UnsupportedFormat,
    /// A JPEG or PNG that does not decode: truncated, bad checksums, zero-sized, ...
    #[error("corrupt image: {0}")]
    Corrupt(String),
    /// [`crate::Session::run_tensor`] got a tensor of the wrong length.
    #[error("input tensor has {len} values, expected {expected}")]
    InputShape { len: usize, expected: usize },
    /// [`crate::Session::infer`] was called before a successful [`crate::Session::decode`].
    #[error("no decoded image to run on")]
    NoImage,
    /// tract failed on a well-formed input tensor: a bug or resource problem on this worker.
    #[error("inference failed: {0}")]
    Inference(String),
}

impl DetectError {
    /// A stable snake_case name, for metric labels and the wire error kind. Never changes once
    /// published; new variants get new names.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::TooManyPixels { .. } => "too_many_pixels",
            Self::Empty => "empty",
            Self::UnsupportedFormat => "unsupported_format",
            Self::Corrupt(_) => "corrupt",
            Self::InputShape { .. } => "input_shape",
            Self::NoImage => "no_image",
            Self::Inference(_) => "inference",
        }
    }

    /// True when the input itself is bad, so any worker would fail the same way: drop it.
    /// False when this worker failed (inference error, misuse of the session): the frame may
    /// succeed elsewhere or later.
    #[must_use]
    pub fn is_poison(&self) -> bool {
        match self {
            Self::TooLarge { .. }
            | Self::TooManyPixels { .. }
            | Self::Empty
            | Self::UnsupportedFormat
            | Self::Corrupt(_)
            | Self::InputShape { .. } => true,
            Self::NoImage | Self::Inference(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_stable_and_poison_is_input_only() {
        let cases = [
            (DetectError::TooLarge { bytes: 2, max: 1 }, "too_large", true),
            (DetectError::TooManyPixels { width: 1, height: 1, max: 0 }, "too_many_pixels", true),
            (DetectError::Empty, "empty", true),
            (DetectError::UnsupportedFormat, "unsupported_format", true),
            (DetectError::Corrupt("x".into()), "corrupt", true),
            (DetectError::InputShape { len: 1, expected: 2 }, "input_shape", true),
            (DetectError::NoImage, "no_image", false),
            (DetectError::Inference("x".into()), "inference", false),
        ];
        for (err, kind, poison) in cases {
            assert_eq!(err.kind(), kind);
            assert_eq!(err.is_poison(), poison, "{kind}");
        }
    }
}
