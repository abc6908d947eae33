//! SSD-MobileNet-v2 COCO object detection on tract: decode, preprocess, infer, NMS. No NATS.
//!
//! Load the model once with [`Model::load`] (parse, fix the input shape, optimize, plan), then
//! give every inference slot its own [`Session`], which owns the reusable buffers of one frame
//! in flight. Sessions of one [`Model`] share the plan and its weights.
//!
//! ```no_run
//! use edgepool_detector::{DetectorConfig, Model, default_model_path};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let model = Model::load(&default_model_path(), &DetectorConfig::default())?;
//! let mut session = model.session();
//! let out = session.detect(&std::fs::read("frame.jpg")?)?;
//! for d in &out.detections {
//!     println!("{} {:.3}", d.label, d.score);
//! }
//! # Ok(()) }
//! ```
//!
//! docs/model.md describes the model, its conversion and the post-processing.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod config;
mod decode;
pub mod depthwise;
pub mod draw;
mod error;
pub mod im2col;
mod labels;
mod model;
mod postprocess;
mod preprocess;
pub mod profile;
mod proto;

use std::path::PathBuf;

pub use config::{DecodeLimits, DetectorConfig};
pub use edgepool_wire::detection::{BBox, Detection};
pub use error::{ConfigError, DetectError, LoadError, OutputsError};
pub use labels::{COCO_CLASSES, coco_label};
pub use model::{Model, Optimization, Output, Session, StageTimings};
pub use preprocess::{INPUT_HEIGHT, INPUT_LEN, INPUT_WIDTH};
pub use profile::{NodeTime, OnnxKinds, Profile};

/// Identifies the model in result messages and metrics.
pub const MODEL_ID: &str = "ssd_mobilenet_v2_coco";

/// File name of the converted model inside the model directory.
pub const MODEL_FILE: &str = "ssd_mobilenet_v2_coco.onnx";

/// Number of SSD anchors: rows of the `boxes` and `scores` outputs.
pub const NUM_ANCHORS: usize = 1917;

/// Columns of the `scores` output: background (0) plus COCO ids 1..=90.
pub const NUM_SCORE_COLUMNS: usize = 91;

/// The directory where `cargo xtask model` (tools/model/fetch_model.py) caches the model, first
/// match wins: `$EDGEPOOL_MODEL_DIR`, `$XDG_CACHE_HOME/edgepool/models`,
/// `~/.cache/edgepool/models`.
#[must_use]
pub fn default_model_dir() -> PathBuf {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("EDGEPOOL_MODEL_DIR") {
        return PathBuf::from(dir);
    }
    let base = non_empty("XDG_CACHE_HOME")
        .map_or_else(|| PathBuf::from(non_empty("HOME").unwrap_or_default()).join(".cache"), PathBuf::from);
    base.join("edgepool").join("models")
}

/// [`default_model_dir`] joined with [`MODEL_FILE`]. The file may not exist yet; [`Model::load`]
/// then says to run `cargo xtask model`.
#[must_use]
pub fn default_model_path() -> PathBuf {
    default_model_dir().join(MODEL_FILE)
}
