//! Writes seed corpora for the fuzz targets into `<dir>/<target>/`: small valid JPEGs and PNGs
//! in every colour type the decoder converts, and broken variants of them (truncated, zero-sized
//! and huge declared dimensions), plus frames and results for the text targets. Generated rather
//! than committed, so the repository holds no binary seeds. Usage: `seedgen <corpus dir>`.

use std::fs;
use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageBuffer, ImageFormat};

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("encoding a small image");
    out.into_inner()
}

fn gradient(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(ImageBuffer::from_fn(w, h, |x, y| {
        image::Rgb([(x * 255 / w.max(1)) as u8, (y * 255 / h.max(1)) as u8, ((x ^ y) & 0xFF) as u8])
    }))
}

/// Rewrites the width/height of a PNG's IHDR (CRC left stale on purpose for some seeds).
fn png_with_size(png: &[u8], w: u32, h: u32) -> Vec<u8> {
    let mut v = png.to_vec();
    v[16..20].copy_from_slice(&w.to_be_bytes());
    v[20..24].copy_from_slice(&h.to_be_bytes());
    v
}

/// Rewrites the height/width of a baseline JPEG's SOF0 marker.
fn jpeg_with_size(jpeg: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut v = jpeg.to_vec();
    if let Some(i) = v.windows(2).position(|m| m == [0xFF, 0xC0]) {
        v[i + 5..i + 7].copy_from_slice(&h.to_be_bytes());
        v[i + 7..i + 9].copy_from_slice(&w.to_be_bytes());
    }
    v
}

fn images(dir: &Path) {
    let rgb = gradient(32, 24);
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    let variants = [
        ("rgb8", rgb.clone()),
        ("l8", DynamicImage::ImageLuma8(rgb.to_luma8())),
        ("la8", DynamicImage::ImageLumaA8(rgb.to_luma_alpha8())),
        ("rgba8", DynamicImage::ImageRgba8(rgb.to_rgba8())),
        ("l16", DynamicImage::ImageLuma16(rgb.to_luma16())),
        ("la16", DynamicImage::ImageLumaA16(rgb.to_luma_alpha16())),
        ("rgb16", DynamicImage::ImageRgb16(rgb.to_rgb16())),
        ("rgba16", DynamicImage::ImageRgba16(rgb.to_rgba16())),
    ];
    for (name, img) in &variants {
        seeds.push((format!("{name}.png"), encode(img, ImageFormat::Png)));
    }
    for (name, img) in &variants[..2] {
        seeds.push((format!("{name}.jpg"), encode(img, ImageFormat::Jpeg)));
    }
    seeds.push(("one_pixel.png".into(), encode(&gradient(1, 1), ImageFormat::Png)));
    seeds.push(("tall.jpg".into(), encode(&gradient(3, 200), ImageFormat::Jpeg)));
    let png = encode(&rgb, ImageFormat::Png);
    let jpg = encode(&rgb, ImageFormat::Jpeg);
    seeds.push(("png_truncated".into(), png[..png.len() / 2].to_vec()));
    seeds.push(("jpg_truncated".into(), jpg[..jpg.len() * 2 / 3].to_vec()));
    seeds.push(("png_huge".into(), png_with_size(&png, 100_000, 100_000)));
    seeds.push(("png_zero".into(), png_with_size(&png, 0, 24)));
    seeds.push(("jpg_huge".into(), jpeg_with_size(&jpg, 65_000, 65_000)));
    seeds.push(("jpg_zero".into(), jpeg_with_size(&jpg, 0, 24)));
    seeds.push(("magic_only.jpg".into(), vec![0xFF, 0xD8, 0xFF]));
    seeds.push(("magic_only.png".into(), b"\x89PNG\r\n\x1a\n".to_vec()));
    write_all(&dir.join("decode_image"), &seeds);
}

