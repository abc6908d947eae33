//! `edgepool bench gateway`: what a DeepStack / CodeProject.AI client waits for an answer from
//! the pool, side by side with the same image through the detector in-process (what `edgepool
//! detect` does): latency percentiles at rising request rates with 1 and 2 workers, the
//! gateway's own overhead, the same behind a camera backlog with and without the interactive
//! queue, and the highest rate answered without a 503 against the workers' summed capacity.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use edgepool::config::Overrides;
use edgepool::{Global, load_config};
use edgepool_gateway::deepstack::{self, Metrics};
use edgepool_gateway::{GatewayConfig, Pool};
use edgepool_harness::LocalCluster;
use edgepool_runtime::{runtime, telemetry};
use edgepool_wire::{CameraId, ContentType};
use edgepool_worker::{Engine, WorkerConfig};

#[derive(Debug, clap::Args)]
pub struct GatewayArgs {
    /// Worker counts to measure (in-process workers, one slot and one thread each).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    /// Request rates as fractions of the workers' summed capacity.
    #[arg(long, value_delimiter = ',', default_value = "0.25,0.5,0.75,1.0,1.5")]
    pub loads: Vec<f64>,
    /// How long requests arrive at each rate.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Camera frames queued before the backlog measurement (none stale for its length).
    #[arg(long, default_value_t = 200)]
    pub backlog: usize,
    /// Print everything as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

fn percentiles(mut v: Vec<f64>) -> Percentiles {
    if v.is_empty() {
        return Percentiles::default();
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Percentiles { p50: at(0.5), p95: at(0.95), p99: at(0.99) }
}

#[derive(Debug, Clone, Serialize)]
pub struct RateRow {
    pub workers: usize,
    pub load: f64,
    pub rate: f64,
    pub sent: usize,
    pub ok: usize,
    pub overloaded: usize,
    pub timeouts: usize,
    pub other: usize,
    pub latency_ms: Percentiles,
    /// Round trip minus the worker's own processing (`processMs`): queue, broker, gateway, HTTP.
    pub overhead_ms: Percentiles,
}

#[derive(Debug, Clone, Serialize)]
pub struct BacklogRow {
    pub priority: bool,
    pub backlog: usize,
    pub latency_ms: Vec<f64>,
    pub camera_frames_left: u64,
}

/// One request's outcome.
enum Answer {
    /// The round trip, and the worker's own time for it (`processMs`).
    Ok(Duration, Duration),
    Overloaded,
    Timeout,
    Other(String),
}

/// A multipart POST of `image`, the way the clients send it; one connection per request.
async fn post(addr: SocketAddr, image: &Bytes) -> Answer {
    let started = Instant::now();
    let boundary = "edgepool-bench";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\nContent-Type: \
         image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(image);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let head = format!(
        "POST /v1/vision/detection HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\nContent-Type: \
         multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(head.as_bytes()).await?;
        s.write_all(&body).await?;
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).await?;
        std::io::Result::Ok(reply)
    };
    let reply = match exchange.await {
        Ok(r) => String::from_utf8_lossy(&r).into_owned(),
        Err(e) => return Answer::Other(e.to_string()),
    };
    let status: u16 = reply.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let json = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let body: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    match (status, body["success"].as_bool()) {
        (200, Some(true)) => {
            Answer::Ok(started.elapsed(), Duration::from_millis(body["processMs"].as_u64().unwrap_or_default()))
        }
        (503, _) => Answer::Overloaded,
        (200, Some(false)) if body["error"].as_str().unwrap_or_default().contains("timed out") => Answer::Timeout,
        _ => Answer::Other(format!("{status} {json}")),
    }
}

/// A gateway in this process on an ephemeral port, in front of `cluster`.
async fn start_gateway(
    cluster: &LocalCluster,
    cfg: GatewayConfig,
    stop: &CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let pool = Arc::new(OnceLock::new());
    let camera = CameraId::new(cfg.camera.clone())?;
    let _ = pool.set(Pool::start(cluster.js.client().clone(), camera, cfg.priority).await?);
    let metrics = Metrics::register(&prometheus::Registry::new())?;
    let router = deepstack::router(pool, cfg, metrics);
    Ok(edgepool_runtime::http::serve("127.0.0.1:0".parse()?, router, stop.clone()).await?)
}

async fn cluster_with(
    nats: &edgepool_nats::NatsConfig,
    engine: &Engine,
    n: usize,
    stale_after: Duration,
) -> anyhow::Result<LocalCluster> {
    let mut cluster = LocalCluster::start(nats, &prometheus::Registry::new()).await?;
    for i in 0..n {
        let cfg = WorkerConfig { slots: 1, stale_after, ..WorkerConfig::default() };
        cluster.add_worker(&format!("w{i}"), cfg, engine.clone(), &prometheus::Registry::new()).await?;
    }
    Ok(cluster)
}

/// Requests at `rate` per second for `duration`, open loop (each at its time, whatever the
/// answers before it).
async fn at_rate(addr: SocketAddr, image: &Bytes, rate: f64, duration: Duration) -> Vec<Answer> {
    let n = (rate * duration.as_secs_f64()).round().max(1.0) as usize;
    let every = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tokio::time::sleep_until(start + every * u32::try_from(i).unwrap_or(u32::MAX)).await;
        let image = image.clone();
        tasks.push(tokio::spawn(async move { post(addr, &image).await }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap_or_else(|e| Answer::Other(e.to_string())));
    }
    out
}

pub fn run(global: &Global, args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(global, &Overrides::default())?;
    telemetry::init(&cfg.log, "warn");
    let say = |s: String| {
        if !args.json {
            eprintln!("{s}");
        }
    };
    let (engine, photos) = crate::fleet::engine_and_photos(&cfg)?;
    let image = photos
        .iter()
        .find(|(n, c, _)| n.contains("grace_hopper") && *c == ContentType::Jpeg)
        .map(|(_, _, b)| b.clone())
        .ok_or_else(|| anyhow::anyhow!("testdata/photos/grace_hopper.jpg is missing"))?;

    // The reference: the same image through the detector in this process.
    say("in-process detection of grace_hopper.jpg (the reference) ...".into());
    let mut slot = engine.runner();
    for _ in 0..3 {
        slot.run(&image, None)?;
    }
    let reference: Vec<f64> = (0..30)
        .map(|_| {
            let t = Instant::now();
            slot.run(&image, None).map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()?;
    let mean_ms = reference.iter().sum::<f64>() / reference.len() as f64;
    let reference = percentiles(reference);
    let per_worker = 1000.0 / mean_ms;

    let (rates, backlog) = runtime()?.block_on(async {
        let mut rows = Vec::new();
        for &n in &args.workers {
            for &load in &args.loads {
                let rate = load * per_worker * n as f64;
                say(format!("{n} worker(s), {:.0}% = {rate:.1} requests/s for {:?} ...", load * 100.0, args.duration));
                let cluster = cluster_with(&cfg.nats, &engine, n, Duration::from_secs(30)).await?;
                let stop = CancellationToken::new();
                let gw = GatewayConfig { timeout: Duration::from_secs(10), ..GatewayConfig::default() };
                let addr = start_gateway(&cluster, gw, &stop).await?;
                // Warm: the first request of a worker pays its first inference.
                for _ in 0..n * 2 {
                    let _ = post(addr, &image).await;
                }
                let answers = at_rate(addr, &image, rate, args.duration).await;
                stop.cancel();
                cluster.shutdown().await;
                let mut row = RateRow {
                    workers: n,
                    load,
                    rate,
                    sent: answers.len(),
                    ok: 0,
                    overloaded: 0,
                    timeouts: 0,
                    other: 0,
                    latency_ms: Percentiles::default(),
                    overhead_ms: Percentiles::default(),
                };
                let (mut ok, mut overhead) = (Vec::new(), Vec::new());
                for a in answers {
                    match a {
                        Answer::Ok(d, worker) => {
                            ok.push(d.as_secs_f64() * 1e3);
                            overhead.push(d.saturating_sub(worker).as_secs_f64() * 1e3);
                        }
                        Answer::Overloaded => row.overloaded += 1,
                        Answer::Timeout => row.timeouts += 1,
                        Answer::Other(e) => {
                            row.other += 1;
                            tracing::warn!(error = %e, "an unexpected answer");
                        }
                    }
                }
                row.ok = ok.len();
                row.latency_ms = percentiles(ok);
                row.overhead_ms = percentiles(overhead);
                rows.push(row);
            }
        }
        let mut backlog_rows = Vec::new();
        for priority in [true, false] {
            say(format!(
                "{} camera frames queued, 5 requests {} ...",
                args.backlog,
                if priority { "on the interactive queue" } else { "on FRAMES, behind them" }
            ));
            let cluster = cluster_with(&cfg.nats, &engine, 0, Duration::from_secs(3600)).await?;
            let frames: Vec<(ContentType, Bytes)> =
                (0..args.backlog).map(|_| (ContentType::Jpeg, image.clone())).collect();
            let acked = cluster.publish("backlog", 1, frames).await?;
            anyhow::ensure!(acked.len() == args.backlog, "the backlog was not all stored");
            let mut cluster = cluster;
            let w = WorkerConfig { slots: 1, stale_after: Duration::from_secs(3600), ..WorkerConfig::default() };
            cluster.add_worker("w0", w, engine.clone(), &prometheus::Registry::new()).await?;
            let stop = CancellationToken::new();
            let gw = GatewayConfig { timeout: Duration::from_secs(600), priority, ..GatewayConfig::default() };
            let addr = start_gateway(&cluster, gw, &stop).await?;
            let mut latency = Vec::new();
            for _ in 0..5 {
                match post(addr, &image).await {
                    Answer::Ok(d, _) => latency.push(d.as_secs_f64() * 1e3),
                    _ => latency.push(f64::NAN),
                }
            }
            let left = cluster.js.get_stream(edgepool_nats::FRAMES).await?.info().await?.state.messages;
            stop.cancel();
            cluster.shutdown().await;
            backlog_rows.push(BacklogRow {
                priority,
                backlog: args.backlog,
                latency_ms: latency,
                camera_frames_left: left,
            });
        }
        anyhow::Ok((rows, backlog_rows))
    })?;

    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "reference_ms": reference, "capacity_per_worker": per_worker, "rates": rates, "backlog": backlog
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "gateway: in-process detection of grace_hopper.jpg p50 {:.1} ms, p95 {:.1}, p99 {:.1} \
         (one worker's capacity {per_worker:.1}/s)",
        reference.p50, reference.p95, reference.p99
    );
    println!(
        "  {:>7} {:>5} {:>8} {:>5} {:>5} {:>5} {:>7} {:>8} {:>8} {:>8} {:>10} {:>14}",
        "workers",
        "load",
        "req/s",
        "sent",
        "ok",
        "503",
        "timeout",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "p50/in-proc",
        "overhead p50"
    );
    for r in &rates {
        println!(
            "  {:>7} {:>4.0}% {:>8.1} {:>5} {:>5} {:>5} {:>7} {:>8.1} {:>8.1} {:>8.1} {:>10.2}x {:>11.1} ms",
            r.workers,
            r.load * 100.0,
            r.rate,
            r.sent,
            r.ok,
            r.overloaded,
            r.timeouts,
            r.latency_ms.p50,
            r.latency_ms.p95,
            r.latency_ms.p99,
            r.latency_ms.p50 / reference.p50,
            r.overhead_ms.p50
        );
    }
    for &n in &args.workers {
        let best = rates
            .iter()
            .filter(|r| r.workers == n && r.overloaded == 0 && r.timeouts == 0)
            .map(|r| r.rate)
            .fold(0.0, f64::max);
        println!(
            "  {n} worker(s): highest measured rate without a 503 or timeout {best:.1}/s = {:.0}% of their \
             summed capacity {:.1}/s",
            best / (per_worker * n as f64) * 100.0,
            per_worker * n as f64
        );
    }
    for b in &backlog {
        let lat: Vec<String> = b.latency_ms.iter().map(|l| format!("{l:.0}")).collect();
        println!(
            "  behind {} camera frames, requests {}: {} ms; {} camera frames still queued after",
            b.backlog,
            if b.priority { "on REQUESTS (interactive first)" } else { "on FRAMES (no priority)" },
            lat.join(", "),
            b.camera_frames_left
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_ranks() {
        let p = percentiles((1..=100).map(f64::from).collect());
        assert_eq!((p.p50, p.p95, p.p99), (51.0, 95.0, 99.0));
        assert_eq!(percentiles(Vec::new()).p50, 0.0);
    }
}
