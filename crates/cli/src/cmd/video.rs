//! `edgepool camera --source rtsp://…|http(s)://…|/dev/videoN|FILE`: a video source through
//! ffmpeg, sampled at the detect rate, gated on motion, encoded to JPEG and published.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use indicatif::ProgressBar;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use edgepool_camera::ffmpeg::{FfmpegArgs, FfmpegReader, RgbFrame, SourceKind, redact};
use edgepool_camera::metrics::VideoMetrics;
use edgepool_camera::motion::{Decision, Gate};
use edgepool_camera::{Frame, Publisher};
use edgepool_wire::ContentType;

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

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
    /// Frames ffmpeg handed over (at most `--fps` a second).
    pub decoded: u64,
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
    pub source: String,
    pub ffmpeg: PathBuf,
    pub args: FfmpegArgs,
    pub quality: u8,
    /// Stop after publishing this many frames (`None`: until the source ends or a signal).
    pub count: Option<u64>,
}

/// Runs the camera until the file ends (without `--loop`), `count` frames are published, or
/// `shutdown`. Live sources (and looped files) that drop are started again with a capped,
/// jittered backoff; the process keeps running.
pub async fn run(
    plan: &VideoPlan,
    mut gate: Gate,
    metrics: &VideoMetrics,
    publisher: &mut Publisher,
    shutdown: &CancellationToken,
    progress: &ProgressBar,
) -> anyhow::Result<VideoStats> {
    let mut stats = VideoStats::default();
    let shown = redact(&plan.source);
    let kind = SourceKind::of(&plan.source);
    let started = Instant::now();
    let mut backoff = Duration::from_secs(1);
    let mut published: u64 = 0;
    loop {
        let mut reader = FfmpegReader::spawn(&plan.ffmpeg, &plan.source, &plan.args)?;
        let mut got_frames = false;
        let outcome = loop {
            let next = tokio::select! {
                f = reader.next_frame() => f,
                () = shutdown.cancelled() => break Ok(()),
            };
            let frame = match next {
                Ok(Some(f)) => f,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            if !got_frames {
                got_frames = true;
                metrics.up.set(1);
            }
            stats.decoded += 1;
            let t = Instant::now();
            let decision = gate.decide(&frame.rgb, frame.width, frame.height, started.elapsed());
            metrics.motion_check.observe(t.elapsed().as_secs_f64());
            match &decision {
                Decision::NotSampled | Decision::Still => {
                    stats.still += 1;
                    metrics.still.inc();
                    continue;
                }
                Decision::Motion(_) => {
                    stats.motion += 1;
                    metrics.motion.inc();
                }
                Decision::Keepalive => {
                    stats.keepalives += 1;
                    metrics.keepalive.inc();
                }
                Decision::Every => {
                    stats.every += 1;
                    metrics.every.inc();
                }
            }
            let jpeg = match encode(frame, plan.quality).await {
                Ok(j) => j,
                Err(e) => {
                    stats.encode_errors += 1;
                    tracing::warn!(source = %shown, error = %e, "frame not encoded");
                    continue;
                }
            };
            let sent = tokio::select! {
                r = publisher.publish(Frame::now(jpeg, ContentType::Jpeg)) => r,
                () = shutdown.cancelled() => break Ok(()),
            };
            if let Err(e) = sent {
                tracing::warn!(source = %shown, error = %e, "frame not published");
            }
            published += 1;
            progress.inc(1);
            progress.set_message(format!(
                "decoded {} · motion {} · keepalive {} · still {} · restarts {}",
                stats.decoded, stats.motion, stats.keepalives, stats.still, stats.restarts
            ));
            if plan.count.is_some_and(|c| published >= c) {
                break Ok(());
            }
        };
        let done = shutdown.is_cancelled() || plan.count.is_some_and(|c| published >= c);
        let (status, stderr) = reader.finish(&plan.source, !done).await;
        metrics.up.set(0);
        if done {
            return Ok(stats);
        }
        if let Err(e) = outcome {
            tracing::warn!(source = %shown, error = %e, "bad frame stream from ffmpeg");
        }
        let clean_end = status == Some(0);
        if !kind.is_live() && !plan.args.looped {
            anyhow::ensure!(clean_end, "ffmpeg could not read {shown}: {}", explain(status, &stderr));
            return Ok(stats);
        }
        stats.restarts += 1;
        metrics.restarts.inc();
        if got_frames {
            backoff = Duration::from_secs(1);
        }
        let wait = jittered(backoff);
        tracing::warn!(
            source = %shown,
            reason = %explain(status, &stderr),
            retry_in = ?wait,
            "video source stopped; starting ffmpeg again"
        );
        progress.set_message(format!("source down ({}), retrying in {wait:.1?}", explain(status, &stderr)));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return Ok(stats),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
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
