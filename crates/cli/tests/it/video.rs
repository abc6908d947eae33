//! `edgepool camera` on a video source through ffmpeg (issue 12): a real H.264 file made from
//! the test photos goes through the real binary to a worker running the model, and the right
//! labels come back; a source that fails is a clear error.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{add_worker, cluster, engine, expected_labels, labels, results, wait_results};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_edgepool"))
}

/// The ffmpeg `cargo xtask test` installs (the tools venv beside `$EDGEPOOL_TEST_PYTHON`), or
/// PATH. Missing fails loudly: CI runs these tests.
fn ffmpeg() -> PathBuf {
    let venv = std::env::var_os("EDGEPOOL_TEST_PYTHON")
        .map(PathBuf::from)
        .and_then(|p| p.parent().and_then(Path::parent).map(Path::to_owned));
    edgepool_camera::ffmpeg::find_ffmpeg(None, venv.as_deref())
        .unwrap_or_else(|e| panic!("{e}\n(run the tests with `cargo xtask test`, which installs it)"))
}

/// `seconds` of H.264 at 30 fps showing `photo` at its own size (rounded to even, as H.264
/// wants).
fn video_of(photo: &str, seconds: u32, dir: &Path) -> PathBuf {
    let out = dir.join("clip.mp4");
    let status = Command::new(ffmpeg())
        .args(["-nostdin", "-loglevel", "error", "-loop", "1", "-framerate", "30", "-t", &seconds.to_string(), "-i"])
        .arg(edgepool_harness::fixtures::photo(photo))
        .args(["-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-y"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    out
}

/// Runs `edgepool camera --camera CAMERA --source SOURCE EXTRA… --ffmpeg <test ffmpeg>` against
/// `url` to its end.
fn run_camera(camera: &str, source: &Path, extra: &[&str], url: &str) -> std::process::Output {
    Command::new(bin())
        .args(["camera", "--camera", camera, "--source"])
        .arg(source)
        .args(extra)
        .arg("--ffmpeg")
        .arg(ffmpeg())
        .args(["--nats-url", url])
        .output()
        .unwrap()
}

/// The camera's `--json` summary (the last JSON line of its stdout).
fn summary(out: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no summary:\n{stdout}"));
    serde_json::from_str(line).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_file_reaches_the_workers_at_the_detect_rate_and_the_labels_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let video = video_of("grace_hopper.jpg", 3, dir.path());
    let mut c = cluster().await;
    add_worker(&mut c, "w-video", edgepool_worker::WorkerConfig::default(), engine()).await;
    let out = run_camera("cam-video", &video, &["--fps", "2", "--motion", "off", "--json"], c.url());
    assert!(out.status.success(), "camera: {}", String::from_utf8_lossy(&out.stderr));
    let summary = summary(&out);
    let published = summary["stats"]["acked"].as_u64().unwrap();
    // 3 s of a 30 fps stream at a detect rate of 2: 6 frames (ffmpeg's fps filter may round
    // the last one either way), not 90.
    assert!((5..=7).contains(&published), "{summary}");
    assert_eq!(summary["video"]["every"].as_u64(), Some(published), "{summary}");
    assert_eq!(summary["video"]["decoded"].as_u64(), Some(published), "{summary}");
    wait_results(&c, published, Duration::from_secs(120)).await;
    let results = results(&c.js).await;
    let ours: Vec<_> = results.iter().filter(|r| r.camera.as_str() == "cam-video").collect();
    assert_eq!(ours.len() as u64, published);
    for r in ours {
        assert_eq!(labels(r), expected_labels("grace_hopper.jpg"), "a JPEG of the decoded frame, re-encoded");
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_still_video_with_motion_on_publishes_keepalives_only() {
    let dir = tempfile::tempdir().unwrap();
    let video = video_of("coffee.png", 3, dir.path());
    let c = cluster().await;
    let out = run_camera("cam-still", &video, &["--fps", "5", "--keepalive", "1s", "--json"], c.url());
    assert!(out.status.success(), "camera: {}", String::from_utf8_lossy(&out.stderr));
    let summary = summary(&out);
    let v = &summary["video"];
    let decoded = v["decoded"].as_u64().unwrap();
    let keepalives = v["keepalives"].as_u64().unwrap();
    assert!((14..=16).contains(&decoded), "3 s at 5 fps: {summary}");
    assert_eq!(v["motion"].as_u64(), Some(0), "nothing moves: {summary}");
    // The file plays in real time: keepalives at 0, 1 and 2 s (and maybe one at 3 s).
    assert!((3..=4).contains(&keepalives), "{summary}");
    assert_eq!(v["still"].as_u64(), Some(decoded - keepalives), "{summary}");
    assert_eq!(summary["stats"]["acked"].as_u64(), Some(keepalives), "{summary}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_video_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.mp4");
    std::fs::write(&corrupt, b"this is not a video").unwrap();
    let c = cluster().await;
    let out = run_camera("cam-corrupt", &corrupt, &[], c.url());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("ffmpeg could not read") && err.contains("corrupt.mp4"), "{err}");
    c.shutdown().await;
}

#[test]
fn video_sources_that_cannot_work_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.mp4");
    std::fs::write(&corrupt, b"this is not a video").unwrap();
    let run = |source: &Path, extra: &[&str]| {
        let out = Command::new(bin())
            .args(["camera", "--camera", "cam-bad", "--source"])
            .arg(source)
            .args(extra)
            .args(["--nats-url", "nats://127.0.0.1:1"])
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // Both are found before the camera connects to any broker (none listens on port 1).
    let (code, err) = run(&corrupt, &["--ffmpeg", "/nonexistent/ffmpeg"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("ffmpeg not found at /nonexistent/ffmpeg") && err.contains("apt-get install ffmpeg"), "{err}");
    let (code, err) = run(&dir.path().join("missing.mp4"), &["--ffmpeg", ffmpeg().to_str().unwrap()]);
    assert_ne!(code, Some(0));
    assert!(err.contains("missing.mp4 does not exist"), "{err}");
}
