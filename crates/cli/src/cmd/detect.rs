//! `edgepool detect`: run the detector on image files and print, or draw, what it finds.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use edgepool_detector::{Detection, Model, Output};
use serde::Serialize;

use crate::config::Overrides;
use crate::{Global, load_config, print_check};

/// Run the detector on image files (no NATS needed).
///
/// Prints a table per image, or with --json one JSON object per line per image. A file that
/// cannot be read or decoded is reported on stderr and skipped; the exit code is then non-zero
/// once all files are done.
#[derive(Debug, clap::Args)]
pub struct DetectArgs {
    /// JPEG or PNG files to run the detector on.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,

    /// Print one JSON object per image per line:
    /// {"image", "width", "height", "detections": [{"label", "class_id", "score", "bbox"}]},
    /// detections by descending score, bbox normalized to 0..1 of the image.
    #[arg(long)]
    pub json: bool,

    /// Report only detections scoring at least this (0..1) [default: `detector.score_threshold`,
    /// 0.5].
    #[arg(long, value_name = "T")]
    pub threshold: Option<f32>,

    /// Also write a PNG copy of each image with boxes, labels and scores drawn into DIR
    /// (created if missing), named after the image.
    #[arg(long, value_name = "DIR")]
    pub annotate: Option<PathBuf>,

    /// The ONNX model. Default: ssd_mobilenet_v2_coco.onnx in $EDGEPOOL_MODEL_DIR, else
    /// $XDG_CACHE_HOME/edgepool/models, else ~/.cache/edgepool/models (`cargo xtask model`
    /// puts it there).
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,

    /// Threads per inference (intra-op parallelism) [default: `detector.threads`, 1].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

/// One line of `--json` output.
#[derive(Serialize)]
struct JsonLine<'a> {
    image: &'a str,
    width: u32,
    height: u32,
    detections: &'a [Detection],
}

impl DetectArgs {
    /// The config keys the given flags set.
    #[must_use]
    pub fn overrides(&self) -> Overrides {
        let mut flags = Overrides::default();
        flags
            .set("detector.score_threshold", self.threshold.map(f64::from))
            .set("detector.threads", self.threads.map(|v| v as u64))
            .path("model.path", self.model.as_deref());
        flags
    }
}

pub fn run(global: &Global, args: DetectArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(global, &args.overrides())?;
    if global.check {
        return Ok(print_check(&cfg));
    }
    let model = Model::load(&cfg.model.resolved_path(), &cfg.detector)?;
    let mut session = model.session();
    if let Some(dir) = &args.annotate {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }

    let mut stdout = std::io::stdout().lock();
    let mut used_names = HashSet::new();
    let mut failed = 0usize;
    for path in &args.images {
        let shown = path.display().to_string();
        let result =
            std::fs::read(path).map_err(anyhow::Error::from).and_then(|bytes| Ok((session.detect(&bytes)?, bytes)));
        let (out, bytes) = match result {
            Ok(ok) => ok,
            Err(e) => {
                eprintln!("error: {shown}: {e:#}");
                failed += 1;
                continue;
            }
        };
        if args.json {
            let line = JsonLine { image: &shown, width: out.width, height: out.height, detections: &out.detections };
            writeln!(stdout, "{}", serde_json::to_string(&line)?)?;
        } else {
            print_table(&mut stdout, &shown, &out)?;
        }
        if let Some(dir) = &args.annotate {
            let target = dir.join(unique_png_name(path, &mut used_names));
            if let Err(e) = annotate::write(&bytes, &out, &target) {
                eprintln!("error: {shown}: annotating to {}: {e:#}", target.display());
                failed += 1;
            }
        }
    }
    stdout.flush()?;
    if failed > 0 {
        eprintln!("{failed} of {} images failed", args.images.len());
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(w: &mut impl std::io::Write, shown: &str, out: &Output) -> std::io::Result<()> {
    let t = &out.timings;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    writeln!(
        w,
        "{shown}: {}x{}, {} detection{} (decode {:.1} ms, preprocess {:.1} ms, inference {:.1} ms, post {:.2} ms)",
        out.width,
        out.height,
        out.detections.len(),
        if out.detections.len() == 1 { "" } else { "s" },
        ms(t.decode),
        ms(t.preprocess),
        ms(t.inference),
        ms(t.postprocess),
    )?;
    if out.detections.is_empty() {
        return Ok(());
    }
    writeln!(w, "  {:<16} {:>5}  {:>5} {:>5} {:>5} {:>5}  (box in pixels)", "label", "score", "x0", "y0", "x1", "y1")?;
    let (fw, fh) = (out.width as f32, out.height as f32);
    for d in &out.detections {
        let b = &d.bbox;
        writeln!(
            w,
            "  {:<16} {:>5.3}  {:>5.0} {:>5.0} {:>5.0} {:>5.0}",
            d.label,
            d.score,
            b.x_min * fw,
            b.y_min * fh,
            b.x_max * fw,
            b.y_max * fh
        )?;
    }
    Ok(())
}

/// `photo.jpg` -> `photo.png`; a second `photo.*` in the same run becomes `photo-2.png`.
fn unique_png_name(path: &Path, used: &mut HashSet<String>) -> String {
    let stem = path.file_stem().map_or_else(|| "image".to_owned(), |s| s.to_string_lossy().into_owned());
    let mut name = format!("{stem}.png");
    let mut n = 1;
    while !used.insert(name.clone()) {
        n += 1;
        name = format!("{stem}-{n}.png");
    }
    name
}

/// Drawing boxes and labels on a copy of the image (`edgepool_detector::draw`, shared with the
/// sink's snapshots).
mod annotate {
    use std::path::Path;

    use anyhow::Context as _;
    use edgepool_detector::Output;

    pub(super) fn write(encoded: &[u8], out: &Output, target: &Path) -> anyhow::Result<()> {
        // The detector already decoded (and limit-checked) these bytes, so decoding again here
        // is safe; the CLI keeps the detector's buffers private instead of sharing them.
        let mut img = image::load_from_memory(encoded).context("decoding for annotation")?.to_rgb8();
        edgepool_detector::draw::detections(&mut img, &out.detections);
        img.save_with_format(target, image::ImageFormat::Png).context("writing PNG")?;
        Ok(())
    }
}
