//! `edgepool bench detect`: detector speed on real photos, per stage and per thread layout,
//! with onnxruntime timed in the same run as the yardstick.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use edgepool_detector::{
    DetectorConfig, Model, Optimization, Session, StageTimings, default_model_dir, default_model_path,
};
use serde::{Deserialize, Serialize};

mod profile;

/// The onnxruntime runner, embedded so an installed binary can bench too.
const REFERENCE_PY: &str = include_str!("../../../tools/model/reference.py");
/// Pinned reference versions; changing them re-creates the venv.
const REFERENCE_PINS: [&str; 2] = ["onnxruntime==1.26.0", "numpy==1.26.4"];
/// Frames run before timing a layout: the first run packs weights and grows buffers.
const WARMUP_FRAMES: usize = 2;

/// Detector speed: per-stage split, fps per thread layout, peak RSS, ratio to onnxruntime.
#[derive(Debug, clap::Args)]
pub struct BenchDetectArgs {
    /// Folder of JPEG/PNG photos to cycle through [default: testdata/photos].
    #[arg(long, value_name = "DIR")]
    pub photos: Option<PathBuf>,

    /// Timed frames per layout (per session for the parallel layout).
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub iterations: usize,

    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,

    /// Skip the onnxruntime comparison (and creating its Python venv).
    #[arg(long)]
    pub no_reference: bool,

    /// Also time the alternatives that lost (declutter-only plan, parallel sessions sharing
    /// one all-cores pool); see docs/performance.md.
    #[arg(long)]
    pub experiments: bool,

    /// The ONNX model [default: as `edgepool detect`].
    #[arg(long, value_name = "PATH")]
    pub model: Option<PathBuf>,

