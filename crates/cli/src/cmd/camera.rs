//! `edgepool camera`: publish image files (or folders of them) as frames of one camera.

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
    /// Image files or folders of them (.jpg, .jpeg, .png), published in path order.
    #[arg(long, required = true, num_args = 1..)]
    pub source: Vec<PathBuf>,
    /// Frames per second (default: as fast as acks allow). With a rate the camera behaves like a
    /// live camera: when too many publishes await their ack, new frames are dropped and counted.
    #[arg(long)]
    pub fps: Option<f64>,
    /// Publish this many frames, cycling through the sources (default: each source once).
    #[arg(long, conflicts_with = "loop")]
    pub count: Option<u64>,
    /// Cycle through the sources until interrupted.
    #[arg(long = "loop")]
    pub r#loop: bool,
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
        let metrics = CameraMetrics::register(&registry, camera.as_str())?;
        let ready = Readiness::default();
        if let Some(addr) = args.listen {
            let bound = ctx.serve(addr, probes(registry.clone(), ready.clone())).await?;
            eprintln!("camera {camera}: metrics on http://{bound}/metrics");
        }
        let client = ctx.connect(&format!("edgepool-camera-{camera}"), true).await?;
        ready.set(true);
        let js = async_nats::jetstream::new(client.clone());
        let mut publisher = Publisher::new(
            js,
            camera.clone(),
            args.start_seq.unwrap_or_else(default_start_seq),
            ctx.cfg.publisher.clone(),
        )
        .with_metrics(metrics);
        if let Some(path) = &args.ack_log {
            publisher = publisher.on_outcome(ack_logger(path)?);
        }
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
