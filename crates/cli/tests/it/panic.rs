//! A panic while processing a frame costs neither the worker nor its slot: the frame is retried
//! and, after the consumer's `max_deliver`, dead-lettered with kind `panic`. The panics are
//! injected with the worker's `test-hooks` feature (enabled by this crate's dev-dependencies).

use std::collections::BTreeMap;
use std::time::Duration;

use edgepool_nats::{DEADLETTER, DETECTORS, FRAMES, frame_headers};
use edgepool_wire::{CameraId, FrameMeta, FrameSeq, ResultMessage, Status, header};
use edgepool_worker::WorkerConfig;

use crate::common::{
    add_worker, cluster, engine, expected_labels, labels, photos, publish_photos, read_stream, results, wait_results,
};

/// The test hook's header (crates/worker/src/test_hooks.rs).
const PANIC_HEADER: &str = "Edgepool-Test-Panic";
/// The `detectors` consumer's max_deliver (nats/consumers/FRAMES.detectors.json).
const MAX_DELIVER: u64 = 5;

/// Publishes one frame of camera `cam-panic` whose processing panics at `point`.
async fn publish_panicking(js: &async_nats::jetstream::Context, seq: u64, point: &str) {
    let (_, content_type, bytes) = photos().into_iter().find(|(name, _, _)| name == "grace_hopper.jpg").unwrap();
    let meta = FrameMeta {
        camera: CameraId::new("cam-panic").unwrap(),
        seq: FrameSeq(seq),
        captured_at: time::OffsetDateTime::now_utc(),
        content_type,
        traceparent: None,
        trigger: None,
        motion_regions: Vec::new(),
        deadline: None,
        raw_size: None,
    };
    let mut headers = frame_headers(&meta).unwrap();
    headers.insert(PANIC_HEADER, point);
    js.publish_with_headers(format!("frames.{}", meta.camera), headers, bytes).await.unwrap().await.unwrap();
}

fn ok_results<'r>(results: &'r [ResultMessage], camera: &str) -> BTreeMap<u64, Vec<&'r ResultMessage>> {
    let mut by_seq: BTreeMap<u64, Vec<&ResultMessage>> = BTreeMap::new();
    for r in results.iter().filter(|r| r.camera == camera) {
        assert_eq!(r.status, Status::Ok, "{r:?}");
        by_seq.entry(r.seq.unwrap()).or_default().push(r);
    }
    by_seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_frames_are_dead_lettered_and_the_only_slot_keeps_serving() {
    let mut p = cluster().await;
    // One slot: if a panic killed it, nothing after the first panic would be served.
    let cfg = WorkerConfig { slots: 1, nak_delay: Duration::from_millis(200), ..Default::default() };
    add_worker(&mut p, "w", cfg, engine()).await;

    let before = publish_photos(&p, "cam-a", 3, 1).await;
    publish_panicking(&p.js, 1, "async").await;
    publish_panicking(&p.js, 2, "blocking").await;
    // Both panic frames go through all their deliveries before the next good frames arrive.
    wait_results(&p, before.len() as u64 + 2, Duration::from_secs(30)).await;
    let after = publish_photos(&p, "cam-a", 3, 100).await;
    assert_eq!((before.len(), after.len()), (3, 3), "every frame acked by the broker");
    wait_results(&p, 8, Duration::from_secs(30)).await;
    // Give a wrong second result or dead letter time to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let results = results(&p.js).await;
    assert_eq!(results.len(), 8, "one result per frame: {results:#?}");

    let good = ok_results(&results, "cam-a");
    let sent: BTreeMap<u64, String> = before.into_iter().chain(after).collect();
    assert_eq!(good.keys().collect::<Vec<_>>(), sent.keys().collect::<Vec<_>>(), "every good frame has a result");
    for (seq, rs) in &good {
        assert_eq!(rs.len(), 1, "exactly one result for cam-a seq {seq}");
        assert_eq!(labels(rs[0]), expected_labels(&sent[seq]), "labels of {} (seq {seq})", sent[seq]);
    }

    let letters = read_stream(&p.js, DEADLETTER).await;
    assert_eq!(letters.len(), 2, "each panic frame is dead-lettered exactly once");
    for (seq, point, message) in [(1, "async", "processing panicked"), (2, "blocking", "inference panicked")] {
        let errors: Vec<&ResultMessage> =
            results.iter().filter(|r| r.camera == "cam-panic" && r.seq == Some(seq)).collect();
        assert_eq!(errors.len(), 1, "exactly one result for the {point} panic frame: {errors:#?}");
        let r = errors[0];
        assert_eq!(r.status, Status::Error, "{r:?}");
        let error = r.error.as_ref().unwrap();
        assert_eq!(error.kind, "panic", "{r:?}");
        assert!(error.message.contains(message), "{point}: {}", error.message);
        assert_eq!(r.delivery, MAX_DELIVER, "{point}: given up on the last delivery only");
        assert!(r.detections.is_empty());

        let letter = letters
            .iter()
            .find(|m| m.headers.as_ref().unwrap().get(header::SEQ).unwrap().as_str() == seq.to_string())
            .unwrap_or_else(|| panic!("no dead letter for the {point} panic frame"));
        let h = letter.headers.as_ref().unwrap();
        assert_eq!(letter.subject.as_str(), "deadletter.cam-panic");
        assert_eq!(h.get(header::ERROR_KIND).unwrap().as_str(), "panic");
        assert_eq!(h.get(PANIC_HEADER).unwrap().as_str(), point, "the dead letter keeps the frame's headers");
    }

    let consumer = p.js.get_stream(FRAMES).await.unwrap().consumer_info(DETECTORS).await.unwrap();
    assert_eq!(consumer.num_ack_pending, 0, "every frame was acked or terminated");
    let frames = p.js.get_stream(FRAMES).await.unwrap().get_info().await.unwrap();
    assert_eq!(frames.state.messages, 0, "the work queue is empty");

    assert_eq!(p.workers(), [("w", true)], "the worker is still running");
    let reports = tokio::time::timeout(Duration::from_secs(15), p.shutdown()).await.expect("clean shutdown");
    let r = &reports[0];
    assert_eq!((r.ok, r.errors, r.stale), (6, 2, 0), "{r:?}");
    assert_eq!(r.naks, 2 * (MAX_DELIVER - 1), "every delivery but the last was handed back: {r:?}");
}
