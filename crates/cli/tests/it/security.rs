//! Security: `nats/nats-server-secure.conf` (users of `nats/auth.conf`, TLS of `nats/tls.conf`)
//! on a real nats-server, with a throwaway CA made here by the `openssl` CLI. Every allowance is
//! shown working through the project's own client code (`NatsConfig::connect`, `Publisher`,
//! `Worker`, `Sink`), and every denial is shown twice: the operation fails for the client, and
//! the data it aimed at is unchanged (checked as admin) or the server logged the violation.
//! docs/security.md describes the roles; this file is its proof.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use bytes::Bytes;
use edgepool_camera::{Frame, Publisher, PublisherConfig};
use edgepool_harness::Broker;
use edgepool_nats::{DETECTIONS, FRAMES, InboxPrefix, NatsConfig, Secret};
use edgepool_sink::{Sink, SinkConfig, SinkStats};
use edgepool_wire::{CameraId, ContentType, ResultMessage, Status};
use edgepool_worker::models::{self, ModelName};
use edgepool_worker::{ARCH, Worker, WorkerConfig, WorkerMetrics};
use futures::StreamExt;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

/// Roles of `nats/auth.conf` and the environment variable each one's password comes from.
const USERS: [(&str, &str); 9] = [
    ("gateway", "EDGEPOOL_NATS_GATEWAY_PASSWORD"),
    ("admin", "EDGEPOOL_NATS_ADMIN_PASSWORD"),
    ("setup", "EDGEPOOL_NATS_SETUP_PASSWORD"),
    ("cameras", "EDGEPOOL_NATS_CAMERAS_PASSWORD"),
    ("worker", "EDGEPOOL_NATS_WORKER_PASSWORD"),
    ("sink", "EDGEPOOL_NATS_SINK_PASSWORD"),
    ("subscriber", "EDGEPOOL_NATS_SUBSCRIBER_PASSWORD"),
    ("cam-1", "EDGEPOOL_NATS_CAMERA_CAM_1_PASSWORD"),
    ("cam-2", "EDGEPOOL_NATS_CAMERA_CAM_2_PASSWORD"),
];

/// How long a denied request may take to fail: the server drops a denied publish (it sends the
/// client an async -ERR), so the request times out rather than getting an answer.
const DENIED_TIMEOUT: Duration = Duration::from_millis(1500);

/// A throwaway CA and a server certificate for 127.0.0.1, made with the `openssl` CLI.
pub(crate) struct TestCa {
    dir: TempDir,
}

