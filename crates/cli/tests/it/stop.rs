//! Stopping is always clean (issue #17), with real processes: the demo under a terminal's Ctrl-C
//! and under SIGKILL, every role with its broker gone, a frame in flight when the broker dies, a
//! second signal, the demo from any directory and at its fitted rate.
//!
//! Each test prints `stop-time <case> <seconds>` (run with `--nocapture` to see them). The tests
//! hold one lock so they run one at a time: they measure times and the demo measures the
//! machine's capacity, which tests running beside it would distort.
//!
//! For before/after comparisons, `STOPTEST_BIN` runs the same scenarios against another
//! `edgepool` binary and `STOPTEST_PATIENCE` (seconds) waits that long for an exit before
//! giving up; the assertions keep their bounds. (Not `EDGEPOOL_*`: that prefix is the
//! configuration's, and the children would reject an unknown section.)

// The tests hold one std mutex across their awaits on purpose: it serializes them (timings).
#![allow(clippy::await_holding_lock)]

use std::io::{BufRead as _, BufReader, Read};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use edgepool_harness::Broker;
use edgepool_nats::{DETECTIONS, DETECTORS, FRAMES};
use rustix::process::{Pid, Signal};

/// The worker's default `worker.drain_timeout`.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(25);
/// What a role may take beyond its drain: closing NATS (2 s), the runtime's blocking grace (2 s).
const MARGIN: Duration = Duration::from_secs(5);
/// The camera's default `publisher.drain_timeout`.
const CAMERA_DRAIN: Duration = Duration::from_secs(5);
/// The demo after Ctrl-C: cameras stop, the pool finishes its short backlog, the broker stops.
const DEMO_BOUND: Duration = Duration::from_secs(20);
/// Start-up of a debug build that loads and measures the model on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(240);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

fn bin() -> PathBuf {
    std::env::var_os("STOPTEST_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_edgepool")), PathBuf::from)
}

/// How long to wait for an exit: the bound, or longer when measuring an old binary.
fn patience(bound: Duration) -> Duration {
    let extra = std::env::var("STOPTEST_PATIENCE").ok().and_then(|s| s.parse().ok()).map(Duration::from_secs);
    extra.map_or(bound, |e| e.max(bound))
}

fn workspace_root() -> PathBuf {
    edgepool_harness::fixtures::workspace_root()
}

/// A spawned `edgepool` in its own process group, its output collected; killed (the whole
/// group, and any pid in `also_kill`) when dropped.
struct Proc {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    also_kill: Vec<u32>,
}

