//! `edgepool camera`: publish image files (or folders of them) as frames of one camera, or run
//! video cameras through ffmpeg (see `video.rs`): one from `--source`, or every `[cameras.<id>]`
//! of the config file, each in its own task with its own ffmpeg.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use edgepool_camera::config::{CameraEntry, CameraSpec, SourceUrl, VideoConfig, resolve};
use edgepool_camera::metrics::{CameraFamily, CameraMetrics, VideoFamily};
use edgepool_camera::status::SourceBoard;
use edgepool_camera::{AckResult, Frame, Outcome, Publisher, Stats};
use edgepool_runtime::http::{Detail, Readiness, probes, probes_with_detail};
use edgepool_wire::{CameraId, ContentType};

use crate::config::{Config, Overrides};
use crate::{Global, app, load_config, print_check};

#[derive(Debug, clap::Args)]
pub struct CameraArgs {
    /// Camera id: [A-Za-z0-9_-]{1,64}, not starting with '_'. Frames go to frames.<ID>. With
    /// --source, the id of that camera; without, run only these cameras of the config file.
    #[arg(long)]
    pub camera: Vec<String>,
    /// Image files or folders of them (.jpg, .jpeg, .png), published in path order; or one video
    /// source read through ffmpeg: rtsp://…, http(s)://… (MJPEG, HLS, …), /dev/videoN or a
    /// video file. Credentials in a URL never appear in logs or output. Without --source, the
    /// cameras of the config file run ([cameras.<id>] tables; see examples/cameras.toml).
    #[arg(long, num_args = 1..)]
    pub source: Vec<PathBuf>,
    /// Frames per second. Images: default as fast as acks allow; with a rate the camera behaves
    /// like a live camera: when too many publishes await their ack, new frames are dropped and
    /// counted. Video: the detect rate (default: video.fps, 5; 0 = every frame): ffmpeg decodes
    /// every frame and hands over at most this many a second.
    #[arg(long)]
    pub fps: Option<f64>,
    /// Publish this many frames, cycling through the sources (default: each source once; for
    /// video, until the source ends; with cameras from the config file, per camera).
    #[arg(long, conflicts_with = "loop")]
    pub count: Option<u64>,
    /// Cycle through the sources (replay the video file) until interrupted.
    #[arg(long = "loop")]
    pub r#loop: bool,
    /// Video: the ffmpeg to run (default: video.ffmpeg, else on PATH, else the one
    /// `cargo xtask tools` installs).
    #[arg(long, value_name = "PATH")]
    pub ffmpeg: Option<PathBuf>,
    /// Video: scale frames wider than this down (aspect kept) before encoding, to cut bandwidth
    /// (default: video.max_width, none).
    #[arg(long, value_name = "PX")]
    pub max_width: Option<u32>,
    /// Video: JPEG quality of the published frames, 1-100 (default: video.quality, 80).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: Option<u8>,
    /// Video: publish only frames where something moved (plus keepalives), or every sampled
    /// frame with `off` (default: video.motion.enabled, on).
    #[arg(long, value_enum)]
    pub motion: Option<MotionMode>,
    /// Video with motion on: publish a frame this often while nothing moves, so subscribers
    /// know the camera is alive (default: video.keepalive, 10s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub keepalive: Option<Duration>,
    /// First sequence number (default: Unix time in microseconds, so a restarted camera never
    /// reuses a number inside the broker's duplicate window).
    #[arg(long)]
    pub start_seq: Option<u64>,
    /// Publishes awaiting their ack at once.
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// Serve /metrics, /healthz and /readyz here (e.g. 0.0.0.0:9101). For video, the probes
    /// answer JSON with each source's state; /readyz is 503 until a source delivers frames.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Print the final summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Append the sequence number of every frame the broker acknowledged to FILE, one per line,
    /// as soon as its ack arrives (reliability checks compare this set with the results).
    #[arg(long, value_name = "FILE")]
    pub ack_log: Option<PathBuf>,
}

/// Motion gating of a video source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MotionMode {
    On,
    Off,
}

/// What to replay and how fast.
#[derive(Debug, Clone)]
pub struct Replay {
    pub images: Vec<(String, ContentType, Bytes)>,
    pub fps: Option<f64>,
    /// `None`: until cancelled.
    pub count: Option<u64>,
}

