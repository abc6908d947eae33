//! The live view (issue #14): camera snapshots through the bucket, `latest.jpg` with the boxes
//! of its result drawn, `latest.json`, the camera list, the MJPEG streams (read by ffmpeg), the
//! viewer limit, a viewer that never reads, and a restarted sink. Real nats-server, real model,
//! real photos; the sink's HTTP face is served on a free port and read over TCP.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgepool_harness::LocalCluster;
use edgepool_sink::view::ViewConfig;
use edgepool_sink::{Sink, SinkConfig, SinkStats};
use edgepool_wire::{ContentType, ResultMessage};
use edgepool_worker::WorkerConfig;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::common::{add_worker, cluster, engine, expected_labels, labels, photos};

/// A response: status, lower-cased headers, body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A plain HTTP/1.1 GET (the server closes after it: `Connection: close`).
fn get(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> Reply {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(tcp);
    let (status, headers) = read_head(&mut r);
    let mut body = Vec::new();
    if headers.get("transfer-encoding").is_some_and(|t| t == "chunked") {
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let n = usize::from_str_radix(line.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        r.read_to_end(&mut body).unwrap();
    }
    Reply { status, headers, body }
}

fn read_head(r: &mut impl BufRead) -> (u16, BTreeMap<String, String>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
    let mut headers = BTreeMap::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    (status, headers)
}

/// A sink of its own (durable `name`) on the cluster, with `view` settings, serving HTTP.
struct ViewSink {
    sink: Sink,
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn view_sink(c: &LocalCluster, name: &str, view: ViewConfig) -> ViewSink {
    let sink = Sink::with_view(&prometheus::Registry::new(), Arc::new(SinkStats::default()), view).unwrap();
    let stop = CancellationToken::new();
    let addr =
        edgepool_runtime::http::serve("127.0.0.1:0".parse().unwrap(), sink.router(), stop.clone()).await.unwrap();
    let task = {
        let (sink, js, stop) = (sink.clone(), c.js.clone(), stop.clone());
        let cfg = SinkConfig { durable: name.into(), replay: true, ..SinkConfig::default() };
        tokio::spawn(async move { sink.run(js, cfg, stop).await })
    };
    ViewSink { sink, addr, stop, task }
}

impl ViewSink {
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }

    /// Waits until `/cameras` shows a snapshot for every camera in `ids`.
    async fn wait_snapshots(&self, ids: &[&str], timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let addr = self.addr;
            let list = tokio::task::spawn_blocking(move || get(addr, "/cameras", &[])).await.unwrap().json();
            let with_snapshot = |id: &str| {
                list["cameras"].as_array().unwrap().iter().any(|c| c["id"] == id && !c["snapshot"].is_null())
            };
            if ids.iter().all(|id| with_snapshot(id)) {
                return list;
            }
            assert!(Instant::now() < deadline, "no snapshot of every camera of {ids:?} after {timeout:?}: {list}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn photo(name: &str) -> (ContentType, Bytes) {
    photos().into_iter().find(|(n, _, _)| n == name).map(|(_, ct, b)| (ct, b)).unwrap()
}

/// One camera per photo, one frame each: `(camera, photo)`.
const CAMERAS: [(&str, &str); 3] =
    [("cam-grace", "grace_hopper.jpg"), ("cam-cat", "chelsea.png"), ("cam-rocket", "rocket.jpg")];

async fn blocking_get(addr: SocketAddr, path: &str) -> Reply {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || get(addr, &path, &[])).await.unwrap()
}

fn decode(body: &[u8]) -> image::RgbImage {
    image::load_from_memory(body).unwrap().to_rgb8()
}

fn distance(a: &image::Rgb<u8>, b: &image::Rgb<u8>) -> u32 {
    a.0.iter().zip(b.0).map(|(x, y)| u32::from(x.abs_diff(y))).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_jpg_draws_the_boxes_of_its_result() {
    let mut c = cluster().await;
    add_worker(&mut c, "w1", WorkerConfig::default(), engine()).await;
    let v = view_sink(&c, "view", ViewConfig::default()).await;
    for (camera, name) in CAMERAS {
        c.publish(camera, 1, [photo(name)]).await.unwrap();
    }
    let ids: Vec<&str> = CAMERAS.iter().map(|(c, _)| *c).collect();
    let list = v.wait_snapshots(&ids, Duration::from_secs(90)).await;

    for (camera, name) in CAMERAS {
        let entry = list["cameras"].as_array().unwrap().iter().find(|c| c["id"] == camera).unwrap();
        let json = blocking_get(v.addr, &format!("/cameras/{camera}/latest.json")).await;
        assert_eq!(json.status, 200);
        let result: ResultMessage = serde_json::from_slice(&json.body).unwrap();
        assert_eq!(labels(&result), expected_labels(name), "{camera}");
        let mut listed: Vec<&str> =
            entry["last_labels"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
        listed.sort_unstable();
        assert_eq!(listed, expected_labels(name), "{entry}");
        assert_eq!(entry["status"], "ok", "{entry}");
        assert_eq!(entry["snapshot"]["width"], result.width);

        let drawn = blocking_get(v.addr, &format!("/cameras/{camera}/latest.jpg")).await;
        assert_eq!(drawn.status, 200);
        assert_eq!(drawn.headers["content-type"], "image/jpeg");
        assert_eq!(drawn.headers["cache-control"], "no-cache");
        let raw = blocking_get(v.addr, &format!("/cameras/{camera}/latest.jpg?boxes=0")).await;
        let (drawn_img, raw_img) = (decode(&drawn.body), decode(&raw.body));
        assert_eq!((drawn_img.width(), drawn_img.height()), (result.width, result.height));
        assert_eq!(raw_img.dimensions(), drawn_img.dimensions());

        // Every box of the result is drawn where the result says, in its class's colour: on
        // each box's left edge and top edge, pixels have that colour in the drawn image and not
        // in the raw one.
        let (w, h) = (result.width as f32, result.height as f32);
        for d in &result.detections {
            let color = edgepool_detector::draw::class_color(d.class_id);
            let b = d.bbox;
            let (x0, y0, x1, y1) =
                ((b.x_min * w) as u32, (b.y_min * h) as u32, (b.x_max * w) as u32, (b.y_max * h) as u32);
            let edge: Vec<(u32, u32)> = (1..8)
                .map(|i| (x0, y0 + (y1 - y0) * i / 8))
                .chain((1..8).map(|i| (x0 + (x1 - x0) * i / 8, (y1.min(result.height - 1)))))
                .map(|(x, y)| (x.min(result.width - 1), y.min(result.height - 1)))
                .collect();
            let on_edge = edge.iter().filter(|(x, y)| distance(drawn_img.get_pixel(*x, *y), &color) < 90).count();
            let before = edge.iter().filter(|(x, y)| distance(raw_img.get_pixel(*x, *y), &color) < 90).count();
            assert!(
                on_edge >= 10 && on_edge > before + 6,
                "{camera}: {} box at {b:?} is not drawn ({on_edge} of {} edge pixels in colour, {before} before)",
                d.label,
                edge.len()
            );
        }
        // Away from the boxes nothing changed beyond JPEG noise; with no boxes, nowhere.
        let mean_diff = |img: &image::RgbImage| {
            let total: u64 = img.pixels().zip(raw_img.pixels()).map(|(a, b)| u64::from(distance(a, b))).sum();
            total as f64 / f64::from(img.width() * img.height())
        };
        if result.detections.is_empty() {
            assert!(mean_diff(&drawn_img) < 12.0, "{camera}: drawn image differs without boxes");
        } else {
            assert!(mean_diff(&drawn_img) > mean_diff(&raw_img), "{camera}");
        }

        // A smaller copy, and revalidation by ETag.
        let small = blocking_get(v.addr, &format!("/cameras/{camera}/latest.jpg?h=120")).await;
        let small_img = decode(&small.body);
        let want_w = (f64::from(result.width) * 120.0 / f64::from(result.height)).round() as u32;
        assert_eq!(small_img.height(), 120);
        assert!(small_img.width().abs_diff(want_w) <= 1, "{} vs {want_w}", small_img.width());
        let etag = drawn.headers["etag"].clone();
        let addr = v.addr;
        let path = format!("/cameras/{camera}/latest.jpg");
        let again = tokio::task::spawn_blocking(move || get(addr, &path, &[("If-None-Match", &etag)])).await.unwrap();
        assert_eq!(again.status, 304, "same snapshot, same ETag");
        assert!(again.body.is_empty());
    }

    // Unknown cameras are 404, bad queries 400, each with a JSON error.
    for path in ["/cameras/nope/latest.jpg", "/cameras/nope/latest.json", "/cameras/nope/stream.mjpeg"] {
        let r = blocking_get(v.addr, path).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(r.json()["error"].as_str().unwrap().contains("nope"), "{path}");
    }
    for q in ["h=abc", "h=0", "h=100000", "boxes=2", "size=3"] {
        let r = blocking_get(v.addr, &format!("/cameras/cam-grace/latest.jpg?{q}")).await;
        assert_eq!(r.status, 400, "?{q}");
        assert!(!r.json()["error"].as_str().unwrap().is_empty());
        let r = blocking_get(v.addr, &format!("/cameras/cam-grace/stream.mjpeg?{q}")).await;
        assert_eq!(r.status, 400, "stream ?{q}");
    }
    // The page is served from the binary.
    let page = blocking_get(v.addr, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.headers["content-type"].starts_with("text/html"));
    assert!(String::from_utf8_lossy(&page.body).contains("EventSource"));
    v.stop().await;
    c.shutdown().await;
}

/// Reads one MJPEG part's JPEG from an open stream.
fn read_part(r: &mut impl BufRead) -> Vec<u8> {
    let mut line = String::new();
    let mut len = None;
    loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "stream ended");
        let l = line.trim_end();
        if let Some(v) = l.strip_prefix("Content-Length:") {
            len = Some(v.trim().parse::<usize>().unwrap());
        }
        if l.is_empty() && len.is_some() {
            break;
        }
    }
    let mut jpeg = vec![0; len.unwrap()];
    r.read_exact(&mut jpeg).unwrap();
    jpeg
}

/// An MJPEG stream opened and its head read; the body is chunked, so the reader skips chunk
/// sizes by looking for the part headers.
fn open_stream(addr: SocketAddr, camera: &str) -> (u16, BufReader<TcpStream>) {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    tcp.write_all(format!("GET /cameras/{camera}/stream.mjpeg HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
    let mut r = BufReader::new(tcp);
    let (status, _) = read_head(&mut r);
    (status, r)
}

/// ffmpeg: the test tools' static build (imageio-ffmpeg), `EDGEPOOL_FFMPEG`, or PATH.
fn ffmpeg() -> String {
    if let Ok(p) = std::env::var("EDGEPOOL_FFMPEG") {
        return p;
    }
    if let Ok(py) = std::env::var("EDGEPOOL_TEST_PYTHON") {
        let out = std::process::Command::new(py)
            .args(["-c", "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())"])
            .output()
            .unwrap();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).trim().to_owned();
        }
    }
    "ffmpeg".into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mjpeg_streams_play_in_ffmpeg_and_are_bounded() {
    let mut c = cluster().await;
    let fast = WorkerConfig { snapshot_interval: Duration::ZERO, ..WorkerConfig::default() };
    add_worker(&mut c, "w1", fast, engine()).await;
    let v = view_sink(&c, "view", ViewConfig { max_stream_viewers: 2, ..ViewConfig::default() }).await;
    c.publish("cam-1", 1, [photo("grace_hopper.jpg")]).await.unwrap();
    v.wait_snapshots(&["cam-1"], Duration::from_secs(60)).await;

    // A camera that keeps publishing while the streams are read.
    let publishing = CancellationToken::new();
    let camera = {
        let (js, stop) = (c.js.clone(), publishing.clone());
        tokio::spawn(async move {
            let cam = edgepool_wire::CameraId::new("cam-1").unwrap();
            let mut p = edgepool_camera::Publisher::new(js, cam, 100, edgepool_camera::PublisherConfig::default());
            let (ct, bytes) = photo("grace_hopper.jpg");
            while !stop.is_cancelled() {
                p.publish(edgepool_camera::Frame::now(bytes.clone(), ct)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            p.flush().await;
        })
    };

    // Two viewers read parts; the third is refused with 503 (Retry-After) while they stay.
    let addr = v.addr;
    let (statuses, refused, open) = tokio::task::spawn_blocking(move || {
        let (s1, mut r1) = open_stream(addr, "cam-1");
        let (s2, mut r2) = open_stream(addr, "cam-1");
        for r in [&mut r1, &mut r2] {
            let img = decode(&read_part(r));
            assert_eq!(img.dimensions(), (512, 600));
        }
        let (s3, _) = open_stream(addr, "cam-1");
        let refused = get(addr, "/cameras/cam-1/stream.mjpeg", &[]);
        ((s1, s2, s3), refused, (r1, r2))
    })
    .await
    .unwrap();
    assert_eq!(statuses, (200, 200, 503));
    assert_eq!(refused.status, 503);
    assert_eq!(refused.headers["retry-after"], "10");
    assert!(refused.json()["error"].as_str().unwrap().contains("max_stream_viewers"));
    drop(open);
    // Both viewers left (their connections closed): a slot is free again.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, mut r) = tokio::task::spawn_blocking(move || open_stream(addr, "cam-1")).await.unwrap();
        if status == 200 {
            tokio::task::spawn_blocking(move || read_part(&mut r)).await.unwrap();
            break;
        }
        assert!(Instant::now() < deadline, "viewer slots were not given back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // ffmpeg decodes frames from the stream.
    let url = format!("http://{}/cameras/cam-1/stream.mjpeg", v.addr);
    let out = tokio::process::Command::new(ffmpeg())
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "mpjpeg",
            "-i",
            &url,
            "-frames:v",
            "3",
            "-f",
            "framemd5",
            "-",
        ])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out).await.expect("ffmpeg timed out").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
    let frames = stdout.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(frames, 3, "ffmpeg decoded {frames} frames:\n{stdout}");

    publishing.cancel();
    camera.await.unwrap();
    v.stop().await;
    c.shutdown().await;
}

/// Resident memory of this process (tests, cluster and sink share it), bytes.
fn rss_bytes() -> u64 {
    (edgepool_runtime::process::rss_mib(std::process::id()).unwrap() * f64::from(1u32 << 20)) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_never_reads_stalls_nothing() {
    let mut c = cluster().await;
    let every_frame = WorkerConfig { snapshot_interval: Duration::ZERO, ..WorkerConfig::default() };
    add_worker(&mut c, "w1", every_frame, engine()).await;
    let v = view_sink(&c, "view", ViewConfig::default()).await;
    let frames: Vec<(ContentType, Bytes)> = (0..10).map(|_| photo("grace_hopper.jpg")).collect();
    c.publish("cam-1", 1, frames.clone()).await.unwrap();
    // Warm-up: the model's buffers, the allocator's arenas.
    crate::common::wait_results(&c, 10, Duration::from_secs(90)).await;
    v.wait_snapshots(&["cam-1"], Duration::from_secs(30)).await;

    // 60 frames without viewers, then 120 with three viewers that send their request and never
    // read a byte: the pipeline and the snapshots go on, and memory stops growing.
    let revision = |v: &ViewSink| v.sink.view().store.get("cam-1").map(|s| s.revision).unwrap();
    let batch = |first_seq: u64| {
        let frames = frames.clone();
        let c = &c;
        async move {
            let started = Instant::now();
            c.publish("cam-1", first_seq, (0..60).map(|_| frames[0].clone())).await.unwrap();
            crate::common::wait_results(c, first_seq + 59, Duration::from_secs(180)).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            started.elapsed()
        }
    };
    let took_alone = batch(11).await;
    let stalled: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut tcp = TcpStream::connect(v.addr).unwrap();
            tcp.write_all(format!("GET /cameras/cam-1/stream.mjpeg HTTP/1.1\r\nHost: {}\r\n\r\n", v.addr).as_bytes())
                .unwrap();
            tcp
        })
        .collect();
    // The first stalled batch fills the socket buffers and warms the render path (decoder,
    // allocator arenas of the blocking threads); the second shows whether memory keeps growing
    // with the frames a stalled viewer does not read.
    let first_revision = revision(&v);
    let rss1 = rss_bytes();
    let took_stalled = batch(71).await;
    let rss2 = rss_bytes();
    batch(131).await;
    let rss3 = rss_bytes();
    let stored = revision(&v) - first_revision;
    let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
    eprintln!(
        "60 frames: alone {:.1} s; with 3 stalled viewers {:.1} s, RSS +{:.0} MiB, then +{:.0} MiB for 60 more; \
         {stored} snapshots",
        took_alone.as_secs_f64(),
        took_stalled.as_secs_f64(),
        mib(rss2.saturating_sub(rss1)),
        mib(rss3.saturating_sub(rss2)),
    );
    assert!(stored >= 60, "only {stored} new snapshots while the viewers stalled");
    assert_eq!(v.sink.view().viewers_open(), 3, "the stalled viewers are still connected");
    let grew = rss3.saturating_sub(rss2);
    assert!(grew < 16 << 20, "RSS kept growing with stalled viewers: +{:.0} MiB over 60 frames", mib(grew));
    // The sink still answers everyone else.
    assert_eq!(blocking_get(v.addr, "/cameras/cam-1/latest.jpg").await.status, 200);
    drop(stalled);
    v.stop().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sink_serves_the_latest_frames_at_once() {
    let mut c = cluster().await;
    add_worker(&mut c, "w1", WorkerConfig::default(), engine()).await;
    let first = view_sink(&c, "view-1", ViewConfig::default()).await;
    for (camera, name) in CAMERAS {
        c.publish(camera, 1, [photo(name)]).await.unwrap();
    }
    let ids: Vec<&str> = CAMERAS.iter().map(|(c, _)| *c).collect();
    first.wait_snapshots(&ids, Duration::from_secs(90)).await;
    let before = blocking_get(first.addr, "/cameras/cam-grace/latest.json").await;
    first.stop().await;

    // No new frames: the new sink reads the bucket's last values when it starts.
    let started = Instant::now();
    let second = view_sink(&c, "view-2", ViewConfig::default()).await;
    second.wait_snapshots(&ids, Duration::from_secs(5)).await;
    eprintln!("a new sink served every camera {} ms after it started", started.elapsed().as_millis());
    let after = blocking_get(second.addr, "/cameras/cam-grace/latest.json").await;
    assert_eq!(after.body, before.body, "the same snapshot");
    assert_eq!(blocking_get(second.addr, "/cameras/cam-grace/latest.jpg").await.status, 200);
    second.stop().await;
    c.shutdown().await;
}
