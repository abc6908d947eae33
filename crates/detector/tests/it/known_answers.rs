//! The real model on the test photos gives the documented answers (docs/model.md), and every
//! pixel format decodes to the same answer as its 8-bit RGB equivalent.

use crate::common::{detect, photo_bytes, png};
use edgepool_detector::{BBox, Detection};

/// Labels and scores exactly as listed, in order, scores within 0.02.
fn assert_answers(name: &str, want: &[(&str, f32)]) -> Vec<Detection> {
    let out = detect(&photo_bytes(name));
    let got: Vec<(&str, f32)> = out.detections.iter().map(|d| (d.label.as_str(), d.score)).collect();
    assert_eq!(got.len(), want.len(), "{name}: got {got:?}, want {want:?}");
    for ((gl, gs), (wl, ws)) in got.iter().zip(want) {
        assert_eq!(gl, wl, "{name}: got {got:?}, want {want:?}");
        assert!((gs - ws).abs() <= 0.02, "{name}: {gl} score {gs}, want {ws}±0.02");
    }
    assert!(out.detections.windows(2).all(|w| w[0].score >= w[1].score), "sorted by score");
    out.detections
}

fn contains(b: &BBox, x: f32, y: f32) -> bool {
    (b.x_min..=b.x_max).contains(&x) && (b.y_min..=b.y_max).contains(&y)
}

fn center(b: &BBox) -> (f32, f32) {
    ((b.x_min + b.x_max) / 2.0, (b.y_min + b.y_max) / 2.0)
}

#[test]
fn grace_hopper_person_and_tie() {
    let d = assert_answers("grace_hopper.jpg", &[("person", 0.731), ("tie", 0.582)]);
    let (person, tie) = (&d[0].bbox, &d[1].bbox);
    assert_eq!((d[0].class_id, d[1].class_id), (1, 32));
    assert!(person.area() > 0.5 && contains(person, 0.5, 0.5), "person {person:?}");
    let (tx, ty) = center(tie);
    assert!(contains(person, tx, ty) && tie.area() < 0.1, "tie {tie:?} inside person {person:?}");
    assert!(ty > 0.5, "the tie is in the lower half: {tie:?}");
}

#[test]
fn astronaut_person() {
    let d = assert_answers("astronaut.png", &[("person", 0.754)]);
    assert!(d[0].bbox.area() > 0.4 && contains(&d[0].bbox, 0.5, 0.5), "{:?}", d[0].bbox);
}

#[test]
fn camera_person() {
    let d = assert_answers("camera.png", &[("person", 0.843)]);
    assert!(d[0].bbox.area() > 0.2 && contains(&d[0].bbox, 0.5, 0.5), "{:?}", d[0].bbox);
}

#[test]
fn chelsea_cat() {
    let d = assert_answers("chelsea.png", &[("cat", 0.915)]);
    assert_eq!(d[0].class_id, 17);
    assert!(d[0].bbox.area() > 0.3 && contains(&d[0].bbox, 0.5, 0.5), "{:?}", d[0].bbox);
}

#[test]
fn coffee_cup_bowl_table() {
    let d = assert_answers("coffee.png", &[("cup", 0.953), ("bowl", 0.839), ("dining table", 0.588)]);
    let (cup, table) = (&d[0].bbox, &d[2].bbox);
    assert!(table.area() > cup.area(), "the table is bigger than the cup");
    let (cx, cy) = center(cup);
    assert!(contains(table, cx, cy), "the cup stands on the table");
}

#[test]
fn rocket_nothing() {
    assert_answers("rocket.jpg", &[]);
}

#[test]
fn output_carries_original_size_and_timings() {
    let out = detect(&photo_bytes("coffee.png"));
    assert_eq!((out.width, out.height), (600, 400));
    assert!(out.timings.inference > out.timings.postprocess);
    assert_eq!(
        out.timings.total(),
        out.timings.decode + out.timings.preprocess + out.timings.inference + out.timings.postprocess
    );
}

/// Re-encodes `name` in other pixel formats; each must give exactly the same detections,
/// because every conversion here round-trips to the same 8-bit RGB.
#[test]
fn pixel_formats_give_identical_answers() {
    let coffee = image::load_from_memory(&photo_bytes("coffee.png")).unwrap();
    assert!(matches!(coffee, image::DynamicImage::ImageRgb8(_)));
    let camera = image::load_from_memory(&photo_bytes("camera.png")).unwrap();
    assert!(matches!(camera, image::DynamicImage::ImageLuma8(_)), "camera.png is 8-bit grey");

    let want_coffee = detect(&photo_bytes("coffee.png")).detections;
    let want_camera = detect(&png(&image::DynamicImage::ImageRgb8(camera.to_rgb8()))).detections;
    assert!(!want_coffee.is_empty() && !want_camera.is_empty());

    let cases = [
        ("coffee rgba8", image::DynamicImage::ImageRgba8(coffee.to_rgba8()), &want_coffee),
        ("coffee rgb16", image::DynamicImage::ImageRgb16(coffee.to_rgb16()), &want_coffee),
        ("coffee rgba16", image::DynamicImage::ImageRgba16(coffee.to_rgba16()), &want_coffee),
        ("camera l8", camera.clone(), &want_camera),
        ("camera la8", image::DynamicImage::ImageLumaA8(camera.to_luma_alpha8()), &want_camera),
        ("camera l16", image::DynamicImage::ImageLuma16(camera.to_luma16()), &want_camera),
        ("camera la16", image::DynamicImage::ImageLumaA16(camera.to_luma_alpha16()), &want_camera),
    ];
    for (what, img, want) in cases {
        let got = detect(&png(&img)).detections;
        assert_eq!(&got, want, "{what}");
    }
}

/// A session reused across frames of different sizes gives the same answers as fresh ones.
#[test]
fn session_reuse_is_stateless() {
    let mut s = crate::common::model().session();
    for name in ["coffee.png", "grace_hopper.jpg", "chelsea.png", "coffee.png"] {
        let bytes = photo_bytes(name);
        assert_eq!(s.detect(&bytes).unwrap().detections, detect(&bytes).detections, "{name}");
    }
}

#[test]
fn raw_rgb_pixels_give_the_same_answer_as_their_encoded_image() {
    let jpeg = photo_bytes("grace_hopper.jpg");
    let rgb = image::load_from_memory(&jpeg).unwrap().to_rgb8();
    let (w, h) = rgb.dimensions();
    let mut s = crate::common::model().session();
    let encoded = s.detect(&jpeg).unwrap();
    let raw = s.detect_rgb(rgb.as_raw(), w, h).unwrap();
    assert_eq!((raw.width, raw.height), (w, h));
    assert_eq!(raw.detections, encoded.detections, "the same pixels, the same detections");
    // A size that does not match the pixels is refused, and the session recovers.
    assert!(s.detect_rgb(&rgb.as_raw()[..100], w, h).is_err());
    assert!(s.infer().is_err(), "no stale frame after a refused one");
    assert_eq!(s.detect_rgb(rgb.as_raw(), w, h).unwrap().detections, encoded.detections);
}
