//! `edgepool camera --source rtsp://…|http(s)://…|/dev/videoN|FILE`: a video source through
//! ffmpeg, sampled at the detect rate, gated on motion, encoded to JPEG and published.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use indicatif::ProgressBar;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use edgepool_camera::config::CameraSpec;
use edgepool_camera::ffmpeg::{FfmpegArgs, FfmpegReader, RgbFrame};
use edgepool_camera::metrics::VideoMetrics;
use edgepool_camera::motion::{Decision, Gate, MotionDetector};
use edgepool_camera::status::SourceBoard;
use edgepool_camera::{Frame, Publisher};
use edgepool_wire::{ContentType, Trigger};
use time::OffsetDateTime;

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A source that sends no frame for this long (or three detect periods, if longer) is taken
/// for stalled, and ffmpeg is started again. ffmpeg's own network timeouts are 10 s.
const STALL_AFTER: Duration = Duration::from_secs(30);

/// Whether `--source` names a video source rather than image files or folders of them.
#[must_use]
pub fn is_video(source: &std::path::Path) -> bool {
    let s = source.to_string_lossy();
    if s.contains("://") || s.starts_with("/dev/video") {
        return true;
    }
    source.is_file()
        && source.extension().and_then(|e| e.to_str()).is_none_or(|e| ContentType::from_extension(e).is_none())
}

/// What one video camera did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct VideoStats {
    /// Frames ffmpeg handed over: at most `fps` a second, as its `fps` filter samples them
    /// (every decoded frame when the sampling is the gate's, see [`VideoPlan::gate_fps`]).
    pub decoded: u64,
    /// Of those, not due at the gate's detect rate (only when the gate samples).
    pub not_sampled: u64,
    /// Of those, published because something moved.
    pub motion: u64,
    /// Published because nothing had moved for `--keepalive`.
    pub keepalives: u64,
    /// Published with motion gating off.
    pub every: u64,
    /// Skipped: nothing moved and no keepalive was due.
    pub still: u64,
    /// Frames that could not be encoded.
    pub encode_errors: u64,
    /// Times ffmpeg was started again after the source dropped.
    pub restarts: u64,
}

/// How to run one video camera.
#[derive(Debug)]
pub struct VideoPlan {
    pub spec: CameraSpec,
    pub ffmpeg: PathBuf,
    /// Stop after publishing this many frames (`None`: until the source ends or a signal).
    pub count: Option<u64>,
    /// Sample at this rate in the gate, after every frame came out of ffmpeg, instead of in
    /// ffmpeg (set `spec.fps` to `None` then). Costs a pipe transfer per decoded frame; the
    /// demo uses it to count decoded and sampled frames apart.
    pub gate_fps: Option<f64>,
}

/// One ffmpeg run's frames: a frame, the end of the output, or a stall.
enum Next {
    Frame(RgbFrame),
    End,
    Failed(String),
}

