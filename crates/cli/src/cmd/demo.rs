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
use edgepool_harness::LocalCluster;
use edgepool_runtime::http::{Readiness, probes};
use edgepool_sink::SinkStats;
use edgepool_wire::{CameraId, ContentType};
use edgepool_worker::{ARCH, WorkerConfig};

use super::camera::{Replay, default_start_seq, replay};
use crate::config::Overrides;
use crate::{Global, app, load_config, print_check};

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
    /// Frames per second per camera. Default: fitted to this machine, so the cameras together
    /// offer about 70 % of the workers' measured capacity (the progress line shows both).
    #[arg(long)]
    pub fps: Option<f64>,
    /// Inference slots per worker [default: `worker.slots`, 1].
    #[arg(long)]
    pub slots: Option<usize>,
    /// Threads per inference [default: `detector.threads`, 1].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Folder of photos the cameras replay. Default: the six test photos built into the binary,
    /// so the demo runs from any directory and in the container image.
    #[arg(long, alias = "source")]
    pub photos: Option<PathBuf>,
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

impl DemoArgs {
    /// The config keys the given flags set.
    #[must_use]
    pub fn overrides(&self) -> Overrides {
        let mut flags = Overrides::default();
        flags.set("worker.slots", self.slots.map(|v| v as u64)).set("detector.threads", self.threads.map(|v| v as u64));
        flags
    }
}

/// After a shutdown signal the demo waits at most this long for outstanding results.
const SETTLE_AFTER_SIGNAL: Duration = Duration::from_secs(5);

/// Whether the demo stops waiting for outstanding results (once the cameras are done): every
/// acknowledged frame has its result, the `--settle` deadline passed, or a shutdown signal came
/// more than [`SETTLE_AFTER_SIGNAL`] ago.
fn settled(now: Instant, deadline: Instant, signalled_at: Option<Instant>, results: u64, acked: u64) -> bool {
    results >= acked || now > deadline || signalled_at.is_some_and(|t| now > t + SETTLE_AFTER_SIGNAL)
}

