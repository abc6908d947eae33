//! `edgepool demo`: the whole pipeline on one machine — an embedded nats-server (unless
//! `--nats-url`), setup, a sink, workers, cameras replaying photos, and a video camera playing
//! an H.264 clip through ffmpeg with motion gating — ending with a summary.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use edgepool_camera::clip::ClipPlan;
use edgepool_camera::config::CameraSpec;
use edgepool_camera::ffmpeg::SourceKind;
use edgepool_camera::metrics::{CameraMetrics, VideoMetrics};
use edgepool_camera::motion::MotionConfig;
use edgepool_camera::status::SourceBoard;
use edgepool_camera::{Publisher, Stats};
use edgepool_harness::LocalCluster;
use edgepool_runtime::http::{Detail, Readiness, probes, probes_with_detail};
use edgepool_sink::SinkStats;
use edgepool_wire::{CameraId, ContentType};
use edgepool_worker::{ARCH, WorkerConfig};

use super::camera::{Replay, default_start_seq, replay};
use super::video::{VideoPlan, VideoStats};
use crate::config::Overrides;
use crate::{Global, app, load_config, print_check};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Total frames the photo cameras publish, split across them (default 120 unless --duration
    /// is given). The video camera plays its clip once on top (in a loop with --duration/--keep).
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
    /// Leave out the video camera (`cam-video`: an H.264 clip made from the photos, 4 s still,
    /// 4 s with a person crossing, 4 s still, played through ffmpeg with motion gating).
    #[arg(long)]
    pub no_video: bool,
}