impl TestCa {
    pub(crate) fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("edgepool-ca-").tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        openssl(
            d,
            &[
                &["req", "-x509"][..],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.pem", "-days", "1"],
                &[
                    "-subj",
                    "/CN=edgepool test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        );
        openssl(
            d,
            &[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat(),
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                "2",
                "-days",
                "1",
                "-extfile",
                "server.ext",
                "-out",
                "server.pem",
            ],
        );
        Self { dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().unwrap_or_else(|e| {
        panic!(
            "the security tests make their test CA with the openssl CLI, which failed to start ({e}); install openssl"
        )
    });
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The secure broker as shipped, plus the credentials the test made for it.
struct Secure {
    server: Broker,
    ca: TestCa,
    passwords: Vec<(&'static str, String)>,
}

impl Secure {
    fn start() -> Self {
        let ca = TestCa::new();
        // Fresh per run: nothing secret is committed, and no two tests share a password.
        let salt =
            format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
        let passwords: Vec<(&str, String)> = USERS.iter().map(|(u, _)| (*u, format!("{u}-pw-{salt}"))).collect();
        let paths = [ca.path("server.pem"), ca.path("server.key"), ca.path("ca.pem")].map(|p| p.display().to_string());
        let mut env: Vec<(&str, &str)> =
            USERS.iter().zip(&passwords).map(|((_, var), (_, pw))| (*var, pw.as_str())).collect();
        env.extend([
            ("EDGEPOOL_NATS_TLS_CERT", paths[0].as_str()),
            ("EDGEPOOL_NATS_TLS_KEY", paths[1].as_str()),
            ("EDGEPOOL_NATS_TLS_CA", paths[2].as_str()),
        ]);
        let conf = edgepool_harness::fixtures::workspace_root().join("nats/nats-server-secure.conf");
        let server = Broker::start(edgepool_harness::BrokerOptions {
            conf: edgepool_harness::Conf::File(conf),
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            ..edgepool_harness::BrokerOptions::single()
        })
        .unwrap();
        Self { server, ca, passwords }
    }

    fn password(&self, user: &str) -> &str {
        &self.passwords.iter().find(|(u, _)| *u == user).unwrap().1
    }

    /// Connection settings for `user`, exactly as a deployed binary would get them, with the
    /// user's own inbox prefix.
    fn config(&self, user: &str) -> NatsConfig {
        NatsConfig {
            url: Some(self.server.url()),
            user: Some(user.to_owned()),
            password: Some(Secret::new(self.password(user))),
            tls_ca: Some(self.ca.path("ca.pem")),
            inbox_prefix: InboxPrefix::new(inbox_prefix(user)).unwrap(),
            ..NatsConfig::default()
        }
    }

    async fn connect(&self, user: &str) -> async_nats::Client {
        self.config(user).connect(&format!("test-{user}"), false).await.unwrap()
    }

    /// A JetStream context whose denied requests fail after [`DENIED_TIMEOUT`].
    async fn js(&self, user: &str) -> jetstream::Context {
        jetstream::ContextBuilder::new().timeout(DENIED_TIMEOUT).build(self.connect(user).await)
    }

    /// Connects as admin and runs setup (the admin's job).
    async fn setup(&self) -> jetstream::Context {
        let js = self.js("admin").await;
        let applied = edgepool_nats::apply(&js, Default::default()).await.unwrap();
        assert!(applied.iter().all(|a| a.change == edgepool_nats::Change::Created), "{applied:?}");
        js
    }

    /// Waits until the server log mentions `needle` (violations are logged asynchronously).
    async fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.server.log(0).contains(needle) {
            assert!(Instant::now() < deadline, "server log never mentioned {needle:?}:\n{}", self.server.log(0));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The inbox prefix `nats/auth.conf` grants `user`.
fn inbox_prefix(user: &str) -> String {
    format!("_INBOX_{user}")
}

/// How nats-server 2.x logs a denied publish or subscribe of `user`.
fn violation(user: &str, kind: &str, subject: &str) -> String {
    format!(r#""$G/user:{user}" - {kind} Violation - Subject "{subject}""#)
}

async fn messages(js: &jetstream::Context, stream: &str) -> u64 {
    js.get_stream(stream).await.unwrap().get_info().await.unwrap().state.messages
}

fn jpeg() -> Bytes {
    Bytes::from(std::fs::read(edgepool_harness::fixtures::photos_dir().join("grace_hopper.jpg")).unwrap())
}

/// Publishes one frame as `camera` through the camera's own code; returns `(acked, failed)`.
async fn publish_frame(js: jetstream::Context, camera: &str) -> (u64, u64) {
    let cfg = PublisherConfig {
        attempts: 2,
        ack_timeout: DENIED_TIMEOUT,
        retry_backoff: Duration::from_millis(50),
        ..PublisherConfig::default()
    };
    let mut p = Publisher::new(js, CameraId::new(camera).unwrap(), 1, cfg);
    p.publish(Frame::now(jpeg(), ContentType::Jpeg)).await.unwrap();
    let stats = p.flush().await;
    (stats.acked, stats.failed)
}

#[tokio::test]
async fn camera_publishes_its_own_frames_and_nothing_else() {
    let s = Secure::start();
    let admin = s.setup().await;
    let cam = s.js("cam-1").await;

    assert_eq!(publish_frame(cam.clone(), "cam-1").await, (1, 0), "own subject: acked");
    assert_eq!(publish_frame(cam.clone(), "cam-2").await, (0, 1), "another camera's subject: refused");
    s.wait_log(&violation("cam-1", "Publish", "frames.cam-2")).await;
    assert_eq!(messages(&admin, FRAMES).await, 1, "only cam-1's frame was stored");
    let last = admin.get_stream(FRAMES).await.unwrap().get_last_raw_message_by_subject("frames.cam-1").await;
    assert!(last.is_ok(), "the stored frame is cam-1's");

    // Results and dead letters are not a camera's to write, and the API is not its to call.
    let fake = cam.publish("detections.cam-1", Bytes::from_static(b"{}")).await.unwrap().await;
    assert!(fake.is_err(), "camera published a result");
    assert!(cam.get_stream(FRAMES).await.is_err(), "camera read stream info");
    assert!(cam.delete_stream(FRAMES).await.is_err(), "camera deleted FRAMES");
    assert_eq!(messages(&admin, DETECTIONS).await, 0);
    assert_eq!(messages(&admin, FRAMES).await, 1);
}

#[tokio::test]
async fn camera_cannot_subscribe_to_detections() {
    let s = Secure::start();
    let admin = s.setup().await;
    let cam = s.connect("cam-1").await;
    let mut detections = cam.subscribe("detections.>").await.unwrap();
    let mut frames = cam.subscribe("frames.>").await.unwrap();
    cam.flush().await.unwrap();
    s.wait_log(&violation("cam-1", "Subscription", "detections.>")).await;
    s.wait_log(&violation("cam-1", "Subscription", "frames.>")).await;

    // A worker publishes a result and a camera a frame; the camera's subscriptions see neither.
    let worker = s.js("worker").await;
    worker.publish("detections.cam-2", Bytes::from_static(b"{}")).await.unwrap().await.unwrap();
    publish_frame(s.js("cam-2").await, "cam-2").await;
    assert_eq!(messages(&admin, DETECTIONS).await, 1);
    let got = tokio::time::timeout(Duration::from_millis(500), detections.next()).await;
    assert!(!matches!(got, Ok(Some(_))), "camera received a detection: {got:?}");
    let got = tokio::time::timeout(Duration::from_millis(100), frames.next()).await;
    assert!(!matches!(got, Ok(Some(_))), "camera received another camera's frame: {got:?}");
}

#[tokio::test]
async fn worker_processes_a_frame_end_to_end_with_least_privilege() {
    let s = Secure::start();
    let admin = s.setup().await;

    // The sink, as its own user: binds its consumer and counts results.
    let stop = CancellationToken::new();
    let stats = Arc::new(SinkStats::keeping_ids());
    let sink = Sink::new(&prometheus::Registry::new(), Arc::clone(&stats)).unwrap();
    let sink_js = jetstream::new(s.connect("sink").await);
    let sink_task = {
        let (sink, stop) = (sink.clone(), stop.clone());
        tokio::spawn(async move { sink.run(sink_js, SinkConfig { replay: true, ..SinkConfig::default() }, stop).await })
    };

    // The worker, as its own user, with the real model.
    let metrics = WorkerMetrics::register(&prometheus::Registry::new(), "w1", ARCH).unwrap();
    let cfg = WorkerConfig { id: Some("w1".into()), ..WorkerConfig::default() };
    let worker =
        Worker::new(jetstream::new(s.connect("worker").await), crate::common::engine(), cfg, metrics).await.unwrap();
    let worker_stop = CancellationToken::new();
    let worker_task = tokio::spawn(worker.run(worker_stop.clone()));

    assert_eq!(publish_frame(s.js("cam-1").await, "cam-1").await, (1, 0));
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats.summary().results < 1 {
        assert!(Instant::now() < deadline, "no result within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let summary = stats.summary();
    assert_eq!((summary.ok, summary.errors), (1, 0), "{summary:?}");
    assert_eq!(messages(&admin, FRAMES).await, 0, "the frame was acked and left the work queue");
    // The worker keeps its fleet registry entry fresh with its own grants.
    let fleet = admin.get_key_value(edgepool_wire::fleet::BUCKET).await.unwrap();
    let deadline = Instant::now() + edgepool_wire::fleet::REFRESH * 3;
    while fleet.get("w1").await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "worker never registered:\n{}", s.server.log(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The worker stores the camera's snapshot with its own grants, and the sink, with its own,
    // watches the snapshots and reads the fleet for the live page.
    let view = sink.view();
    let deadline = Instant::now() + Duration::from_secs(15);
    while view.store.get("cam-1").is_none() {
        assert!(Instant::now() < deadline, "the sink never saw cam-1's snapshot:\n{}", s.server.log(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(view.store.get("cam-1").unwrap().result.status == Status::Ok);
    loop {
        let fleet = view.fleet.view(None, None, 0);
        if let Some(status) = fleet.status {
            assert!(status.workers.iter().any(|w| w.id == "w1"), "{:?}", status.workers);
            break;
        }
        assert!(fleet.error.is_none(), "the sink could not read the fleet: {:?}\n{}", fleet.error, s.server.log(0));
        assert!(Instant::now() < deadline, "the sink never read the fleet");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = s.server.log(0);
    assert!(!log.contains("Permissions Violation"), "a role needed a grant it does not have:\n{log}");
    worker_stop.cancel();
    let report = worker_task.await.unwrap();
    assert_eq!(report.ok, 1);
    stop.cancel();
    sink_task.await.unwrap().unwrap();
}

#[tokio::test]
async fn worker_cannot_delete_purge_or_reconfigure() {
    let s = Secure::start();
    let admin = s.setup().await;
    publish_frame(s.js("cam-1").await, "cam-1").await;
    let worker = s.js("worker").await;

    assert!(worker.delete_stream(FRAMES).await.is_err(), "worker deleted FRAMES");
    s.wait_log(&violation("worker", "Publish", "$JS.API.STREAM.DELETE.FRAMES")).await;
    let mut frames = worker.get_stream(FRAMES).await.expect("worker may read FRAMES info");
    assert!(frames.purge().await.is_err(), "worker purged FRAMES");
    s.wait_log(&violation("worker", "Publish", "$JS.API.STREAM.PURGE.FRAMES")).await;
    assert!(frames.delete_consumer("detectors").await.is_err(), "worker deleted the consumer");
    assert!(worker.delete_stream(DETECTIONS).await.is_err(), "worker deleted DETECTIONS");
    let evil = consumer::pull::Config { durable_name: Some("evil".into()), ..Default::default() };
    assert!(frames.create_consumer(evil).await.is_err(), "worker created a consumer");
    assert!(frames.info().await.is_ok());
    // Nor can it forge frames (which it would then take as work).
    let forged = worker.publish("frames.cam-1", jpeg()).await.unwrap().await;
    assert!(forged.is_err(), "worker published a frame");

    assert_eq!(messages(&admin, FRAMES).await, 1, "FRAMES intact");
    let consumers: Vec<String> =
        admin.get_stream(FRAMES).await.unwrap().consumer_names().map(Result::unwrap).collect().await;
    assert_eq!(consumers, ["detectors"]);
}

#[tokio::test]
async fn subscriber_reads_detections_but_cannot_publish_frames() {
    let s = Secure::start();
    let admin = s.setup().await;
    let subscriber = s.js("subscriber").await;
    let mut live = subscriber.client().subscribe("detections.>").await.unwrap();
    subscriber.client().flush().await.unwrap();

    let result = serde_json::json!({
        "schema_version": 1, "camera": "cam-1", "seq": 1, "stream_seq": 1, "captured_at": null,
        "processed_at": "2026-11-27T18:00:00Z", "worker": "w", "arch": "x86_64", "slowdown": 1.0, "model": "m",
        "width": 0, "height": 0, "delivery": 1, "timings": {"queue_wait_ms": 0, "decode_ms": 0,
        "preprocess_ms": 0, "inference_ms": 0, "postprocess_ms": 0, "total_ms": 0}, "status": "stale",
        "detections": []});
    let worker = s.js("worker").await;
    worker.publish("detections.cam-1", serde_json::to_vec(&result).unwrap().into()).await.unwrap().await.unwrap();

    // Live, and replayed through its own durable consumer on DETECTIONS.
    let m = tokio::time::timeout(Duration::from_secs(5), live.next()).await.unwrap().unwrap();
    assert_eq!(serde_json::from_slice::<ResultMessage>(&m.payload).unwrap().status, Status::Stale);
    let stream = subscriber.get_stream(DETECTIONS).await.unwrap();
    let cfg = consumer::pull::Config { durable_name: Some("dashboard".into()), ..Default::default() };
    let c = stream.get_or_create_consumer("dashboard", cfg).await.unwrap();
    let mut batch = c.fetch().max_messages(1).expires(Duration::from_secs(2)).messages().await.unwrap();
    let m = batch.next().await.unwrap().unwrap();
    assert_eq!(m.subject.as_str(), "detections.cam-1");
    m.double_ack().await.unwrap();

    // It cannot inject frames, take work from FRAMES, or delete what it reads.
    let forged = subscriber.publish("frames.cam-1", jpeg()).await.unwrap().await;
    assert!(forged.is_err(), "subscriber published a frame");
    s.wait_log(&violation("subscriber", "Publish", "frames.cam-1")).await;
    assert!(subscriber.get_stream(FRAMES).await.is_err(), "subscriber read FRAMES");
    let client = subscriber.client();
    let pull = client.request("$JS.API.CONSUMER.MSG.NEXT.FRAMES.detectors", "1".into());
    let pull = tokio::time::timeout(DENIED_TIMEOUT, pull).await;
    assert!(!matches!(pull, Ok(Ok(_))), "subscriber pulled from the workers' consumer: {pull:?}");
    assert!(subscriber.delete_stream(DETECTIONS).await.is_err(), "subscriber deleted DETECTIONS");
    assert!(stream.delete_consumer("dashboard").await.is_err(), "subscriber deleted a consumer");
    assert_eq!(messages(&admin, FRAMES).await, 0);
    assert_eq!(messages(&admin, DETECTIONS).await, 1);
}

#[tokio::test]
async fn admin_runs_setup_but_does_not_touch_data() {
    let s = Secure::start();
    let admin = s.setup().await;
    let again = edgepool_nats::apply(&admin, Default::default()).await.unwrap();
    assert!(again.iter().all(|a| a.change == edgepool_nats::Change::Unchanged), "{again:?}");
    let forged = admin.publish("frames.cam-1", jpeg()).await.unwrap().await;
    assert!(forged.is_err(), "admin published a frame");
    assert_eq!(messages(&admin, FRAMES).await, 0);
}

#[tokio::test]
async fn setup_creates_and_updates_but_cannot_delete_or_touch_data() {
    let s = Secure::start();
    let setup = s.js("setup").await;
    let applied = edgepool_nats::apply(&setup, Default::default()).await.unwrap();
    assert!(applied.iter().all(|a| a.change == edgepool_nats::Change::Created), "{applied:?}");
    let again = edgepool_nats::apply(&setup, Default::default()).await.unwrap();
    assert!(again.iter().all(|a| a.change == edgepool_nats::Change::Unchanged), "{again:?}");
    publish_frame(s.js("cam-1").await, "cam-1").await;

    assert!(setup.delete_stream(FRAMES).await.is_err(), "setup deleted FRAMES");
    s.wait_log(&violation("setup", "Publish", "$JS.API.STREAM.DELETE.FRAMES")).await;
    let frames = setup.get_stream(FRAMES).await.expect("setup reads stream info");
    assert!(frames.purge().await.is_err(), "setup purged FRAMES");
    assert!(frames.delete_consumer("detectors").await.is_err(), "setup deleted the consumer");
    let forged = setup.publish("frames.cam-1", jpeg()).await.unwrap().await;
    assert!(forged.is_err(), "setup published a frame");
    let models = jetstream::object_store::Config { bucket: "MODELS".into(), ..Default::default() };
    assert!(setup.create_object_store(models).await.is_err(), "setup created the model bucket");
    let admin = s.js("admin").await;
    assert_eq!(messages(&admin, FRAMES).await, 1, "FRAMES intact");
}

#[tokio::test]
async fn the_cameras_pod_publishes_any_cameras_frames_and_reads_nothing() {
    let s = Secure::start();
    let admin = s.setup().await;
    let pod = s.js("cameras").await;
    assert_eq!(publish_frame(pod.clone(), "cam-1").await, (1, 0));
    assert_eq!(publish_frame(pod.clone(), "door").await, (1, 0));
    assert_eq!(messages(&admin, FRAMES).await, 2);

    let mut sub = pod.client().subscribe("detections.>").await.unwrap();
    s.wait_log(&violation("cameras", "Subscription", "detections.>")).await;
    assert!(pod.get_stream(FRAMES).await.is_err(), "the cameras pod read FRAMES");
    assert!(pod.delete_stream(FRAMES).await.is_err(), "the cameras pod deleted FRAMES");
    let forged = pod.publish("detections.cam-1", "{}".into()).await.unwrap().await;
    assert!(forged.is_err(), "the cameras pod published a result");
    assert!(tokio::time::timeout(Duration::from_millis(300), sub.next()).await.is_err());
    assert_eq!(messages(&admin, FRAMES).await, 2);
}

#[tokio::test]
async fn the_gateway_publishes_its_frames_and_reads_only_their_results() {
    let s = Secure::start();
    let admin = s.setup().await;
    let gw = s.js("gateway").await;
    let meta = |camera: &str| edgepool_wire::FrameMeta {
        camera: CameraId::new(camera).unwrap(),
        seq: edgepool_wire::FrameSeq(1),
        captured_at: time::OffsetDateTime::now_utc(),
        content_type: ContentType::Jpeg,
        traceparent: None,
        trigger: None,
        motion_regions: Vec::new(),
        deadline: Some(time::OffsetDateTime::now_utc() + time::Duration::seconds(30)),
        raw_size: None,
    };
    let request = |subject: &'static str, camera: &'static str| {
        let gw = gw.clone();
        let headers = edgepool_nats::frame_headers(&meta(camera)).unwrap();
        async move { gw.publish_with_headers(subject, headers, jpeg()).await.unwrap().await }
    };
    request("requests.gateway", "gateway").await.expect("its own requests: acked");
    assert!(request("requests.cam-1", "cam-1").await.is_err(), "another camera's requests");
    s.wait_log(&violation("gateway", "Publish", "requests.cam-1")).await;
    assert!(request("frames.gateway", "gateway").await.is_err(), "the cameras' queue");
    s.wait_log(&violation("gateway", "Publish", "frames.gateway")).await;
    let mut own = gw.client().subscribe("detections.gateway").await.unwrap();
    let _other = gw.client().subscribe("detections.cam-1").await.unwrap();
    s.wait_log(&violation("gateway", "Subscription", "detections.cam-1")).await;
    gw.client().flush().await.unwrap();
    let worker = s.js("worker").await;
    worker.publish("detections.gateway", "{}".into()).await.unwrap().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), own.next()).await.unwrap().unwrap();
    assert_eq!(got.subject.as_str(), "detections.gateway");
    let forged = gw.publish("detections.gateway", "{}".into()).await.unwrap().await;
    assert!(forged.is_err(), "the gateway published a result");
    assert!(gw.get_stream("REQUESTS").await.is_err(), "the gateway read REQUESTS");
    assert!(gw.delete_stream("REQUESTS").await.is_err(), "the gateway deleted REQUESTS");
    assert_eq!(messages(&admin, "REQUESTS").await, 1, "only its own request was stored");
    assert_eq!(messages(&admin, FRAMES).await, 0);

    // A worker takes it, as it does camera frames.
    let frames = worker.get_stream("REQUESTS").await.unwrap();
    let c: consumer::PullConsumer = frames.get_consumer("detectors").await.unwrap();
    let mut batch = c.fetch().max_messages(1).expires(Duration::from_secs(2)).messages().await.unwrap();
    let m = batch.next().await.unwrap().unwrap();
    assert_eq!(m.subject.as_str(), "requests.gateway");
    m.double_ack().await.unwrap();
    assert_eq!(messages(&admin, "REQUESTS").await, 0);
}

#[tokio::test]
async fn unauthenticated_and_wrong_credentials_are_refused() {
    let s = Secure::start();
    let refused = |cfg: NatsConfig| async move {
        let err = cfg.connect("test-refused", false).await.expect_err("connection accepted");
        err.to_string()
    };
    let anonymous = NatsConfig { user: None, password: None, ..s.config("admin") };
    let wrong = NatsConfig { password: Some(Secret::new("not-the-password")), ..s.config("admin") };
    let unknown = NatsConfig { user: Some("root".into()), ..s.config("admin") };
    // A camera's password does not open another camera's account.
    let swapped = NatsConfig { password: Some(Secret::new(s.password("cam-2"))), ..s.config("cam-1") };
    for (what, cfg) in
        [("anonymous", anonymous), ("wrong password", wrong), ("unknown user", unknown), ("swapped", swapped)]
    {
        let e = refused(cfg).await;
        assert!(e.to_lowercase().contains("authorization"), "{what}: {e}");
    }
    s.wait_log(r#"authentication error - User "root""#).await;
    // The right credentials do connect (the refusals above are about credentials, not TLS).
    s.connect("admin").await;
}

#[tokio::test]
async fn plaintext_connections_are_refused() {
    let s = Secure::start();
    let addr = s.server.url().rsplit("//").next().unwrap().to_owned();

    // A raw plaintext client: the server announces tls_required, and a plaintext CONNECT with
    // valid credentials gets no PONG, only a closed connection.
    let mut tcp = TcpStream::connect(&addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut info = [0u8; 4096];
    let n = tcp.read(&mut info).unwrap();
    let info = String::from_utf8_lossy(&info[..n]).into_owned();
    assert!(info.starts_with("INFO ") && info.contains(r#""tls_required":true"#), "{info}");
    let connect =
        format!("CONNECT {{\"verbose\":false,\"user\":\"admin\",\"pass\":\"{}\"}}\r\nPING\r\n", s.password("admin"));
    tcp.write_all(connect.as_bytes()).unwrap();
    let mut reply = Vec::new();
    let _ = tcp.read_to_end(&mut reply); // EOF (or reset) once the server gives up on the handshake
    let reply = String::from_utf8_lossy(&reply);
    assert!(!reply.contains("PONG"), "plaintext client was served: {reply}");

    // Our client without the CA refuses the server instead (unknown issuer): no silent downgrade.
    let no_ca = NatsConfig { tls_ca: None, ..s.config("admin") };
    assert!(no_ca.connect("test-no-ca", false).await.is_err());
}

/// The `edgepool` binary with a secret in its environment, as a Kubernetes Secret would set it.
fn edgepool(args: &[&str], secret: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edgepool"))
        .args(args)
        .env("EDGEPOOL_NATS_PASSWORD", secret)
        .env("EDGEPOOL_NATS_TOKEN", secret)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn credentials_never_appear_in_help_check_or_logs() {
    let secret = "s3cr3t-do-not-print-7f1c";
    // (`camera --help` is left out: in debug builds clap's debug assertions panic on the camera
    // command's `conflicts_with = "r#loop"`, reported separately.)
    for args in [&["worker", "--help"][..], &["--help"], &["sink", "--help"], &["setup", "--help"]] {
        let (ok, text) = edgepool(args, secret);
        assert!(ok, "{args:?}: {text}");
        assert!(!text.contains(secret), "{args:?} printed the secret:\n{text}");
    }

    let (ok, text) = edgepool(&["--check", "worker"], secret);
    assert!(ok, "{text}");
    assert!(!text.contains(secret), "--check printed the secret:\n{text}");
    assert!(text.contains("<redacted>"), "--check does not show that a password is set:\n{text}");

    // A failing connection at trace level: the error and every log line leave the secret out.
    let s = Secure::start();
    let ca = s.ca.path("ca.pem").display().to_string();
    let url = s.server.url();
    let (ok, text) = edgepool(&["--nats-url", &url, "--nats-user", "admin", "--nats-tls-ca", &ca, "setup"], secret);
    assert!(!ok, "setup with a wrong password succeeded: {text}");
    assert!(text.to_lowercase().contains("authorization"), "{text}");
    assert!(!text.contains(secret), "setup logged the secret:\n{text}");

    // And with the right password, over TLS, the CLI's setup works as admin but not as worker.
    let run = |user: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_edgepool"))
            .args(["--nats-url", &url, "--nats-user", user, "--nats-tls-ca", &ca, "setup"])
            .env("EDGEPOOL_NATS_PASSWORD", s.password(user))
            .env("EDGEPOOL_NATS_INBOX_PREFIX", inbox_prefix(user))
            .output()
            .unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, text) = run("worker");
    assert!(!ok, "a worker ran setup: {text}");
    let (ok, text) = run("admin");
    assert!(ok, "admin setup failed: {text}");
    assert!(!text.contains(s.password("admin")), "setup printed the admin password:\n{text}");
}

/// Each user has its own inbox prefix and may subscribe to nothing else there: no user can read
/// the replies another receives (here a result pulled by the subscriber, frames pulled by a
/// worker and another camera's publish ack), and NATS's shared `_INBOX.>` is closed to all.
#[tokio::test]
async fn no_user_can_read_another_users_inbox() {
    let s = Secure::start();
    let admin = s.setup().await;
    let snoops = [
        ("cam-1", "_INBOX.>"),
        ("cam-1", "_INBOX_subscriber.>"),
        ("cam-1", "_INBOX_worker.>"),
        ("cam-1", "_INBOX_cam-2.>"),
        ("cam-1", ">"),
        ("worker", "_INBOX.>"),
        ("worker", "_INBOX_cam-1.>"),
        ("worker", "_INBOX_sink.>"),
        ("subscriber", "_INBOX_sink.>"),
        ("sink", "_INBOX_admin.>"),
    ];
    let mut subs = Vec::new();
    for (user, subject) in snoops {
        let client = s.connect(user).await;
        subs.push(client.subscribe(subject).await.unwrap());
        client.flush().await.unwrap();
        s.wait_log(&violation(user, "Subscription", subject)).await;
    }

    // Replies flow meanwhile: a worker pulls a frame, the subscriber pulls a result, a camera
    // gets its publish ack.
    assert_eq!(publish_frame(s.js("cam-2").await, "cam-2").await, (1, 0));
    let worker = s.js("worker").await;
    let detectors = worker.get_stream(FRAMES).await.unwrap().get_consumer::<consumer::pull::Config>("detectors").await;
    let mut frames = detectors.unwrap().fetch().max_messages(1).messages().await.unwrap();
    frames.next().await.unwrap().unwrap();
    worker.publish("detections.cam-2", Bytes::from_static(b"{\"secret\":1}")).await.unwrap().await.unwrap();
    let subscriber = s.js("subscriber").await;
    let stream = subscriber.get_stream(DETECTIONS).await.unwrap();
    let cfg = consumer::pull::Config { durable_name: Some("reader".into()), ..Default::default() };
    let c = stream.get_or_create_consumer("reader", cfg).await.unwrap();
    let mut batch = c.fetch().max_messages(1).expires(Duration::from_secs(2)).messages().await.unwrap();
    assert_eq!(batch.next().await.unwrap().unwrap().payload.as_ref(), b"{\"secret\":1}");

    let mut all = futures::stream::select_all(subs);
    let got = tokio::time::timeout(Duration::from_millis(500), all.next()).await;
    assert!(!matches!(got, Ok(Some(_))), "a user read a reply meant for another: {got:?}");
    assert_eq!(messages(&admin, DETECTIONS).await, 1);
}

/// The grants leave a client on NATS's default `_INBOX` prefix without replies: it must connect
/// with its own (`EDGEPOOL_NATS_INBOX_PREFIX=_INBOX_<user>`). Loud, not silent: the camera's
/// publish fails and the server logs the denied reply subscription.
#[tokio::test]
async fn a_client_on_the_default_inbox_prefix_gets_no_replies() {
    let s = Secure::start();
    s.setup().await;
    let cfg = NatsConfig { inbox_prefix: InboxPrefix::default(), ..s.config("cam-1") };
    let client = cfg.connect("test-default-inbox", false).await.unwrap();
    let js = jetstream::ContextBuilder::new().timeout(DENIED_TIMEOUT).build(client);
    assert_eq!(publish_frame(js, "cam-1").await, (0, 1), "acked without a reply subscription");
    s.wait_log(r#""$G/user:cam-1" - Subscription Violation - Subject "_INBOX."#).await;
}

/// A worker loads its model by name from the Object Store bucket MODELS (pushed by the admin),
/// watches it and hot-swaps to a new version, all with its own grants; it cannot put, delete or
/// purge objects, nor delete the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_reads_models_by_name_but_cannot_change_the_bucket() {
    let s = Secure::start();
    let admin = s.setup().await;
    let name = ModelName::new("ssd").unwrap();
    // Default timeouts for the real work (pushing and fetching 67 MB on a busy machine).
    let pusher = jetstream::new(s.connect("admin").await);
    let v1 = models::push(&pusher, &edgepool_harness::fixtures::model_path(), &name, 1).await.unwrap();

    let worker = jetstream::new(s.connect("worker").await);
    let cache = tempfile::tempdir().unwrap();
    let mut cfg = edgepool::config::Config::default();
    cfg.model.name = Some(name.clone());
    cfg.model.dir = Some(cache.path().to_owned());
    let watching = CancellationToken::new();
    let engine = edgepool::cmd::worker::model_from_nats(&worker, &cfg, watching.clone()).await.unwrap();
    assert_eq!(engine.version(), name.version(&v1.sha256));

    // A new version pushed by the admin reaches the worker through its watch.
    let tmp = tempfile::tempdir().unwrap();
    let v2 = models::push(&pusher, &crate::common::second_model_version(tmp.path()), &name, 1).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while engine.version() != name.version(&v2.sha256) {
        assert!(Instant::now() < deadline, "no hot-swap to v2 within 60 s:\n{}", s.server.log(0));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = s.server.log(0);
    let denied: Vec<&str> =
        log.lines().filter(|l| l.contains(r#""$G/user:worker""#) && l.contains("Violation")).collect();
    assert!(denied.is_empty(), "loading and watching needed more than the worker's grants: {denied:#?}");
    watching.cancel();

    // Reading is all: no put, no delete, no purge, no bucket deletion.
    let worker = s.js("worker").await;
    let store = worker.get_object_store(models::BUCKET).await.unwrap();
    let put = store.put("ssd", &mut &b"not a model"[..]).await;
    assert!(put.is_err(), "worker put an object");
    s.wait_log(r#""$G/user:worker" - Publish Violation - Subject "$O.MODELS.C."#).await;
    assert!(store.delete("ssd").await.is_err(), "worker deleted an object");
    s.wait_log(r#""$G/user:worker" - Publish Violation - Subject "$O.MODELS.M."#).await;
    assert!(worker.get_stream("OBJ_MODELS").await.unwrap().purge().await.is_err(), "worker purged the bucket");
    assert!(worker.delete_object_store(models::BUCKET).await.is_err(), "worker deleted the bucket");
    let info = admin.get_object_store(models::BUCKET).await.unwrap().info("ssd").await.unwrap();
    assert!(!info.deleted);
    assert_eq!(info.metadata.get(models::META_SHA256), Some(&v2.sha256), "the object is the admin's v2");
}

/// One HTTP GET to `127.0.0.1:<port><path>` with an optional `Authorization` value: the status,
/// and the head and start of the body as text (an event stream never ends: read for a second).
fn http(port: u16, path: &str, authorization: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = s.read(&mut chunk) {
        if n == 0 || buf.len() > 64 * 1024 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text)
}

/// Basic auth header value for `user:password`.
fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Issue 16's HTTP auth on the sink: with `sink.token` (from `EDGEPOOL_SINK_TOKEN`, as a
/// Kubernetes Secret sets it) the page, the live feed, the camera endpoints and the fleet answer
/// 401 without the token (bearer, or basic auth with it as the password, what a browser sends);
/// `/healthz` and `/readyz` stay open for probes; `/metrics` has its own token when
/// `sink.metrics_token` is set. No answer and no output ever shows a token.
#[test]
fn the_sinks_http_requires_its_token_but_probes_stay_open() {
    let (page_token, metrics_token) = ("page-t0ken-7f3a9c", "metrics-t0ken-51be2d");
    let mut broker = Broker::single().unwrap();
    let setup =
        Command::new(env!("CARGO_BIN_EXE_edgepool")).args(["setup", "--nats-url", &broker.url()]).output().unwrap();
    assert!(setup.status.success(), "{}", String::from_utf8_lossy(&setup.stderr));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut sink = Command::new(env!("CARGO_BIN_EXE_edgepool"))
        .args(["sink", "--listen", &format!("127.0.0.1:{port}"), "--nats-url", &broker.url()])
        .env("EDGEPOOL_SINK_TOKEN", page_token)
        .env("EDGEPOOL_SINK_METRICS_TOKEN", metrics_token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_status_or_zero(port, "/healthz") != 200 {
        assert!(Instant::now() < deadline && sink.try_wait().unwrap().is_none(), "the sink never answered /healthz");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut seen = String::new();
    let bearer = format!("Bearer {page_token}");
    for path in ["/", "/events", "/cameras", "/cameras/cam-1/latest.jpg", "/cameras/cam-1/stream.mjpeg", "/fleet"] {
        let (code, text) = http(port, path, None);
        assert_eq!(code, 401, "{path} without a token:\n{text}");
        assert!(text.to_ascii_lowercase().contains("www-authenticate: basic realm=\"edgepool\""), "{text}");
        for wrong in
            [format!("Bearer {metrics_token}"), basic("viewer", "guess"), "Bearer ".to_owned(), "Digest x".into()]
        {
            let (code, text) = http(port, path, Some(&wrong));
            assert_eq!(code, 401, "{path} with {wrong:?}:\n{text}");
            seen += &text;
        }
        seen += &text;
    }
    for good in [bearer.clone(), basic("viewer", page_token), basic("", page_token)] {
        let (code, text) = http(port, "/cameras", Some(&good));
        assert_eq!(code, 200, "/cameras with {good:?}:\n{text}");
        assert_eq!(http(port, "/", Some(&good)).0, 200);
        seen += &text;
    }
    let (code, text) = http(port, "/events", Some(&bearer));
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("text/event-stream"), "{text}");
    // Probes are open; /metrics wants its own token.
    assert_eq!(http(port, "/healthz", None).0, 200);
    assert!(matches!(http(port, "/readyz", None).0, 200 | 503), "answered without a token");
    assert_eq!(http(port, "/metrics", None).0, 401);
    assert_eq!(http(port, "/metrics", Some(&bearer)).0, 401, "the page's token is not the metrics token");
    let (code, text) = http(port, "/metrics", Some(&format!("Bearer {metrics_token}")));
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("edgepool_sink_"), "{text}");
    rustix::process::kill_process(rustix::process::Pid::from_child(&sink), rustix::process::Signal::INT).unwrap();
    let _ = sink.wait();
    let mut out = String::new();
    sink.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    sink.stderr.take().unwrap().read_to_string(&mut out).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_edgepool"))
        .args(["sink", "--check"])
        .env("EDGEPOOL_SINK_TOKEN", page_token)
        .output()
        .unwrap();
    out += &String::from_utf8_lossy(&check.stdout);
    assert!(out.contains("token = \"<redacted>\""), "{out}");
    for token in [page_token, metrics_token] {
        assert!(!seen.contains(token) && !out.contains(token), "a token was shown:\n{seen}\n{out}");
    }
    broker.stop_all();
}

/// The status of a GET, 0 when nothing answers.
fn http_status_or_zero(port: u16, path: &str) -> u16 {
    if TcpStream::connect(("127.0.0.1", port)).is_err() {
        return 0;
    }
    http(port, path, None).0
}

/// One `KEY=value` of an env file `edgepool auth init` wrote.
fn env_value(file: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} not in {}:\n{text}", file.display()))
        .to_owned()
}

/// Issue 16's one-step credentials: `edgepool auth init DIR --camera …` writes a CA, a server
/// certificate, a user per role and camera and the server's auth.conf with bcrypt hashes only;
/// every file is private; an existing DIR is kept without --force. A real nats-server runs on
/// exactly those files, with TLS: each role connects with its own file and the CA, setup runs,
/// a camera publishes its frames and not another camera's, a wrong password and plaintext are
/// refused.
#[tokio::test]
async fn auth_init_writes_credentials_a_real_server_runs_on() {
    let tmp = tempfile::tempdir().unwrap();
    let creds = tmp.path().join("creds");
    let init = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_edgepool"))
            .args(["auth", "init"])
            .arg(&creds)
            .args(["--camera", "front-door,garage"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = init(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let names =
        ["ca.crt", "ca.key", "nats-server.crt", "nats-server.key", "auth.conf", "sink-http.env", "gateway-http.env"];
    let roles = [
        "admin.env",
        "setup.env",
        "worker.env",
        "sink.env",
        "subscriber.env",
        "cameras.env",
        "gateway.env",
        "camera-front-door.env",
        "camera-garage.env",
    ];
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777, 0o700);
        for f in names.iter().chain(&roles) {
            let mode = std::fs::metadata(creds.join(f)).unwrap_or_else(|e| panic!("{f}: {e}")).permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }
    }
    let worker_password = env_value(&creds.join("worker.env"), "EDGEPOOL_NATS_PASSWORD");
    let again = init(&[]);
    assert!(!again.status.success(), "an existing directory was overwritten");
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(env_value(&creds.join("worker.env"), "EDGEPOOL_NATS_PASSWORD"), worker_password, "kept");

    // The server gets only hashes.
    let auth = std::fs::read_to_string(creds.join("auth.conf")).unwrap();
    for f in &roles {
        let password = env_value(&creds.join(f), "EDGEPOOL_NATS_PASSWORD");
        assert!(password.len() >= 40 && !auth.contains(&password), "{f}'s password is in auth.conf");
    }
    assert_eq!(auth.matches("password: \"$2a$11$").count(), roles.len(), "{auth}");

    // nats-server on exactly those files: the shipped server config and TLS block, the generated users.
    let root = edgepool_harness::fixtures::workspace_root().join("nats");
    for f in ["nats-server.conf", "tls.conf"] {
        std::fs::copy(root.join(f), tmp.path().join(f)).unwrap();
    }
    let conf = tmp.path().join("server.conf");
    std::fs::write(&conf, "include ./nats-server.conf\ninclude ./creds/auth.conf\ninclude ./tls.conf\n").unwrap();
    let path = |f: &str| creds.join(f).display().to_string();
    let server = Broker::start(edgepool_harness::BrokerOptions {
        conf: edgepool_harness::Conf::File(conf),
        env: vec![
            ("EDGEPOOL_NATS_TLS_CERT".into(), path("nats-server.crt")),
            ("EDGEPOOL_NATS_TLS_KEY".into(), path("nats-server.key")),
            ("EDGEPOOL_NATS_TLS_CA".into(), path("ca.crt")),
        ],
        ..edgepool_harness::BrokerOptions::single()
    })
    .unwrap();
    let config = |file: &str| NatsConfig {
        url: Some(server.url()),
        user: Some(env_value(&creds.join(file), "EDGEPOOL_NATS_USER")),
        password: Some(Secret::new(env_value(&creds.join(file), "EDGEPOOL_NATS_PASSWORD"))),
        tls_ca: Some(creds.join("ca.crt")),
        inbox_prefix: InboxPrefix::new(env_value(&creds.join(file), "EDGEPOOL_NATS_INBOX_PREFIX")).unwrap(),
        ..NatsConfig::default()
    };
    let js = |c: async_nats::Client| jetstream::ContextBuilder::new().timeout(DENIED_TIMEOUT).build(c);
    let admin = js(config("admin.env").connect("test-admin", false).await.unwrap());
    edgepool_nats::apply(&admin, Default::default()).await.unwrap();
    let camera = js(config("camera-front-door.env").connect("test-camera", false).await.unwrap());
    assert_eq!(publish_frame(camera.clone(), "front-door").await, (1, 0), "its own frames");
    assert_eq!(publish_frame(camera, "garage").await, (0, 1), "another camera's frames");
    assert_eq!(messages(&admin, FRAMES).await, 1);
    for file in ["worker.env", "sink.env", "subscriber.env", "camera-garage.env"] {
        config(file).connect("test-role", false).await.unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let wrong = NatsConfig { password: Some(Secret::new("not-the-password")), ..config("worker.env") };
    assert!(wrong.connect("test-wrong", false).await.is_err(), "a wrong password connected");
    let swapped = NatsConfig { user: Some("garage".into()), ..config("camera-front-door.env") };
    assert!(swapped.connect("test-swapped", false).await.is_err(), "another camera's password connected");
    // Plaintext: the server requires TLS before it reads any CONNECT.
    let mut raw = TcpStream::connect(server.url().trim_start_matches("nats://")).unwrap();
    let mut info = [0u8; 4096];
    let n = raw.read(&mut info).unwrap();
    assert!(String::from_utf8_lossy(&info[..n]).contains("\"tls_required\":true"));
    // `--force` replaces every credential.
    let forced = init(&["--force"]);
    assert!(forced.status.success());
    assert_ne!(env_value(&creds.join("worker.env"), "EDGEPOOL_NATS_PASSWORD"), worker_password);
}
