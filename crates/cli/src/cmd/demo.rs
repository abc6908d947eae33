//! `edgepool demo`: the whole pipeline on one machine — an embedded nats-server (unless
//! `--nats-url`), setup, a sink, workers, and cameras replaying photos — ending with a summary.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use edgepool_camera::metrics::CameraMetrics;
use edgepool_camera::{Publisher, Stats};
use edgepool_sink::SinkStats;
use edgepool_sink::http::{Readiness, probes, serve};
use edgepool_wire::CameraId;
use edgepool_worker::{ARCH, WorkerConfig};

use super::camera::{Replay, default_start_seq, replay};
use crate::cluster::LocalCluster;
use crate::config::Overrides;
use crate::{Global, load_config, print_check, runtime, telemetry};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Total frames to publish, split across cameras (default 120 unless --duration is given).
    #[arg(long)]
    pub frames: Option<u64>,
    /// Publish for this long instead of a frame count (e.g. 30s, 2m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Stay up until Ctrl-C: cameras keep replaying, every /metrics endpoint stays live.
    #[arg(long)]
    pub keep: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// One worker per entry, each with that device-emulation slowdown: `1,4` is a fast device
    /// and one 4x slower (emulated on this machine; results say so).
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pub workers: Vec<f64>,
    /// Number of cameras, each replaying the photos.
    #[arg(long, default_value_t = 2)]
    pub cameras: usize,
    /// Frames per second per camera.
    #[arg(long, default_value_t = 4.0)]
    pub fps: f64,
    /// Inference slots per worker.
    #[arg(long, default_value_t = 1)]
    pub slots: usize,
    /// Threads per inference.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Folder of photos the cameras replay.
    #[arg(long, default_value = "testdata/photos")]
    pub photos: PathBuf,
    /// How long to wait for outstanding results after the last frame.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub settle: Duration,
}

/// Per-worker line of the summary.
#[derive(Debug, Serialize)]
pub struct WorkerLine {
    pub arch: String,
    pub slowdown: f64,
    pub results: u64,
    pub ok: u64,
    pub errors: u64,
    pub stale: u64,
    pub fps: f64,
    pub share: f64,
}

/// The demo's summary (`--json` prints it as one object).
#[derive(Debug, Serialize)]
pub struct DemoSummary {
    pub published: u64,
    pub acked: u64,
    pub results: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub ok: u64,
    pub errors: u64,
    pub stale: u64,
    pub camera_failed: u64,
    pub camera_dropped: u64,
    pub seconds: f64,
    pub fps: f64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub per_worker: BTreeMap<String, WorkerLine>,
    pub labels: BTreeMap<String, u64>,
    pub peak_rss_mib: Option<f64>,
}

