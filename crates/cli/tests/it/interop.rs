//! Interop: a Python nats-py producer and subscriber talk to the pipeline using only
//! docs/wire.md, and validate every result against docs/result.schema.json.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use edgepool_worker::WorkerConfig;

use crate::common::{add_worker, cluster, engine, expected_labels};

/// The Python with nats-py and jsonschema: `$EDGEPOOL_TEST_PYTHON`, else the tools venv that
/// `cargo xtask tools` makes. Missing is a failure with instructions, not a skip.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("EDGEPOOL_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let p = edgepool_harness::fixtures::model_dir().parent().unwrap().join("tools/bin/python");
    assert!(p.is_file(), "no Python with nats-py at {}: run `cargo xtask tools` (or `cargo xtask test`)", p.display());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_producer_and_subscriber_follow_the_documented_contract() {
    let mut p = cluster().await;
    add_worker(&mut p, "w1", WorkerConfig::default(), engine()).await;
    let root = edgepool_harness::fixtures::workspace_root();
    let url = p.url().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(root.join("crates/cli/tests/interop/nats_py_client.py"))
            .args(["--url", &url])
            .arg("--photos")
            .arg(edgepool_harness::fixtures::photos_dir())
            .arg("--schema")
            .arg(root.join("docs/result.schema.json"))
            .output()
            .unwrap()
    });
    let out = tokio::time::timeout(Duration::from_secs(180), out).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "python client failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));

    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let summary = lines.iter().find(|l| l["summary"] == true).unwrap();
    assert_eq!(summary["ok"], 6);
    assert_eq!(summary["errors"], serde_json::json!(["missing_header"]));
    for l in lines.iter().filter(|l| l.get("photo").is_some()) {
        let photo = l["photo"].as_str().unwrap();
        let labels: Vec<&str> = l["labels"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(labels, expected_labels(photo), "{photo}");
        assert!(
            l["traceparent"].as_str().is_some_and(|t| t.starts_with("00-")),
            "trace context carried into the result"
        );
    }
    p.shutdown().await;
}
