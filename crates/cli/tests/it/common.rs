//! What the pipeline tests share beyond the harness: the model loaded once, the photos and the
//! labels the model finds in each, a second model version, and short forms of the
//! [`LocalCluster`] calls every test makes (which panic with context instead of returning).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use async_nats::jetstream;
use bytes::Bytes;
use edgepool_harness::LocalCluster;
use edgepool_nats::NatsConfig;
use edgepool_wire::{ContentType, ResultMessage};
use edgepool_worker::{Engine, WorkerConfig, WorkerReport};

/// A second version of the model that still detects the same: the same ONNX bytes plus a
/// `doc_string` (ModelProto field 6, wire type 2) appended at the end. Protobuf parsers accept
/// fields in any order, so it is still a valid model, with a different digest. Written to
/// `<dir>/v2.onnx`.
pub fn second_model_version(dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(edgepool_harness::fixtures::model_path()).unwrap();
    let doc = b"edgepool hot-swap test: version 2";
    bytes.push(6 << 3 | 2);
    bytes.push(u8::try_from(doc.len()).unwrap());
    bytes.extend_from_slice(doc);
    let path = dir.join("v2.onnx");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The model, loaded once per test binary (loading and optimizing takes a while).
pub fn engine() -> Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let path = edgepool_harness::fixtures::model_path();
            edgepool_worker::load_engine(&path, &edgepool_detector::DetectorConfig::default()).unwrap()
        })
        .clone()
}

/// The photos as `(file name, content type, bytes)`.
pub fn photos() -> Vec<(String, ContentType, Bytes)> {
    edgepool::cmd::load_images(&[edgepool_harness::fixtures::photos_dir()])
        .unwrap()
        .into_iter()
        .map(|(p, ct, b)| (PathBuf::from(p).file_name().unwrap().to_string_lossy().into_owned(), ct, b))
        .collect()
}

/// Labels the model finds in each photo at the default threshold (docs/model.md).
pub fn expected_labels(photo: &str) -> Vec<&'static str> {
    let mut v = match photo {
        "grace_hopper.jpg" => vec!["person", "tie"],
        "astronaut.png" | "camera.png" => vec!["person"],
        "chelsea.png" => vec!["cat"],
        "coffee.png" => vec!["cup", "bowl", "dining table"],
        "rocket.jpg" => vec![],
        other => panic!("unknown photo {other}"),
    };
    v.sort_unstable();
    v
}

/// The distinct labels of a result, sorted (to compare with [`expected_labels`]).
pub fn labels(r: &ResultMessage) -> Vec<&str> {
    let mut labels: Vec<&str> = r.detections.iter().map(|d| d.label.as_str()).collect();
    labels.sort_unstable();
    labels.dedup();
    labels
}

/// A local cluster on its own nats-server (setup applied, sink running), no workers yet.
pub async fn cluster() -> LocalCluster {
    LocalCluster::start(&NatsConfig::default(), &prometheus::Registry::new()).await.unwrap()
}

/// Adds an in-process worker running `engine`.
pub async fn add_worker(c: &mut LocalCluster, id: &str, cfg: WorkerConfig, engine: Engine) {
    c.add_worker(id, cfg, engine, &prometheus::Registry::new()).await.unwrap();
}

/// Publishes `n` frames from `camera`, cycling through the photos, seqs from `first_seq`;
/// returns the acked `seq → photo` map.
pub async fn publish_photos(c: &LocalCluster, camera: &str, n: usize, first_seq: u64) -> BTreeMap<u64, String> {
    let photos = photos();
    let cycle = || photos.iter().cycle().take(n);
    let acked = c.publish(camera, first_seq, cycle().map(|(_, ct, b)| (*ct, b.clone()))).await.unwrap();
    (first_seq..)
        .zip(cycle())
        .filter(|(seq, _)| acked.contains(seq))
        .map(|(seq, (name, _, _))| (seq, name.clone()))
        .collect()
}

/// Waits until the sink has at least `n` results (or panics after `timeout`).
pub async fn wait_results(c: &LocalCluster, n: u64, timeout: Duration) {
    if let Err(got) = c.wait_results(n, timeout).await {
        panic!("only {got} of {n} results after {timeout:?}");
    }
}

/// Frames the workers answered (ok, error or stale), summed over their reports: each counts a
/// frame once, when its result is published and the frame acked or terminated.
pub fn answered(reports: &[WorkerReport]) -> u64 {
    reports.iter().map(|r| r.ok + r.errors + r.stale).sum()
}

/// Every message currently in `stream` (for checks): the reliability checker's reader.
pub async fn read_stream(js: &jetstream::Context, stream: &str) -> Vec<async_nats::Message> {
    edgepool_harness::read_stream(js, stream).await.unwrap()
}

/// Every result currently on DETECTIONS.
pub async fn results(js: &jetstream::Context) -> Vec<ResultMessage> {
    read_stream(js, edgepool_nats::DETECTIONS)
        .await
        .iter()
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect()
}