/// Runs the camera until the file ends (without `loop`), `count` frames are published, or
/// `shutdown`. Live sources (and looped files) that drop, stall or cannot be reached are
/// started again with a capped, jittered backoff; the task keeps running. Only a file that
/// ffmpeg cannot read ends it with an error.
pub async fn run(
    plan: &VideoPlan,
    metrics: &VideoMetrics,
    board: &SourceBoard,
    publisher: &mut Publisher,
    shutdown: &CancellationToken,
    progress: &ProgressBar,
) -> anyhow::Result<VideoStats> {
    let spec = &plan.spec;
    let camera = spec.id.as_str();
    let shown = spec.shown();
    let motion = spec.motion.clone().map(MotionDetector::new).transpose()?;
    // ffmpeg samples at the detect rate, so the gate only gates on motion (unless told).
    let mut gate = Gate::new(plan.gate_fps, motion, spec.keepalive);
    // Files are read at their own frame rate, as the camera that recorded them would send.
    let args = FfmpegArgs { fps: spec.fps, max_width: spec.max_width, realtime: true, looped: spec.looped };
    // Longest wait for a frame before ffmpeg counts as stalled and is restarted.
    let stall_after = STALL_AFTER.max(spec.fps.map_or(Duration::ZERO, |f| Duration::from_secs_f64(3.0 / f)));
    let mut stats = VideoStats::default();
    let started = Instant::now();
    let mut backoff = Duration::from_secs(1);
    let mut published: u64 = 0;
    loop {
        let mut reader = FfmpegReader::spawn(&plan.ffmpeg, &spec.source, &args)?;
        let mut cpu = CpuMeter::default();
        let mut got_frames = false;
        let outcome = loop {
            let next = tokio::select! {
                f = tokio::time::timeout(stall_after, reader.next_frame()) => match f {
                    Ok(Ok(Some(frame))) => Next::Frame(frame),
                    Ok(Ok(None)) => Next::End,
                    Ok(Err(e)) => Next::Failed(format!("bad frame stream from ffmpeg: {e}")),
                    Err(_) => Next::Failed(format!("no frame for {stall_after:?}: stalled")),
                },
                () = shutdown.cancelled() => break None,
            };
            let frame = match next {
                Next::Frame(f) => f,
                Next::End => break None,
                Next::Failed(why) => break Some(why),
            };
            cpu.sample(&reader, &metrics.ffmpeg_cpu);
            let captured_at = OffsetDateTime::from(frame.decoded_at);
            if !got_frames {
                got_frames = true;
                metrics.up.set(1);
                tracing::info!(camera, source = %shown, width = frame.width, height = frame.height, "video source up");
            }
            stats.decoded += 1;
            board.update(camera, |s| {
                s.up = true;
                s.frames += 1;
                s.last_frame = Some(Instant::now());
            });
            let t = Instant::now();
            let decision = gate.decide(&frame.rgb, frame.width, frame.height, started.elapsed());
            metrics.motion_check.observe(t.elapsed().as_secs_f64());
            let (trigger, regions) = match decision {
                Decision::NotSampled => {
                    stats.not_sampled += 1;
                    continue;
                }
                Decision::Still => {
                    stats.still += 1;
                    metrics.still.inc();
                    continue;
                }
                Decision::Motion(m) => {
                    stats.motion += 1;
                    metrics.motion.inc();
                    (Trigger::Motion, m.regions)
                }
                Decision::Keepalive => {
                    stats.keepalives += 1;
                    metrics.keepalive.inc();
                    (Trigger::Keepalive, Vec::new())
                }
                Decision::Every => {
                    stats.every += 1;
                    metrics.every.inc();
                    (Trigger::Every, Vec::new())
                }
            };
            let jpeg = match encode(frame, spec.quality).await {
                Ok(j) => j,
                Err(e) => {
                    stats.encode_errors += 1;
                    tracing::warn!(camera, source = %shown, error = %e, "frame not encoded");
                    continue;
                }
            };
            let frame = Frame {
                captured_at,
                trigger: Some(trigger),
                motion_regions: regions,
                ..Frame::now(jpeg, ContentType::Jpeg)
            };
            let sent = tokio::select! {
                r = publisher.publish(frame) => r,
                () = shutdown.cancelled() => break None,
            };
            if let Err(e) = sent {
                tracing::warn!(camera, source = %shown, error = %e, "frame not published");
            }
            published += 1;
            board.update(camera, |s| s.published += 1);
            progress.inc(1);
            progress.set_message(format!(
                "decoded {} · motion {} · keepalive {} · still {} · restarts {}",
                stats.decoded, stats.motion, stats.keepalives, stats.still, stats.restarts
            ));
            if plan.count.is_some_and(|c| published >= c) {
                break None;
            }
        };
        cpu.sample(&reader, &metrics.ffmpeg_cpu);
        let done = shutdown.is_cancelled() || plan.count.is_some_and(|c| published >= c);
        let (status, stderr) = reader.finish(&spec.source, !done && outcome.is_none()).await;
        metrics.up.set(0);
        if done {
            board.update(camera, |s| {
                s.up = false;
                s.finished = true;
            });
            return Ok(stats);
        }
        let reason = match &outcome {
            Some(why) => why.clone(),
            None => explain(status, &stderr),
        };
        board.update(camera, |s| {
            s.up = false;
            s.last_error = Some(reason.clone());
        });
        let clean_end = outcome.is_none() && status == Some(0);
        if !spec.kind.is_live() && !spec.looped {
            board.update(camera, |s| s.finished = true);
            anyhow::ensure!(clean_end, "ffmpeg could not read {shown}: {reason}");
            return Ok(stats);
        }
        stats.restarts += 1;
        metrics.restarts.inc();
        board.update(camera, |s| s.restarts += 1);
        if got_frames {
            backoff = Duration::from_secs(1);
        }
        let wait = jittered(backoff);
        tracing::warn!(
            camera,
            source = %shown,
            reason = %reason,
            retry_in = ?wait,
            "video source stopped; starting ffmpeg again"
        );
        progress.set_message(format!("source down ({reason}), retrying in {wait:.1?}"));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => {
                board.update(camera, |s| s.finished = true);
                return Ok(stats);
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Adds ffmpeg's CPU time to the counter, at most once a second.
#[derive(Default)]
struct CpuMeter {
    counted: f64,
    at: Option<Instant>,
}

impl CpuMeter {
    fn sample(&mut self, reader: &FfmpegReader, counter: &prometheus::Counter) {
        if self.at.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        self.at = Some(Instant::now());
        if let Some(now) = reader.cpu_seconds()
            && now > self.counted
        {
            counter.inc_by(now - self.counted);
            self.counted = now;
        }
    }
}

fn explain(status: Option<i32>, stderr: &str) -> String {
    let code = status.map_or_else(|| "killed".to_owned(), |c| format!("exit {c}"));
    if stderr.is_empty() { code } else { format!("{code}: {stderr}") }
}

/// `d` give or take 20 %, so cameras that dropped together do not reconnect together.
fn jittered(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.subsec_nanos());
    let factor = 0.8 + 0.4 * f64::from(nanos % 1000) / 1000.0;
    d.mul_f64(factor)
}

/// JPEG-encodes a frame off the async threads.
async fn encode(frame: RgbFrame, quality: u8) -> anyhow::Result<Bytes> {
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::with_capacity(frame.rgb.len() / 8);
        let w = u32::try_from(frame.width).context("frame width")?;
        let h = u32::try_from(frame.height).context("frame height")?;
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
            .encode(&frame.rgb, w, h, image::ExtendedColorType::Rgb8)
            .context("JPEG encoding")?;
        Ok(Bytes::from(out))
    })
    .await
    .context("the encoding task failed")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_sources_are_told_from_image_files() {
        assert!(is_video(std::path::Path::new("rtsp://cam/live")));
        assert!(is_video(std::path::Path::new("https://cam/mjpg")));
        assert!(is_video(std::path::Path::new("/dev/video0")));
        let photos = edgepool_harness::fixtures::workspace_root().join("testdata/photos");
        assert!(!is_video(&photos), "a folder of images");
        assert!(!is_video(&photos.join("coffee.png")));
        assert!(is_video(&edgepool_harness::fixtures::workspace_root().join("Cargo.toml")), "ffmpeg will say");
    }

    #[test]
    fn backoff_is_jittered_within_a_fifth() {
        for _ in 0..20 {
            let j = jittered(Duration::from_secs(10));
            assert!((8.0..=12.0).contains(&j.as_secs_f64()), "{j:?}");
        }
    }
}
