//! One detected object, in the form shared by the detector, result messages and subscribers.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A bounding box normalized to `0..=1` of the original frame's width and height, with
/// `x_min <= x_max` and `y_min <= y_max`.
///
/// The invariant holds from the constructor: [`BBox::new`] clamps to the unit square and orders
/// the corners, so every `BBox` that exists is valid. Multiply by the frame's `width`/`height`
/// (carried in the result message) to get pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BBox {
    pub x_min: f32,
    pub y_min: f32,
    pub x_max: f32,
    pub y_max: f32,
}

/// Why a box read from the wire was refused.
#[derive(Debug, Error, PartialEq)]
#[error("invalid bbox {0}")]
pub struct BBoxError(&'static str);

impl BBox {
    /// Builds a box from any two corners, clamping each coordinate to `0..=1`.
    /// NaN coordinates become 0.
    #[must_use]
    pub fn new(x0: f32, y0: f32, x1: f32, y1: f32) -> Self {
        let c = |v: f32| if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) };
        let (x0, y0, x1, y1) = (c(x0), c(y0), c(x1), c(y1));
        Self { x_min: x0.min(x1), y_min: y0.min(y1), x_max: x0.max(x1), y_max: y0.max(y1) }
    }

    /// Strict constructor for data read from the wire: refuses instead of repairing.
    pub fn try_new(x_min: f32, y_min: f32, x_max: f32, y_max: f32) -> Result<Self, BBoxError> {
        let unit = |v: f32| (0.0..=1.0).contains(&v);
        if ![x_min, y_min, x_max, y_max].into_iter().all(unit) {
            return Err(BBoxError("coordinates must be within 0..=1"));
        }
        if x_min > x_max || y_min > y_max {
            return Err(BBoxError("min must not exceed max"));
        }
        Ok(Self { x_min, y_min, x_max, y_max })
    }

    #[must_use]
    pub fn width(&self) -> f32 {
        self.x_max - self.x_min
    }

    #[must_use]
    pub fn height(&self) -> f32 {
        self.y_max - self.y_min
    }

    #[must_use]
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    /// Intersection over union, 0 when either box is empty.
    #[must_use]
    pub fn iou(&self, other: &Self) -> f32 {
        let w = (self.x_max.min(other.x_max) - self.x_min.max(other.x_min)).max(0.0);
        let h = (self.y_max.min(other.y_max) - self.y_min.max(other.y_min)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }
}

impl<'de> Deserialize<'de> for BBox {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            x_min: f32,
            y_min: f32,
            x_max: f32,
            y_max: f32,
        }
        let r = Raw::deserialize(d)?;
        BBox::try_new(r.x_min, r.y_min, r.x_max, r.y_max).map_err(serde::de::Error::custom)
    }
}

/// One detected object: a COCO label with its category id, a score in `0..=1`, and a box.
///
/// Read from the wire, the score is checked like the box (finite, within `0..=1`) and refused
/// rather than repaired.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// COCO category name, e.g. `"person"`.
    pub label: String,
    /// COCO category id (1..=90, with gaps), as in the TF object detection label map.
    pub class_id: u16,
    /// Confidence in `0..=1`.
    pub score: f32,
    pub bbox: BBox,
}

impl<'de> Deserialize<'de> for Detection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            label: String,
            class_id: u16,
            score: f32,
            bbox: BBox,
        }
        let Raw { label, class_id, score, bbox } = Raw::deserialize(d)?;
        // `contains` is false for NaN; infinities are outside the range.
        if !(0.0..=1.0).contains(&score) {
            return Err(serde::de::Error::custom(format_args!("invalid score {score}: must be within 0..=1")));
        }
        Ok(Self { label, class_id, score, bbox })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_orders_and_clamps() {
        let b = BBox::new(0.9, 1.5, -0.2, 0.1);
        assert_eq!(b, BBox { x_min: 0.0, y_min: 0.1, x_max: 0.9, y_max: 1.0 });
        assert_eq!(BBox::new(f32::NAN, 0.0, 0.5, 0.5).x_min, 0.0);
    }

    #[test]
    fn iou_of_identical_and_disjoint_boxes() {
        let a = BBox::new(0.0, 0.0, 0.5, 0.5);
        let b = BBox::new(0.5, 0.5, 1.0, 1.0);
        assert!((a.iou(&a) - 1.0).abs() < 1e-6);
        assert_eq!(a.iou(&b), 0.0);
        let half = BBox::new(0.0, 0.0, 0.5, 0.25);
        assert!((a.iou(&half) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn wire_boxes_are_checked_not_repaired() {
        let ok: BBox = serde_json::from_str(r#"{"x_min":0.1,"y_min":0.2,"x_max":0.3,"y_max":0.4}"#).unwrap();
        assert_eq!(ok.x_max, 0.3);
        assert!(serde_json::from_str::<BBox>(r#"{"x_min":0.5,"y_min":0.2,"x_max":0.3,"y_max":0.4}"#).is_err());
        assert!(serde_json::from_str::<BBox>(r#"{"x_min":0.1,"y_min":0.2,"x_max":1.3,"y_max":0.4}"#).is_err());
    }

    /// Fuzzing finding 3 (docs/reliability.md): any float used to pass as a score.
    #[test]
    fn wire_scores_are_checked_not_repaired() {
        let detection = |score: &str| {
            let bbox = r#"{"x_min":0.1,"y_min":0.2,"x_max":0.3,"y_max":0.4}"#;
            serde_json::from_str::<Detection>(&format!(
                r#"{{"label":"person","class_id":1,"score":{score},"bbox":{bbox}}}"#
            ))
        };
        for ok in ["0", "0.731", "1", "1.0", "1e-45"] {
            assert!(detection(ok).is_ok(), "{ok}");
        }
        assert_eq!(detection("0.731").unwrap().score, 0.731);
        for bad in ["7", "-1", "-1e-30", "1.0000001"] {
            let err = detection(bad).unwrap_err().to_string();
            assert!(err.contains("within 0..=1"), "{bad}: {err}");
        }
        // Not a number, or beyond f32 (serde_json refuses these before the check).
        for bad in ["1e39", "null", "\"0.5\""] {
            assert!(detection(bad).is_err(), "{bad}");
        }
        // Unknown fields stay refused, as before.
        let extra = r#"{"label":"person","class_id":1,"score":0.5,"extra":1,
            "bbox":{"x_min":0.1,"y_min":0.2,"x_max":0.3,"y_max":0.4}}"#;
        assert!(serde_json::from_str::<Detection>(extra).is_err());
    }
}
