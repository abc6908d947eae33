//! End-to-end tests of the pipeline against a real nats-server and the real model.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::HeaderMap;
use edgepool_nats::{Change, DEADLETTER, DETECTORS, FRAMES};
use edgepool_wire::{Status, header};
use edgepool_worker::WorkerConfig;

use crate::common::{
    add_worker, answered, cluster, engine, expected_labels, labels, publish_photos, read_stream, results, wait_results,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cameras_two_workers_give_exactly_one_right_result_per_frame() {
    let mut p = cluster().await;
    add_worker(&mut p, "fast", WorkerConfig::default(), engine()).await;
    add_worker(&mut p, "slow", WorkerConfig { slowdown: 2.0, ..Default::default() }, engine()).await;

    let (a, b) = tokio::join!(publish_photos(&p, "cam-a", 12, 1), publish_photos(&p, "cam-b", 12, 1000));
    assert_eq!((a.len(), b.len()), (12, 12), "every frame acked by the broker");
    wait_results(&p, 24, Duration::from_secs(120)).await;
    // Give a wrong second result time to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let results = results(&p.js).await;
    assert_eq!(results.len(), 24, "exactly one result per frame in DETECTIONS");
    let mut workers = HashMap::new();
    for r in &results {
        assert_eq!(r.status, Status::Ok, "{r:?}");
        let sent = if r.camera == "cam-a" { &a } else { &b };
        let photo = &sent[&r.seq.unwrap()];
        assert_eq!(labels(r), expected_labels(photo), "labels of {photo} (camera {} seq {:?})", r.camera, r.seq);
        assert!(r.width > 0 && r.height > 0);
        assert!(r.model.starts_with("ssd_mobilenet_v2_coco@sha256:"), "{}", r.model);
        *workers.entry(r.worker.clone()).or_insert(0) += 1;
    }
    assert_eq!(workers.len(), 2, "both workers pulled frames: {workers:?}");
    let s = p.stats.summary();
    assert_eq!((s.results, s.duplicates, s.errors), (24, 0, 0));

    let frames = p.js.get_stream(FRAMES).await.unwrap().get_info().await.unwrap();
    assert_eq!(frames.state.messages, 0, "the work queue is empty once every frame is acked");

    // DETECTIONS deduplicates results by frame id within its duplicate window, so a frame
    // processed twice would still show one result above: the workers' own counts would not.
    let reports = p.shutdown().await;
    assert_eq!(reports.len(), 2);
    assert_eq!(answered(&reports), 24, "each frame processed exactly once: {reports:?}");
    assert!(reports.iter().all(|r| r.ok > 0 && r.errors == 0 && r.stale == 0 && r.naks == 0), "{reports:?}");
}

#[tokio::test]
async fn setup_is_idempotent_and_reports_changes() {
    let server = edgepool_harness::Broker::single().unwrap();
    let js = async_nats::jetstream::new(async_nats::connect(server.url().as_str()).await.unwrap());
    let first = edgepool_nats::apply(&js, Default::default()).await.unwrap();
    assert_eq!(
        first.len(),
        8,
        "4 streams, the consumers on FRAMES and REQUESTS, the fleet registry, the camera snapshots"
    );
    let snapshots = js.get_key_value(edgepool_wire::snapshot::BUCKET).await.unwrap().status().await.unwrap();
    assert_eq!(snapshots.history(), 1, "one snapshot per camera");
    assert!(first.iter().all(|a| a.change == Change::Created), "{first:?}");

    let second = edgepool_nats::apply(&js, Default::default()).await.unwrap();
    assert!(second.iter().all(|a| a.change == Change::Unchanged), "{second:?}");

    // Drift: someone changed max_age by hand; setup puts it back and says so.
    let mut cfg = js.get_stream(FRAMES).await.unwrap().get_info().await.unwrap().config;
    cfg.max_age = Duration::from_secs(600);
    js.update_stream(&cfg).await.unwrap();
    let third = edgepool_nats::apply(&js, Default::default()).await.unwrap();
    let frames = third.iter().find(|a| a.name == FRAMES).unwrap();
    match &frames.change {
        Change::Updated { fields } => assert!(fields.iter().any(|f| f.starts_with("max_age")), "{fields:?}"),
        other => panic!("expected an update, got {other:?}"),
    }
    let info = js.get_stream(FRAMES).await.unwrap().get_info().await.unwrap();
    assert_eq!(info.config.max_age, Duration::from_secs(300));
    let consumer = js.get_stream(FRAMES).await.unwrap().consumer_info(DETECTORS).await.unwrap();
    assert_eq!(consumer.config.max_deliver, 5);
}

fn frame_headers(seq: &str, content_type: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::SEQ, seq);
    h.insert(header::CAPTURED_AT, edgepool_wire::frame::format_time(time::OffsetDateTime::now_utc()).unwrap().as_str());
    h.insert(header::CONTENT_TYPE, content_type);
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_get_error_results_and_dead_letters_and_the_worker_keeps_serving() {
    let mut p = cluster().await;
    add_worker(&mut p, "w", WorkerConfig::default(), engine()).await;
    let js = &p.js;
    let jpeg = std::fs::read(edgepool_harness::fixtures::photo("grace_hopper.jpg")).unwrap();

    let mut missing_seq = HeaderMap::new();
    missing_seq.insert(
        header::CAPTURED_AT,
        edgepool_wire::frame::format_time(time::OffsetDateTime::now_utc()).unwrap().as_str(),
    );
    missing_seq.insert(header::CONTENT_TYPE, "image/jpeg");
    let cases: Vec<(&str, HeaderMap, Vec<u8>, &str)> = vec![
        ("frames.cam-x", missing_seq, jpeg.clone(), "missing_header"),
        ("frames._bad", frame_headers("2", "image/jpeg"), jpeg.clone(), "bad_camera_id"),
        ("frames.cam-x", frame_headers("3", "image/jpeg"), b"this is not an image".to_vec(), "content_type_mismatch"),
        ("frames.cam-x", frame_headers("4", "text/plain"), jpeg.clone(), "unsupported_content_type"),
        ("frames.cam-x", frame_headers("5", "image/jpeg"), jpeg[..jpeg.len() / 3].to_vec(), "corrupt"),
        ("frames.cam-x", frame_headers("6", "image/jpeg"), jpeg.clone(), "ok"),
    ];
    for (subject, h, payload, _) in &cases {
        js.publish_with_headers(subject.to_string(), h.clone(), payload.clone().into()).await.unwrap().await.unwrap();
    }
    wait_results(&p, cases.len() as u64, Duration::from_secs(60)).await;

    let results = results(js).await;
    let letters = read_stream(js, DEADLETTER).await;
    assert_eq!(results.len(), cases.len());
    assert_eq!(letters.len(), cases.len() - 1, "every bad frame is dead-lettered");
    let kinds: Vec<String> = letters
        .iter()
        .map(|m| m.headers.as_ref().unwrap().get(header::ERROR_KIND).unwrap().as_str().to_owned())
        .collect();
    for (i, (_, _, payload, want)) in cases.iter().enumerate() {
        if *want == "ok" {
            let ok = results.iter().find(|r| r.status == Status::Ok).expect("the good frame after bad ones is served");
            assert_eq!(ok.seq, Some(6));
            assert!(ok.detections.iter().any(|d| d.label == "person"));
            continue;
        }
        assert!(kinds.iter().any(|k| k.starts_with(want)), "case {i}: no dead letter of kind {want}: {kinds:?}");
        let r = results
            .iter()
            .find(|r| r.status == Status::Error && r.error.as_ref().unwrap().kind.as_str().starts_with(want))
            .unwrap_or_else(|| panic!("case {i}: no error result of kind {want}"));
        assert!(r.detections.is_empty());
        let letter = letters
            .iter()
            .find(|m| m.headers.as_ref().unwrap().get(header::ERROR_KIND).unwrap().as_str().starts_with(want))
            .unwrap();
        assert_eq!(&letter.payload[..], &payload[..], "the dead letter keeps the original bytes");
    }
    let bad_camera = results.iter().find(|r| r.error.as_ref().is_some_and(|e| e.kind == "bad_camera_id")).unwrap();
    assert_eq!(bad_camera.camera, "_invalid");

    let consumer = js.get_stream(FRAMES).await.unwrap().consumer_info(DETECTORS).await.unwrap();
    assert_eq!(consumer.num_ack_pending, 0, "every frame was acked or terminated");
    let reports = p.shutdown().await;
    assert_eq!((reports[0].ok, reports[0].errors), (1, 5));
}
