//! SIGTERM drain: a worker process told to stop finishes and acks what it holds, so nothing is
//! redelivered and nothing is lost.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgepool_nats::{DETECTORS, FRAMES};
use edgepool_worker::WorkerConfig;

use crate::common::{add_worker, cluster, engine, publish_photos, wait_results};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_finishes_in_flight_frames_without_redelivery() {
    let mut p = cluster().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgepool"))
        .args(["worker", "--id", "draining", "--slots", "2", "--slowdown", "3", "--nats-url", p.url()])
        .arg("--model")
        .arg(edgepool_harness::fixtures::model_path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let sent = publish_photos(&p, "cam-d", 12, 1).await;
    assert_eq!(sent.len(), 12);
    wait_results(&p, 2, Duration::from_secs(60)).await;

    // Under load: the worker holds frames right now.
    let consumer = p.js.get_stream(FRAMES).await.unwrap().consumer_info(DETECTORS).await.unwrap();
    assert!(consumer.num_ack_pending > 0, "the worker should hold frames when SIGTERM arrives");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "worker did not exit within its drain timeout");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stderr = std::io::read_to_string(child.stderr.take().unwrap()).unwrap();
    assert!(status.success(), "worker exit: {status}\n{stderr}");
    assert!(stderr.contains("draining"), "{stderr}");

    let consumer = p.js.get_stream(FRAMES).await.unwrap().consumer_info(DETECTORS).await.unwrap();
    assert_eq!(consumer.num_ack_pending, 0, "in-flight frames were finished and acked before exit");
    assert_eq!(consumer.num_redelivered, 0);
    let done_by_first = p.stats.summary().results;
    assert!(done_by_first >= 2);

    // Another worker takes the rest: every frame has exactly one result, none redelivered.
    add_worker(&mut p, "successor", WorkerConfig::default(), engine()).await;
    wait_results(&p, 12, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = p.stats.summary();
    assert_eq!((s.results, s.duplicates), (12, 0));
    let consumer = p.js.get_stream(FRAMES).await.unwrap().consumer_info(DETECTORS).await.unwrap();
    assert_eq!(consumer.num_redelivered, 0, "no frame was delivered twice");
    assert!(s.per_worker.contains_key("draining") && s.per_worker.contains_key("successor"));
    p.shutdown().await;
}
