//! Where the test data is: the workspace, its photos, the model cache. For tests and benchmarks
//! run from a checkout; the functions that panic say how to fix what is missing.

use std::path::{Path, PathBuf};

/// The workspace root (two levels above this crate), as it was when this crate was built.
///
/// # Panics
/// When the checkout is gone.
#[must_use]
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the edgepool checkout")
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

/// The project's user cache: `$XDG_CACHE_HOME/edgepool`, else `~/.cache/edgepool` (tools, models).
#[must_use]
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"), PathBuf::from);
    base.join("edgepool")
}

/// The model cache directory (`edgepool_detector::default_model_dir`): `$EDGEPOOL_MODEL_DIR`,
/// else `<cache>/models`, as `tools/model/fetch_model.py` resolves it.
#[must_use]
pub fn model_dir() -> PathBuf {
    edgepool_detector::default_model_dir()
}

/// The converted ONNX model.
///
/// # Panics
/// With instructions, when it is missing: tests never skip.
#[must_use]
pub fn model_path() -> PathBuf {
    let p = model_dir().join(edgepool_detector::MODEL_FILE);
    assert!(
        p.exists(),
        "the detector model is missing at {}.\nRun `cargo xtask model` (or `python3 tools/model/fetch_model.py`) \
         once to download and convert it; `cargo xtask test` does this for you.",
        p.display()
    );
    p
}
