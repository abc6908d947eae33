//! Why a camera published a frame, and where it saw motion: the optional headers
//! `Edgepool-Trigger` and `Edgepool-Motion-Regions`, carried on into the frame's result.
//!
//! Both are additive: producers that do not gate on motion leave them out, and results of such
//! frames have neither field.

use serde::{Deserialize, Serialize};

use crate::detection::BBox;

/// Why a frame was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Something moved in the scene (the frame carries its motion regions).
    Motion,
    /// Nothing moved for the camera's keepalive interval: the camera says it is alive.
    Keepalive,
    /// Motion gating is off: every sampled frame is published.
    Every,
}

impl Trigger {
    pub const ALL: [Self; 3] = [Self::Motion, Self::Keepalive, Self::Every];

    /// The header value and JSON string.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Motion => "motion",
            Self::Keepalive => "keepalive",
            Self::Every => "every",
        }
    }

    /// Parses a header value (exact, lower case).
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == value.trim())
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Most regions a frame may carry.
pub const MAX_MOTION_REGIONS: usize = 16;

/// Writes regions as the header value: `x_min,y_min,x_max,y_max` per region, normalized, four
/// decimals, regions separated by `;`. At most [`MAX_MOTION_REGIONS`] are written.
#[must_use]
pub fn format_regions(regions: &[BBox]) -> String {
    regions
        .iter()
        .take(MAX_MOTION_REGIONS)
        .map(|b| format!("{:.4},{:.4},{:.4},{:.4}", b.x_min, b.y_min, b.x_max, b.y_max))
        .collect::<Vec<_>>()
        .join(";")
}

/// Parses the header value [`format_regions`] writes. Refuses (with the reason) anything else:
/// a box outside the unit square or with min above max, not four numbers, more than
/// [`MAX_MOTION_REGIONS`] regions. An empty value is no regions. Values are kept to four
/// decimals, the precision the header carries, so what parses writes back and parses again to
/// the same boxes.
pub fn parse_regions(value: &str) -> Result<Vec<BBox>, &'static str> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<&str> = value.split(';').collect();
    if parts.len() > MAX_MOTION_REGIONS {
        return Err("more than 16 regions");
    }
    parts
        .into_iter()
        .map(|p| {
            let number = |n: &str| n.trim().parse::<f32>().map(four_decimals).map_err(|_| "not a number");
            let v: Vec<f32> = p.split(',').map(number).collect::<Result<_, _>>()?;
            let [x0, y0, x1, y1] = v[..] else { return Err("a region is x_min,y_min,x_max,y_max") };
            BBox::try_new(x0, y0, x1, y1).map_err(|_| "a region must lie in 0..=1 with min <= max")
        })
        .collect()
}

/// `v` rounded to four decimals (NaN stays NaN and is refused by the box check).
fn four_decimals(v: f32) -> f32 {
    ((f64::from(v) * 1e4).round() / 1e4) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_round_trip_at_four_decimals() {
        let regions = vec![BBox::new(0.1, 0.2, 0.35, 0.5), BBox::new(0.0, 0.9, 1.0, 1.0)];
        let text = format_regions(&regions);
        assert_eq!(text, "0.1000,0.2000,0.3500,0.5000;0.0000,0.9000,1.0000,1.0000");
        let back = parse_regions(&text).unwrap();
        assert_eq!(back.len(), 2);
        for (a, b) in back.iter().zip(&regions) {
            assert!((a.x_max - b.x_max).abs() < 1e-4 && (a.y_min - b.y_min).abs() < 1e-4);
        }
        assert_eq!(parse_regions("").unwrap(), vec![]);
    }

    /// What parses writes back and parses again to the same boxes, whatever precision the
    /// producer wrote (the frame fuzz target checks this for any input).
    #[test]
    fn parsed_regions_round_trip_exactly() {
        for text in ["0.123456,0.2,0.33333333,0.5", "0.00005,0,1,0.99995", "1e-3,2.5e-1,0.5,1"] {
            let once = parse_regions(text).unwrap();
            assert_eq!(parse_regions(&format_regions(&once)).unwrap(), once, "{text}");
        }
    }

    #[test]
    fn bad_regions_are_refused_with_a_reason() {
        assert_eq!(parse_regions("0.1,0.2,0.3"), Err("a region is x_min,y_min,x_max,y_max"));
        assert_eq!(parse_regions("0.1,0.2,0.3,x"), Err("not a number"));
        assert_eq!(parse_regions("0.5,0.2,0.3,0.4"), Err("a region must lie in 0..=1 with min <= max"));
        assert_eq!(parse_regions("0,0,1.5,1"), Err("a region must lie in 0..=1 with min <= max"));
        assert_eq!(parse_regions(&vec!["0,0,1,1"; 17].join(";")), Err("more than 16 regions"));
        assert_eq!(parse_regions(&vec!["0,0,1,1"; 16].join(";")).unwrap().len(), 16);
    }

    #[test]
    fn triggers_parse_their_own_names_only() {
        for t in Trigger::ALL {
            assert_eq!(Trigger::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{t}\""));
        }
        assert_eq!(Trigger::parse("Motion"), None);
        assert_eq!(Trigger::parse("timer"), None);
    }
}
