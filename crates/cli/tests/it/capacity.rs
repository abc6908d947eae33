//! Capacity-honest pulling: a worker never holds more frames than its free inference slots —
//! not in fetch batches, not in pending pull requests, not in buffers — even when the queue is
//! deep. This is what lets a slow device take only its share.

use std::time::{Duration, Instant};

use edgepool_harness::LocalCluster;
use edgepool_nats::{DETECTORS, FRAMES};
use edgepool_worker::WorkerConfig;

use crate::common::{add_worker, cluster, engine, publish_photos, wait_results};

/// Samples the consumer for `window`; returns the largest ack pending, waiting pulls, and their
/// sum within one sample (the two maxima need not fall in the same sample: a slot that just
/// acked has a pull waiting while the others hold frames), and the number of samples.
async fn max_held(p: &LocalCluster, window: Duration) -> (u64, u64, u64, u64) {
    let stream = p.js.get_stream(FRAMES).await.unwrap();
    let (mut held, mut waiting, mut both, mut samples) = (0, 0, 0, 0);
    let end = Instant::now() + window;
    while Instant::now() < end {
        let c = stream.consumer_info(DETECTORS).await.unwrap();
        assert!(c.num_pending > 0, "the queue must stay deep during the measurement");
        held = held.max(c.num_ack_pending as u64);
        waiting = waiting.max(c.num_waiting as u64);
        both = both.max(c.num_ack_pending as u64 + c.num_waiting as u64);
        samples += 1;
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    (held, waiting, both, samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_one_slot_worker_holds_at_most_one_frame_while_the_queue_is_deep() {
    let mut p = cluster().await;
    // Deep enough that the 1 + 2 slots cannot drain it while measured: 40 frames ran dry once
    // inference got faster.
    let sent = publish_photos(&p, "deep", 200, 1).await;
    assert_eq!(sent.len(), 200);

    add_worker(&mut p, "slow", WorkerConfig { slots: 1, slowdown: 8.0, ..Default::default() }, engine()).await;
    wait_results(&p, 1, Duration::from_secs(60)).await;
    let (held, waiting, _, samples) = max_held(&p, Duration::from_secs(3)).await;
    assert!(samples > 20, "{samples} samples");
    assert_eq!(held, 1, "a 1-slot worker holds exactly one frame, never more (max ack pending seen: {held})");
    assert!(waiting <= 1, "at most one pull request outstanding per slot, saw {waiting}");

    // A second worker with 2 slots: the fleet holds at most 1 + 2.
    add_worker(&mut p, "fast", WorkerConfig { slots: 2, ..Default::default() }, engine()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (held, _, both, _) = max_held(&p, Duration::from_secs(2)).await;
    assert!(held <= 3, "fleet of 1 + 2 slots held {held} frames");
    assert!(both <= 3, "held frames plus waiting pulls reached {both} at once, more than the 3 slots");
    p.shutdown().await;
}
