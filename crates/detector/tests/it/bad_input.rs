//! Untrusted bytes never panic and never allocate image-sized buffers before the limits are
//! checked; each kind of bad input maps to its typed, poison error.

#![allow(clippy::unwrap_used)]

mod common;

use common::{model, photo_bytes};
use edgepool_detector::{DecodeLimits, DetectError, DetectorConfig, Model};

/// CRC-32 (IEEE) as PNG chunks need it.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A valid PNG header declaring `width`x`height` RGB8, then an empty IDAT and IEND.
fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, truecolour, deflate, no filter, no interlace
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &[]);
    chunk(&mut png, b"IEND", &[]);
    png
}

fn detect_err(bytes: &[u8]) -> DetectError {
    model().session().detect(bytes).unwrap_err()
}

#[test]
fn crc_is_right() {
    assert_eq!(crc32(b"IEND"), 0xAE42_6082);
}

#[test]
fn zero_bytes_is_empty() {
    let e = detect_err(&[]);
    assert_eq!(e, DetectError::Empty);
    assert!(e.is_poison());
}

#[test]
fn truncated_jpeg_is_corrupt() {
    let jpeg = photo_bytes("grace_hopper.jpg");
    let e = detect_err(&jpeg[..jpeg.len() / 2]);
    assert!(matches!(e, DetectError::Corrupt(_)), "{e:?}");
    assert_eq!(e.kind(), "corrupt");
    assert!(e.is_poison());
}

#[test]
fn truncated_png_is_corrupt() {
    let png = photo_bytes("coffee.png");
    for cut in [png.len() / 2, 40, 8] {
        let e = detect_err(&png[..cut]);
        assert!(matches!(e, DetectError::Corrupt(_)), "cut at {cut}: {e:?}");
    }
}

#[test]
fn random_bytes_are_unsupported() {
    // A fixed xorshift stream: reproducible, and not starting with any image magic.
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    assert_eq!(detect_err(&bytes), DetectError::UnsupportedFormat);
    assert_eq!(detect_err(b"GIF89a\x01\x00\x01\x00"), DetectError::UnsupportedFormat);
}

#[test]
fn random_bytes_after_a_jpeg_header_are_corrupt() {
    let mut bytes = photo_bytes("grace_hopper.jpg")[..600].to_vec();
    bytes.extend((0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    assert!(matches!(detect_err(&bytes), DetectError::Corrupt(_)));
}

#[test]
fn huge_png_header_is_refused_before_decoding() {
    let e = detect_err(&png_header_only(100_000, 100_000));
    assert_eq!(e, DetectError::TooManyPixels { width: 100_000, height: 100_000, max: 40_000_000 });
    assert_eq!(e.kind(), "too_many_pixels");
    assert!(e.is_poison());
}

#[test]
fn huge_jpeg_header_is_refused_before_decoding() {
    // Patch the SOF0 frame header of a real JPEG to declare 65000x65000.
    let mut jpeg = photo_bytes("grace_hopper.jpg");
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xFD, 0xE8, 0xFD, 0xE8]);
    let e = detect_err(&jpeg);
    assert_eq!(e, DetectError::TooManyPixels { width: 65_000, height: 65_000, max: 40_000_000 });
}

#[test]
fn zero_sized_png_is_corrupt() {
    assert!(matches!(detect_err(&png_header_only(0, 10)), DetectError::Corrupt(_)));
}

#[test]
fn limits_come_from_the_config() {
    let cfg = DetectorConfig { limits: DecodeLimits { max_bytes: 1000, max_pixels: 1000 }, ..Default::default() };
    let small = Model::load(&common::model_path(), &cfg).unwrap();
    let mut s = small.session();
    let jpeg = photo_bytes("grace_hopper.jpg");
    assert_eq!(s.detect(&jpeg).unwrap_err(), DetectError::TooLarge { bytes: jpeg.len(), max: 1000 });
    let tiny = common::png(&image::DynamicImage::new_rgb8(40, 30));
    assert!(tiny.len() <= 1000);
    assert_eq!(s.detect(&tiny).unwrap_err(), DetectError::TooManyPixels { width: 40, height: 30, max: 1000 });
}

#[test]
fn a_session_recovers_after_bad_input() {
    let mut s = model().session();
    assert!(s.detect(&[]).is_err());
    assert_eq!(s.infer().unwrap_err(), DetectError::NoImage, "no stale frame after a failure");
    assert!(s.detect(&png_header_only(100_000, 100_000)).is_err());
    let jpeg = photo_bytes("grace_hopper.jpg");
    assert!(s.detect(&jpeg[..jpeg.len() / 2]).is_err());
    assert_eq!(s.infer().unwrap_err(), DetectError::NoImage);
    let out = s.detect(&photo_bytes("chelsea.png")).unwrap();
    assert_eq!(out.detections[0].label, "cat");
    assert!(!DetectError::NoImage.is_poison());
}

#[test]
fn wrong_tensor_length_is_refused() {
    let e = model().session().run_tensor(&[0.0; 10]).unwrap_err();
    assert!(matches!(e, DetectError::InputShape { len: 10, .. }));
}

#[test]
fn missing_model_says_what_to_do() {
    let e = Model::load(std::path::Path::new("/nonexistent/model.onnx"), &DetectorConfig::default()).unwrap_err();
    assert!(e.to_string().contains("cargo xtask model"), "{e}");
    let bad = DetectorConfig { threads: 0, ..Default::default() };
    assert!(Model::load(&common::model_path(), &bad).is_err());
}
