//! A local pipeline in one process, for the demo, the tests and the benchmarks: a broker (a
//! [`Broker`] of one node unless a URL is given), setup, a sink, and any number of workers, all
//! sharing one tokio runtime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use edgepool_nats::NatsConfig;
use edgepool_sink::{Sink, SinkConfig, SinkStats};
use edgepool_worker::{ARCH, Engine, Worker, WorkerConfig, WorkerMetrics, WorkerReport};

use crate::server::{Broker, BrokerOptions, find_server};

/// A running local cluster.
#[derive(Debug)]
pub struct LocalCluster {
    /// The broker this cluster started, when no URL was given.
    pub server: Option<Broker>,
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub sink: Sink,
    pub stats: Arc<SinkStats>,
    /// Cancels the sink (workers have their own tokens, so they can stop first).
    pub stop: CancellationToken,
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
        let client = nats.connect("edgepool-local", false).await?;
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
        Ok(Self { server, client, js, sink, stats, stop, sink_task, workers: Vec::new() })
    }

    /// Starts a worker with id `id` (metrics registered in `registry`).
    pub async fn add_worker(
        &mut self,
        id: &str,
        cfg: WorkerConfig,
        engine: Engine,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<()> {
        let metrics = WorkerMetrics::register(registry, id, ARCH)?;
        let cfg = WorkerConfig { id: Some(id.to_owned()), ..cfg };
        let worker =
            Worker::new(self.js.clone(), engine, cfg, metrics).await.with_context(|| format!("worker {id}"))?;
        let token = CancellationToken::new();
        let handle = tokio::spawn(worker.run(token.clone()));
        self.workers.push((id.to_owned(), token, handle));
        Ok(())
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

    /// Stops every worker (drain) and returns their reports.
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
