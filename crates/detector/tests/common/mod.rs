//! Shared helpers of the detector's integration tests: one loaded model per test binary.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::OnceLock;

use edgepool_detector::{DetectorConfig, Model, Output};

/// The real model with the default config, loaded once per test binary.
pub fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::load(&edgepool_testkit::model_path(), &DetectorConfig::default()).unwrap())
}

/// The bytes of a photo in testdata/photos.
pub fn photo_bytes(name: &str) -> Vec<u8> {
    std::fs::read(edgepool_testkit::photo(name)).unwrap()
}

/// Runs the default model on encoded bytes.
pub fn detect(bytes: &[u8]) -> Output {
    model().session().detect(bytes).unwrap()
}

/// Encodes an image as PNG in memory.
pub fn png(img: &image::DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}
