//! `edgepool bench pipeline`: what the pipeline costs on top of JetStream, and how close the
//! cluster gets to the bare detector — measured side by side in one run.
//!
//! 1. Overhead: frames/s through camera → FRAMES → worker → DETECTIONS → sink with the model
//!    replaced by a pass-through (allowed only here), against a raw async-nats publish + consume
//!    of the same payloads on a plain work-queue stream. 50 KB and 500 KB frames.
//! 2. With the real model: cluster results/s with one 1-thread worker per core, against the
//!    detector alone with one 1-thread session per core on the same photos.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Serialize;

use edgepool_camera::{Frame, Publisher, PublisherConfig};
use edgepool_detector::{DetectError, StageTimings};
use edgepool_wire::{CameraId, ContentType};
use edgepool_worker::{Engine, Infer, Inferred, Slot, WorkerConfig};

use edgepool::config::Overrides;
use edgepool::{Global, load_config};
use edgepool_harness::LocalCluster;
use edgepool_runtime::{runtime, telemetry};

#[derive(Debug, clap::Args)]
pub struct PipelineArgs {
    /// Frame sizes in bytes for the overhead measurement.
    #[arg(long, value_delimiter = ',', default_value = "50000,500000")]
    pub sizes: Vec<usize>,
    /// Frames per overhead measurement at 50 KB (scaled down for larger frames).
    #[arg(long, default_value_t = 3000)]
    pub frames: u64,
    /// Inference slots of the pass-through worker.
    #[arg(long, default_value_t = 8)]
    pub slots: usize,
    /// Seconds of real-model measurement per setup.
    #[arg(long, default_value_t = 10.0)]
    pub model_seconds: f64,
    /// Skip the real-model comparison.
    #[arg(long)]
    pub no_model: bool,
    /// Print the results as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Overhead {
    size_bytes: usize,
    frames: u64,
    raw_fps: f64,
    pipeline_fps: f64,
    ratio: f64,
    /// Messages into and out of the broker per frame (`/varz` in_msgs + out_msgs over the
    /// phase): the broker's per-message work, which bounds both on this machine.
    raw_msgs_per_frame: Option<f64>,
    pipeline_msgs_per_frame: Option<f64>,
}

/// What one overhead measurement gave.
struct Phases {
    raw_fps: f64,
    pipeline_fps: f64,
    raw_msgs: Option<u64>,
    pipeline_msgs: Option<u64>,
}

#[derive(Debug, Serialize)]
struct ModelRow {
    cores: usize,
    detector_fps: f64,
    cluster_fps: f64,
    ratio: f64,
}

/// Cameras publishing at once in the overhead measurement.
const BENCH_CAMERAS: usize = 8;

/// A payload that passes the frame checks (JPEG magic) without being decoded.
fn payload(size: usize) -> Bytes {
    let mut v = vec![0u8; size.max(4)];
    v[..3].copy_from_slice(&[0xFF, 0xD8, 0xFF]);
    let mut x: u32 = 0x9E37_79B9;
    for b in &mut v[3..] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    Bytes::from(v)
}

