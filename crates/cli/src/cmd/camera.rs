//! `edgepool camera`: publish image files (or folders of them) as frames of one camera, or one
//! video source through ffmpeg (see `video.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use edgepool_camera::metrics::CameraMetrics;
use edgepool_camera::{AckResult, Frame, Outcome, Publisher, Stats};
use edgepool_runtime::http::{Readiness, probes};
use edgepool_wire::{CameraId, ContentType};

use crate::config::Overrides;
use crate::{Global, app, load_config, print_check};

#[derive(Debug, clap::Args)]
pub struct CameraArgs {
    /// Camera id: [A-Za-z0-9_-]{1,64}, not starting with '_'. Frames go to frames.<ID>.
    #[arg(long)]
    pub camera: String,
    /// Image files or folders of them (.jpg, .jpeg, .png), published in path order; or one video
    /// source read through ffmpeg: rtsp://…, http(s)://… (MJPEG, HLS, …), /dev/videoN or a
    /// video file. Credentials in a URL never appear in logs or output.
    #[arg(long, required = true, num_args = 1..)]
    pub source: Vec<PathBuf>,
    /// Frames per second (default: as fast as acks allow; for video, every decoded frame). With
    /// a rate the camera behaves like a live camera: when too many publishes await their ack,
    /// new frames are dropped and counted. For video this is the detect rate: ffmpeg decodes
    /// every frame and hands over at most this many a second.
    #[arg(long)]
    pub fps: Option<f64>,
    /// Publish this many frames, cycling through the sources (default: each source once; for
    /// video, until the source ends).
    #[arg(long, conflicts_with = "loop")]
    pub count: Option<u64>,
    /// Cycle through the sources (replay the video file) until interrupted.
    #[arg(long = "loop")]
    pub r#loop: bool,
    /// Video: the ffmpeg to run (default: on PATH, else the one `cargo xtask tools` installs).
    #[arg(long, value_name = "PATH")]
    pub ffmpeg: Option<PathBuf>,
    /// Video: scale frames wider than this down (aspect kept) before encoding, to cut bandwidth.
    #[arg(long, value_name = "PX")]
    pub max_width: Option<u32>,
    /// Video: JPEG quality of the published frames, 1-100.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,
    /// Video: publish only frames where something moved (plus keepalives), or every sampled
    /// frame (`off`).
    #[arg(long, value_enum, default_value_t = MotionMode::On)]
    pub motion: MotionMode,
    /// Video with motion on: publish a frame this often while nothing moves, so subscribers
    /// know the camera is alive.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub keepalive: Duration,
    /// First sequence number (default: Unix time in microseconds, so a restarted camera never
    /// reuses a number inside the broker's duplicate window).
    #[arg(long)]
    pub start_seq: Option<u64>,
    /// Publishes awaiting their ack at once.
    #[arg(long)]
    pub max_in_flight: Option<usize>,
    /// Serve /metrics, /healthz and /readyz here (e.g. 0.0.0.0:9101).
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
    let video = args.source.iter().any(|s| super::video::is_video(s));
    if video {
        anyhow::ensure!(
            args.source.len() == 1,
            "--source: one video source per camera (a URL, a device or a video file), not mixed with images"
        );
        return run_video(global, args);
    }
    let cfg = load_config(global, &args.overrides())?;
    let camera = CameraId::new(args.camera.clone()).context("--camera")?;
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

/// One video source through ffmpeg.
fn run_video(global: &Global, args: CameraArgs) -> anyhow::Result<ExitCode> {
    use edgepool_camera::ffmpeg::{FfmpegArgs, SourceKind, find_ffmpeg, redact};
    use edgepool_camera::motion::{Gate, MotionConfig, MotionDetector};

    let cfg = load_config(global, &args.overrides())?;
    let camera = CameraId::new(args.camera.clone()).context("--camera")?;
    let source = args.source[0].to_string_lossy().into_owned();
    let shown = redact(&source);
    let kind = SourceKind::of(&source);
    if kind == SourceKind::File {
        anyhow::ensure!(args.source[0].is_file(), "--source {shown}: no such file");
    }
    let tools = edgepool_harness::fixtures::cache_dir().join("tools");
    let ffmpeg = find_ffmpeg(args.ffmpeg.as_deref(), Some(&tools))?;
    if global.check {
        return Ok(print_check(&cfg));
    }
    let plan = super::video::VideoPlan {
        source,
        ffmpeg,
        // Files are read at their own frame rate, as the camera that recorded them would send.
        args: FfmpegArgs { fps: args.fps, max_width: args.max_width, realtime: true, looped: args.r#loop },
        quality: args.quality,
        count: args.count,
    };
    let motion = match args.motion {
        MotionMode::On => Some(MotionDetector::new(MotionConfig::default())?),
        MotionMode::Off => None,
    };
    // ffmpeg already samples at --fps; the gate only gates on motion.
    let gate = Gate::new(None, motion, args.keepalive);
    app::run_with(cfg, "warn", |ctx| async move {
        let shutdown = ctx.shutdown.clone();
        let registry = edgepool_runtime::metrics::role_registry();
        let video_metrics = edgepool_camera::metrics::VideoMetrics::register(&registry, camera.as_str())?;
        let (client, mut publisher) = connect_publisher(&ctx, &camera, &args, &registry).await?;
        let pb = ProgressBar::new_spinner();
        pb.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {pos} frames published {per_sec} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        pb.set_prefix(format!("{camera} ({shown})"));
        let started = Instant::now();
        let video = super::video::run(&plan, gate, &video_metrics, &mut publisher, &shutdown, &pb).await;
        let stats = if shutdown.is_cancelled() { publisher.drain().await } else { publisher.flush().await };
        pb.finish_and_clear();
        app::close(client).await;
        let video = video?;
        let secs = started.elapsed().as_secs_f64();
        if args.json {
            println!(
                "{}",
                serde_json::json!({"camera": camera, "source": shown, "video": video, "stats": stats, "seconds": secs})
            );
        } else {
            println!(
                "camera {camera} ({shown}): decoded {} · motion {} · keepalives {} · every {} · skipped as still {} · \
                 restarts {} · published {} · acked {} · duplicates {} · failed {} · dropped {}",
                video.decoded,
                video.motion,
                video.keepalives,
                video.every,
                video.still,
                video.restarts,
                stats.published,
                stats.acked,
                stats.duplicates,
                stats.failed,
                stats.dropped,
            );
        }
        Ok(if stats.failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
    })
}