fn frames(dir: &Path) {
    let frame = |subject: &str, headers: &[(&str, &str)], payload: &[u8]| {
        let mut v = format!("{subject}\n").into_bytes();
        for (k, val) in headers {
            v.extend_from_slice(format!("{k}: {val}\n").as_bytes());
        }
        v.push(b'\n');
        v.extend_from_slice(payload);
        v
    };
    let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10];
    let png = *b"\x89PNG\r\n\x1a\n\0\0";
    let good = [
        ("Nats-Msg-Id", "cam-1-7"),
        ("Content-Type", "image/jpeg"),
        ("Edgepool-Seq", "7"),
        ("Edgepool-Captured-At", "2026-11-27T18:00:00.123456789Z"),
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ];
    let seeds = vec![
        ("good".to_owned(), frame("frames.cam-1", &good, &jpeg)),
        (
            "png".into(),
            frame(
                "frames.front_door",
                &[
                    ("Content-Type", "image/png; q=1"),
                    ("Edgepool-Seq", " 1 "),
                    ("Edgepool-Captured-At", "2026-01-01T00:00:00+05:30"),
                ],
                &png,
            ),
        ),
        (
            "motion".into(),
            frame(
                "frames.cam-1",
                &[
                    ("Content-Type", "image/jpeg"),
                    ("Edgepool-Seq", "8"),
                    ("Edgepool-Captured-At", "2026-11-27T18:00:00Z"),
                    ("Edgepool-Trigger", "motion"),
                    ("Edgepool-Motion-Regions", "0.123456,0.2,0.5,0.75;0,0,1,1"),
                ],
                &jpeg,
            ),
        ),
        (
            "keepalive".into(),
            frame(
                "frames.cam-1",
                &[
                    ("Content-Type", "image/jpeg"),
                    ("Edgepool-Seq", "9"),
                    ("Edgepool-Captured-At", "2026-11-27T18:00:00Z"),
                    ("Edgepool-Trigger", "keepalive"),
                    ("Edgepool-Motion-Regions", ""),
                ],
                &jpeg,
            ),
        ),
        (
            "request_deadline".into(),
            frame(
                "requests.gateway",
                &[
                    ("Content-Type", "image/jpeg"),
                    ("Edgepool-Seq", "4503599627370495"),
                    ("Edgepool-Captured-At", "2026-11-27T18:00:00Z"),
                    ("Edgepool-Deadline", "2026-11-27T18:00:10.5+01:00"),
                ],
                &jpeg,
            ),
        ),
        (
            "raw_rgb".into(),
            frame(
                "requests.gateway",
                &[
                    ("Content-Type", "image/x-raw-rgb"),
                    ("Edgepool-Seq", "5"),
                    ("Edgepool-Captured-At", "2026-11-27T18:00:00Z"),
                    ("Edgepool-Width", "4"),
                    ("Edgepool-Height", "2"),
                ],
                &[7u8; 24],
            ),
        ),
        ("bad_subject".into(), frame("frames.a.b", &good, &jpeg)),
        ("reserved_id".into(), frame("frames._invalid", &good, &jpeg)),
        ("no_headers".into(), frame("frames.cam-1", &[], &jpeg)),
        (
            "offset_time".into(),
            frame(
                "frames.c",
                &[
                    ("Content-Type", "image/jpeg"),
                    ("Edgepool-Seq", "18446744073709551615"),
                    ("Edgepool-Captured-At", "0001-01-01T00:00:00Z"),
                ],
                &jpeg,
            ),
        ),
        (
            "mismatch".into(),
            frame(
                "frames.c",
                &[
                    ("Content-Type", "image/png"),
                    ("Edgepool-Seq", "1"),
                    ("Edgepool-Captured-At", "2026-11-27T18:00:00Z"),
                ],
                &jpeg,
            ),
        ),
    ];
    write_all(&dir.join("frame_meta"), &seeds);
}

fn results(dir: &Path) {
    let ok = r#"{"schema_version":1,"camera":"cam-1","seq":1,"stream_seq":17,
"captured_at":"2026-11-27T18:00:00.123456789Z","processed_at":"2026-11-27T18:00:00.241000000Z",
"worker":"laptop-3f2a1c","arch":"x86_64","device_label":"laptop","slowdown":1.0,
"model":"ssd_mobilenet_v2_coco@sha256:0a1b2c3d4e5f","width":512,"height":600,"delivery":1,
"timings":{"queue_wait_ms":12.1,"decode_ms":3.2,"preprocess_ms":0.9,"inference_ms":82.5,
"postprocess_ms":0.4,"emulated_delay_ms":0.0,"total_ms":88.0},"status":"ok",
"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
"detections":[{"label":"person","class_id":1,"score":0.731,
"bbox":{"x_min":0.06,"y_min":0.03,"x_max":0.98,"y_max":0.99}}]}"#;
    let err = r#"{"schema_version":1,"camera":"_invalid","seq":null,"stream_seq":3,"captured_at":null,
"processed_at":"2026-11-27T18:00:00Z","worker":"w","arch":"aarch64","slowdown":4.5,"model":"m",
"width":0,"height":0,"delivery":5,"timings":{"queue_wait_ms":0,"decode_ms":0,"preprocess_ms":0,
"inference_ms":0,"postprocess_ms":0,"total_ms":0.25},"status":"error",
"error":{"kind":"bad_subject","message":"subject \"frames.a.b\" is not frames.<camera>"},"detections":[]}"#;
    let seeds = vec![("ok".to_owned(), ok.as_bytes().to_vec()), ("error".into(), err.as_bytes().to_vec())];
    write_all(&dir.join("result_json"), &seeds);
}

fn write_all(dir: &Path, seeds: &[(String, Vec<u8>)]) {
    fs::create_dir_all(dir).expect("creating the corpus directory");
    for (name, bytes) in seeds {
        fs::write(dir.join(format!("seed-{name}")), bytes).expect("writing a seed");
    }
}

fn main() {
    let dir = std::env::args().nth(1).expect("usage: seedgen <corpus dir>");
    let dir = Path::new(&dir);
    images(dir);
    frames(dir);
    results(dir);
    println!("seeds written to {}", dir.display());
}