/// Raw JetStream: publish `n` messages (acked, 64 in flight) while one pull consumer takes and
/// acks them. Frames/s from the first publish to the last consume.
async fn raw_baseline(js: &jetstream::Context, n: u64, data: Bytes) -> anyhow::Result<f64> {
    let _ = js.delete_stream("RAWBENCH").await;
    let s = js
        .create_stream(stream::Config {
            name: "RAWBENCH".into(),
            subjects: vec!["rawbench.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            max_message_size: 8 << 20,
            ..Default::default()
        })
        .await
        .context("creating stream RAWBENCH")?;
    let c: consumer::PullConsumer = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some("raw".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .context("creating consumer raw")?;
    let got = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let reader = {
        let got = Arc::clone(&got);
        tokio::spawn(async move {
            let mut msgs = c.stream().max_messages_per_batch(64).max_bytes_per_batch(4 << 20).messages().await?;
            while got.load(Ordering::Relaxed) < n {
                match msgs.next().await {
                    Some(Ok(m)) => {
                        m.ack().await.map_err(anyhow::Error::from_boxed).context("acking")?;
                        got.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Err(e)) => tracing::debug!(error = %e, "raw consumer hiccup"),
                    None => break,
                }
            }
            anyhow::Ok(())
        })
    };
    let mut inflight = FuturesUnordered::new();
    for _ in 0..n {
        if inflight.len() >= 64
            && let Some(r) = inflight.next().await
        {
            let _: jetstream::publish::PublishAck = r?;
        }
        let ack = js.publish("rawbench.x", data.clone()).await.context("publishing")?;
        inflight.push(async move { ack.await.context("waiting for a publish ack") });
    }
    while let Some(r) = inflight.next().await {
        r?;
    }
    tokio::time::timeout(Duration::from_secs(300), reader).await.context("raw consumer stalled")???;
    let secs = start.elapsed().as_secs_f64();
    let _ = js.delete_stream("RAWBENCH").await;
    Ok(n as f64 / secs)
}

/// The pipeline with a pass-through engine: frames/s from the first publish to the last result
/// at the sink.
async fn pipeline_pass_through(
    global_nats: &edgepool_nats::NatsConfig,
    n: u64,
    data: Bytes,
    slots: usize,
) -> anyhow::Result<Phases> {
    let registry = prometheus::Registry::new();
    let mut cluster = LocalCluster::start(global_nats, &registry).await?;
    let monitor = cluster.server.as_ref().map(edgepool_harness::Broker::monitor_url);
    let before_raw = broker_msgs(monitor.as_deref()).await;
    let raw = raw_baseline(&cluster.js, n, data.clone()).await?;
    let after_raw = broker_msgs(monitor.as_deref()).await;
    let cfg = WorkerConfig { slots, ..WorkerConfig::default() };
    cluster.add_worker("passthrough", cfg, Arc::new(PassThrough::default()) as Arc<dyn Infer>, &registry).await?;
    // Several cameras, as in real life: FRAMES caps each camera's backlog (max_msgs_per_subject),
    // and one camera bursting thousands of frames would hit that safety net.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..BENCH_CAMERAS {
        let mut p = Publisher::new(
            cluster.js.clone(),
            CameraId::new(format!("bench-{c}"))?,
            1,
            PublisherConfig { max_in_flight: 64 / BENCH_CAMERAS, ..Default::default() },
        );
        let data = data.clone();
        let count = n / BENCH_CAMERAS as u64 + u64::from((c as u64) < n % BENCH_CAMERAS as u64);
        tasks.push(tokio::spawn(async move {
            for _ in 0..count {
                p.publish(Frame::now(data.clone(), ContentType::Jpeg)).await?;
            }
            anyhow::Ok(p.flush().await)
        }));
    }
    for t in tasks {
        let stats = t.await??;
        anyhow::ensure!(stats.failed == 0, "{} publishes failed", stats.failed);
    }
    let done = cluster
        .wait_results(n, Duration::from_secs(300))
        .await
        .map_err(|got| anyhow::anyhow!("only {got} of {n} results"))?;
    let fps = n as f64 / (done - start).as_secs_f64();
    let after_pipeline = broker_msgs(monitor.as_deref()).await;
    cluster.shutdown().await;
    let delta = |a: Option<u64>, b: Option<u64>| Some(b?.saturating_sub(a?));
    Ok(Phases {
        raw_fps: raw,
        pipeline_fps: fps,
        raw_msgs: delta(before_raw, after_raw),
        pipeline_msgs: delta(after_raw, after_pipeline),
    })
}

/// Messages the broker has received and sent so far (`/varz` `in_msgs + out_msgs`), when this
/// bench started the broker (not with `--nats-url`).
async fn broker_msgs(monitor: Option<&str>) -> Option<u64> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = monitor?.strip_prefix("http://")?.to_owned();
    let read = async {
        let mut conn = tokio::net::TcpStream::connect(&addr).await?;
        conn.write_all(format!("GET /varz HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
        let mut reply = Vec::new();
        conn.read_to_end(&mut reply).await?;
        std::io::Result::Ok(reply)
    };
    let reply = tokio::time::timeout(Duration::from_secs(5), read).await.ok()?.ok()?;
    let at = reply.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let varz: serde_json::Value = serde_json::from_slice(&reply[at..]).ok()?;
    Some(varz["in_msgs"].as_u64()? + varz["out_msgs"].as_u64()?)
}

/// The engine of the overhead benchmark: decodes nothing, detects nothing. It lives here, not
/// in the worker crate, so no production build can select it.
#[derive(Debug)]
struct PassThrough {
    version: Arc<str>,
}

impl Default for PassThrough {
    fn default() -> Self {
        Self { version: Arc::from("pass-through (benchmark only, no inference)") }
    }
}

impl Infer for PassThrough {
    fn version(&self) -> String {
        self.version.to_string()
    }

    fn slot(&self, previous: Option<Box<dyn Slot>>) -> Box<dyn Slot> {
        previous.unwrap_or_else(|| Box::new(PassThroughSlot { version: Arc::clone(&self.version) }))
    }
}

#[derive(Debug)]
struct PassThroughSlot {
    version: Arc<str>,
}

impl Slot for PassThroughSlot {
    fn version(&self) -> &Arc<str> {
        &self.version
    }

    fn run(&mut self, payload: &[u8], _raw: Option<(u32, u32)>) -> Result<Inferred, DetectError> {
        let start = Instant::now();
        // Touch the bytes so the benchmark pays for reading the payload once.
        let sum = payload.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        std::hint::black_box(sum);
        Ok(Inferred {
            width: 0,
            height: 0,
            detections: Vec::new(),
            timings: StageTimings {
                decode: start.elapsed(),
                preprocess: Duration::ZERO,
                inference: Duration::ZERO,
                postprocess: Duration::ZERO,
            },
        })
    }
}

/// The detector alone: `cores` threads, one 1-thread session each, over the photos for `secs`.
fn detector_only(engine: &Engine, photos: &[(String, ContentType, Bytes)], cores: usize, secs: f64) -> f64 {
    let stop = Instant::now() + Duration::from_secs_f64(secs);
    let count = Arc::new(AtomicU64::new(0));
    std::thread::scope(|s| {
        for t in 0..cores {
            let mut runner = engine.runner();
            let count = Arc::clone(&count);
            s.spawn(move || {
                let mut i = t;
                while Instant::now() < stop {
                    let _ = runner.run(&photos[i % photos.len()].2, None);
                    count.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
    });
    count.load(Ordering::Relaxed) as f64 / secs
}

/// The cluster with one 1-thread worker per core: results/s over a steady window.
async fn cluster_real(
    nats: &edgepool_nats::NatsConfig,
    engine: &Engine,
    photos: &[(String, ContentType, Bytes)],
    cores: usize,
    secs: f64,
) -> anyhow::Result<f64> {
    let registry = prometheus::Registry::new();
    let mut cluster = LocalCluster::start(nats, &registry).await?;
    // A backlog deep enough to keep every worker busy for the whole window.
    let n = (secs * 40.0 * cores as f64) as u64 + 20;
    for c in 0..BENCH_CAMERAS {
        let mut p =
            Publisher::new(cluster.js.clone(), CameraId::new(format!("bench-{c}"))?, 1, PublisherConfig::default());
        for i in 0..n / BENCH_CAMERAS as u64 {
            let (_, ct, b) = &photos[usize::try_from(i).unwrap_or(0) % photos.len()];
            p.publish(Frame::now(b.clone(), *ct)).await?;
        }
        p.flush().await;
    }
    let stale_ok = WorkerConfig { stale_after: Duration::from_secs(3600), ..WorkerConfig::default() };
    for w in 0..cores {
        cluster.add_worker(&format!("w{w}"), stale_ok.clone(), engine.clone(), &prometheus::Registry::new()).await?;
    }
    // Skip warm-up, then count results over the window.
    let _ = cluster.wait_results(cores as u64, Duration::from_secs(60)).await;
    let before = cluster.stats.summary().results;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let after = cluster.stats.summary().results;
    let fps = (after - before) as f64 / t0.elapsed().as_secs_f64();
    cluster.shutdown().await;
    Ok(fps)
}

pub fn run(global: &Global, args: PipelineArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(global, &Overrides::default())?;
    telemetry::init(&cfg.log, "warn");
    let say = |s: String| {
        if !args.json {
            eprintln!("{s}");
        }
    };
    let engine_and_photos = if args.no_model {
        None
    } else {
        let mut det = cfg.detector.clone();
        det.threads = 1;
        let engine = edgepool_worker::load_engine(&cfg.model.resolved_path(), &det)?;
        Some((engine, edgepool::cmd::load_images(&[std::path::PathBuf::from("testdata/photos")])?))
    };
    runtime()?.block_on(async {
        let mut overhead = Vec::new();
        for &size in &args.sizes {
            let n = (args.frames * 50_000 / size.max(1) as u64).clamp(200, args.frames);
            say(format!("overhead: {n} frames of {size} bytes ..."));
            let p = pipeline_pass_through(&cfg.nats, n, payload(size), args.slots).await?;
            let per_frame = |m: Option<u64>| m.map(|m| m as f64 / n as f64);
            overhead.push(Overhead {
                size_bytes: size,
                frames: n,
                raw_fps: p.raw_fps,
                pipeline_fps: p.pipeline_fps,
                ratio: p.pipeline_fps / p.raw_fps,
                raw_msgs_per_frame: per_frame(p.raw_msgs),
                pipeline_msgs_per_frame: per_frame(p.pipeline_msgs),
            });
        }
        let mut model = None;
        if let Some((engine, photos)) = &engine_and_photos {
            let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            say(format!("real model: detector alone, {cores} x 1-thread sessions, {:.0} s ...", args.model_seconds));
            let det = detector_only(engine, photos, cores, args.model_seconds);
            say(format!("real model: cluster of {cores} x 1-thread workers, {:.0} s ...", args.model_seconds));
            let cl = cluster_real(&cfg.nats, engine, photos, cores, args.model_seconds).await?;
            model = Some(ModelRow { cores, detector_fps: det, cluster_fps: cl, ratio: cl / det });
        }
        if args.json {
            println!("{}", serde_json::json!({"overhead": overhead, "model": model}));
        } else {
            println!("pipeline overhead (pass-through model; target: pipeline >= 80% of raw JetStream)");
            println!(
                "  {:>10} {:>7} {:>12} {:>14} {:>7} {:>22}",
                "frame", "frames", "raw fps", "pipeline fps", "ratio", "broker msgs/frame"
            );
            let msgs = |m: Option<f64>| m.map_or_else(|| "-".to_owned(), |m| format!("{m:.1}"));
            for o in &overhead {
                println!(
                    "  {:>8} B {:>7} {:>12.0} {:>14.0} {:>6.0}% {:>10} raw {:>6} pipe",
                    o.size_bytes,
                    o.frames,
                    o.raw_fps,
                    o.pipeline_fps,
                    o.ratio * 100.0,
                    msgs(o.raw_msgs_per_frame),
                    msgs(o.pipeline_msgs_per_frame)
                );
            }
            if let Some(m) = &model {
                println!("real model (target: cluster >= 90% of the detector alone on the same cores)");
                println!(
                    "  {} cores: detector alone {:.2} fps, cluster {:.2} fps, ratio {:.0}%",
                    m.cores,
                    m.detector_fps,
                    m.cluster_fps,
                    m.ratio * 100.0
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
