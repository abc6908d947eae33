//! Parity with the committed golden data (docs/model.md, tools/model/golden.py): our
//! preprocessing reproduces the committed input tensor, and tract on that tensor matches the
//! onnxruntime outputs to 1e-4.
//!
//! `EDGEPOOL_BLESS=1` rewrites the input tensor from the current preprocessing (and fails, so a
//! blessed run is never mistaken for a passing one); then regenerate the outputs with
//! `python tools/model/golden.py make --model <model>`.

use std::path::PathBuf;

use crate::common::{model, photo_bytes};

fn golden(file: &str) -> PathBuf {
    crate::common::workspace_root().join("testdata/golden").join(file)
}

fn read_f32le(file: &str) -> Vec<f32> {
    let bytes = std::fs::read(golden(file)).unwrap();
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn committed_input() -> Vec<f32> {
    std::fs::read(golden("grace_hopper_input.u8")).unwrap().into_iter().map(f32::from).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn preprocessing_matches_committed_tensor() {
    let mut s = model().session();
    assert_eq!(s.decode(&photo_bytes("grace_hopper.jpg")).unwrap(), (512, 600));
    let tensor = s.preprocess().unwrap();
    // Integral values are what make the u8 storage lossless.
    assert!(tensor.iter().all(|v| v.fract() == 0.0 && (0.0..=255.0).contains(v)));
    if std::env::var_os("EDGEPOOL_BLESS").is_some_and(|v| v == "1") {
        let bytes: Vec<u8> = tensor.iter().map(|&v| v as u8).collect();
        std::fs::write(golden("grace_hopper_input.u8"), bytes).unwrap();
        panic!(
            "blessed testdata/golden/grace_hopper_input.u8; now run tools/model/golden.py make and re-run without \
             EDGEPOOL_BLESS"
        );
    }
    let want = committed_input();
    let differing = tensor.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert_eq!(differing, 0, "preprocessing changed {differing} of {} values", want.len());
}

#[test]
fn tract_matches_onnxruntime_golden_outputs() {
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(golden("manifest.json")).unwrap()).unwrap();
    let tolerance = manifest["tolerance"].as_f64().unwrap() as f32;
    assert!(tolerance <= 1e-4);
    let (boxes, scores) = model().session().run_tensor(&committed_input()).unwrap();
    for (name, got) in [("boxes", &boxes), ("scores", &scores)] {
        let file = manifest["outputs"][name]["file"].as_str().unwrap();
        let shape: Vec<u64> =
            manifest["outputs"][name]["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        let want = read_f32le(file);
        assert_eq!(want.len() as u64, shape.iter().product::<u64>(), "{name} file matches its shape");
        let diff = max_abs_diff(got, &want);
        eprintln!("{name}: tract vs onnxruntime max abs diff {diff:e}");
        assert!(diff <= tolerance, "{name}: max abs diff {diff} > {tolerance}");
    }
}

#[test]
fn threads_do_not_change_the_outputs() {
    let cfg = edgepool_detector::DetectorConfig { threads: 2, ..Default::default() };
    let two = edgepool_detector::Model::load(&crate::common::model_path(), &cfg).unwrap();
    let input = committed_input();
    let (b1, s1) = model().session().run_tensor(&input).unwrap();
    let (b2, s2) = two.session().run_tensor(&input).unwrap();
    assert!(max_abs_diff(&b1, &b2) <= 1e-5 && max_abs_diff(&s1, &s2) <= 1e-5);
}
