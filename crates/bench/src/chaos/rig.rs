//! A running pipeline of real processes — broker, sink, workers, cameras — that scenarios
//! inject faults into, plus the bookkeeping the checker needs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use futures::StreamExt;

use edgepool_nats::{DETECTIONS, DETECTORS, FRAMES, NatsConfig, SetupOptions};

use super::checker::{Acked, Observed, Report};
use super::procs::Proc;
use edgepool_harness::{Broker, BrokerOptions, Conf};

/// Durable name of the sink the rig runs.
const SINK_DURABLE: &str = "chaos-sink";

/// How the rig is built.
#[derive(Debug, Clone)]
pub struct RigOptions {
    /// Broker nodes: 1, or 3 for a JetStream cluster (streams then get 3 replicas).
    pub nodes: usize,
    /// `sync_interval` of the servers (default: the project's `nats/nats-server.conf`).
    pub sync_interval: Option<String>,
    /// The `detectors` consumer's `ack_wait` for this run (shorter than production so that a
    /// crash's redelivery fits a CI run; the mechanism is the same).
    pub ack_wait: Duration,
    /// Folder of photos the cameras replay.
    pub photos: PathBuf,
}

/// The running pipeline.
#[derive(Debug)]
pub struct Rig {
    pub broker: Broker,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub opts: RigOptions,
    pub workers: Vec<Proc>,
    pub sink: Option<Proc>,
    pub cameras: Vec<(String, Proc)>,
    /// Frames the harness published itself (bad input) and saw acknowledged.
    pub acked: Acked,
    /// When each result arrived at the harness's own subscription to `detections.>`.
    pub arrivals: Arc<Mutex<Vec<Instant>>>,
    /// RSS samples (seconds since start, MiB) per process name.
    pub rss: BTreeMap<String, Vec<(f64, f64)>>,
    pub started: Instant,
    next_worker: usize,
    work: tempfile::TempDir,
}