/// Publishes `replay` through `publisher` until done or cancelled, then waits for every ack.
pub async fn replay(
    publisher: &mut Publisher,
    replay: &Replay,
    shutdown: &CancellationToken,
    progress: Option<&ProgressBar>,
) -> Stats {
    let period = replay.fps.filter(|f| *f > 0.0).map(|f| Duration::from_secs_f64(1.0 / f));
    let start = tokio::time::Instant::now();
    let mut n: u64 = 0;
    while replay.count.is_none_or(|c| n < c) && !shutdown.is_cancelled() {
        if let Some(p) = period {
            let due = start + p.mul_f64(n as f64);
            tokio::select! {
                () = tokio::time::sleep_until(due) => {}
                () = shutdown.cancelled() => break,
            }
        }
        let (name, ct, bytes) = &replay.images[usize::try_from(n).unwrap_or(0) % replay.images.len()];
        let frame = Frame::now(bytes.clone(), *ct);
        // Waiting for room among the in-flight frames can take long with the broker away.
        let published = tokio::select! {
            r = publisher.publish(frame) => r,
            () = shutdown.cancelled() => break,
        };
        if let Err(e) = published {
            tracing::warn!(file = %name, error = %e, "frame not published");
        }
        n += 1;
        if let Some(pb) = progress {
            pb.inc(1);
            let s = publisher.stats();
            pb.set_message(format!(
                "acked {} · dup {} · failed {} · dropped {}",
                s.acked, s.duplicates, s.failed, s.dropped
            ));
        }
    }
    if shutdown.is_cancelled() { publisher.drain().await } else { publisher.flush().await }
}

/// A callback that appends the sequence number of every acknowledged frame (stored, or found
/// stored by an earlier attempt) to `path`, one line each, written through at once.
fn ack_logger(path: &std::path::Path) -> anyhow::Result<impl FnMut(Outcome) + Send + 'static> {
    use std::io::Write as _;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("--ack-log {}", path.display()))?;
    let mut out = std::io::LineWriter::new(file);
    let path = path.to_owned();
    Ok(move |o: Outcome| {
        if o.result != AckResult::Failed
            && let Err(e) = writeln!(out, "{}", o.seq)
        {
            tracing::error!(file = %path.display(), error = %e, "cannot write the ack log");
        }
    })
}

/// What both kinds of camera do first: serve /metrics and the probes (with `--listen`),
/// connect (waiting for the broker), and build the publisher with its metrics and ack log.
async fn connect_publisher(
    ctx: &app::Ctx,
    camera: &CameraId,
    args: &CameraArgs,
    registry: &prometheus::Registry,
) -> anyhow::Result<(async_nats::Client, Publisher)> {
    let metrics = CameraMetrics::register(registry, camera.as_str())?;
    let ready = Readiness::default();
    if let Some(addr) = args.listen {
        let bound = ctx.serve(addr, probes(registry.clone(), ready.clone())).await?;
        eprintln!("camera {camera}: metrics on http://{bound}/metrics");
    }
    let client = ctx.connect(&format!("edgepool-camera-{camera}"), true).await?;
    ready.set(true);
    let js = async_nats::jetstream::new(client.clone());
    let mut publisher =
        Publisher::new(js, camera.clone(), args.start_seq.unwrap_or_else(default_start_seq), ctx.cfg.publisher.clone())
            .with_metrics(metrics);
    if let Some(path) = &args.ack_log {
        publisher = publisher.on_outcome(ack_logger(path)?);
    }
    Ok((client, publisher))
}

/// Default first sequence number: Unix time in microseconds.
#[must_use]
pub fn default_start_seq() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(1)
}

impl CameraArgs {
    /// The config keys the given flags set.
    #[must_use]
    pub fn overrides(&self) -> Overrides {
        let mut flags = Overrides::default();
        flags.set("publisher.max_in_flight", self.max_in_flight.map(|v| v as u64));
        if self.fps.is_some() {
            flags.set("publisher.drop_when_full", Some(true));
        }
        flags
    }
}