impl Proc {
    fn spawn(args: &[&str], configure: impl FnOnce(&mut Command)) -> Self {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        configure(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Self { child, stdout, stderr, also_kill: Vec::new() }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle`; panics with the output when it does not in time or
    /// the process exits first.
    fn wait_for(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(needle) {
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!("exited ({s}) before printing {needle:?}:\n{}", self.stderr());
            }
            assert!(Instant::now() < deadline, "no {needle:?} within {timeout:?}:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, sig: Signal) {
        rustix::process::kill_process(pid(self.pid()), sig).unwrap();
    }

    /// Signals the whole process group, as a terminal does on Ctrl-C.
    fn signal_group(&self, sig: Signal) {
        rustix::process::kill_process_group(pid(self.pid()), sig).unwrap();
    }

    /// Waits for the exit up to `patience(bound)`; the time it took, or `None` if still running.
    fn wait_exit(&mut self, bound: Duration) -> (Option<ExitStatus>, Duration) {
        let started = Instant::now();
        let give_up = patience(bound);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return (Some(s), started.elapsed());
            }
            if started.elapsed() > give_up {
                return (None, started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = rustix::process::kill_process_group(pid(self.pid()), Signal::KILL);
            let _ = self.child.wait();
        }
        for &p in &self.also_kill {
            let _ = rustix::process::kill_process(pid(p), Signal::KILL);
        }
    }
}

fn collect(mut from: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let out = Arc::new(Mutex::new(String::new()));
    let o = Arc::clone(&out);
    std::thread::spawn(move || {
        let mut reader = BufReader::new(&mut from);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            o.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    out
}

fn pid(p: u32) -> Pid {
    Pid::from_raw(i32::try_from(p).unwrap()).unwrap()
}

/// `/proc/<pid>/stat`: (state, parent pid, process group).
fn stat(p: u32) -> Option<(char, u32, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields follow the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let mut f = rest.split(' ');
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgrp = f.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// Gone, or a zombie nobody has reaped yet (it holds no resources).
fn is_gone(p: u32) -> bool {
    stat(p).is_none_or(|(state, _, _)| state == 'Z' || state == 'X')
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// Every live descendant of `root`.
fn descendants(root: u32) -> Vec<u32> {
    let procs: Vec<(u32, u32)> = all_pids().into_iter().filter_map(|p| Some((p, stat(p)?.1))).collect();
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(parent) = todo.pop() {
        for &(p, pp) in &procs {
            if pp == parent && !is_gone(p) {
                out.push(p);
                todo.push(p);
            }
        }
    }
    out
}

/// Live processes in process group `pgrp`.
fn group_members(pgrp: u32) -> Vec<u32> {
    all_pids().into_iter().filter(|&p| stat(p).is_some_and(|(s, _, g)| g == pgrp && s != 'Z')).collect()
}

fn comm(p: u32) -> String {
    std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default().trim().to_owned()
}

/// The embedded broker's pid: from the demo's "embedded, pid N" line, else (older binaries)
/// the nats-server among its children.
fn demo_broker_pid(demo: &Proc) -> u32 {
    let err = demo.stderr();
    if let Some(i) = err.find("embedded, pid ") {
        let digits: String = err[i + 14..].chars().take_while(char::is_ascii_digit).collect();
        if let Ok(p) = digits.parse() {
            return p;
        }
    }
    descendants(demo.pid())
        .into_iter()
        .find(|&p| comm(p).starts_with("nats-server"))
        .unwrap_or_else(|| panic!("no nats-server under the demo:\n{err}"))
}

/// Waits up to `timeout` for every pid in `pids` to be gone; returns those still alive.
fn wait_gone(pids: &[u32], timeout: Duration) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| !is_gone(p)).collect();
        if alive.is_empty() || Instant::now() > deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn report(case: &str, took: Duration, status: Option<ExitStatus>) {
    match status {
        Some(s) => println!("stop-time {case} {:.2} s ({s})", took.as_secs_f64()),
        None => println!("stop-time {case} did not exit within {:.0} s", took.as_secs_f64()),
    }
}

fn broker() -> Broker {
    Broker::single().unwrap()
}

fn setup(url: &str) {
    let out = Command::new(bin()).args(["setup", "--nats-url", url]).output().unwrap();
    assert!(out.status.success(), "setup: {}", String::from_utf8_lossy(&out.stderr));
}

fn model() -> String {
    edgepool_harness::fixtures::model_path().display().to_string()
}

fn worker(url: &str, id: &str, slowdown: &str) -> Proc {
    let model = model();
    let mut w =
        Proc::spawn(&["worker", "--id", id, "--slowdown", slowdown, "--model", &model, "--nats-url", url], |_| {});
    w.wait_for("worker started", START_TIMEOUT);
    w
}

/// Publishes one frame of `camera` with sequence number `seq` and waits for its ack.
fn publish_one(url: &str, camera: &str, seq: u64) {
    let photo = edgepool_harness::fixtures::photo("coffee.png").display().to_string();
    let out = Command::new(bin())
        .args(["camera", "--camera", camera, "--source", &photo, "--count", "1", "--start-seq", &seq.to_string()])
        .args(["--nats-url", url])
        .output()
        .unwrap();
    assert!(out.status.success(), "camera: {}", String::from_utf8_lossy(&out.stderr));
}

async fn jetstream(url: &str) -> async_nats::jetstream::Context {
    async_nats::jetstream::new(async_nats::connect(url).await.unwrap())
}

/// Waits until the shared consumer has a frame handed out and not yet acked.
async fn wait_in_flight(js: &async_nats::jetstream::Context) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = js.get_stream(FRAMES).await.unwrap().consumer_info(DETECTORS).await.unwrap();
        if info.num_ack_pending > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no frame in flight within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Results in DETECTIONS for `camera`'s frame `seq`, as JSON.
async fn outcomes(js: &async_nats::jetstream::Context, camera: &str, seq: u64) -> Vec<serde_json::Value> {
    edgepool_harness::read_stream(js, DETECTIONS)
        .await
        .unwrap()
        .iter()
        .filter_map(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).ok())
        .filter(|v| v["camera"] == camera && v["seq"] == seq)
        .collect()
}

/// The demo's `--json` summary (the last line of stdout).
fn summary(demo: &Proc) -> serde_json::Value {
    let out = demo.stdout();
    let line = out.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no summary:\n{out}"));
    serde_json::from_str(line).unwrap()
}

#[test]
fn demo_ctrl_c_to_its_process_group_drains_and_leaves_nothing_behind() {
    let _one = serial();
    // The workspace root, so that older binaries, which read testdata/photos, run too.
    let mut demo = Proc::spawn(&["demo", "--keep"], |c| {
        c.current_dir(workspace_root());
    });
    demo.wait_for("running until Ctrl-C", START_TIMEOUT);
    let nats = demo_broker_pid(&demo);
    demo.also_kill.push(nats);
    std::thread::sleep(Duration::from_secs(5));
    let family = descendants(demo.pid());
    assert!(family.contains(&nats), "the broker {nats} is the demo's child: {family:?}");

    demo.signal_group(Signal::INT);
    let (status, took) = demo.wait_exit(DEMO_BOUND);
    report("demo-ctrl-c", took, status);
    let status = status.unwrap_or_else(|| panic!("did not exit within {took:?}:\n{}", demo.stderr()));
    assert!(took <= DEMO_BOUND, "took {took:?}");
    assert_eq!(status.code(), Some(0), "{}", demo.stderr());
    let left = wait_gone(&family, Duration::from_secs(2));
    assert!(left.is_empty(), "left behind: {:?}", left.iter().map(|&p| (p, comm(p))).collect::<Vec<_>>());
    assert!(is_gone(nats), "nats-server {nats} outlived the demo");
    assert!(group_members(demo.pid()).is_empty(), "processes left in the demo's group");
}

#[test]
fn demo_killed_by_sigkill_takes_its_broker_with_it() {
    let _one = serial();
    let mut demo = Proc::spawn(&["demo", "--keep"], |c| {
        c.current_dir(workspace_root());
    });
    demo.wait_for("running until Ctrl-C", START_TIMEOUT);
    let nats = demo_broker_pid(&demo);
    demo.also_kill.push(nats);
    demo.signal(Signal::KILL);
    let (status, _) = demo.wait_exit(Duration::from_secs(5));
    assert!(status.is_some(), "SIGKILL did not end the demo");
    let started = Instant::now();
    let left = wait_gone(&[nats], patience(Duration::from_secs(5)));
    if left.is_empty() {
        println!(
            "stop-time demo-sigkill-broker {:.2} s (broker gone after the demo's SIGKILL)",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!("stop-time demo-sigkill-broker did not exit within {:.0} s", started.elapsed().as_secs_f64());
    }
    assert!(left.is_empty(), "nats-server {nats} outlived the demo killed by SIGKILL");
}

/// Starts `args` against a broker, stops the broker once `ready` holds, then SIGTERM: the role
/// must exit within `bound`.
async fn role_exits_with_its_broker_gone(case: &str, args: &[&str], ready: &str, bound: Duration) -> ExitStatus {
    let _one = serial();
    let mut b = broker();
    setup(&b.url());
    let url = b.url();
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--nats-url", &url]);
    let mut p = Proc::spawn(&all, |_| {});
    if ready == "frames" {
        // The camera logs nothing when it starts: wait for its frames.
        let js = jetstream(&url).await;
        let deadline = Instant::now() + START_TIMEOUT;
        while js.get_stream(FRAMES).await.unwrap().info().await.unwrap().state.messages == 0 {
            assert!(Instant::now() < deadline, "no frames from the camera:\n{}", p.stderr());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    } else {
        p.wait_for(ready, START_TIMEOUT);
    }
    b.stop(0);
    // Let the role notice the connection is gone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.signal(Signal::TERM);
    let (status, took) = p.wait_exit(bound);
    report(case, took, status);
    let status = status.unwrap_or_else(|| panic!("{case}: did not exit within {took:?}:\n{}", p.stderr()));
    assert!(took <= bound, "{case}: took {took:?} (bound {bound:?}):\n{}", p.stderr());
    assert!(status.code().is_some(), "{case}: ended by a signal ({status}), not by its own exit");
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_exits_on_sigterm_with_its_broker_gone() {
    let model = model();
    let args = ["worker", "--id", "orphan", "--model", &model];
    let status =
        role_exits_with_its_broker_gone("worker-broker-gone", &args, "worker started", DRAIN_TIMEOUT + MARGIN).await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_exits_on_sigterm_with_its_broker_gone() {
    let args = ["sink", "--listen", "127.0.0.1:0"];
    let status =
        role_exits_with_its_broker_gone("sink-broker-gone", &args, "sink started", DRAIN_TIMEOUT + MARGIN).await;
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn camera_exits_on_sigterm_with_its_broker_gone() {
    let photos = workspace_root().join("testdata/photos").display().to_string();
    let args = ["camera", "--camera", "cam-orphan", "--source", &photos, "--loop", "--fps", "2"];
    // Exit 1 is fair here (frames it could not store are counted as failed); a hang is not.
    role_exits_with_its_broker_gone("camera-broker-gone", &args, "frames", CAMERA_DRAIN + MARGIN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_in_flight_when_the_broker_dies_gets_exactly_one_outcome() {
    let _one = serial();
    let mut b = broker();
    let url = b.url();
    setup(&url);
    let mut first = worker(&url, "doomed", "20");
    publish_one(&url, "cam-inflight", 7);
    wait_in_flight(&jetstream(&url).await).await;
    // The worker is inside the slow frame (about 20 x one inference) when the broker dies.
    tokio::time::sleep(Duration::from_millis(500)).await;
    b.kill(0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    first.signal(Signal::TERM);
    let bound = DRAIN_TIMEOUT + MARGIN;
    let (status, took) = first.wait_exit(bound);
    report("worker-inflight-broker-dies", took, status);
    let status = status.unwrap_or_else(|| panic!("did not exit within {took:?}:\n{}", first.stderr()));
    assert!(took <= bound, "took {took:?}:\n{}", first.stderr());
    assert!(status.code().is_some(), "{status}");
    let drained: Vec<String> =
        first.stderr().lines().skip_while(|l| !l.contains("draining")).map(str::to_owned).collect();
    println!("the first worker after SIGTERM:\n{}", drained.join("\n"));

    // The broker returns with its store; another worker answers the frame once its ack_wait
    // (30 s) has passed.
    b.restart(0).unwrap();
    b.wait_ready(0).await.unwrap();
    let _second = worker(&url, "successor", "1");
    let js = jetstream(&url).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while outcomes(&js, "cam-inflight", 7).await.is_empty() {
        assert!(Instant::now() < deadline, "no outcome for the frame within 120 s");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Time for a duplicate to show up, if there were one.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = outcomes(&js, "cam-inflight", 7).await;
    println!("outcome of the frame in flight: {}", serde_json::to_string(&got).unwrap());
    assert_eq!(got.len(), 1, "exactly one outcome: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_sigterm_during_a_long_drain_exits_at_once() {
    let _one = serial();
    let b = broker();
    let url = b.url();
    setup(&url);
    let mut w = worker(&url, "slow", "40");
    publish_one(&url, "cam-slow", 1);
    wait_in_flight(&jetstream(&url).await).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.signal(Signal::TERM);
    w.wait_for("draining", Duration::from_secs(5));
    w.signal(Signal::TERM);
    let (status, took) = w.wait_exit(Duration::from_secs(2));
    report("worker-second-sigterm", took, status);
    let status = status.unwrap_or_else(|| panic!("did not exit within {took:?}:\n{}", w.stderr()));
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_eq!(status.code(), Some(143), "{}", w.stderr());
    let err = w.stderr();
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("second SIGTERM")).collect();
    println!("{}", lines.join("\n"));
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].starts_with("second SIGTERM: exiting now, abandoning 1 frame"), "{}", lines[0]);
}

#[test]
fn demo_runs_from_any_directory_and_loses_nothing() {
    let _one = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Proc::spawn(&["demo", "--frames", "12", "--json"], |c| {
        c.current_dir(dir.path());
    });
    let (status, took) = demo.wait_exit(START_TIMEOUT);
    let status = status.unwrap_or_else(|| panic!("the demo took over {took:?}:\n{}", demo.stderr()));
    assert!(status.success(), "{status}:\n{}", demo.stderr());
    let s = summary(&demo);
    println!("demo from {}: acked {} results {} lost {}", dir.path().display(), s["acked"], s["results"], s["lost"]);
    assert_eq!(s["lost"], 0);
    // The photo cameras' 12, and what the video camera (its clip once, through ffmpeg) published.
    let video = s["video"]["published"].as_u64().unwrap_or_else(|| panic!("no video camera: {s}"));
    assert!(video >= 10, "the clip's crossing gives ~20 motion frames: {s}");
    assert_eq!(s["acked"].as_u64(), Some(12 + video), "{s}");
    assert!(!Path::new(&dir.path().join("testdata")).exists());
}

/// Two minutes at the default (fitted) rate: the pool keeps up, so results trail acks by a
/// little, latency stays low, and the backlog at the end drains in seconds. Not ignored: the
/// whole file takes under 4 minutes with it.
#[test]
fn demo_at_its_fitted_rate_keeps_the_backlog_bounded() {
    let _one = serial();
    let mut demo = Proc::spawn(&["demo", "--duration", "120s", "--json"], |c| {
        c.current_dir(workspace_root());
    });
    let (status, took) = demo.wait_exit(Duration::from_secs(120) + START_TIMEOUT);
    let status = status.unwrap_or_else(|| panic!("the demo took over {took:?}:\n{}", demo.stderr()));
    assert!(status.success(), "{status}:\n{}", demo.stderr());
    let s = summary(&demo);
    let f = |k: &str| s[k].as_f64().unwrap_or(f64::NAN);
    let (acked, results, seconds) = (f("acked"), f("results"), f("seconds"));
    let (p50, p99) = (f("latency_p50_ms"), f("latency_p99_ms"));
    println!(
        "demo 120 s: published {} acked {acked} results {results} stale {} lost {} in {seconds:.1} s; \
         offered {:.2} frames/s ({:.2} per camera, fitted); throughput {:.2}/s; \
         latency p50 {p50:.0} ms p99 {p99:.0} ms",
        s["published"],
        s["stale"],
        s["lost"],
        f("published") / 120.0,
        f("published") / 240.0,
        f("fps"),
    );
    assert_eq!(s["lost"], 0);
    assert!(results >= acked * 0.9, "results {results} of {acked} acked");
    assert!(p99 < 10_000.0, "p99 latency {p99} ms");
    assert!(seconds < 120.0 + 15.0, "the backlog took {:.0} s to drain after the cameras stopped", seconds - 120.0);
}