impl Rig {
    /// Starts the broker, applies the stream definitions, shortens `ack_wait`, and subscribes
    /// to results. No components yet.
    pub async fn start(server: &Path, opts: RigOptions) -> anyhow::Result<Self> {
        let mut broker = Broker::start(BrokerOptions {
            nodes: opts.nodes,
            conf: Conf::Default { sync_interval: opts.sync_interval.clone() },
            binary: Some(server.to_owned()),
            ..BrokerOptions::default()
        })?;
        broker.wait_all_ready().await?;
        let nats = NatsConfig { url: Some(broker.urls()), ..NatsConfig::default() };
        let client = nats.connect("edgepool-chaos", true).await.context("connecting to the rig's broker")?;
        let js = jetstream::new(client.clone());
        let replicas = (opts.nodes > 1).then_some(opts.nodes.min(3));
        edgepool_nats::apply(&js, SetupOptions { replicas })
            .await
            .map_err(anyhow::Error::from_boxed)
            .context("setup")?;
        let stream = js.get_stream(FRAMES).await?;
        let mut config = stream
            .get_consumer::<jetstream::consumer::pull::Config>(DETECTORS)
            .await
            .map_err(anyhow::Error::from_boxed)
            .with_context(|| format!("reading consumer {DETECTORS}"))?
            .cached_info()
            .config
            .clone();
        config.ack_wait = opts.ack_wait;
        stream.create_consumer(config).await.context("shortening ack_wait")?;

        let arrivals: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let mut sub = client.subscribe("detections.>").await?;
        let seen = Arc::clone(&arrivals);
        tokio::spawn(async move {
            while sub.next().await.is_some() {
                seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Instant::now());
            }
        });
        let work = tempfile::Builder::new().prefix("edgepool-chaos-run-").tempdir()?;
        Ok(Self {
            broker,
            client,
            js,
            opts,
            workers: Vec::new(),
            sink: None,
            cameras: Vec::new(),
            acked: Acked::default(),
            arrivals,
            rss: BTreeMap::new(),
            started: Instant::now(),
            next_worker: 1,
            work,
        })
    }

    /// Where logs, ack logs and the sink's output go.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.work.path()
    }

    /// Keeps the work directory after the run; returns its path.
    #[must_use]
    pub fn keep(self) -> PathBuf {
        self.work.keep()
    }

    /// Starts a worker process (1 slot, 1 inference thread, plus `extra` flags) and waits until
    /// it pulls. Returns its index in `workers`.
    pub async fn add_worker(&mut self, extra: &[&str]) -> anyhow::Result<usize> {
        self.respawn_worker(extra)?;
        let i = self.workers.len() - 1;
        self.wait_log(i, "worker started", Duration::from_secs(120)).await?;
        Ok(i)
    }

    /// Starts a worker (1 slot, 1 thread, plus `extra` flags) without waiting for it: a
    /// replacement, as a restarted pod.
    pub fn respawn_worker(&mut self, extra: &[&str]) -> anyhow::Result<()> {
        let id = format!("w{}", self.next_worker);
        self.next_worker += 1;
        let mut args: Vec<String> = ["worker", "--id", &id, "--slots", "1", "--threads", "1"].map(String::from).into();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        self.workers.push(Proc::spawn(&id, &self.broker.urls(), &args, self.dir(), "warn,edgepool_worker=info")?);
        Ok(())
    }

    async fn wait_log(&mut self, worker: usize, text: &str, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let w = &mut self.workers[worker];
            if w.log().contains(text) {
                return Ok(());
            }
            anyhow::ensure!(!w.exited(), "{} exited during start-up:\n{}", w.name, w.log_tail());
            anyhow::ensure!(Instant::now() < deadline, "{} did not start within {limit:?}:\n{}", w.name, w.log_tail());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Path of the sink's JSONL output.
    #[must_use]
    pub fn sink_jsonl(&self) -> PathBuf {
        self.dir().join("sink.jsonl")
    }

    /// Starts the sink process (durable consumer, JSONL output) and waits for its consumer.
    pub async fn start_sink(&mut self) -> anyhow::Result<()> {
        let args: Vec<String> = vec![
            "sink".into(),
            "--durable".into(),
            SINK_DURABLE.into(),
            "--jsonl".into(),
            self.sink_jsonl().display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        let mut sink = Proc::spawn("sink", &self.broker.urls(), &args, self.dir(), "warn")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let stream = self.js.get_stream(DETECTIONS).await?;
        while stream.consumer_info(SINK_DURABLE).await.is_err() {
            anyhow::ensure!(!sink.exited(), "the sink exited during start-up:\n{}", sink.log_tail());
            anyhow::ensure!(Instant::now() < deadline, "the sink did not start:\n{}", sink.log_tail());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.sink = Some(sink);
        Ok(())
    }

    /// Ack log of camera `name`.
    #[must_use]
    pub fn ack_log(&self, camera: &str) -> PathBuf {
        self.dir().join(format!("{camera}.acks"))
    }

    /// Starts camera `name` publishing `count` photos at `fps` (a live camera: frames that find
    /// `max_in_flight` publishes awaiting their ack are dropped and counted).
    pub fn start_camera(&mut self, name: &str, count: u64, fps: f64, max_in_flight: usize) -> anyhow::Result<()> {
        let args: Vec<String> = vec![
            "camera".into(),
            "--camera".into(),
            name.into(),
            "--source".into(),
            self.opts.photos.display().to_string(),
            "--count".into(),
            count.to_string(),
            "--fps".into(),
            format!("{fps}"),
            "--start-seq".into(),
            "1".into(),
            "--max-in-flight".into(),
            max_in_flight.to_string(),
            "--ack-log".into(),
            self.ack_log(name).display().to_string(),
            "--json".into(),
        ];
        let p = Proc::spawn(&format!("camera-{name}"), &self.broker.urls(), &args, self.dir(), "warn")?;
        self.cameras.push((name.to_owned(), p));
        Ok(())
    }

    /// Records the RSS of every running component.
    pub fn sample_rss(&mut self) {
        let t = self.started.elapsed().as_secs_f64();
        let procs = self.workers.iter().chain(self.sink.iter()).chain(self.cameras.iter().map(|(_, p)| p));
        for p in procs {
            if let Some(mib) = p.rss_mib() {
                self.rss.entry(p.name.clone()).or_default().push((t, mib));
            }
        }
    }

    /// Sleeps `d`, sampling RSS every half second.
    pub async fn pause(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.sample_rss();
            tokio::time::sleep((end - Instant::now()).min(Duration::from_millis(500))).await;
        }
    }

    /// Results that arrived at the harness after `t`: the first one's delay from `t`.
    #[must_use]
    pub fn first_result_after(&self, t: Instant) -> Option<Duration> {
        let seen = self.arrivals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.iter().find(|a| **a > t).map(|a| *a - t)
    }

    /// Waits up to `limit` for a result after `t`, sampling RSS meanwhile; returns its delay.
    pub async fn wait_results_after(&mut self, t: Instant, limit: Duration) -> Option<Duration> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(d) = self.first_result_after(t) {
                return Some(d);
            }
            self.pause(Duration::from_millis(100)).await;
        }
        None
    }

    /// Waits until every camera has exited, the work queue is empty with nothing awaiting an
    /// ack, and the sink has caught up.
    pub async fn settle(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            self.sample_rss();
            let cameras_done = self.cameras.iter_mut().all(|(_, p)| p.exited());
            if cameras_done && self.drained().await.unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let state = self.queue_state().await.unwrap_or_default();
                anyhow::bail!("the pipeline did not settle within {limit:?} ({state})");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn drained(&self) -> anyhow::Result<bool> {
        let frames = self.js.get_stream(FRAMES).await?;
        let i = frames.consumer_info(DETECTORS).await?;
        if i.num_pending > 0 || i.num_ack_pending > 0 {
            return Ok(false);
        }
        if self.sink.is_some() {
            let s = self.js.get_stream(DETECTIONS).await?.consumer_info(SINK_DURABLE).await?;
            return Ok(s.num_pending == 0 && s.num_ack_pending == 0);
        }
        Ok(true)
    }

    async fn queue_state(&self) -> anyhow::Result<String> {
        let frames = self.js.get_stream(FRAMES).await?;
        let i = frames.consumer_info(DETECTORS).await?;
        Ok(format!("frames pending {}, awaiting ack {}", i.num_pending, i.num_ack_pending))
    }

    /// Stops the components (SIGTERM, drain), reads the ack logs and the streams, and checks.
    pub async fn finish(&mut self) -> anyhow::Result<Report> {
        for w in &mut self.workers {
            w.terminate(Duration::from_secs(30)).await;
        }
        if let Some(s) = &mut self.sink {
            s.terminate(Duration::from_secs(15)).await;
        }
        let names: Vec<String> = self.cameras.iter().map(|(n, _)| n.clone()).collect();
        for name in names {
            let log = self.ack_log(&name);
            self.acked.read_ack_log(&name, &log)?;
        }
        let sink = self.sink.as_ref().map(|_| self.sink_jsonl());
        let observed = Observed::read(&self.js, sink.as_deref()).await?;
        Ok(Report::check(&self.acked, &observed, sink.is_some()))
    }

    /// The JSON summary line a camera printed at exit, if it did.
    #[must_use]
    pub fn camera_summary(&self, name: &str) -> Option<serde_json::Value> {
        let (_, p) = self.cameras.iter().find(|(n, _)| n == name)?;
        p.log().lines().rev().find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    }
}
