//! Emulated fleets for the benchmarks: worker ids, bench workers that never stale-drop, a
//! pre-filled queue, a worker's standalone capacity, and the overflow priority group.

use std::time::Duration;

use anyhow::Context as _;

use async_nats::jetstream::consumer;
use bytes::Bytes;

use edgepool_camera::{Frame, Publisher, PublisherConfig};
use edgepool_harness::LocalCluster;
use edgepool_nats::{DETECTORS, FRAMES};
use edgepool_wire::{CameraId, ContentType};
use edgepool_worker::{Engine, WorkerConfig};

use crate::report::Run;

/// The priority group of the overflow experiments.
pub(crate) const GROUP: &str = "edgepool";

/// Recreates the `detectors` consumer with the priority group [`GROUP`] under the `overflow`
/// policy (same definition otherwise); every worker must then pull in that group.
pub(crate) async fn use_overflow_group(js: &async_nats::jetstream::Context) -> anyhow::Result<()> {
    let frames = js.get_stream(FRAMES).await.context("getting stream FRAMES")?;
    let mut cfg: consumer::pull::Config = serde_json::from_str(edgepool_nats::DETECTORS_FILE)?;
    frames.delete_consumer(DETECTORS).await.context("deleting the shared consumer")?;
    cfg.priority_groups = vec![GROUP.into()];
    cfg.priority_policy = consumer::PriorityPolicy::Overflow;
    frames.create_consumer(cfg).await.context("creating the overflow consumer")?;
    Ok(())
}

pub(crate) fn worker_id(i: usize, slowdown: f64) -> String {
    format!("w{}-x{slowdown}", i + 1).replace('.', "_")
}

/// The bench's workers never drop frames as stale: a pre-filled batch waits by design.
pub(crate) fn bench_worker(slowdown: f64, consumer: &str) -> WorkerConfig {
    WorkerConfig {
        slowdown,
        stale_after: Duration::from_secs(3600),
        consumer: consumer.to_owned(),
        ..WorkerConfig::default()
    }
}

/// Publishes `n` frames, frame `i` on camera `cameras[i % len]`, cycling through the photos.
pub(crate) async fn prefill(
    js: &async_nats::jetstream::Context,
    cameras: &[String],
    n: u64,
    photos: &[(String, ContentType, Bytes)],
) -> anyhow::Result<()> {
    let mut pubs = cameras
        .iter()
        .map(|c| Ok(Publisher::new(js.clone(), CameraId::new(c.clone())?, 1, PublisherConfig::default())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for i in 0..n {
        let k = usize::try_from(i).unwrap_or(0);
        let (_, ct, b) = &photos[k % photos.len()];
        let p = &mut pubs[k % cameras.len()];
        p.publish(Frame::now(b.clone(), *ct)).await?;
    }
    for p in &mut pubs {
        let s = p.flush().await;
        anyhow::ensure!(s.failed == 0, "{} frames were not stored", s.failed);
    }
    Ok(())
}

/// Throughput is counted the same way for every setup, standalone capacity included: frames
/// completed after the first result, over the time from the first result to the last. That
/// leaves out start-up (connecting, the first inference's warm-up) and keeps everything else,
/// including the tail where faster workers run out of frames.
pub(crate) fn run_of(cluster: &LocalCluster, n: u64, seconds: f64) -> Run {
    let s = cluster.stats.summary();
    Run {
        fps: (n - 1) as f64 / seconds,
        seconds,
        frames: n,
        latency_p50_ms: s.latency_p50_s.unwrap_or(0.0) * 1e3,
        latency_p99_ms: s.latency_p99_s.unwrap_or(0.0) * 1e3,
        per_worker: s.per_worker.iter().map(|(k, v)| (k.clone(), v.results)).collect(),
        tail_seconds: 0.0,
    }
}

/// A worker alone on a deep queue: completions per second between its first and last result.
pub(crate) async fn capacity(
    nats: &edgepool_nats::NatsConfig,
    engine: &Engine,
    photos: &[(String, ContentType, Bytes)],
    slowdown: f64,
) -> anyhow::Result<f64> {
    let mut cluster = LocalCluster::start(nats, &prometheus::Registry::new()).await?;
    // About 8 s of work at an assumed ~10 fps base rate, and never fewer than 6 intervals: with
    // 4 s a capacity was off by up to 10 % between runs, which is the whole efficiency margin.
    let m = ((80.0 / slowdown).ceil() as u64).max(6) + 1;
    prefill(&cluster.js, &["cap".into()], m, photos).await?;
    cluster.add_worker("cap", bench_worker(slowdown, DETECTORS), engine.clone(), &prometheus::Registry::new()).await?;
    let first = cluster.wait_results(1, Duration::from_secs(120)).await.map_err(|_| anyhow::anyhow!("no result"))?;
    let last = cluster
        .wait_results(m, Duration::from_secs(600))
        .await
        .map_err(|got| anyhow::anyhow!("capacity run stalled at {got} of {m}"))?;
    cluster.shutdown().await;
    Ok((m - 1) as f64 / (last - first).as_secs_f64())
}

/// A photo as `edgepool::cmd::load_images` returns it: name, content type, bytes.
pub(crate) type Photo = (String, ContentType, Bytes);

/// The model with one thread per inference (each emulated device is one slot on one core) and
/// the test photos, as every fleet benchmark runs them.
pub(crate) fn engine_and_photos(cfg: &edgepool::config::Config) -> anyhow::Result<(Engine, Vec<Photo>)> {
    let mut det = cfg.detector.clone();
    det.threads = 1;
    let engine = edgepool_worker::load_engine(&cfg.model.resolved_path(), &det)?;
    let photos = edgepool::cmd::load_images(&[std::path::PathBuf::from("testdata/photos")])
        .context("run from the repository root")?;
    Ok((engine, photos))
}
