//! A local pipeline in one process, for the demo, the tests and the benchmarks: a broker (a
//! [`Broker`] of one node unless a URL is given), setup, a sink, and any number of workers, all
//! sharing one tokio runtime. Frames go in through [`LocalCluster::publish`] (the camera's own
//! publisher); what came out is in the sink's [`SinkStats`] and, per worker, in the
//! [`WorkerReport`]s that [`LocalCluster::stop_worker`] and [`LocalCluster::shutdown`] return.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use edgepool_camera::{AckResult, Frame, Publisher, PublisherConfig};
use edgepool_nats::NatsConfig;
use edgepool_sink::{Sink, SinkConfig, SinkStats};
use edgepool_wire::{CameraId, ContentType};
use edgepool_worker::{ARCH, Infer, Worker, WorkerConfig, WorkerMetrics, WorkerReport};

use crate::server::{Broker, BrokerOptions, find_server};

/// A running local cluster.
#[derive(Debug)]
pub struct LocalCluster {
    /// The broker this cluster started, when no URL was given: kill, stop, restart or freeze it
    /// to inject a fault (clients reconnect to the same port).
    pub server: Option<Broker>,
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub sink: Sink,
    pub stats: Arc<SinkStats>,
    /// Cancels the sink (workers have their own tokens, so they can stop first).
    pub stop: CancellationToken,
    url: String,
    sink_task: JoinHandle<anyhow::Result<()>>,
    workers: Vec<(String, CancellationToken, JoinHandle<WorkerReport>)>,
}

impl LocalCluster {
    /// Connects to `nats.url`, or starts an embedded nats-server when it is unset; applies the
    /// stream definitions; starts a sink (registering its metrics in `registry`).
    pub async fn start(nats: &NatsConfig, registry: &prometheus::Registry) -> anyhow::Result<Self> {
        let mut nats = nats.clone();
        let server = if nats.url.as_deref().is_none_or(|u| u.trim().is_empty()) {
            let binary = find_server(nats.server.as_deref())?;
            let server = Broker::start(BrokerOptions { binary: Some(binary), ..BrokerOptions::single() })?;
            nats.url = Some(server.url());
            Some(server)
        } else {
            None
        };
        let url = nats.url.clone().unwrap_or_default();
        let client = nats.connect("edgepool-local", false).await.context("connecting to NATS")?;
        let js = async_nats::jetstream::new(client.clone());
        edgepool_nats::apply(&js, edgepool_nats::SetupOptions::default())
            .await
            .map_err(anyhow::Error::from_boxed)
            .context("applying nats/ (setup)")?;
        let stats = Arc::new(SinkStats::keeping_ids());
        let sink = Sink::new(registry, Arc::clone(&stats))?;
        let stop = CancellationToken::new();
        let sink_task = {
            let (sink, js, stop) = (sink.clone(), js.clone(), stop.clone());
            let cfg = SinkConfig { durable: "local-sink".into(), replay: true, ..SinkConfig::default() };
            tokio::spawn(async move { sink.run(js, cfg, stop).await })
        };
        while !sink.readiness().get() {
            if sink_task.is_finished() {
                return Err(sink_task
                    .await?
                    .err()
                    .unwrap_or_else(|| anyhow::anyhow!("the sink stopped during start-up")));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(Self { server, client, js, sink, stats, stop, url, sink_task, workers: Vec::new() })
    }

    /// The URL the cluster's clients connect to (the embedded broker's, or the one given), for
    /// processes that should join it (`edgepool worker --nats-url ...`).
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Starts a worker with id `id` (metrics registered in `registry`).
    pub async fn add_worker(
        &mut self,
        id: &str,
        cfg: WorkerConfig,
        engine: impl Into<Arc<dyn Infer>>,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<()> {
        let metrics = WorkerMetrics::register(registry, id, ARCH)?;
        let cfg = WorkerConfig { id: Some(id.to_owned()), ..cfg };
        edgepool_worker::device::register(registry, id, ARCH, &cfg)?;
        let worker =
            Worker::new(self.js.clone(), engine, cfg, metrics).await.with_context(|| format!("worker {id}"))?;
        let token = CancellationToken::new();
        let handle = tokio::spawn(worker.run(token.clone()));
        self.workers.push((id.to_owned(), token, handle));
        Ok(())
    }

    /// Publishes `frames` as camera `camera`, numbered from `first_seq`, through the camera's
    /// [`Publisher`] (its default retries and in-flight bound), and waits for the last ack.
    /// Returns the sequence numbers the broker acknowledged; a frame missing there failed after
    /// the publisher's retries.
    pub async fn publish(
        &self,
        camera: &str,
        first_seq: u64,
        frames: impl IntoIterator<Item = (ContentType, Bytes)>,
    ) -> anyhow::Result<BTreeSet<u64>> {
        let camera = CameraId::new(camera).with_context(|| format!("camera id {camera:?}"))?;
        let acked: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
        let record = Arc::clone(&acked);
        let mut publisher =
            Publisher::new(self.js.clone(), camera, first_seq, PublisherConfig::default()).on_outcome(move |o| {
                if o.result != AckResult::Failed {
                    record.lock().unwrap_or_else(PoisonError::into_inner).insert(o.seq.0);
                }
            });
        for (content_type, payload) in frames {
            publisher.publish(Frame::now(payload, content_type)).await?;
        }
        let _stats = publisher.flush().await;
        drop(publisher);
        let acked = std::mem::take(&mut *acked.lock().unwrap_or_else(PoisonError::into_inner));
        Ok(acked)
    }

    /// Ids of the workers started and not stopped yet, and whether each is still running (a
    /// worker task that ended on its own, e.g. after a panic, is `false`).
    #[must_use]
    pub fn workers(&self) -> Vec<(&str, bool)> {
        self.workers.iter().map(|(id, _, handle)| (id.as_str(), !handle.is_finished())).collect()
    }

    /// Stops worker `id` (drain: in-flight frames are finished and acked) and returns its
    /// report; `None` when there is no such worker or its task panicked.
    pub async fn stop_worker(&mut self, id: &str) -> Option<WorkerReport> {
        let i = self.workers.iter().position(|(w, _, _)| w == id)?;
        let (_, token, handle) = self.workers.remove(i);
        token.cancel();
        handle.await.ok()
    }

    /// Waits until the sink has `n` results; returns when it got there, or the count at timeout.
    pub async fn wait_results(&self, n: u64, timeout: Duration) -> Result<Instant, u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.stats.summary().results;
            if got >= n {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                return Err(got);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops every worker (drain) and returns their reports (each names its worker in `id`).
    pub async fn stop_workers(&mut self) -> Vec<WorkerReport> {
        for (_, token, _) in &self.workers {
            token.cancel();
        }
        let mut out = Vec::new();
        for (_, _, handle) in self.workers.drain(..) {
            if let Ok(r) = handle.await {
                out.push(r);
            }
        }
        out
    }

    /// Stops workers, then the sink, then the embedded server.
    pub async fn shutdown(mut self) -> Vec<WorkerReport> {
        let reports = self.stop_workers().await;
        self.stop.cancel();
        match tokio::time::timeout(Duration::from_secs(10), self.sink_task).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "sink stopped with an error"),
            Err(_) => tracing::warn!("the sink did not stop within 10 s"),
            _ => {}
        }
        // Bounded: with the broker gone a flush would wait for the reconnect forever.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await;
        drop(self.client);
        drop(self.js);
        if let Some(mut s) = self.server {
            s.stop_all();
        }
        reports
    }
}
