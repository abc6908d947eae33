//! Fuzzes the result message a subscriber parses: `serde_json::from_slice::<ResultMessage>`.
//!
//! Beyond "never panics": every detection that parses has a box satisfying the `BBox` invariant
//! (the strict constructor accepts it) and a finite score in `0..=1` (finding 3), and a result
//! that parses serializes and parses back to exactly itself, so a sink that re-publishes or
//! stores results never changes them, not even in the last bit of a float (finding 1: serde_json's
//! `float_roundtrip` feature, enabled in the workspace manifest). Findings: docs/reliability.md,
//! "Fuzzing".

#![no_main]

use edgepool_wire::{BBox, ResultMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(result) = serde_json::from_slice::<ResultMessage>(data) else { return };
    for d in &result.detections {
        let b = d.bbox;
        assert!(BBox::try_new(b.x_min, b.y_min, b.x_max, b.y_max).is_ok(), "invalid box {b:?}");
        assert!(d.score.is_finite() && (0.0..=1.0).contains(&d.score), "invalid score {}", d.score);
    }
    let json = serde_json::to_vec(&result).expect("a parsed result serializes");
    let back: ResultMessage = serde_json::from_slice(&json).expect("a serialized result parses");
    assert_eq!(back, result, "round trip changed the result: {}", String::from_utf8_lossy(&json));
});
