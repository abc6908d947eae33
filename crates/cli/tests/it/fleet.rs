//! The live capacity registry: workers register in the fleet bucket with measured rates, and
//! `edgepool status` turns that into shares and sizing hints.

use std::time::Duration;

use edgepool_worker::WorkerConfig;

use crate::common::{add_worker, cluster, engine};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_register_measured_capacity_and_status_reports_the_fleet() {
    let mut p = cluster().await;
    add_worker(&mut p, "quick", WorkerConfig { label: Some("laptop".into()), ..Default::default() }, engine()).await;
    add_worker(&mut p, "slowpoke", WorkerConfig { slowdown: 4.0, ..Default::default() }, engine()).await;
    let publishing = {
        let js = p.js.clone();
        tokio::spawn(async move {
            let photos = crate::common::photos();
            let mut pb = edgepool_camera::Publisher::new(
                js,
                edgepool_wire::CameraId::new("fleet").unwrap(),
                1,
                edgepool_camera::PublisherConfig::default(),
            );
            for i in 0..120 {
                let (_, ct, b) = &photos[i % photos.len()];
                pb.publish(edgepool_camera::Frame::now(b.clone(), *ct)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            pb.flush().await
        })
    };
    // Two refresh intervals, so the entries carry rates measured while frames flowed.
    tokio::time::sleep(edgepool_wire::fleet::REFRESH * 2 + Duration::from_secs(1)).await;
    let s = edgepool::cmd::status::collect(&p.js, Duration::from_secs(1)).await.unwrap();
    assert_eq!(s.workers.len(), 2, "{s:?}");
    let quick = s.workers.iter().find(|w| w.id == "quick").unwrap();
    let slow = s.workers.iter().find(|w| w.id == "slowpoke").unwrap();
    assert_eq!(quick.label.as_deref(), Some("laptop"));
    assert_eq!(slow.slowdown, 4.0);
    let (qc, sc) = (quick.capacity_fps.unwrap(), slow.capacity_fps.unwrap());
    assert!(qc > 2.0 * sc, "the 4x slower worker measures clearly less capacity: {qc:.2} vs {sc:.2}");
    assert!(s.publish_fps > 3.0 && s.publish_fps < 15.0, "publish rate {}", s.publish_fps);
    // The fleet rate is what the workers measured over their last refresh interval: positive,
    // since frames flowed through it, and not above what their capacities allow (beyond the one
    // frame per slot that straddles the interval's start: its whole busy time counts in it).
    assert!(s.fleet_fps > 0.0, "frames flowed, yet the fleet reports no rate: {s:?}");
    assert!(quick.fps > 0.0 && quick.frames_total > 0 && slow.frames_total > 0, "{s:?}");
    assert!((s.fleet_fps - (quick.fps + slow.fps)).abs() < 1e-9, "the fleet rate is the workers' sum: {s:?}");
    for w in [quick, slow] {
        assert!(w.fps <= 2.0 * w.capacity_fps.unwrap(), "{} does more than it can: {w:?}", w.id);
    }
    assert!(p.stats.summary().results > 0, "the sink got results");
    let total: f64 = s.share.values().sum();
    assert!((total - 1.0).abs() < 1e-6, "shares of a working fleet add up to 1: {:?}", s.share);
    assert_eq!(s.sizing.len(), 1, "one arch on this machine");
    assert!(s.sizing[0].replicas_alone.is_some());
    // `edgepool top --once` shows the same fleet from another process.
    let url = p.url().to_owned();
    let top = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_edgepool"))
            .args(["top", "--once", "--nats-url", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let screen = String::from_utf8_lossy(&top.stdout);
    assert!(top.status.success(), "{screen}\n{}", String::from_utf8_lossy(&top.stderr));
    for needle in ["quick", "slowpoke", "4x", "pending", "p99"] {
        assert!(screen.contains(needle), "`top` lacks {needle:?}:\n{screen}");
    }

    publishing.abort();
    // A stopped worker removes its entry at once instead of waiting for the TTL.
    let report = p.stop_worker("quick").await.unwrap();
    assert!(report.ok > 0, "{report:?}");
    let kv = p.js.get_key_value(edgepool_wire::fleet::BUCKET).await.unwrap();
    assert!(kv.get("quick").await.unwrap().is_none(), "the stopped worker's entry is gone");
    assert!(kv.get("slowpoke").await.unwrap().is_some());
    p.shutdown().await;
}