pub fn run(global: &Global, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(global, &args.overrides())?;
    anyhow::ensure!(!args.workers.is_empty(), "--workers needs at least one slowdown factor");
    anyhow::ensure!(args.cameras >= 1, "--cameras must be at least 1");
    if let Some(fps) = args.fps {
        anyhow::ensure!(fps > 0.0 && fps.is_finite(), "--fps must be a positive number");
    }
    let images = match &args.photos {
        Some(dir) => super::load_images(std::slice::from_ref(dir))
            .with_context(|| format!("loading photos from {}", dir.display()))?,
        None => builtin_photos(),
    };
    if global.check {
        return Ok(print_check(&cfg));
    }
    let model_path = cfg.model.resolved_path();
    let engine = edgepool_worker::load_engine(&model_path, &cfg.detector)?;

    app::run_with(cfg, "warn", |ctx| async move {
        let (cfg, shutdown) = (&ctx.cfg, ctx.shutdown.clone());
        let say = |s: String| {
            if !args.json {
                eprintln!("{s}");
            }
        };
        // What this machine can do, measured before anything else runs on it.
        let frame_time = {
            let (engine, images) = (engine.clone(), images.clone());
            tokio::task::spawn_blocking(move || measure_frame_time(&engine, &images)).await??
        };
        let capacity = fleet_capacity(frame_time, &args.workers, cfg.worker.slots, cfg.detector.threads, cores());
        let fps = args.fps.unwrap_or_else(|| fitted_fps(capacity, args.cameras));
        let offered = fps * args.cameras as f64;
        // Broker (embedded unless --nats-url), setup, sink.
        let sink_registry = edgepool_runtime::metrics::role_registry();
        let mut cluster = LocalCluster::start(&cfg.nats, &sink_registry).await?;
        let js = cluster.js.clone();
        let stats = Arc::clone(&cluster.stats);
        let sink_addr = ctx.serve_yielding(
            "127.0.0.1:0".parse()?,
            probes(sink_registry.clone(), cluster.sink.readiness()).merge(cluster.sink.router()),
        )?;
        // The page first: it is what a person opens.
        say(format!("page         http://{sink_addr}/"));
        if let Some(server) = &cluster.server {
            say(format!(
                "nats-server  {}  (embedded, pid {}; monitoring {}/varz)",
                server.url(),
                server.pid(0).unwrap_or(0),
                server.monitor_url()
            ));
        }
        say(format!("sink         http://{sink_addr}/metrics  live feed http://{sink_addr}/events"));

        // Workers.
        for (i, slowdown) in args.workers.iter().enumerate() {
            let id = format!("w{}-{ARCH}-x{slowdown}", i + 1).replace('.', "_");
            let registry = edgepool_runtime::metrics::role_registry();
            let wcfg = WorkerConfig { slowdown: *slowdown, ..cfg.worker.clone() };
            cluster.add_worker(&id, wcfg, engine.clone(), &registry).await?;
            let ready = Readiness::default();
            ready.set(true);
            let addr = ctx.serve("127.0.0.1:0".parse()?, probes(registry, ready)).await?;
            say(format!(
                "worker {id:<14} http://{addr}/metrics  (slowdown {slowdown}x{})",
                if *slowdown > 1.0 { ", emulated" } else { "" }
            ));
        }

        say(format!(
            "capacity     ~{capacity:.1} frames/s (one frame takes {:.0} ms here); cameras offer {offered:.1} \
             ({:.0} %){}",
            frame_time.as_secs_f64() * 1e3,
            100.0 * offered / capacity,
            if args.fps.is_some() { "" } else { ", fitted to this machine (--fps overrides)" }
        ));
        if offered > capacity {
            say(format!(
                "OVERLOADED: the cameras offer {:.0} % of what the workers can do; frames will queue and \
                 go stale (answered `stale`, never lost)",
                100.0 * offered / capacity
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
            let registry = edgepool_runtime::metrics::role_registry();
            let metrics = CameraMetrics::register(&registry, camera.as_str())?;
            let ready = Readiness::default();
            ready.set(true);
            let addr = ctx.serve("127.0.0.1:0".parse()?, probes(registry, ready)).await?;
            say(format!("camera {camera:<14} http://{addr}/metrics  ({fps:.1} fps)"));
            let set = Arc::clone(&acked);
            let name = camera.to_string();
            let mut publisher = Publisher::new(js.clone(), camera, default_start_seq(), cfg.publisher.clone())
                .with_metrics(metrics)
                .on_outcome(move |o| {
                    if o.result != edgepool_camera::AckResult::Failed
                        && let Ok(mut s) = set.lock()
                    {
                        s.insert((name.clone(), o.seq.0));
                    }
                });
            // Rotate the start so the cameras do not show the same photo at the same time.
            let mut imgs = images.clone();
            let shift = c % imgs.len();
            imgs.rotate_left(shift);
            let plan = Replay { images: imgs, fps: Some(fps), count: if args.keep { None } else { per_camera } };
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
        let mut signalled_at: Option<Instant> = None;
        loop {
            if shutdown.is_cancelled() {
                signalled_at.get_or_insert_with(Instant::now);
            }
            let s = stats.summary();
            let n_acked = acked.lock().map(|a| a.len()).unwrap_or(0) as u64;
            let per: Vec<String> = s.per_worker.iter().map(|(w, l)| format!("{w} {}", l.results)).collect();
            let backlog = n_acked.saturating_sub(s.results);
            let load = if offered > capacity {
                format!("OVERLOADED {:.0} %", 100.0 * offered / capacity)
            } else {
                format!("load {:.0} %", 100.0 * offered / capacity)
            };
            pb.set_message(format!(
                "acked {n_acked} · results {} · backlog {backlog} · {load} · {}",
                s.results,
                per.join(" · ")
            ));
            pb.tick();
            for c in &mut cams {
                if c.as_ref().is_some_and(tokio::task::JoinHandle::is_finished)
                    && let Some(h) = c.take()
                {
                    cam_stats.push(h.await.unwrap_or_default());
                }
            }
            let cams_done = cams.iter().all(Option::is_none);
            if cams_done {
                let deadline = *settle_deadline.get_or_insert_with(|| Instant::now() + args.settle);
                if settled(Instant::now(), deadline, signalled_at, s.results, n_acked) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        pb.finish_and_clear();
        let seconds = started.elapsed().as_secs_f64();

        // Every client is a clone of the cluster's: the last one goes before the broker does.
        drop(js);
        cluster.shutdown().await;

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
        peak_rss_mib: edgepool_runtime::process::peak_rss_mib(),
    }
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

/// The six test photos (testdata/photos), built into the binary so the demo needs no checkout.
const BUILTIN_PHOTOS: [(&str, &[u8]); 6] = [
    ("astronaut.png", include_bytes!("../../../../testdata/photos/astronaut.png")),
    ("camera.png", include_bytes!("../../../../testdata/photos/camera.png")),
    ("chelsea.png", include_bytes!("../../../../testdata/photos/chelsea.png")),
    ("coffee.png", include_bytes!("../../../../testdata/photos/coffee.png")),
    ("grace_hopper.jpg", include_bytes!("../../../../testdata/photos/grace_hopper.jpg")),
    ("rocket.jpg", include_bytes!("../../../../testdata/photos/rocket.jpg")),
];

/// [`BUILTIN_PHOTOS`] as `load_images` returns files.
fn builtin_photos() -> Vec<(String, ContentType, bytes::Bytes)> {
    BUILTIN_PHOTOS
        .iter()
        .filter_map(|(name, bytes)| {
            let ext = name.rsplit('.').next().unwrap_or("");
            let ct = ContentType::from_extension(ext)?;
            Some(((*name).to_owned(), ct, bytes::Bytes::from_static(bytes)))
        })
        .collect()
}

/// The time one frame takes on this machine (decode, inference, post-processing), the median
/// of a few after a warm-up.
fn measure_frame_time(
    engine: &edgepool_worker::Engine,
    images: &[(String, ContentType, bytes::Bytes)],
) -> anyhow::Result<Duration> {
    let mut runner = engine.runner();
    let (_, _, first) = images.first().context("no photos")?;
    runner.run(first).context("the detector failed on a demo photo")?;
    let mut times: Vec<Duration> = images
        .iter()
        .take(5)
        .map(|(_, _, bytes)| {
            let t = Instant::now();
            let _ = runner.run(bytes);
            t.elapsed()
        })
        .collect();
    times.sort();
    Ok(times[times.len() / 2])
}

/// The CPU cores this process may use.
fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// Frames per second the demo's workers can finish together: each slot of a worker with
/// slowdown `s` does `1 / (frame_time × s)`, unless the workers together would need more cores
/// than there are (a slowdown is emulated by sleeping, so it frees its core).
fn fleet_capacity(frame_time: Duration, slowdowns: &[f64], slots: usize, threads: usize, cores: f64) -> f64 {
    let t = frame_time.as_secs_f64().max(1e-3);
    let ideal: f64 = slowdowns.iter().map(|s| slots as f64 / (t * s.max(1.0))).sum();
    // Cores busy when every slot works flat out: a slot computes 1/s of the time, on `threads`.
    let busy: f64 = slowdowns.iter().map(|s| slots as f64 * threads as f64 / s.max(1.0)).sum();
    if busy > cores { ideal * cores / busy } else { ideal }
}

/// Share of the measured capacity the cameras offer by default: enough to keep every worker
/// busy, with room for the machine's other work, so the backlog stays bounded.
const FITTED_LOAD: f64 = 0.7;

/// Per-camera rate that offers [`FITTED_LOAD`] of `capacity`, to one decimal (at least 0.1).
fn fitted_fps(capacity: f64, cameras: usize) -> f64 {
    let per = FITTED_LOAD * capacity / cameras.max(1) as f64;
    ((per * 10.0).floor() / 10.0).max(0.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_adds_slots_and_respects_cores() {
        let t = Duration::from_millis(100);
        // A 1x and a 4x worker: 10 + 2.5 frames/s, 1.25 cores busy of 2.
        assert!((fleet_capacity(t, &[1.0, 4.0], 1, 1, 2.0) - 12.5).abs() < 1e-9);
        // Two full-speed workers on one core share it.
        assert!((fleet_capacity(t, &[1.0, 1.0], 1, 1, 1.0) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn fitted_rate_offers_seventy_percent() {
        assert!((fitted_fps(12.5, 2) - 4.3).abs() < 1e-9);
        assert!((fitted_fps(0.01, 4) - 0.1).abs() < 1e-9, "never zero");
        let offered = fitted_fps(6.6, 2) * 2.0;
        assert!(offered <= 0.7 * 6.6 && offered > 0.6 * 6.6, "{offered}");
    }

    #[test]
    fn builtin_photos_are_all_images() {
        let photos = builtin_photos();
        assert_eq!(photos.len(), BUILTIN_PHOTOS.len());
        assert!(photos.iter().all(|(_, _, b)| b.len() > 1000));
    }

    #[test]
    fn settle_stops_five_seconds_after_a_signal() {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(60);
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert!(!settled(at(1), deadline, None, 3, 10), "no signal: wait for results");
        assert!(settled(at(61), deadline, None, 3, 10), "the settle deadline ends the wait");
        assert!(settled(at(1), deadline, Some(at(0)), 10, 10), "all results in");

        let signal = Some(at(10));
        assert!(!settled(at(14), deadline, signal, 3, 10), "within 5 s of the signal");
        assert!(settled(at(16), deadline, signal, 3, 10), "5 s after the signal, not the whole --settle");

        let short = at(12);
        assert!(settled(at(13), short, signal, 3, 10), "a sooner settle deadline still wins");
    }
}
