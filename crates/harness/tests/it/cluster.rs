//! `LocalCluster` without workers: start-up (a broker, setup, a sink), its URL, publishing
//! through the camera's publisher, and shutdown.

use std::time::Duration;

use bytes::Bytes;
use edgepool_harness::LocalCluster;
use edgepool_nats::{FRAMES, NatsConfig};
use edgepool_wire::ContentType;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_returns_the_acked_sequence_numbers() {
    let c = LocalCluster::start(&NatsConfig::default(), &prometheus::Registry::new()).await.unwrap();
    let broker = c.server.as_ref().expect("no URL given: the cluster started its own broker");
    assert_eq!(c.url(), broker.url());

    let jpeg = Bytes::from(std::fs::read(edgepool_harness::fixtures::photo("grace_hopper.jpg")).unwrap());
    let frames = std::iter::repeat_n((ContentType::Jpeg, jpeg), 3);
    let acked = c.publish("cam-h", 7, frames).await.unwrap();
    assert_eq!(acked.into_iter().collect::<Vec<_>>(), [7, 8, 9]);
    let info = c.js.get_stream(FRAMES).await.unwrap().get_info().await.unwrap();
    assert_eq!(info.state.messages, 3, "nobody works the queue yet");
    assert!(c.publish("not a camera id", 1, []).await.is_err());

    assert!(c.workers().is_empty());
    assert_eq!(c.wait_results(1, Duration::from_millis(200)).await, Err(0), "no workers, no results");
    assert!(c.shutdown().await.is_empty());
}
