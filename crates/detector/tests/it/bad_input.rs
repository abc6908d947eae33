//! Untrusted bytes never panic and never allocate image-sized buffers before the limits are
//! checked; each kind of bad input maps to its typed, poison error.

use crate::common::{model, photo_bytes};
use edgepool_detector::{DecodeLimits, DetectError, DetectorConfig, Model};

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
}

/// A valid PNG header declaring `width`x`height` RGB8, then an empty IDAT and IEND. Its CRCs
/// are right: the detector reads its size (a wrong CRC would make it corrupt, see
/// `a_png_chunk_with_a_wrong_crc_is_corrupt`).
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

/// Flips one bit of the CRC of the first chunk of type `kind`.
fn break_crc(png: &mut [u8], kind: &[u8; 4]) {
    let at = png.windows(4).position(|w| w == kind).unwrap();
    let len = u32::from_be_bytes(png[at - 4..at].try_into().unwrap()) as usize;
    png[at + 4 + len] ^= 0x10;
}

#[test]
fn huge_png_header_is_refused_before_decoding() {
    let e = detect_err(&png_header_only(100_000, 100_000));
    assert_eq!(e, DetectError::TooManyPixels { width: 100_000, height: 100_000, max: 40_000_000 });
    assert_eq!(e.kind(), "too_many_pixels");
    assert!(e.is_poison());
}

#[test]
fn a_png_chunk_with_a_wrong_crc_is_corrupt() {
    // A real photo that decodes, then the same bytes with one CRC bit flipped in the header or
    // in the image data: the decoder verifies every chunk, so neither is detected on.
    let good = photo_bytes("coffee.png");
    assert!(model().session().detect(&good).is_ok());
    for kind in [b"IHDR", b"IDAT"] {
        let mut bad = good.clone();
        break_crc(&mut bad, kind);
        let e = detect_err(&bad);
        assert!(matches!(e, DetectError::Corrupt(_)), "{}: {e:?}", String::from_utf8_lossy(kind));
        assert!(e.is_poison());
    }
    // The size check reads only a verified header: the huge header above with its CRC broken is
    // corrupt, not "too many pixels" (so a bit flipped in transit is not mistaken for a bomb).
    let mut huge = png_header_only(100_000, 100_000);
    break_crc(&mut huge, b"IHDR");
    assert!(matches!(detect_err(&huge), DetectError::Corrupt(_)));
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
    let small = Model::load(&crate::common::model_path(), &cfg).unwrap();
    let mut s = small.session();
    let jpeg = photo_bytes("grace_hopper.jpg");
    assert_eq!(s.detect(&jpeg).unwrap_err(), DetectError::TooLarge { bytes: jpeg.len(), max: 1000 });
    let tiny = crate::common::png(&image::DynamicImage::new_rgb8(40, 30));
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
    assert!(Model::load(&crate::common::model_path(), &bad).is_err());
}
