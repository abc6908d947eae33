//! Fuzzes the result message a subscriber parses: `serde_json::from_slice::<ResultMessage>`.
//!
//! Beyond "never panics": every box that parses satisfies the `BBox` invariant (the strict
//! constructor accepts it), and a result that parses serializes and parses back to itself, so
//! a sink that re-publishes or stores results never changes them, except for the known
//! one-ULP drift of floats (docs/reliability.md, "Fuzzing", finding 1), which is tolerated here
//! so the target keeps looking for other defects.

#![no_main]

use edgepool_wire::{BBox, ResultMessage};
use libfuzzer_sys::fuzz_target;

/// Equal, or adjacent doubles (serde_json's default float parser is not correctly rounded).
fn close(a: f64, b: f64) -> bool {
    a == b || a.to_bits().abs_diff(b.to_bits()) <= 1
}

fn close32(a: f32, b: f32) -> bool {
    a == b || a.to_bits().abs_diff(b.to_bits()) <= 1
}

/// `back` with each float replaced by `orig`'s when the two are within one ULP.
fn forgive_ulps(orig: &ResultMessage, mut back: ResultMessage) -> ResultMessage {
    let pairs = [
        (orig.slowdown, &mut back.slowdown),
        (orig.timings.queue_wait_ms, &mut back.timings.queue_wait_ms),
        (orig.timings.decode_ms, &mut back.timings.decode_ms),
        (orig.timings.preprocess_ms, &mut back.timings.preprocess_ms),
        (orig.timings.inference_ms, &mut back.timings.inference_ms),
        (orig.timings.postprocess_ms, &mut back.timings.postprocess_ms),
        (orig.timings.emulated_delay_ms, &mut back.timings.emulated_delay_ms),
        (orig.timings.total_ms, &mut back.timings.total_ms),
    ];
    for (o, b) in pairs {
        if close(o, *b) {
            *b = o;
        }
    }
    for (o, b) in orig.detections.iter().zip(back.detections.iter_mut()) {
        let pairs = [
            (o.score, &mut b.score),
            (o.bbox.x_min, &mut b.bbox.x_min),
            (o.bbox.y_min, &mut b.bbox.y_min),
            (o.bbox.x_max, &mut b.bbox.x_max),
            (o.bbox.y_max, &mut b.bbox.y_max),
        ];
        for (o, b) in pairs {
            if close32(o, *b) {
                *b = o;
            }
        }
    }
    back
}

fuzz_target!(|data: &[u8]| {
    let Ok(result) = serde_json::from_slice::<ResultMessage>(data) else { return };
    for d in &result.detections {
        let b = d.bbox;
        assert!(BBox::try_new(b.x_min, b.y_min, b.x_max, b.y_max).is_ok(), "invalid box {b:?}");
    }
    let json = serde_json::to_vec(&result).expect("a parsed result serializes");
    let back: ResultMessage = serde_json::from_slice(&json).expect("a serialized result parses");
    let back = forgive_ulps(&result, back);
    assert_eq!(back, result, "round trip changed the result: {}", String::from_utf8_lossy(&json));
});
