//! Test-only helpers shared by the workspace's integration tests: where the model and the photos
//! are, and a real `nats-server` per test (see [`nats`]).

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod nats;

use std::path::{Path, PathBuf};

/// The workspace root (two levels above this crate).
#[must_use]
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// `testdata/photos` in the workspace.
#[must_use]
pub fn photos_dir() -> PathBuf {
    workspace_root().join("testdata/photos")
}

/// The path of one test photo, e.g. `photo("coffee.png")`.
#[must_use]
pub fn photo(name: &str) -> PathBuf {
    photos_dir().join(name)
}

/// The model cache directory, resolved like `tools/model/fetch_model.py` does:
/// `$EDGEPOOL_MODEL_DIR`, else `$XDG_CACHE_HOME/edgepool/models`, else `~/.cache/edgepool/models`.
#[must_use]
pub fn model_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("EDGEPOOL_MODEL_DIR") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"), PathBuf::from);
    base.join("edgepool/models")
}

/// The converted ONNX model. Panics with instructions when it is missing: tests never skip.
#[must_use]
pub fn model_path() -> PathBuf {
    let p = model_dir().join("ssd_mobilenet_v2_coco.onnx");
    assert!(
        p.exists(),
        "the detector model is missing at {}.\nRun `cargo xtask model` (or `python3 tools/model/fetch_model.py`) \
         once to download and convert it; `cargo xtask test` does this for you.",
        p.display()
    );
    p
}
