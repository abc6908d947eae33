//! Detector settings: threads, post-processing thresholds and input decoding limits.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// How the detector runs and what it keeps. Every field has a default, so a config file only
/// names what it changes; unknown keys are refused so a typo does not silently fall back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorConfig {
    /// Threads one inference may use (tract's intra-op parallelism over matrix products).
    /// `1` runs on the calling thread. More than one gives the [`crate::Model`] its own rayon
    /// pool of that size, shared by all its sessions; it is fixed by [`crate::Model::load`] and
    /// does not touch tract's process-wide default executor.
    pub threads: usize,
    /// Keep a class score only if it is at least this (0..=1).
    pub score_threshold: f32,
    /// Greedy NMS drops a box whose IoU with a kept, higher-scoring box exceeds this (0..=1).
    pub iou_threshold: f32,
    /// Keep at most this many detections per frame (also the per-class cap, as in TF).
    pub max_detections: usize,
    /// Run NMS across all classes instead of within each class.
    pub class_agnostic_nms: bool,
    /// Input size limits checked before decoding.
    pub limits: DecodeLimits,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            threads: 1,
            score_threshold: 0.5,
            iou_threshold: 0.6,
            max_detections: 100,
            class_agnostic_nms: false,
            limits: DecodeLimits::default(),
        }
    }
}

impl DetectorConfig {
    /// Checks the ranges that serde cannot express. Called by [`crate::Model::load`], so a
    /// loaded model always has a sane config.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.threads == 0 {
            return Err(ConfigError::NoThreads);
        }
        if !(0.0..=1.0).contains(&self.score_threshold) {
            return Err(ConfigError::ScoreThreshold(self.score_threshold));
        }
        if !(0.0..=1.0).contains(&self.iou_threshold) {
            return Err(ConfigError::IouThreshold(self.iou_threshold));
        }
        if self.max_detections == 0 {
            return Err(ConfigError::NoDetections);
        }
        if self.limits.max_bytes == 0 || self.limits.max_pixels == 0 {
            return Err(ConfigError::NoLimits);
        }
        Ok(())
    }
}

/// Bounds on untrusted encoded frames, checked before any image-sized allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecodeLimits {
    /// Largest encoded frame accepted, in bytes (default 16 MiB).
    pub max_bytes: usize,
    /// Largest `width * height` accepted, read from the header before decoding
    /// (default 40 000 000, e.g. 8000x5000; decoded RGBA16 that is 320 MB at most).
    pub max_pixels: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self { max_bytes: 16 * 1024 * 1024, max_pixels: 40_000_000 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_partial_json() {
        let c: DetectorConfig = serde_json::from_str(r#"{"threads": 2, "limits": {"max_bytes": 10}}"#).unwrap();
        assert_eq!(c.threads, 2);
        assert_eq!(c.limits.max_bytes, 10);
        assert_eq!(c.limits.max_pixels, 40_000_000);
        assert_eq!(c.score_threshold, 0.5);
        assert_eq!(c.iou_threshold, 0.6);
        assert_eq!(c.max_detections, 100);
        assert!(!c.class_agnostic_nms);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn unknown_keys_and_bad_ranges_are_refused() {
        assert!(serde_json::from_str::<DetectorConfig>(r#"{"thread": 2}"#).is_err());
        assert!(serde_json::from_str::<DecodeLimits>(r#"{"max_byte": 2}"#).is_err());
        let bad = DetectorConfig { threads: 0, ..Default::default() };
        assert_eq!(bad.validate(), Err(ConfigError::NoThreads));
        let bad = DetectorConfig { score_threshold: 1.5, ..Default::default() };
        assert_eq!(bad.validate(), Err(ConfigError::ScoreThreshold(1.5)));
        let bad = DetectorConfig { iou_threshold: f32::NAN, ..Default::default() };
        assert!(matches!(bad.validate(), Err(ConfigError::IouThreshold(v)) if v.is_nan()));
    }
}
