//! `edgepool bench camera`: what a camera costs before any frame reaches the pool.
//!
//! 1. The motion check per frame (issue 12's target: at most 2 ms at the default downscale), on
//!    a real photo scaled to 1080p and 720p, still, then with a crop of another photo crossing
//!    it, then still again; it also counts motion frames in each stretch (target: none while
//!    still, right after the crossing included).
//! 2. Streams: the real `edgepool camera` process on a mostly-static H.264 clip (30 fps, the
//!    clip of `edgepool_camera::clip`: still, a person crossing, still) looped, sampled at
//!    5 fps, against a real nats-server: CPU share and RSS of the camera process and of its
//!    ffmpeg children, per stream, for one 1080p camera, one 720p camera and four 720p cameras
//!    in one process; and the share of sampled frames skipped for no motion, which is the load
//!    the pool is spared (issue 12's targets: camera RSS at most 64 MiB per stream plus ffmpeg;
//!    no frame published while still beyond the keepalives).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use edgepool_camera::motion::{MotionConfig, MotionDetector};
use serde::Serialize;

/// The target from issue 12.
const TARGET_MS: f64 = 2.0;

#[derive(Debug, clap::Args)]
pub struct BenchCameraArgs {
    /// Folder of JPEG/PNG photos to make the frames from [default: testdata/photos].
    #[arg(long, value_name = "DIR")]
    pub photos: Option<PathBuf>,
    /// Frames checked per resolution: a third still, a sixth with an object (a crop of another
    /// photo) crossing the frame, then still again.
    #[arg(long, default_value_t = 600)]
    pub frames: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Measure each stream scenario this long (after a 5 s warm-up).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub duration: std::time::Duration,
    /// Only the motion check; no ffmpeg, no nats-server.
    #[arg(long)]
    pub motion_only: bool,
    /// The ffmpeg to use (default: on PATH, else the tools venv's).
    #[arg(long)]
    pub ffmpeg: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Row {
    resolution: String,
    frames: usize,
    /// Motion frames while the object crossed.
    motion_frames_moving: usize,
    moving_frames: usize,
    /// Motion frames in the still stretches (target 0).
    motion_frames_still: usize,
    mean_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

pub fn run(args: BenchCameraArgs) -> anyhow::Result<ExitCode> {
    let photos = crate::detect::load_photos(args.photos.as_deref())?;
    let motion = motion_rows(&args, &photos)?;
    let streams = if args.motion_only { Vec::new() } else { streams::run(&args, &photos)? };
    if args.json {
        println!("{}", serde_json::json!({ "motion_check": motion, "target_ms": TARGET_MS, "streams": streams }));
    } else {
        print_motion(&motion);
        streams::print(&streams);
    }
    Ok(ExitCode::SUCCESS)
}

fn motion_rows(args: &BenchCameraArgs, photos: &[(String, Vec<u8>)]) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for (w, h) in [(1920u32, 1080u32), (1280, 720)] {
        eprintln!("[bench] motion check at {w}x{h}, {} frames", args.frames);
        let scaled = |i: usize| -> anyhow::Result<image::RgbImage> {
            let (name, bytes) = &photos[i % photos.len()];
            let img = image::load_from_memory(bytes).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            Ok(img.resize_exact(w, h, image::imageops::FilterType::Triangle).to_rgb8())
        };
        let background = scaled(0)?;
        let object = image::imageops::crop_imm(&scaled(1)?, w / 3, h / 3, w / 8, h / 4).to_image();
        let (still, moving) = (args.frames / 3, args.frames / 6);
        let mut detector = MotionDetector::new(MotionConfig::default())?;
        let mut times = Vec::with_capacity(args.frames);
        let (mut motion_moving, mut motion_still) = (0, 0);
        let mut frame = background.clone();
        for i in 0..args.frames {
            let crossing = (still..still + moving).contains(&i);
            frame.clone_from(&background);
            if crossing {
                // Left to right across the middle, in `moving` steps.
                let x = i64::from(w + object.width()) * (i - still) as i64 / moving as i64 - i64::from(object.width());
                image::imageops::overlay(&mut frame, &object, x, i64::from(h / 3));
            }
            let t = Instant::now();
            let m = detector.check(frame.as_raw(), w as usize, h as usize);
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            // Every still frame counts, those right after the crossing included: changed pixels
            // barely enter the background, so the object leaves no ghost.
            if crossing {
                motion_moving += usize::from(m.moving);
            } else {
                motion_still += usize::from(m.moving);
            }
        }
        times.sort_by(f64::total_cmp);
        let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        rows.push(Row {
            resolution: format!("{w}x{h}"),
            frames: times.len(),
            motion_frames_moving: motion_moving,
            moving_frames: moving,
            motion_frames_still: motion_still,
            mean_ms: times.iter().sum::<f64>() / times.len() as f64,
            p99_ms: pick(0.99),
            max_ms: pick(1.0),
        });
    }
    Ok(rows)
}

fn print_motion(rows: &[Row]) {
    {
        let d = MotionConfig::default();
        println!(
            "motion check per frame (downscale to {} rows, threshold {}, min_area {}), target <= {TARGET_MS} ms:",
            d.height, d.threshold, d.min_area
        );
        println!("  resolution   frames  motion while crossing  motion while still    mean     p99     max");
        for r in rows {
            println!(
                "  {:<10} {:>7} {:>12}/{:<8} {:>17} {:>6.3}ms {:>6.3}ms {:>6.3}ms  {}",
                r.resolution,
                r.frames,
                r.motion_frames_moving,
                r.moving_frames,
                r.motion_frames_still,
                r.mean_ms,
                r.p99_ms,
                r.max_ms,
                if r.mean_ms <= TARGET_MS { "ok" } else { "OVER TARGET" }
            );
        }
    }
}

mod streams;
