//! The stream scenarios of `edgepool bench camera`: real `edgepool camera` processes with their
//! ffmpeg children, on a looped mostly-static H.264 clip, publishing to a real nats-server.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;

use edgepool_camera::clip::ClipPlan;
use edgepool_harness::{Broker, BrokerOptions, find_server};
use edgepool_runtime::process::{cpu_seconds, rss_mib};

use super::BenchCameraArgs;

/// Issue 12's memory target per stream, for the camera process (ffmpeg apart).
const TARGET_RSS_MIB: f64 = 64.0;
/// The detect rate of every scenario.
const DETECT_FPS: f64 = 5.0;

/// One scenario's figures.
#[derive(Debug, Serialize)]
pub struct StreamRow {
    pub scenario: String,
    pub streams: usize,
    pub resolution: String,
    pub seconds: f64,
    /// Share of one core, the camera process alone and its ffmpeg children together.
    pub camera_cpu: f64,
    pub ffmpeg_cpu: f64,
    /// Mean resident memory over the run, MiB: the camera process, and its ffmpegs together.
    pub camera_rss_mib: f64,
    pub ffmpeg_rss_mib: f64,
    /// Camera RSS per stream (the target is 64 MiB per stream, ffmpeg apart).
    pub camera_rss_per_stream_mib: f64,
    /// Frames handed over at the detect rate, all streams, and what became of them.
    pub sampled: u64,
    pub motion: u64,
    pub keepalives: u64,
    pub still: u64,
    /// Share of sampled frames skipped for no motion: the pool's load spared.
    pub skipped: f64,
    /// Frames per second the pool receives from all streams, against the detect rate's.
    pub published_fps: f64,
    pub sampled_fps: f64,
}

/// The clip: a still scene, a person crossing for 4 s, still again; 20 s at 30 fps.
fn clip(width: u32, height: u32) -> ClipPlan {
    ClipPlan { width, height, fps: 30, still_before: 8, crossing: 4, still_after: 8 }
}

pub fn run(args: &BenchCameraArgs, photos: &[(String, Vec<u8>)]) -> anyhow::Result<Vec<StreamRow>> {
    let tools = edgepool_harness::fixtures::cache_dir().join("tools");
    let ffmpeg = edgepool_camera::ffmpeg::find_ffmpeg(args.ffmpeg.as_deref(), Some(&tools))?;
    let exe = crate::edgepool_binary()?;
    let dir = tempfile::tempdir()?;
    let decode = |i: usize| -> anyhow::Result<image::RgbImage> {
        let (name, bytes) = &photos[i % photos.len()];
        Ok(image::load_from_memory(bytes).with_context(|| name.clone())?.to_rgb8())
    };
    let person = photos.iter().position(|(n, _)| n.starts_with("grace_hopper")).unwrap_or(1);
    let (background, object) = (decode(0)?, decode(person)?);
    let mut clips = Vec::new();
    for (w, h) in [(1920, 1080), (1280, 720)] {
        let path = dir.path().join(format!("clip-{h}p.mp4"));
        eprintln!("[bench] encoding the {w}x{h} H.264 clip (20 s at 30 fps) with ffmpeg");
        clip(w, h).encode(&ffmpeg, &background, &object, &path)?;
        clips.push(path);
    }
    let binary = find_server(None)?;
    let mut server = Broker::start(BrokerOptions { binary: Some(binary), ..BrokerOptions::single() })?;
    let url = server.url();
    edgepool_runtime::runtime()?.block_on(async {
        let client = async_nats::connect(&url).await?;
        edgepool_nats::apply(&async_nats::jetstream::new(client), Default::default())
            .await
            .map_err(anyhow::Error::from_boxed)
    })?;
    let scenarios = [
        ("1 x 1080p30", &clips[0], 1, "1920x1080"),
        ("1 x 720p30", &clips[1], 1, "1280x720"),
        ("4 x 720p30, one process", &clips[1], 4, "1280x720"),
    ];
    let mut rows = Vec::new();
    for (name, clip, streams, resolution) in scenarios {
        eprintln!("[bench] {name}: {:?} after a 5 s warm-up", args.duration);
        let row = scenario(&exe, &ffmpeg, &url, clip, streams, dir.path(), args.duration)?;
        rows.push(StreamRow { scenario: name.to_owned(), resolution: resolution.to_owned(), ..row });
    }
    server.stop_all();
    Ok(rows)
}

