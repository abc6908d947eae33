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

#[test]
fn worker_crash() {
    let r = run("worker-crash");
    assert!(r["check"]["redelivered"].as_u64().unwrap() >= 1);
}

#[test]
fn broker_kill() {
    let r = run("broker-kill");
    assert!(r["recovery_s"].as_f64().is_some());
}

#[test]
fn broker_restart() {
    run("broker-restart");
}

#[test]
fn cluster_node_loss() {
    run("cluster");
}

#[test]
fn camera_offline() {
    let r = run("camera-offline");
    assert!(r["figures"]["camera_dropped"].as_f64().unwrap() > 0.0);
}

#[test]
fn bad_input() {
    let r = run("bad-input");
    assert!(r["figures"]["malformed"].as_f64().unwrap() >= 1000.0);
}

#[test]
fn drain() {
    let r = run("drain");
    assert_eq!(r["check"]["redelivered"], 0);
}
