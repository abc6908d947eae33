//! The CI form of every reliability scenario (issue #5): `edgepool-bench chaos <scenario>
//! --quick` on real processes — nats-server, workers running the real model, the sink, cameras —
//! with the lost/duplicate checker's verdict asserted here. Full sizes: `just chaos`.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::process::Command;
use std::sync::Mutex;

/// Scenarios run one at a time: each starts several processes that would otherwise fight over
/// two cores and distort the timing expectations (redelivery within ack_wait + margin).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run(scenario: &str) -> serde_json::Value {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let root = edgepool_harness::fixtures::workspace_root();
    // edgepool-bench starts the `edgepool` next to it: `cargo test --workspace` builds both.
    let out = Command::new(env!("CARGO_BIN_EXE_edgepool-bench"))
        .current_dir(&root)
        .env_remove("EDGEPOOL_NATS_URL")
        .env("EDGEPOOL_NATS_SERVER", edgepool_harness::find_server(None).unwrap())
        .args(["chaos", scenario, "--quick", "--json", "--photos"])
        .arg(edgepool_harness::fixtures::photos_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let reports: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("{scenario}: no JSON report ({e}); status {}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status)
    });
    let report = reports[0].clone();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    let check = &report["check"];
    assert_eq!(check["lost"], 0, "{scenario}: lost frames: {report:#}");
    assert_eq!(check["duplicates"], 0, "{scenario}: duplicates: {report:#}");
    assert!(check["acked"].as_u64().unwrap() > 0 || scenario == "sync", "{scenario}: nothing acked: {report:#}");
    assert_eq!(report["passed"], true, "{scenario} failed: {report:#}\nstderr:\n{stderr}");
    assert!(out.status.success(), "{scenario}: exit {}", out.status);
    report
}

/// `ack_wait` of the quick runs (`Size::of` in crates/bench/src/chaos/scenarios.rs).
const QUICK_ACK_WAIT_S: f64 = 4.0;
/// How long the quick broker faults keep the broker down.
const QUICK_DOWN_S: f64 = 3.0;
/// After a broker fault, results must flow again well within the 60 s the scenario waits:
/// clients reconnect within seconds (a reconnect backoff of at most a few seconds, a leader
/// election of a few seconds).
const RECOVERY_LIMIT_S: f64 = 30.0;

fn figure(r: &serde_json::Value, name: &str) -> f64 {
    r["figures"][name].as_f64().unwrap_or_else(|| panic!("no figure {name}: {r:#}"))
}

fn check(r: &serde_json::Value, name: &str) -> u64 {
    r["check"][name].as_u64().unwrap_or_else(|| panic!("no check.{name}: {r:#}"))
}

/// The report's recovery time, which must be there, positive and within `limit` seconds.
fn recovery(r: &serde_json::Value, limit: f64) -> f64 {
    let s = r["recovery_s"].as_f64().unwrap_or_else(|| panic!("no recovery time: {r:#}"));
    assert!(s > 0.0 && s <= limit, "recovery {s} s, expected within (0, {limit}] s: {r:#}");
    s
}

#[test]
fn worker_crash() {
    let r = run("worker-crash");
    let kills = figure(&r, "kills");
    assert_eq!(kills, 3.0, "the quick run kills three times: {r:#}");
    // One-slot workers hold one frame each (crates/cli/tests/it/capacity.rs), so a kill strands
    // at most one frame; with a backlog every kill lands mid-frame, so at least one is stranded.
    let redelivered = check(&r, "redelivered");
    assert!((1..=3).contains(&redelivered), "{redelivered} redelivered after {kills} kills: {r:#}");
    // The stranded frame comes back when its ack_wait runs out (the killed worker cannot nak).
    let worst = recovery(&r, QUICK_ACK_WAIT_S + 5.0);
    assert_eq!(figure(&r, "redelivery_max_s"), (worst * 1000.0).round() / 1000.0);
    assert_eq!(figure(&r, "ack_wait_s"), QUICK_ACK_WAIT_S);
}

/// What both broker faults must show: down for the planned time, results again soon after.
fn broker_fault(r: &serde_json::Value) {
    assert!(figure(r, "broker_down_s") >= QUICK_DOWN_S, "{r:#}");
    let startup = figure(r, "broker_startup_s");
    assert!((0.0..RECOVERY_LIMIT_S).contains(&startup), "broker start-up {startup} s: {r:#}");
    let first = recovery(r, RECOVERY_LIMIT_S);
    assert_eq!(figure(r, "first_result_after_restart_s"), (first * 1000.0).round() / 1000.0);
    assert!(figure(r, "camera_acked") > 0.0, "{r:#}");
    assert!(check(r, "ok") > 0, "{r:#}");
}

#[test]
fn broker_kill() {
    broker_fault(&run("broker-kill"));
}

#[test]
fn broker_restart() {
    broker_fault(&run("broker-restart"));
}

#[test]
fn cluster_node_loss() {
    let r = run("cluster");
    assert_eq!(figure(&r, "killed_node_was_frames_leader"), 1.0, "{r:#}");
    let first = recovery(&r, RECOVERY_LIMIT_S);
    assert_eq!(figure(&r, "first_result_after_kill_s"), (first * 1000.0).round() / 1000.0);
}

#[test]
fn camera_offline() {
    let r = run("camera-offline");
    assert!(figure(&r, "camera_dropped") > 0.0, "beyond 8 in flight, frames are dropped: {r:#}");
    assert!(figure(&r, "acked_after_outage") > 0.0, "the camera resumed: {r:#}");
    let (before, peak) = (figure(&r, "camera_rss_before_mib"), figure(&r, "camera_rss_peak_offline_mib"));
    assert!(before > 0.0 && peak - before <= 16.0, "camera RSS {before} → {peak} MiB: {r:#}");
    recovery(&r, RECOVERY_LIMIT_S);
}

#[test]
fn bad_input() {
    let r = run("bad-input");
    let (malformed, good) = (figure(&r, "malformed"), figure(&r, "good"));
    assert!(malformed >= 1000.0, "{r:#}");
    assert!(good > 0.0, "{r:#}");
    // Only the good frames are detected on; every malformed frame the broker stored is answered
    // with an error and dead-lettered, none goes stale.
    assert_eq!(check(&r, "ok") as f64, good, "{r:#}");
    assert!(check(&r, "error") > 0, "{r:#}");
    assert_eq!(check(&r, "error"), check(&r, "deadlettered"), "an error result and a dead letter each: {r:#}");
    assert_eq!(check(&r, "stale"), 0, "{r:#}");
    assert_eq!(check(&r, "results"), check(&r, "acked"), "every stored frame answered: {r:#}");
    assert!(figure(&r, "refused_by_broker") >= 1.0, "oversized payloads reach the broker's limit: {r:#}");
    assert!(figure(&r, "worker_rss_max_mib") <= 512.0, "{r:#}");
}

#[test]
fn drain() {
    let r = run("drain");
    assert_eq!(check(&r, "redelivered"), 0, "a drained worker leaves nothing to redeliver: {r:#}");
    assert!(figure(&r, "frames_held_at_sigterm") >= 1.0, "SIGTERM came under load: {r:#}");
    // Draining finishes the frames in hand (about a second each), not the backlog.
    let took = figure(&r, "drain_s");
    assert!(took > 0.0 && took < 20.0, "drain took {took} s: {r:#}");
}
