//! `edgepool gateway`: the DeepStack / CodeProject.AI API in front of the pool, driven by the
//! clients people run (crates/cli/tests/interop/gateway_client.py: `requests`, deepstack-python,
//! Frigate's deepstack detector code path), against a real nats-server and a real worker.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edgepool_worker::WorkerConfig;

use crate::common::{add_worker, cluster, engine};
use crate::interop::python;

const API_KEY: &str = "gateway-test-key";
const MAX_BODY: usize = 1024 * 1024;

/// A gateway process on an ephemeral port; its address, read from its start line.
fn start_gateway(nats_url: &str) -> (Child, String) {
    start_gateway_with(nats_url, "30s")
}

/// [`start_gateway`] with the request timeout given.
fn start_gateway_with(nats_url: &str, timeout: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgepool"))
        .args(["gateway", "--listen", "127.0.0.1:0", "--timeout", timeout, "--nats-url", nats_url])
        .env("EDGEPOOL_GATEWAY_API_KEY", API_KEY)
        .env("EDGEPOOL_GATEWAY_MAX_BODY", MAX_BODY.to_string())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the gateway exited before saying where it listens").unwrap();
        if let Some(rest) = line.strip_prefix("gateway: DeepStack / CodeProject.AI API on http://") {
            break rest.split('/').next().unwrap().to_owned();
        }
    };
    // Keep reading its log so the pipe never fills.
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

fn http_status(addr: &str, path: &str) -> u16 {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return 0 };
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deepstack_clients_get_the_pools_detections_and_clear_errors() {
    let mut p = cluster().await;
    add_worker(&mut p, "w1", WorkerConfig::default(), engine()).await;
    let (mut gateway, addr) = start_gateway(p.url());
    let started = Instant::now();
    while http_status(&addr, "/readyz") != 200 {
        assert!(started.elapsed() < Duration::from_secs(30), "the gateway never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // What `edgepool detect` finds in each photo: the answer every client must get.
    let photos = edgepool_harness::fixtures::photos_dir();
    let mut detect = Command::new(env!("CARGO_BIN_EXE_edgepool"));
    detect.args(["detect", "--json", "--model"]).arg(edgepool_harness::fixtures::model_path());
    for e in std::fs::read_dir(&photos).unwrap() {
        detect.arg(e.unwrap().path());
    }
    let out = detect.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = tempfile::tempdir().unwrap();
    let expected = dir.path().join("expected.jsonl");
    std::fs::write(&expected, &out.stdout).unwrap();

    let root = edgepool_harness::fixtures::workspace_root();
    let url = format!("http://{addr}");
    let client = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(root.join("crates/cli/tests/interop/gateway_client.py"))
            .args(["--url", &url, "--api-key", API_KEY, "--max-body", &MAX_BODY.to_string()])
            .arg("--photos")
            .arg(&photos)
            .arg("--expected")
            .arg(&expected)
            .output()
            .unwrap()
    });
    let out = tokio::time::timeout(Duration::from_secs(300), client).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "gateway clients failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let checks = stdout.lines().filter(|l| l.contains("\"check\"")).count();
    assert!(checks >= 30, "{checks} checks ran:\n{stdout}");

    // The metrics count what happened, by outcome.
    let metrics = scrape_metrics(&addr);
    for outcome in ["ok", "bad_request", "unauthorized", "too_large"] {
        assert!(
            metrics.contains(&format!("edgepool_gateway_requests_total{{api=\"detection\",outcome=\"{outcome}\"}}")),
            "no {outcome} count:\n{metrics}"
        );
    }

    // SIGTERM: a clean exit.
    assert!(Command::new("kill").args(["-TERM", &gateway.id().to_string()]).status().unwrap().success());
    let status = wait_exit(&mut gateway, Duration::from_secs(10));
    assert!(status.success(), "gateway exit: {status}");
    p.shutdown().await;
}