    /// Instead of the layouts: where inference time goes. Every tract plan node is timed on its
    /// own, at 1 thread and at all cores, and put beside onnxruntime's own profiler on the same
    /// input, grouped by the ONNX operator each node came from (convolutions by kind), with the
    /// 10 most expensive tract nodes and their shapes.
    #[arg(long)]
    pub profile: bool,
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
struct Report {
    cores: usize,
    cpu: String,
    photos: usize,
    iterations: usize,
    /// VmHWM right after `Model::load` + one session, and after its first frame.
    peak_rss_mib_after_load: f64,
    peak_rss_mib_after_first_frame: f64,
    layouts: Vec<Layout>,
    reference: Option<ReferenceReport>,
}

/// One way of spending the cores, with its mean per-frame split and total throughput.
#[derive(Debug, Serialize)]
struct Layout {
    name: String,
    sessions: usize,
    threads_per_session: usize,
    frames: usize,
    fps: f64,
    split_ms: Split,
}

#[derive(Debug, Default, Serialize)]
struct Split {
    decode: f64,
    preprocess: f64,
    inference: f64,
    postprocess: f64,
    /// (decode + preprocess + postprocess) / inference, in percent.
    overhead_pct_of_inference: f64,
}

impl Split {
    fn mean(timings: &[StageTimings]) -> Split {
        let n = timings.len().max(1) as f64;
        let ms = |f: fn(&StageTimings) -> Duration| timings.iter().map(|t| f(t).as_secs_f64()).sum::<f64>() * 1e3 / n;
        let (decode, preprocess) = (ms(|t| t.decode), ms(|t| t.preprocess));
        let (inference, postprocess) = (ms(|t| t.inference), ms(|t| t.postprocess));
        let overhead_pct_of_inference = 100.0 * (decode + preprocess + postprocess) / inference.max(f64::MIN_POSITIVE);
        Split { decode, preprocess, inference, postprocess, overhead_pct_of_inference }
    }
}

#[derive(Debug, Serialize)]
struct ReferenceReport {
    onnxruntime: String,
    /// Per thread count: tract and onnxruntime inference on the same input tensor.
    runs: Vec<ReferenceRun>,
}

#[derive(Debug, Serialize)]
struct ReferenceRun {
    threads: usize,
    tract_ms: f64,
    onnxruntime_ms: f64,
    /// tract time / onnxruntime time: 2.0 means tract takes twice as long.
    ratio: f64,
    /// At 1 thread, where our rewrites apply: tract without our depthwise kernel
    /// (`Optimization::OptimizedWithoutDepthwise`), its frames interleaved with the full
    /// plan's. What the kernel gives.
    #[serde(skip_serializing_if = "Option::is_none")]
    tract_without_depthwise_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    without_depthwise_ratio: Option<f64>,
    /// At 1 thread: tract on the graph as the file has it, without either rewrite
    /// (`Optimization::OptimizedPlainGraph`), interleaved with the other two. What both give.
    #[serde(skip_serializing_if = "Option::is_none")]
    tract_plain_graph_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plain_graph_ratio: Option<f64>,
}

/// What tools/model/reference.py prints.
#[derive(Debug, Deserialize)]
pub(crate) struct OrtOutput {
    pub(crate) onnxruntime: String,
    pub(crate) runs: Vec<OrtRun>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct OrtRun {
    pub(crate) threads: usize,
    pub(crate) ms_mean: f64,
    /// With `--profile`: onnxruntime's per-node kernel times, mean per frame.
    #[serde(default)]
    pub(crate) nodes: Vec<OrtNode>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct OrtNode {
    pub(crate) name: String,
    pub(crate) op: String,
    pub(crate) ms: f64,
}

pub fn run(args: BenchDetectArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.iterations > 0, "--iterations must be at least 1");
    let model_path = args.model.clone().unwrap_or_else(default_model_path);
    let photos = load_photos(args.photos.as_deref())?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let progress = |msg: &str| eprintln!("[bench] {msg}");
    if args.profile {
        return profile::run(&args, &model_path, &photos, cores, &progress);
    }

    // Peak RSS first, before anything else has grown the process.
    let one = Model::load(&model_path, &DetectorConfig::default())?;
    let mut session = one.session();
    let rss_load = peak_rss_mib()?;
    session.detect(&photos[0].1).with_context(|| format!("detecting {}", photos[0].0))?;
    let rss_first = peak_rss_mib()?;

    let mut layouts = Vec::new();
    progress(&format!("1 session x 1 thread, {} frames", args.iterations));
    layouts.push(sequential("1 thread", &mut session, &photos, args.iterations, 1)?);

    let all = Model::load(&model_path, &DetectorConfig { threads: cores, ..Default::default() })?;
    progress(&format!("1 session x {cores} threads, {} frames", args.iterations));
    layouts.push(sequential("all cores in one session", &mut all.session(), &photos, args.iterations, cores)?);

    progress(&format!("{cores} sessions x 1 thread, {} frames each", args.iterations));
    layouts.push(parallel(&format!("{cores} parallel 1-thread sessions"), &one, cores, 1, &photos, args.iterations)?);

    let plain = Model::load_with(&model_path, &DetectorConfig::default(), Optimization::OptimizedPlainGraph)?;
    progress(&format!("1 session x 1 thread on the plain graph (neither rewrite), {} frames", args.iterations));
    layouts.push(sequential("1 thread, plain graph", &mut plain.session(), &photos, args.iterations, 1)?);
    progress(&format!("{cores} sessions x 1 thread on the plain graph"));
    let name = format!("{cores} parallel 1-thread, plain graph");
    layouts.push(parallel(&name, &plain, cores, 1, &photos, args.iterations)?);
    drop(plain);

    if args.experiments {
        progress(&format!("{cores} sessions sharing one {cores}-thread pool"));
        layouts.push(parallel(
            &format!("{cores} sessions sharing a {cores}-thread pool"),
            &all,
            cores,
            cores,
            &photos,
            args.iterations,
        )?);
        let declutter = Model::load_with(&model_path, &DetectorConfig::default(), Optimization::Decluttered)?;
        let n = args.iterations.div_ceil(4).max(3);
        progress(&format!("declutter-only plan, 1 thread, {n} frames"));
        layouts.push(sequential("declutter only (no codegen), 1 thread", &mut declutter.session(), &photos, n, 1)?);
    }

    let reference = if args.no_reference {
        None
    } else {
        let mut s = session;
        s.decode(&photos[0].1)?;
        let tensor = s.preprocess()?.to_vec();
        let ort = run_reference(&model_path, &tensor, cores, args.iterations, false, &progress)?;
        let mut runs = Vec::new();
        for r in ort.runs {
            // Both rewrites are for 1-thread sessions (crates/detector/src/model.rs): at 1
            // thread the plan is timed with both, without the depthwise kernel and without
            // either, interleaved frame by frame.
            let (tract_ms, without) = if r.threads == 1 {
                let cfg = DetectorConfig::default();
                let without = Model::load_with(&model_path, &cfg, Optimization::OptimizedWithoutDepthwise)?;
                let plain = Model::load_with(&model_path, &cfg, Optimization::OptimizedPlainGraph)?;
                progress("tract at 1 thread: with both rewrites, without the depthwise kernel, without either");
                let mut sessions = [one.session(), without.session(), plain.session()];
                let ms = time_interleaved(&mut sessions, &tensor, args.iterations)?;
                (ms[0], Some((ms[1], ms[2])))
            } else {
                (time_interleaved(&mut [all.session()], &tensor, args.iterations)?[0], None)
            };
            runs.push(ReferenceRun {
                threads: r.threads,
                tract_ms,
                onnxruntime_ms: r.ms_mean,
                ratio: tract_ms / r.ms_mean,
                tract_without_depthwise_ms: without.map(|w| w.0),
                without_depthwise_ratio: without.map(|w| w.0 / r.ms_mean),
                tract_plain_graph_ms: without.map(|w| w.1),
                plain_graph_ratio: without.map(|w| w.1 / r.ms_mean),
            });
        }
        Some(ReferenceReport { onnxruntime: ort.onnxruntime, runs })
    };

    let report = Report {
        cores,
        cpu: edgepool_worker::device::cpu_model_name(),
        photos: photos.len(),
        iterations: args.iterations,
        peak_rss_mib_after_load: rss_load,
        peak_rss_mib_after_first_frame: rss_first,
        layouts,
        reference,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn load_photos(dir: Option<&Path>) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let dir = match dir {
        Some(d) => d.to_owned(),
        None if Path::new("testdata/photos").is_dir() => PathBuf::from("testdata/photos"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/photos"),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
            matches!(ext.as_str(), "jpg" | "jpeg" | "png")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no .jpg/.jpeg/.png files in {}", dir.display());
    }
    files
        .into_iter()
        .map(|p| Ok((p.display().to_string(), std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?)))
        .collect()
}

/// One session, frames one after another, cycling through the photos.
fn sequential(
    name: &str,
    session: &mut Session,
    photos: &[(String, Vec<u8>)],
    frames: usize,
    threads: usize,
) -> anyhow::Result<Layout> {
    for i in 0..WARMUP_FRAMES {
        session.detect(&photos[i % photos.len()].1)?;
    }
    let mut timings = Vec::with_capacity(frames);
    let started = Instant::now();
    for i in 0..frames {
        let (file, bytes) = &photos[i % photos.len()];
        timings.push(session.detect(bytes).with_context(|| format!("detecting {file}"))?.timings);
    }
    let wall = started.elapsed().as_secs_f64();
    Ok(Layout {
        name: name.to_owned(),
        sessions: 1,
        threads_per_session: threads,
        frames,
        fps: frames as f64 / wall,
        split_ms: Split::mean(&timings),
    })
}

/// `sessions` std threads, one `Session` each, all started together; fps over the total.
fn parallel(
    name: &str,
    model: &Model,
    sessions: usize,
    threads: usize,
    photos: &[(String, Vec<u8>)],
    frames: usize,
) -> anyhow::Result<Layout> {
    let barrier = std::sync::Barrier::new(sessions + 1);
    let (timings, wall) = std::thread::scope(|scope| -> anyhow::Result<_> {
        let handles: Vec<_> = (0..sessions)
            .map(|k| {
                let barrier = &barrier;
                scope.spawn(move || -> anyhow::Result<Vec<StageTimings>> {
                    let mut s = model.session();
                    for i in 0..WARMUP_FRAMES {
                        s.detect(&photos[(i + k) % photos.len()].1)?;
                    }
                    barrier.wait();
                    // Offset by k so the sessions are not all on the same photo.
                    (0..frames).map(|i| Ok(s.detect(&photos[(i + k) % photos.len()].1)?.timings)).collect()
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let mut all = Vec::new();
        for h in handles {
            let t = h.join().map_err(|_| anyhow::anyhow!("a bench thread panicked"))??;
            all.extend(t);
        }
        Ok((all, started.elapsed().as_secs_f64()))
    })?;
    Ok(Layout {
        name: name.to_owned(),
        sessions,
        threads_per_session: threads,
        frames: timings.len(),
        fps: timings.len() as f64 / wall,
        split_ms: Split::mean(&timings),
    })
}

/// Mean ms of tract inference alone on a fixed tensor (like reference.py times onnxruntime)
/// for each session, their frames interleaved (a, b, a, b, ...) so that all see the same
/// machine: on a shared VM, runs a minute apart differ by 10-20 %.
fn time_interleaved(sessions: &mut [Session], tensor: &[f32], iterations: usize) -> anyhow::Result<Vec<f64>> {
    for _ in 0..WARMUP_FRAMES {
        for s in sessions.iter_mut() {
            s.run_tensor(tensor)?;
        }
    }
    let mut spent = vec![Duration::ZERO; sessions.len()];
    for _ in 0..iterations {
        for (s, t) in sessions.iter_mut().zip(&mut spent) {
            let started = Instant::now();
            s.run_tensor(tensor)?;
            *t += started.elapsed();
        }
    }
    Ok(spent.iter().map(|d| d.as_secs_f64() * 1e3 / iterations as f64).collect())
}

/// Runs reference.py in `<model dir>/pyref-venv` (created on first use) on `tensor`.
pub(crate) fn run_reference(
    model: &Path,
    tensor: &[f32],
    cores: usize,
    iterations: usize,
    profile: bool,
    progress: &dyn Fn(&str),
) -> anyhow::Result<OrtOutput> {
    let python = ensure_venv(&default_model_dir().join("pyref-venv"), progress)?;
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("reference.py");
    std::fs::write(&script, REFERENCE_PY)?;
    let input = dir.path().join("input.f32");
    std::fs::write(&input, tensor.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())?;
    let mut threads = vec!["1".to_owned()];
    if cores > 1 {
        threads.push(cores.to_string());
    }
    progress(&format!("onnxruntime, {iterations} frames per thread count"));
    let mut cmd = Command::new(&python);
    cmd.arg(&script).arg("--model").arg(model).arg("--input").arg(&input);
    cmd.arg("--iterations").arg(iterations.to_string());
    if profile {
        cmd.arg("--profile");
    }
    for t in &threads {
        cmd.arg("--threads").arg(t);
    }
    let out = cmd.stderr(Stdio::inherit()).output().with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!("reference.py failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).context("reading reference.py output")
}

/// Creates the reference venv once (python3 -m venv, pip install the pins) and returns its
/// python. A marker file holding the pins makes a half-made or outdated venv get redone.
fn ensure_venv(venv: &Path, progress: &dyn Fn(&str)) -> anyhow::Result<PathBuf> {
    let python = venv.join("bin/python");
    let marker = venv.join(".edgepool-pins");
    let pins = REFERENCE_PINS.join(" ");
    if python.exists() && std::fs::read_to_string(&marker).is_ok_and(|m| m.trim() == pins) {
        return Ok(python);
    }
    progress(&format!("creating the onnxruntime reference venv at {} (once, ~60 MB download)", venv.display()));
    let status = |c: &mut Command, what: &str| -> anyhow::Result<()> {
        let s = c.status().with_context(|| format!("{what}: cannot start"))?;
        anyhow::ensure!(s.success(), "{what} failed ({s}); pass --no-reference to skip the comparison");
        Ok(())
    };
    status(
        Command::new("python3").args(["-m", "venv", "--clear"]).arg(venv),
        "python3 -m venv (Debian: apt-get install python3-venv)",
    )?;
    progress(&format!("pip install {pins}"));
    status(
        Command::new(&python)
            .args(["-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "on"])
            .args(REFERENCE_PINS),
        "pip install",
    )?;
    std::fs::write(&marker, format!("{pins}\n"))?;
    progress("reference venv ready");
    Ok(python)
}

/// Peak resident set size of this process so far (VmHWM), in MiB.
fn peak_rss_mib() -> anyhow::Result<f64> {
    edgepool_runtime::process::peak_rss_mib().context("no VmHWM in /proc/self/status")
}

fn print_report(r: &Report) {
    println!("detector bench: {} cores ({}), {} photos, {} frames per layout", r.cores, r.cpu, r.photos, r.iterations);
    println!(
        "peak RSS, one loaded detector: {:.0} MiB after load, {:.0} MiB after its first frame (target <= 200 MiB)",
        r.peak_rss_mib_after_load, r.peak_rss_mib_after_first_frame
    );
    println!();
    println!(
        "{:<44} {:>7}  {:>7} {:>7} {:>9} {:>6}  {:>8}",
        "layout", "fps", "decode", "preproc", "inference", "post", "overhead"
    );
    for l in &r.layouts {
        let s = &l.split_ms;
        println!(
            "{:<44} {:>7.2}  {:>5.2}ms {:>5.2}ms {:>7.2}ms {:>4.2}ms  {:>7.1}%",
            l.name, l.fps, s.decode, s.preprocess, s.inference, s.postprocess, s.overhead_pct_of_inference
        );
    }
    println!("(per-frame means; overhead = decode + preprocess + post as % of inference, target <= 10 %)");
    if let Some(best) = r.layouts.iter().take(3).max_by(|a, b| a.fps.total_cmp(&b.fps)) {
        println!("best layout: {} at {:.2} fps", best.name, best.fps);
    }
    if let Some(reference) = &r.reference {
        println!();
        println!("tract vs onnxruntime {} (inference only, same input tensor):", reference.onnxruntime);
        for run in &reference.runs {
            println!(
                "  {} thread{}: tract {:.2} ms, onnxruntime {:.2} ms, tract/onnxruntime = {:.2}x",
                run.threads,
                if run.threads == 1 { "" } else { "s" },
                run.tract_ms,
                run.onnxruntime_ms,
                run.ratio,
            );
            match (
                run.tract_without_depthwise_ms,
                run.without_depthwise_ratio,
                run.tract_plain_graph_ms,
                run.plain_graph_ratio,
            ) {
                (Some(ms), Some(ratio), Some(plain_ms), Some(plain_ratio)) => {
                    println!("    without our depthwise kernel: tract {ms:.2} ms, {ratio:.2}x");
                    println!(
                        "    without it and without the im2col rewrite: tract {plain_ms:.2} ms, {plain_ratio:.2}x"
                    );
                }
                _ => println!("    (our im2col rewrite and depthwise kernel are for 1-thread sessions only)"),
            }
        }
        if !reference.runs.is_empty() {
            println!("  (tract's 1-thread variants timed interleaved frame by frame; onnxruntime just before them)");
        }
    }
}
