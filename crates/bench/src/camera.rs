//! `edgepool bench camera`: what a camera costs before any frame reaches the pool. For now the
//! motion check per frame (issue 12's target: at most 2 ms at the default downscale), on a
//! real photo scaled to 1080p and 720p, still, then with a crop of another photo crossing it,
//! then still again; it also counts motion frames in each stretch (target: none while still,
//! after the 30 frames the background takes to forget the object). The per-stream CPU and RSS
//! of the ffmpeg path come with it.

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
            if crossing {
                motion_moving += usize::from(m.moving);
            } else if i > still + moving + 30 || i < still {
                // After the crossing, the background needs a few frames to forget the object.
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
    if args.json {
        println!("{}", serde_json::json!({ "motion_check": rows, "target_ms": TARGET_MS }));
    } else {
        let d = MotionConfig::default();
        println!(
            "motion check per frame (downscale to {} rows, threshold {}, min_area {}), target <= {TARGET_MS} ms:",
            d.height, d.threshold, d.min_area
        );
        println!("  resolution   frames  motion while crossing  motion while still    mean     p99     max");
        for r in &rows {
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
    Ok(ExitCode::SUCCESS)
}