/// The video camera's line of the summary.
#[derive(Debug, Serialize)]
pub struct DemoVideo {
    pub camera: String,
    /// Frames of the clip, and its rate.
    pub clip_frames: u32,
    pub clip_fps: u32,
    /// The detect rate frames are sampled at.
    pub detect_fps: f64,
    /// Frames ffmpeg decoded and handed over.
    pub decoded: u64,
    /// Of those, taken at the detect rate for the motion check.
    pub sampled: u64,
    /// Sampled frames skipped because nothing moved.
    pub skipped_still: u64,
    pub motion: u64,
    pub keepalives: u64,
    /// Handed to the publisher (motion + keepalives).
    pub published: u64,
    /// Why the video camera did not run or stopped, if it did.
    pub error: Option<String>,
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
    /// The video camera, unless `--no-video`.
    pub video: Option<DemoVideo>,
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
        let video_load = if args.no_video { 0.0 } else { demo_clip_load() };
        let fps = args.fps.unwrap_or_else(|| fitted_fps((capacity - video_load).max(0.0), args.cameras));
        let offered = fps * args.cameras as f64 + video_load;
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
        let video = if args.no_video {
            None
        } else {
            Some(start_video_camera(&ctx, &js, &images, &acked, &cam_stop, args.keep || args.duration.is_some()).await?)
        };
        match &video {
            Some(VideoCamera { addr: Some(addr), .. }) => say(format!(
                "camera {:<14} http://{addr}/metrics  (video through ffmpeg: {}, detect {DEMO_DETECT_FPS} fps, \
                 motion gating)",
                DEMO_VIDEO_CAMERA,
                clip_description()
            )),
            Some(VideoCamera { error: Some(e), .. }) => say(format!("camera {DEMO_VIDEO_CAMERA:<14} not started: {e}")),
            _ => {}
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
            let video_done =
                video.as_ref().is_none_or(|v| v.task.as_ref().is_none_or(tokio::task::JoinHandle::is_finished));
            let cams_done = cams.iter().all(Option::is_none) && video_done;
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

        let video_line = match video {
            Some(v) => Some(v.finish(&mut cam_stats).await),
            None => None,
        };
        // Every client is a clone of the cluster's: the last one goes before the broker does.
        drop(js);
        cluster.shutdown().await;

        let mut summary = summarize(&stats, &acked, &cam_stats, seconds);
        summary.video = video_line;
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
        video: None,
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
    if let Some(v) = &s.video {
        println!();
        match &v.error {
            Some(e) if v.decoded == 0 => println!("  video camera {} did not run: {e}", v.camera),
            _ => {
                println!(
                    "  video camera {} ({} frames at {} fps, sampled at {} fps for the motion check):",
                    v.camera, v.clip_frames, v.clip_fps, v.detect_fps
                );
                println!(
                    "    decoded {}   sampled {}   skipped for no motion {}   published {} (motion {}, keepalives {})",
                    v.decoded, v.sampled, v.skipped_still, v.published, v.motion, v.keepalives
                );
                if let Some(e) = &v.error {
                    println!("    stopped: {e}");
                }
            }
        }
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

/// The demo's video camera id.
const DEMO_VIDEO_CAMERA: &str = "cam-video";
/// Its detect rate: the clip's 10 fps are sampled at this rate for the motion check.
const DEMO_DETECT_FPS: f64 = 5.0;
/// Its keepalive while nothing moves.
const DEMO_KEEPALIVE: Duration = Duration::from_secs(5);

fn clip_description() -> String {
    let c = ClipPlan::default();
    format!(
        "{}x{} H.264 at {} fps, {} s still, {} s with a person crossing, {} s still",
        c.width, c.height, c.fps, c.still_before, c.crossing, c.still_after
    )
}

/// Frames per second the video camera publishes on average: the sampled frames of the crossing
/// (and about a second after it, while the background forgets the person) plus keepalives.
fn demo_clip_load() -> f64 {
    let c = ClipPlan::default();
    let seconds = f64::from(c.still_before + c.crossing + c.still_after);
    let motion = f64::from(c.crossing + 1) * DEMO_DETECT_FPS;
    (motion + seconds / DEMO_KEEPALIVE.as_secs_f64()) / seconds
}

/// The running video camera, or why it is not running.
struct VideoCamera {
    addr: Option<std::net::SocketAddr>,
    task: Option<tokio::task::JoinHandle<(anyhow::Result<VideoStats>, Stats)>>,
    error: Option<String>,
    /// Holds the clip until the camera is done.
    _dir: Option<tempfile::TempDir>,
}

impl VideoCamera {
    fn failed(e: &anyhow::Error) -> Self {
        Self { addr: None, task: None, error: Some(format!("{e:#}")), _dir: None }
    }

    /// Waits for the camera, adds its publisher stats to `cams`, and makes its summary line.
    async fn finish(self, cams: &mut Vec<Stats>) -> DemoVideo {
        let plan = ClipPlan::default();
        let mut line = DemoVideo {
            camera: DEMO_VIDEO_CAMERA.into(),
            clip_frames: plan.frames(),
            clip_fps: plan.fps,
            detect_fps: DEMO_DETECT_FPS,
            decoded: 0,
            sampled: 0,
            skipped_still: 0,
            motion: 0,
            keepalives: 0,
            published: 0,
            error: self.error,
        };
        let Some(task) = self.task else { return line };
        match task.await {
            Ok((video, stats)) => {
                cams.push(stats);
                match video {
                    Ok(v) => {
                        line.decoded = v.decoded;
                        line.sampled = v.decoded - v.not_sampled;
                        line.skipped_still = v.still;
                        line.motion = v.motion;
                        line.keepalives = v.keepalives;
                        line.published = v.motion + v.keepalives + v.every;
                    }
                    Err(e) => line.error = Some(format!("{e:#}")),
                }
            }
            Err(e) => line.error = Some(format!("the video camera task failed: {e}")),
        }
        line
    }
}

/// Makes the clip (ffmpeg encodes it from two of the photos) and starts `cam-video` on it:
/// every decoded frame comes out of ffmpeg, the gate samples them at [`DEMO_DETECT_FPS`] and
/// publishes motion frames and keepalives. Without ffmpeg the demo goes on without it, and says
/// why. `looped`: replay the clip until `stop`.
async fn start_video_camera(
    ctx: &app::Ctx,
    js: &async_nats::jetstream::Context,
    images: &[(String, ContentType, bytes::Bytes)],
    acked: &Arc<Mutex<HashSet<(String, u64)>>>,
    stop: &CancellationToken,
    looped: bool,
) -> anyhow::Result<VideoCamera> {
    let tools = edgepool_harness::fixtures::cache_dir().join("tools");
    let ffmpeg = match edgepool_camera::ffmpeg::find_ffmpeg(ctx.cfg.video.ffmpeg.as_deref(), Some(&tools)) {
        Ok(f) => f,
        Err(e) => return Ok(VideoCamera::failed(&e.into())),
    };
    let decode = |name: &str| -> anyhow::Result<image::RgbImage> {
        let (_, _, bytes) = images.iter().find(|(n, _, _)| n == name).or(images.first()).context("no photos")?;
        Ok(image::load_from_memory(bytes).with_context(|| format!("decoding {name}"))?.to_rgb8())
    };
    let (background, person) = (decode("astronaut.png")?, decode("grace_hopper.jpg")?);
    let dir = tempfile::tempdir().context("a temp dir for the demo clip")?;
    let clip = dir.path().join("cam-video.mp4");
    let made = {
        let (ffmpeg, clip) = (ffmpeg.clone(), clip.clone());
        tokio::task::spawn_blocking(move || ClipPlan::default().encode(&ffmpeg, &background, &person, &clip)).await?
    };
    if let Err(e) = made {
        return Ok(VideoCamera::failed(&e));
    }
    let camera = CameraId::new(DEMO_VIDEO_CAMERA)?;
    let registry = edgepool_runtime::metrics::role_registry();
    let publisher_metrics = CameraMetrics::register(&registry, camera.as_str())?;
    let metrics = VideoMetrics::register(&registry, camera.as_str())?;
    let board = SourceBoard::default();
    let spec = CameraSpec {
        id: camera.clone(),
        source: clip.to_string_lossy().into_owned(),
        kind: SourceKind::File,
        fps: None,
        max_width: None,
        quality: 80,
        keepalive: DEMO_KEEPALIVE,
        motion: Some(MotionConfig::default()),
        looped,
    };
    board.add(camera.as_str(), &spec.shown());
    let ready = Readiness::default();
    ready.set(true);
    let detail_board = board.clone();
    let detail: Detail = Arc::new(move || (detail_board.any_up(), detail_board.report()));
    let addr = ctx.serve("127.0.0.1:0".parse()?, probes_with_detail(registry, ready, detail)).await?;
    let set = Arc::clone(acked);
    let mut publisher =
        Publisher::new(js.clone(), camera, default_start_seq(), super::camera::live_publisher(&ctx.cfg))
            .with_metrics(publisher_metrics)
            .on_outcome(move |o| {
                if o.result != edgepool_camera::AckResult::Failed
                    && let Ok(mut s) = set.lock()
                {
                    s.insert((DEMO_VIDEO_CAMERA.to_owned(), o.seq.0));
                }
            });
    let plan = VideoPlan { spec, ffmpeg, count: None, gate_fps: Some(DEMO_DETECT_FPS) };
    let stop = stop.clone();
    let task = tokio::spawn(async move {
        let video = super::video::run(&plan, &metrics, &board, &mut publisher, &stop, &ProgressBar::hidden()).await;
        let stats = if stop.is_cancelled() { publisher.drain().await } else { publisher.flush().await };
        (video, stats)
    });
    Ok(VideoCamera { addr: Some(addr), task: Some(task), error: None, _dir: Some(dir) })
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
    runner.run(first, None).context("the detector failed on a demo photo")?;
    let mut times: Vec<Duration> = images
        .iter()
        .take(5)
        .map(|(_, _, bytes)| {
            let t = Instant::now();
            let _ = runner.run(bytes, None);
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