pub fn run(global: &Global, args: CameraArgs) -> anyhow::Result<ExitCode> {
    if args.source.is_empty() {
        return run_configured(global, args);
    }
    let [camera] = &args.camera[..] else {
        anyhow::bail!("--source needs one --camera ID: the id its frames are published under")
    };
    let camera = CameraId::new(camera.clone()).context("--camera")?;
    if args.source.iter().any(|s| super::video::is_video(s)) {
        anyhow::ensure!(
            args.source.len() == 1,
            "--source: one video source per camera (a URL, a device or a video file), not mixed with images; \
             several cameras go in the config file ([cameras.<id>], see examples/cameras.toml)"
        );
        let cfg = load_config(global, &args.overrides())?;
        let spec = adhoc_spec(&cfg.video, &camera, &args)?;
        return run_video(global, args, cfg, vec![spec]);
    }
    let cfg = load_config(global, &args.overrides())?;
    let images = super::load_images(&args.source)?;
    if global.check {
        return Ok(print_check(&cfg));
    }
    let count = if args.r#loop { None } else { Some(args.count.unwrap_or(images.len() as u64)) };
    let plan = Replay { images, fps: args.fps, count };
    app::run_with(cfg, "warn", |ctx| async move {
        let shutdown = ctx.shutdown.clone();
        let registry = edgepool_runtime::metrics::role_registry();
        let (client, mut publisher) = connect_publisher(&ctx, &camera, &args, &registry).await?;
        let pb = match plan.count {
            Some(c) => ProgressBar::new(c),
            None => ProgressBar::new_spinner(),
        };
        pb.set_style(
            ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} frames {per_sec} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_prefix(camera.to_string());
        let started = Instant::now();
        let stats = replay(&mut publisher, &plan, &shutdown, Some(&pb)).await;
        pb.finish_and_clear();
        app::close(client).await;
        let secs = started.elapsed().as_secs_f64();
        if args.json {
            println!("{}", serde_json::json!({"camera": camera, "stats": stats, "seconds": secs}));
        } else {
            println!(
                "camera {camera}: published {} · acked {} · duplicates {} · failed {} · dropped {} · retries {} · \
                 {:.1} frames/s",
                stats.published,
                stats.acked,
                stats.duplicates,
                stats.failed,
                stats.dropped,
                stats.retries,
                stats.published as f64 / secs.max(1e-9)
            );
        }
        Ok(if stats.failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
    })
}

/// The one video camera of `--camera ID --source SRC`: the flags over `[video]`.
fn adhoc_spec(video: &VideoConfig, camera: &CameraId, args: &CameraArgs) -> anyhow::Result<CameraSpec> {
    let mut entry = CameraEntry {
        source: SourceUrl::new(args.source[0].to_string_lossy()),
        fps: args.fps,
        max_width: args.max_width,
        quality: args.quality,
        keepalive: args.keepalive,
        looped: args.r#loop,
        ..CameraEntry::default()
    };
    entry.motion.enabled = args.motion.map(|m| m == MotionMode::On);
    // `${NAME}` expands here too, so a password need not be on the command line, where `ps`
    // shows it to everyone on the machine.
    let env = |name: &str| std::env::var(name).ok();
    let mut specs = resolve(video, &BTreeMap::from([(camera.to_string(), entry)]), env).map_err(|e| {
        let flag = e.key.rsplit('.').next().unwrap_or_default().replace('_', "-");
        anyhow::anyhow!("--{flag}: {}", e.reason)
    })?;
    Ok(specs.remove(0))
}

/// The cameras of the config file (`[cameras.<id>]`), all of them or those `--camera` names.
fn run_configured(global: &Global, args: CameraArgs) -> anyhow::Result<ExitCode> {
    let per_camera = [
        ("--fps", args.fps.is_some()),
        ("--max-width", args.max_width.is_some()),
        ("--quality", args.quality.is_some()),
        ("--motion", args.motion.is_some()),
        ("--keepalive", args.keepalive.is_some()),
        ("--loop", args.r#loop),
    ];
    if let Some((flag, _)) = per_camera.iter().find(|(_, given)| *given) {
        anyhow::bail!(
            "{flag} goes with --source; for the cameras of the config file, set it per camera in \
             [cameras.<id>] or for all in [video]"
        );
    }
    let cfg = load_config(global, &args.overrides())?;
    let mut specs = resolve(&cfg.video, &cfg.cameras, |name| std::env::var(name).ok())
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    anyhow::ensure!(
        !specs.is_empty(),
        "no camera to run: give --camera ID --source SOURCE, or a config file (--config FILE) with \
         [cameras.<id>] tables (see examples/cameras.toml)"
    );
    if !args.camera.is_empty() {
        for wanted in &args.camera {
            anyhow::ensure!(
                specs.iter().any(|s| s.id.as_str() == wanted),
                "--camera {wanted}: no [cameras.{wanted}] in the configuration (it has: {})",
                specs.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        specs.retain(|s| args.camera.iter().any(|w| w == s.id.as_str()));
    }
    run_video(global, args, cfg, specs)
}

/// Video cameras through ffmpeg, each in its own task with its own ffmpeg and publisher, on one
/// connection. One camera failing never stops the others; the exit code is 1 when any failed.
fn run_video(global: &Global, args: CameraArgs, cfg: Config, specs: Vec<CameraSpec>) -> anyhow::Result<ExitCode> {
    use edgepool_camera::ffmpeg::find_ffmpeg;

    let tools = edgepool_harness::fixtures::cache_dir().join("tools");
    let explicit = args.ffmpeg.clone().or_else(|| cfg.video.ffmpeg.clone());
    let ffmpeg = find_ffmpeg(explicit.as_deref(), Some(&tools))?;
    if global.check {
        return Ok(print_check(&cfg));
    }
    app::run_with(cfg, "warn", |ctx| async move {
        let shutdown = ctx.shutdown.clone();
        let registry = edgepool_runtime::metrics::role_registry();
        let board = SourceBoard::default();
        for spec in &specs {
            board.add(spec.id.as_str(), &spec.shown());
        }
        let ready = Readiness::default();
        if let Some(addr) = args.listen {
            let detail_board = board.clone();
            let detail: Detail = Arc::new(move || (detail_board.any_up(), detail_board.report()));
            let bound = ctx.serve(addr, probes_with_detail(registry.clone(), ready.clone(), detail)).await?;
            eprintln!("cameras: metrics on http://{bound}/metrics, sources on http://{bound}/healthz");
        }
        let client = ctx.connect("edgepool-camera", true).await?;
        ready.set(true);
        let js = async_nats::jetstream::new(client.clone());
        let bars = MultiProgress::new();
        let style = ProgressStyle::with_template("{spinner} {prefix} {pos} frames published {per_sec} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let start_seq = args.start_seq.unwrap_or_else(default_start_seq);
        let (camera_family, video_family) = (CameraFamily::register(&registry)?, VideoFamily::register(&registry)?);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for spec in specs {
            let camera = spec.id.clone();
            let mut publisher = Publisher::new(js.clone(), camera.clone(), start_seq, live_publisher(&ctx.cfg))
                .with_metrics(camera_family.camera(camera.as_str()));
            if let Some(path) = &args.ack_log {
                publisher = publisher.on_outcome(ack_logger(path)?);
            }
            let metrics = video_family.camera(camera.as_str());
            let pb = bars.add(ProgressBar::new_spinner());
            pb.set_style(style.clone());
            pb.set_prefix(format!("{camera} ({})", spec.shown()));
            let plan = super::video::VideoPlan { spec, ffmpeg: ffmpeg.clone(), count: args.count, gate_fps: None };
            let (board, shutdown) = (board.clone(), shutdown.clone());
            tasks.push(tokio::spawn(async move {
                let video = super::video::run(&plan, &metrics, &board, &mut publisher, &shutdown, &pb).await;
                if let Err(e) = &video {
                    // The others go on; this one's error is in the summary and the log.
                    tracing::error!(camera = %plan.spec.id, error = %format!("{e:#}"), "camera stopped");
                }
                let stats = if shutdown.is_cancelled() { publisher.drain().await } else { publisher.flush().await };
                pb.finish_and_clear();
                (plan.spec, video, stats)
            }));
        }
        let mut failed = false;
        for task in tasks {
            let (spec, video, stats) = task.await.context("a camera task failed")?;
            failed |= video.is_err() || stats.failed > 0;
            print_video_summary(&spec, &video, &stats, started.elapsed().as_secs_f64(), args.json);
        }
        app::close(client).await;
        Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
    })
}

/// The publisher settings of a video camera: `drop_when_full` always. A video camera is live
/// (a file is read in real time too): waiting for room among the in-flight frames would stop
/// reading ffmpeg's output, and ffmpeg would stall; the next frame is worth more than an old one.
pub fn live_publisher(cfg: &Config) -> edgepool_camera::PublisherConfig {
    edgepool_camera::PublisherConfig { drop_when_full: true, ..cfg.publisher.clone() }
}

fn print_video_summary(
    spec: &CameraSpec,
    video: &anyhow::Result<super::video::VideoStats>,
    stats: &Stats,
    secs: f64,
    json: bool,
) {
    let (camera, shown) = (&spec.id, spec.shown());
    let error = video.as_ref().err().map(|e| format!("{e:#}"));
    let v = video.as_ref().ok().cloned().unwrap_or_default();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "camera": camera, "source": shown, "video": v, "stats": stats, "seconds": secs, "error": error,
            })
        );
        return;
    }
    if let Some(e) = error {
        println!("camera {camera} ({shown}): FAILED: {e}");
    }
    println!(
        "camera {camera} ({shown}): decoded {} · motion {} · keepalives {} · every {} · skipped as still {} · \
         restarts {} · published {} · acked {} · duplicates {} · failed {} · dropped {}",
        v.decoded,
        v.motion,
        v.keepalives,
        v.every,
        v.still,
        v.restarts,
        stats.published,
        stats.acked,
        stats.duplicates,
        stats.failed,
        stats.dropped,
    );
}