pub fn run(global: &Global, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(global, &Overrides::default())?;
    anyhow::ensure!(!args.workers.is_empty(), "--workers needs at least one slowdown factor");
    anyhow::ensure!(args.cameras >= 1, "--cameras must be at least 1");
    let images = super::load_images(std::slice::from_ref(&args.photos)).with_context(|| {
        format!("loading photos from {} (run from the repository root or pass --photos)", args.photos.display())
    })?;
    if global.check {
        return Ok(print_check(&cfg));
    }
    telemetry::init(&cfg.log, "warn");
    let model_path = cfg.model.resolved_path();
    let mut detector = cfg.detector.clone();
    detector.threads = args.threads;
    let engine = edgepool_worker::load_engine(&model_path, &detector)?;

    runtime()?.block_on(async move {
        let shutdown = super::shutdown_on_signals();
        let say = |s: String| {
            if !args.json {
                eprintln!("{s}");
            }
        };

        // Broker (embedded unless --nats-url), setup, sink.
        let http_stop = CancellationToken::new();
        let sink_registry = prometheus::Registry::new();
        let mut cluster = LocalCluster::start(&cfg.nats, &sink_registry).await?;
        if let Some(server) = &cluster.server {
            say(format!("nats-server  {}  (embedded; monitoring {}/varz)", server.url(), server.monitor_url()));
        }
        let js = cluster.js.clone();
        let stats = Arc::clone(&cluster.stats);
        let sink_addr = serve(
            "127.0.0.1:0".parse()?,
            probes(sink_registry.clone(), cluster.sink.readiness()).merge(cluster.sink.router()),
            http_stop.clone(),
        )
        .await?;
        say(format!("sink         http://{sink_addr}/metrics  live feed http://{sink_addr}/events"));

        // Workers.
        for (i, slowdown) in args.workers.iter().enumerate() {
            let id = format!("w{}-{ARCH}-x{slowdown}", i + 1).replace('.', "_");
            let registry = prometheus::Registry::new();
            let wcfg = WorkerConfig { slots: args.slots, slowdown: *slowdown, ..cfg.worker.clone() };
            cluster.add_worker(&id, wcfg, engine.clone(), &registry).await?;
            let ready = Readiness::default();
            ready.set(true);
            let addr = serve("127.0.0.1:0".parse()?, probes(registry, ready), http_stop.clone()).await?;
            say(format!(
                "worker {id:<14} http://{addr}/metrics  (slowdown {slowdown}x{})",
                if *slowdown > 1.0 { ", emulated" } else { "" }
            ));
        }

        // Cameras.
        let per_camera = args
            .frames
            .or(if args.duration.is_some() || args.keep { None } else { Some(120) })
            .map(|total| total.div_ceil(args.cameras as u64));
        let acked: Arc<Mutex<HashSet<(String, u64)>>> = Arc::default();
        let cam_stop = CancellationToken::new();
        let mut cameras = Vec::new();
        for c in 0..args.cameras {
            let camera = CameraId::new(format!("cam-{}", c + 1))?;
            let registry = prometheus::Registry::new();
            let metrics = CameraMetrics::register(&registry, camera.as_str())?;
            let ready = Readiness::default();
            ready.set(true);
            let addr = serve("127.0.0.1:0".parse()?, probes(registry, ready), http_stop.clone()).await?;
            say(format!("camera {camera:<14} http://{addr}/metrics  ({} fps)", args.fps));
            let set = Arc::clone(&acked);
            let name = camera.to_string();
            let mut publisher = Publisher::new(js.clone(), camera, default_start_seq(), cfg.publisher.clone())
                .with_metrics(metrics)
                .on_outcome(move |o| {
                    if o.result != edgepool_camera::AckResult::Failed {
                        if let Ok(mut s) = set.lock() {
                            s.insert((name.clone(), o.seq.0));
                        }
                    }
                });
            // Rotate the start so the cameras do not show the same photo at the same time.
            let mut imgs = images.clone();
            let shift = c % imgs.len();
            imgs.rotate_left(shift);
            let plan = Replay { images: imgs, fps: Some(args.fps), count: if args.keep { None } else { per_camera } };
            let stop = cam_stop.clone();
            cameras.push(tokio::spawn(async move { replay(&mut publisher, &plan, &stop, None).await }));
        }
        if let Some(d) = args.duration.filter(|_| !args.keep) {
            let t = cam_stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                t.cancel();
            });
        }
        {
            let (t, s) = (cam_stop.clone(), shutdown.clone());
            tokio::spawn(async move {
                s.cancelled().await;
                t.cancel();
            });
        }
        if args.keep {
            say("running until Ctrl-C".into());
        }

        // Progress while cameras publish, then wait for the outstanding results.
        let started = Instant::now();
        let pb = if args.json { ProgressBar::hidden() } else { ProgressBar::new_spinner() };
        pb.set_style(
            ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        let mut cam_stats = Vec::new();
        let mut cams = cameras.into_iter().map(Some).collect::<Vec<_>>();
        let mut settle_deadline: Option<Instant> = None;
        loop {
            let s = stats.summary();
            let n_acked = acked.lock().map(|a| a.len()).unwrap_or(0) as u64;
            let per: Vec<String> = s.per_worker.iter().map(|(w, l)| format!("{w} {}", l.results)).collect();
            pb.set_message(format!("acked {n_acked} · results {} · {}", s.results, per.join(" · ")));
            pb.tick();
            for c in &mut cams {
                if c.as_ref().is_some_and(tokio::task::JoinHandle::is_finished) {
                    if let Some(h) = c.take() {
                        cam_stats.push(h.await.unwrap_or_default());
                    }
                }
            }
            let cams_done = cams.iter().all(Option::is_none);
            if cams_done {
                let deadline = *settle_deadline.get_or_insert_with(|| Instant::now() + args.settle);
                if s.results >= n_acked
                    || Instant::now() > deadline
                    || shutdown.is_cancelled() && Instant::now() > deadline.min(Instant::now() + Duration::from_secs(5))
                {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        pb.finish_and_clear();
        let seconds = started.elapsed().as_secs_f64();

        cluster.shutdown().await;
        http_stop.cancel();

        let summary = summarize(&stats, &acked, &cam_stats, seconds);
        if args.json {
            println!("{}", serde_json::to_string(&summary)?);
        } else {
            print_summary(&summary);
        }
        Ok(if summary.lost == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
    })
}

fn summarize(stats: &SinkStats, acked: &Mutex<HashSet<(String, u64)>>, cams: &[Stats], seconds: f64) -> DemoSummary {
    let s = stats.summary();
    let got: HashSet<(String, u64)> = stats.ids().into_iter().filter_map(|(c, seq, _)| seq.map(|q| (c, q))).collect();
    let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
    let lost = acked.iter().filter(|k| !got.contains(*k)).count() as u64;
    let total = s.results.max(1) as f64;
    let per_worker = s
        .per_worker
        .iter()
        .map(|(id, w)| {
            (
                id.clone(),
                WorkerLine {
                    arch: w.arch.clone(),
                    slowdown: w.slowdown,
                    results: w.results,
                    ok: w.ok,
                    errors: w.errors,
                    stale: w.stale,
                    fps: w.results as f64 / seconds.max(1e-9),
                    share: w.results as f64 / total,
                },
            )
        })
        .collect();
    DemoSummary {
        published: cams.iter().map(|c| c.published).sum(),
        acked: acked.len() as u64,
        results: s.results,
        lost,
        duplicates: s.duplicates,
        ok: s.ok,
        errors: s.errors,
        stale: s.stale,
        camera_failed: cams.iter().map(|c| c.failed).sum(),
        camera_dropped: cams.iter().map(|c| c.dropped).sum(),
        seconds,
        fps: s.results as f64 / seconds.max(1e-9),
        latency_p50_ms: s.latency_p50_s.map(|v| v * 1e3),
        latency_p99_ms: s.latency_p99_s.map(|v| v * 1e3),
        per_worker,
        labels: s.labels,
        peak_rss_mib: peak_rss_mib(),
    }
}

/// Peak resident set of this process (VmHWM), in MiB.
#[must_use]
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn print_summary(s: &DemoSummary) {
    let ms = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.0} ms"));
    println!();
    println!("edgepool demo summary ({:.1} s)", s.seconds);
    println!(
        "  frames published {:>6}   acked {:>6}   results {:>6}   lost {}   duplicates {}",
        s.published, s.acked, s.results, s.lost, s.duplicates
    );
    println!(
        "  ok {}   error {}   stale (dropped as too old) {}   camera failed {}   camera dropped {}",
        s.ok, s.errors, s.stale, s.camera_failed, s.camera_dropped
    );
    println!(
        "  throughput {:.2} results/s   latency p50 {}   p99 {}",
        s.fps,
        ms(s.latency_p50_ms),
        ms(s.latency_p99_ms)
    );
    if let Some(rss) = s.peak_rss_mib {
        println!("  peak RSS of this process (all components) {rss:.0} MiB");
    }
    println!();
    println!("  {:<18} {:<8} {:>8} {:>8} {:>8} {:>7}", "worker", "arch", "slowdown", "results", "fps", "share");
    for (id, w) in &s.per_worker {
        println!(
            "  {:<18} {:<8} {:>7}x {:>8} {:>8.2} {:>6.1}%",
            id,
            w.arch,
            w.slowdown,
            w.results,
            w.fps,
            w.share * 100.0
        );
    }
    println!();
    println!("  {:<18} {:>8}", "label", "count");
    let mut labels: Vec<_> = s.labels.iter().collect();
    labels.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (l, n) in labels {
        println!("  {l:<18} {n:>8}");
    }
    println!();
    println!(
        "{}",
        if s.lost == 0 { "lost 0: every acknowledged frame has its result" } else { "FRAMES LOST: see above" }
    );
}