fn scrape_metrics(addr: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if started.elapsed() > within {
            let _ = child.kill();
            panic!("the gateway did not exit within {within:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Posts `image` as the `image` field (and `api_key`); returns the status and the JSON body.
fn post_image(addr: &str, image: &[u8]) -> (u16, serde_json::Value) {
    use std::io::{Read as _, Write as _};
    let boundary = "edgepool-test-boundary";
    let mut body = Vec::new();
    write!(body, "--{boundary}\r\nContent-Disposition: form-data; name=\"api_key\"\r\n\r\n{API_KEY}\r\n").unwrap();
    write!(body, "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n").unwrap();
    body.extend_from_slice(image);
    write!(body, "\r\n--{boundary}--\r\n").unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /v1/vision/detection HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: multipart/form-data; \
         boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply);
    let status = reply.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let json = reply.split_once("\r\n\r\n").map_or("{}", |(_, b)| b);
    (status, serde_json::from_str(json).unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_request_still_leaves_every_request_exactly_one_answer() {
    let p = cluster().await;
    // A slow worker process that will hold requests when it is killed.
    let mut worker = Command::new(env!("CARGO_BIN_EXE_edgepool"))
        .args(["worker", "--id", "doomed", "--slots", "2", "--slowdown", "4", "--nats-url", p.url()])
        .arg("--model")
        .arg(edgepool_harness::fixtures::model_path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (mut gateway, addr) = start_gateway_with(p.url(), "6s");
    let started = Instant::now();
    while http_status(&addr, "/readyz") != 200 {
        assert!(started.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The worker loads the model before it pulls: wait for its first answer.
    let photo = std::fs::read(edgepool_harness::fixtures::photos_dir().join("grace_hopper.jpg")).unwrap();
    let warm = {
        let (addr, photo) = (addr.clone(), photo.clone());
        tokio::task::spawn_blocking(move || post_image(&addr, &photo)).await.unwrap()
    };
    assert_eq!(warm.1["success"], true, "{warm:?}");

    // Requests in flight, then the worker dies; a second worker takes over.
    let requests: Vec<_> = (0..8)
        .map(|_| {
            let (addr, photo) = (addr.clone(), photo.clone());
            std::thread::spawn(move || post_image(&addr, &photo))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(Command::new("kill").args(["-KILL", &worker.id().to_string()]).status().unwrap().success());
    let _ = worker.wait();
    let mut p = p;
    add_worker(&mut p, "survivor", WorkerConfig::default(), engine()).await;

    let answers: Vec<(u16, serde_json::Value)> = requests.into_iter().map(|t| t.join().unwrap()).collect();
    let (mut ok, mut timed_out) = (0, 0);
    for (status, body) in &answers {
        match (status, body["success"].as_bool()) {
            (200, Some(true)) => ok += 1,
            (200, Some(false)) if body["error"].as_str().unwrap_or_default().contains("timed out") => timed_out += 1,
            other => panic!("an answer that is neither a result nor a timeout: {other:?} {body}"),
        }
    }
    assert_eq!(ok + timed_out, 8, "every request got exactly one answer: {answers:?}");
    assert!(ok >= 1, "the surviving worker answered: {answers:?}");

    // Nothing left waiting, and the gateway still answers.
    let metrics = scrape_metrics(&addr);
    assert!(metrics.contains("edgepool_gateway_in_flight_requests 0"), "{metrics}");
    let after = tokio::task::spawn_blocking(move || post_image(&addr, &photo)).await.unwrap();
    assert_eq!(after.1["success"], true, "{after:?}");
    let _ = gateway.kill();
    let _ = gateway.wait();
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_answered_at_about_one_inference_behind_a_camera_backlog() {
    let mut p = cluster().await;
    // 500 camera frames waiting, none of them stale for an hour: each needs an inference.
    let sent = crate::common::publish_photos(&p, "cam-backlog", 500, 1).await;
    assert_eq!(sent.len(), 500);
    let cfg = WorkerConfig { slots: 1, stale_after: Duration::from_secs(3600), ..WorkerConfig::default() };
    add_worker(&mut p, "w1", cfg, engine()).await;
    let (mut gateway, addr) = start_gateway(p.url());
    let started = Instant::now();
    while http_status(&addr, "/readyz") != 200 {
        assert!(started.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let photo = std::fs::read(edgepool_harness::fixtures::photos_dir().join("grace_hopper.jpg")).unwrap();
    let answers = {
        let (addr, photo) = (addr.clone(), photo.clone());
        tokio::task::spawn_blocking(move || {
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    let (status, body) = post_image(&addr, &photo);
                    (status, body, t.elapsed())
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap()
    };
    let mut lines = Vec::new();
    for (status, body, took) in &answers {
        assert_eq!((*status, &body["success"]), (200, &serde_json::json!(true)), "{body}");
        let process = Duration::from_millis(body["processMs"].as_u64().unwrap());
        // Its own inference, plus at most the camera frame the slot was busy with, plus the
        // broker and HTTP: about one inference time of waiting, not 500.
        assert!(*took < process * 3 + Duration::from_millis(500), "took {took:?} with processMs {process:?}");
        lines.push(format!("{took:?} (own processing {process:?})"));
    }
    // The backlog was still there: the requests went ahead of it.
    let frames = p.js.get_stream(edgepool_nats::FRAMES).await.unwrap().info().await.unwrap().state.messages;
    assert!(frames > 400, "the camera backlog drained ({frames} left): the requests did not jump it");
    eprintln!("requests behind a 500-frame backlog: {lines:?}; {frames} camera frames still queued");
    let _ = gateway.kill();
    let _ = gateway.wait();
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frigates_zmq_detector_gets_the_pools_detections_and_clear_errors() {
    let mut p = cluster().await;
    add_worker(&mut p, "w1", WorkerConfig::default(), engine()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = format!("tcp://127.0.0.1:{port}");
    let mut gateway = Command::new(env!("CARGO_BIN_EXE_edgepool"))
        .args(["gateway", "--listen", "127.0.0.1:0", "--zmq", &endpoint, "--nats-url", p.url()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(gateway.stderr.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("the gateway exited before serving zmq").unwrap();
        if line.starts_with("gateway: Frigate zmq detector on tcp://") {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));

    let photos = edgepool_harness::fixtures::photos_dir();
    let root = edgepool_harness::fixtures::workspace_root();
    let client = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(root.join("crates/cli/tests/interop/gateway_zmq_client.py"))
            .args(["--endpoint", &endpoint])
            .arg("--photos")
            .arg(&photos)
            .output()
            .unwrap()
    });
    let out = tokio::time::timeout(Duration::from_secs(120), client).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the zmq client failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().filter(|l| l.contains("\"check\"")).count(), 9, "{stdout}");
    let _ = gateway.kill();
    let _ = gateway.wait();
    p.shutdown().await;
}