/// Runs `streams` cameras on `clip` in one `edgepool camera` process and measures it.
fn scenario(
    exe: &Path,
    ffmpeg: &Path,
    url: &str,
    clip: &Path,
    streams: usize,
    dir: &Path,
    duration: Duration,
) -> anyhow::Result<StreamRow> {
    let config = dir.join(format!("cameras-{streams}.toml"));
    let mut text = format!("[video]\nfps = {DETECT_FPS}\nffmpeg = {:?}\n", ffmpeg.display().to_string());
    for i in 0..streams {
        text.push_str(&format!("\n[cameras.bench-{i}]\nsource = {:?}\nloop = true\n", clip.display().to_string()));
    }
    std::fs::write(&config, text)?;
    let mut child = Command::new(exe)
        .arg("--config")
        .arg(&config)
        .args(["camera", "--json", "--nats-url", url])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("starting edgepool camera")?;
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(5));
    let cpu = |pids: &[u32]| pids.iter().filter_map(|p| cpu_seconds(*p)).sum::<f64>();
    let (mut camera_rss, mut ffmpeg_rss) = (Vec::new(), Vec::new());
    let children0 = children(pid);
    let (camera_cpu0, ffmpeg_cpu0) = (cpu(&[pid]), cpu(&children0));
    let start = Instant::now();
    while start.elapsed() < duration {
        std::thread::sleep(Duration::from_secs(1));
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("edgepool camera exited early with {status}");
        }
        camera_rss.push(rss_mib(pid).unwrap_or(0.0));
        ffmpeg_rss.push(children(pid).iter().filter_map(|p| rss_mib(*p)).sum::<f64>());
    }
    let seconds = start.elapsed().as_secs_f64();
    let kids = children(pid);
    anyhow::ensure!(kids.len() == streams, "expected {streams} ffmpeg children, found {}", kids.len());
    anyhow::ensure!(kids == children0, "an ffmpeg restarted during the measurement: the figures would mix runs");
    let (camera_cpu, ffmpeg_cpu) = (cpu(&[pid]) - camera_cpu0, cpu(&kids) - ffmpeg_cpu0);
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(i32::try_from(pid)?).context("pid")?,
        rustix::process::Signal::INT,
    )?;
    let out = child.wait_with_output()?;
    let (mut sampled, mut motion, mut keepalives, mut still, mut published) = (0, 0, 0, 0, 0);
    for line in String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let n = |k: &str| v["video"][k].as_u64().unwrap_or(0);
        sampled += n("decoded");
        motion += n("motion");
        keepalives += n("keepalives");
        still += n("still");
        published += v["stats"]["published"].as_u64().unwrap_or(0);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let total = seconds + 5.0;
    Ok(StreamRow {
        scenario: String::new(),
        streams,
        resolution: String::new(),
        seconds,
        camera_cpu: camera_cpu / seconds,
        ffmpeg_cpu: ffmpeg_cpu / seconds,
        camera_rss_mib: mean(&camera_rss),
        ffmpeg_rss_mib: mean(&ffmpeg_rss),
        camera_rss_per_stream_mib: mean(&camera_rss) / streams as f64,
        sampled,
        motion,
        keepalives,
        still,
        skipped: still as f64 / sampled.max(1) as f64,
        published_fps: published as f64 / total,
        sampled_fps: sampled as f64 / total,
    })
}

/// The processes whose parent is `pid` (its ffmpegs), from `/proc/<n>/stat`.
fn children(pid: u32) -> Vec<u32> {
    let mut found: Vec<u32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat")).ok().is_some_and(|stat| {
                let rest = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
                rest.split_whitespace().nth(1).and_then(|pp| pp.parse::<u32>().ok()) == Some(pid)
            })
        })
        .collect();
    found.sort_unstable();
    found
}

pub fn print(rows: &[StreamRow]) {
    if rows.is_empty() {
        return;
    }
    println!();
    println!(
        "camera streams (H.264 clip at 30 fps, 8 s still / 4 s person crossing / 8 s still, looped; \
         detect rate {DETECT_FPS} fps), target camera RSS <= {TARGET_RSS_MIB} MiB per stream plus ffmpeg:"
    );
    println!(
        "  {:<24} {:>9} {:>9} {:>10} {:>10} {:>11} {:>8} {:>8} {:>9} {:>13}",
        "scenario",
        "cam CPU",
        "ffm CPU",
        "cam RSS",
        "ffm RSS",
        "cam/stream",
        "sampled",
        "motion",
        "skipped",
        "to the pool"
    );
    for r in rows {
        println!(
            "  {:<24} {:>8.1}% {:>8.1}% {:>7.0}MiB {:>7.0}MiB {:>8.0}MiB {:>8} {:>8} {:>8.0}% {:>6.2}/{:.2} fps  {}",
            r.scenario,
            r.camera_cpu * 100.0,
            r.ffmpeg_cpu * 100.0,
            r.camera_rss_mib,
            r.ffmpeg_rss_mib,
            r.camera_rss_per_stream_mib,
            r.sampled,
            r.motion,
            r.skipped * 100.0,
            r.published_fps,
            r.sampled_fps,
            if r.camera_rss_per_stream_mib <= TARGET_RSS_MIB { "ok" } else { "OVER TARGET" }
        );
    }
    println!("  (CPU: share of one core; ffmpeg figures are all the process's ffmpegs together)");
}
