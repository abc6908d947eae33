//! A whole pipeline in one test process: a real nats-server (per test), setup, a sink, workers
//! running the real model, and publishers. Shared by the integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::missing_panics_doc)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use edgepool_camera::{AckResult, Frame, Publisher, PublisherConfig};
use edgepool_harness::Broker;
use edgepool_sink::{Sink, SinkConfig, SinkStats};
use edgepool_wire::{CameraId, ContentType};
use edgepool_worker::{ARCH, Engine, Worker, WorkerConfig, WorkerMetrics, WorkerReport};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

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
            edgepool::cmd::worker::load_engine(&path, &edgepool_detector::DetectorConfig::default()).unwrap()
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

pub struct Pipeline {
    pub server: Broker,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub stop: CancellationToken,
    pub stats: Arc<SinkStats>,
    pub sink_task: JoinHandle<anyhow::Result<()>>,
    pub workers: Vec<(String, CancellationToken, JoinHandle<WorkerReport>)>,
}

impl Pipeline {
    /// Server + setup + sink, no workers yet.
    pub async fn start() -> Self {
        let server = Broker::single().unwrap();
        let client = async_nats::connect(server.url().as_str()).await.unwrap();
        let js = jetstream::new(client.clone());
        edgepool_nats::apply(&js, Default::default()).await.unwrap();
        let stop = CancellationToken::new();
        let stats = Arc::new(SinkStats::keeping_ids());
        let sink = Sink::new(&prometheus::Registry::new(), Arc::clone(&stats)).unwrap();
        let sink_task = {
            let (sink, js, stop) = (sink.clone(), js.clone(), stop.clone());
            tokio::spawn(async move {
                sink.run(js, SinkConfig { durable: "test-sink".into(), replay: true, ..Default::default() }, stop).await
            })
        };
        while !sink.readiness().get() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Self { server, client, js, stop, stats, sink_task, workers: Vec::new() }
    }

    /// Adds an in-process worker.
    pub async fn add_worker(&mut self, id: &str, cfg: WorkerConfig, engine: Engine) {
        let metrics = WorkerMetrics::register(&prometheus::Registry::new(), id, ARCH).unwrap();
        let cfg = WorkerConfig { id: Some(id.to_owned()), ..cfg };
        let worker = Worker::new(self.js.clone(), engine, cfg, metrics).await.unwrap();
        let token = CancellationToken::new();
        let handle = tokio::spawn(worker.run(token.clone()));
        self.workers.push((id.to_owned(), token, handle));
    }

    /// Publishes `n` frames from `camera`, cycling through the photos; returns the acked
    /// `seq → photo` map.
    pub async fn publish(&self, camera: &str, n: usize, first_seq: u64) -> BTreeMap<u64, String> {
        let photos = photos();
        let acked: Arc<Mutex<HashSet<u64>>> = Arc::default();
        let set = Arc::clone(&acked);
        let mut p =
            Publisher::new(self.js.clone(), CameraId::new(camera).unwrap(), first_seq, PublisherConfig::default())
                .on_outcome(move |o| {
                    if o.result != AckResult::Failed {
                        set.lock().unwrap().insert(o.seq.0);
                    }
                });
        let mut sent = BTreeMap::new();
        for i in 0..n {
            let (name, ct, bytes) = &photos[i % photos.len()];
            p.publish(Frame::now(bytes.clone(), *ct)).await.unwrap();
            sent.insert(first_seq + i as u64, name.clone());
        }
        let stats = p.flush().await;
        assert_eq!(stats.failed, 0);
        let acked = acked.lock().unwrap().clone();
        sent.retain(|seq, _| acked.contains(seq));
        sent
    }

    /// Waits until the sink has at least `n` results (or panics after `timeout`).
    pub async fn wait_results(&self, n: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.stats.summary().results;
            if got >= n {
                return;
            }
            assert!(Instant::now() < deadline, "only {got} of {n} results after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops workers and sink.
    pub async fn shutdown(self) -> Vec<WorkerReport> {
        let mut reports = Vec::new();
        for (_, token, handle) in self.workers {
            token.cancel();
            reports.push(handle.await.unwrap());
        }
        self.stop.cancel();
        self.sink_task.await.unwrap().unwrap();
        reports
    }
}

/// Every message currently in `stream` (for checks): the reliability checker's reader.
pub async fn read_stream(js: &jetstream::Context, stream: &str) -> Vec<async_nats::Message> {
    edgepool_harness::read_stream(js, stream).await.unwrap()
}
