//! Fuzzes image decoding of untrusted frames through `Session::decode`, the lowest public entry
//! point (the decoder itself is crate-private and reachable only through a model's session).
//!
//! The model is loaded once per process ($EDGEPOOL_MODEL_DIR or ~/.cache/edgepool/models, from
//! `cargo xtask model`). libFuzzer's panic hook aborts on a panic, so a decoder panic is found
//! even though `Session::decode` would catch it in production (and cost one frame). Limits are
//! the defaults except `max_pixels`, lowered so mutated headers cannot make every input a
//! 300 MB decode; the header check itself is the same code.
//!
//! Beyond "never panics": a successful decode returns a non-zero size within the limit, and
//! decoding the same bytes again (reusing the session's buffers) gives the same answer.

#![no_main]

use std::sync::{Mutex, OnceLock};

use edgepool_detector::{DecodeLimits, DetectorConfig, Model, Session, default_model_path};
use libfuzzer_sys::fuzz_target;

const MAX_PIXELS: u64 = 4_000_000;

fn session() -> &'static Mutex<Session> {
    static SESSION: OnceLock<Mutex<Session>> = OnceLock::new();
    SESSION.get_or_init(|| {
        let cfg = DetectorConfig {
            limits: DecodeLimits { max_pixels: MAX_PIXELS, ..DecodeLimits::default() },
            ..DetectorConfig::default()
        };
        let path = default_model_path();
        let model = Model::load(&path, &cfg)
            .unwrap_or_else(|e| panic!("decode_image needs the model ({e}); run `cargo xtask model`"));
        Mutex::new(model.session())
    })
}

fuzz_target!(|data: &[u8]| {
    let mut s = session().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let first = s.decode(data);
    if let Ok((w, h)) = first {
        assert!(w > 0 && h > 0 && u64::from(w) * u64::from(h) <= MAX_PIXELS, "{w}x{h}");
    }
    assert_eq!(s.decode(data), first, "decoding the same bytes twice differs");
});
