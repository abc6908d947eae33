//! Fuzzes `FrameMeta::parse`, the worker's first look at a frame: subject, headers, payload.
//!
//! Input format (so seeds are readable text): the first line is the subject, the following
//! lines up to an empty line are `Name: value` headers, everything after the empty line is the
//! payload. Beyond "never panics", a frame that parses must (a) have a valid camera id, (b)
//! survive the worker's result serialization with its `captured_at`, and (c) parse again to the
//! same metadata from the headers `edgepool_nats::frame_headers` would write for it.

#![no_main]

use edgepool_wire::frame::format_time;
use edgepool_wire::trigger::format_regions;
use edgepool_wire::{CameraId, FrameMeta, ResultMessage, SCHEMA_VERSION, Status, Timings, header, msg_id};
use libfuzzer_sys::fuzz_target;

/// Splits the input into subject, headers and payload.
fn split(data: &[u8]) -> (String, Vec<(String, String)>, &[u8]) {
    let (head, payload) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split('\n');
    let subject = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.strip_prefix(' ').unwrap_or(v).to_owned()))
        .collect();
    (subject, headers, payload)
}

/// NATS headers are multi-valued; the worker reads the first value of a name.
fn first<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fuzz_target!(|data: &[u8]| {
    let (subject, headers, payload) = split(data);
    let Ok(meta) = FrameMeta::parse(&subject, |k| first(&headers, k), payload) else { return };

    // (a) The subject token became a camera id that the constructor accepts.
    assert!(CameraId::new(meta.camera.as_str()).is_ok());

    // (b) The worker copies captured_at into the result and serializes it; that must not fail
    // (a serialization error there would turn a valid frame into a retry loop).
    let result = ResultMessage {
        schema_version: SCHEMA_VERSION,
        camera: meta.camera.clone().into(),
        seq: Some(meta.seq.0),
        stream_seq: 1,
        captured_at: Some(meta.captured_at),
        processed_at: time::OffsetDateTime::UNIX_EPOCH,
        worker: edgepool_wire::WorkerId::new("fuzz").expect("a valid worker id"),
        arch: "fuzz".into(),
        device_label: None,
        slowdown: 1.0,
        model: "fuzz".into(),
        width: 0,
        height: 0,
        delivery: 1,
        timings: Timings::default(),
        status: Status::Stale,
        error: None,
        traceparent: meta.traceparent.clone(),
        trigger: meta.trigger,
        motion_regions: meta.motion_regions.clone(),
        detections: Vec::new(),
    };
    let json = serde_json::to_vec(&result).expect("a parsed frame's result serializes");
    let back: ResultMessage = serde_json::from_slice(&json).expect("a serialized result parses");
    assert_eq!(back, result);

    // (c) The canonical headers of the parsed metadata parse back to the same metadata; in
    // particular every accepted capture time can be written (docs/reliability.md, "Fuzzing",
    // finding 2: a UTC year outside 0..=9999 used to be accepted and written as 1970; reproducer
    // in fuzz/regressions/frame_meta).
    let captured_at = format_time(meta.captured_at).expect("an accepted capture time formats");
    let canonical = [
        (header::MSG_ID.to_owned(), msg_id(&meta.camera, meta.seq)),
        (header::CONTENT_TYPE.to_owned(), meta.content_type.as_str().to_owned()),
        (header::SEQ.to_owned(), meta.seq.to_string()),
        (header::CAPTURED_AT.to_owned(), captured_at),
    ];
    let mut canonical = canonical.to_vec();
    if let Some(tp) = &meta.traceparent {
        canonical.push((header::TRACEPARENT.to_owned(), tp.clone()));
    }
    if let Some(t) = meta.trigger {
        canonical.push((header::TRIGGER.to_owned(), t.as_str().to_owned()));
    }
    if !meta.motion_regions.is_empty() {
        canonical.push((header::MOTION_REGIONS.to_owned(), format_regions(&meta.motion_regions)));
    }
    if let Some(d) = meta.deadline {
        canonical.push((header::DEADLINE.to_owned(), format_time(d).expect("an accepted deadline formats")));
    }
    if let Some((w, h)) = meta.raw_size {
        canonical.push((header::WIDTH.to_owned(), w.to_string()));
        canonical.push((header::HEIGHT.to_owned(), h.to_string()));
    }
    let again = FrameMeta::parse(&format!("frames.{}", meta.camera), |k| first(&canonical, k), payload)
        .expect("canonical headers of a parsed frame parse");
    assert_eq!(again, meta);
});
