//! Shared helpers of the detector's integration tests: one loaded model per test binary.

use std::sync::OnceLock;

use edgepool_detector::{DetectorConfig, Model, Output};

/// The workspace root.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The converted model; a missing one fails with instructions (tests never skip).
pub fn model_path() -> std::path::PathBuf {
    let p = edgepool_detector::default_model_path();
    assert!(p.is_file(), "the model is missing at {}: run `cargo xtask model`", p.display());
    p
}

/// The real model with the default config, loaded once per test binary.
pub fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::load(&model_path(), &DetectorConfig::default()).unwrap())
}

/// The bytes of a photo in testdata/photos.
pub fn photo_bytes(name: &str) -> Vec<u8> {
    std::fs::read(workspace_root().join("testdata/photos").join(name)).unwrap()
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
