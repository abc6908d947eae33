//! `edgepool bench overload`: what happens to latency when cameras publish faster than the fleet
//! can serve (it must stay bounded: stale frames are dropped and counted), and whether NATS
//! priority groups with the `overflow` policy keep slow devices off the head of the queue.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use edgepool_camera::{Publisher, PublisherConfig};
use edgepool_wire::{CameraId, ContentType};
use edgepool_worker::{Engine, WorkerConfig};

use crate::fleet::{GROUP, capacity, use_overflow_group, worker_id};
use edgepool::cmd::camera::{Replay, replay};
use edgepool::config::Overrides;
use edgepool::{Global, load_config};
use edgepool_harness::LocalCluster;
use edgepool_runtime::{runtime, telemetry};

/// The priority group the overflow setup pulls in.

#[derive(Debug, clap::Args)]
pub struct OverloadArgs {
    /// Slowdown factor of each emulated worker.
    #[arg(long, value_delimiter = ',', default_value = "1,10")]
    pub workers: Vec<f64>,
    /// Offered load as fractions of the fleet's summed capacity.
    #[arg(long, value_delimiter = ',', default_value = "0.5,1.0,1.5")]
    pub loads: Vec<f64>,
    /// How long cameras publish at each load.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub duration: Duration,
    /// The worker staleness bound used in this benchmark (frames older than this when taken
    /// get a `stale` result instead of inference).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub stale_after: Duration,
    /// Also measure the overflow priority policy at the first load: workers slower than the
    /// fastest take frames only while at least this many are pending.
    #[arg(long, default_value_t = 4)]
    pub overflow_min_pending: u64,
    /// Print everything as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadRow {
    pub setup: String,
    pub load: f64,
    pub offered_fps: f64,
    pub published: u64,
    pub results: u64,
    pub ok: u64,
    pub stale: u64,
    /// stale / results.
    pub drop_rate: f64,
    /// Frames published but never answered (broker-side discards or still queued at the end).
    pub unanswered: u64,
    pub ok_fps: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    /// Share of ok results per worker.
    pub share: Vec<(String, f64)>,
}

async fn one_load(
    args: &OverloadArgs,
    nats: &edgepool_nats::NatsConfig,
    engine: &Engine,
    photos: &[(String, ContentType, Bytes)],
    rate: f64,
    load: f64,
    overflow: bool,
) -> anyhow::Result<LoadRow> {
    let mut cluster = LocalCluster::start(nats, &prometheus::Registry::new()).await?;
    if overflow {
        use_overflow_group(&cluster.js).await?;
    }
    let fastest = args.workers.iter().copied().fold(f64::INFINITY, f64::min);
    for (i, f) in args.workers.iter().enumerate() {
        let mut cfg = WorkerConfig { slowdown: *f, stale_after: args.stale_after, ..WorkerConfig::default() };
        if overflow {
            cfg.priority_group = Some(GROUP.into());
            if *f > fastest {
                cfg.overflow_min_pending = Some(args.overflow_min_pending);
            }
        }
        cluster.add_worker(&worker_id(i, *f), cfg, engine.clone(), &prometheus::Registry::new()).await?;
    }
    // Two cameras share the rate, as live cameras would.
    let stop = CancellationToken::new();
    let mut cams = Vec::new();
    for c in 0..2 {
        let mut p = Publisher::new(
            cluster.js.clone(),
            CameraId::new(format!("load-{c}"))?,
            1,
            PublisherConfig { drop_when_full: true, ..Default::default() },
        );
        let mut images = photos.to_vec();
        images.rotate_left(c);
        let plan =
            Replay { images, fps: Some(rate / 2.0), count: Some((rate / 2.0 * args.duration.as_secs_f64()) as u64) };
        let stop = stop.clone();
        cams.push(tokio::spawn(async move { replay(&mut p, &plan, &stop, None).await }));
    }
    let mut published = 0;
    for c in cams {
        published += c.await?.acked;
    }
    // Everything still queued is either served within the staleness bound or answered as stale.
    let deadline = Instant::now() + args.stale_after * 4 + Duration::from_secs(20);
    while cluster.stats.summary().results < published && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let s = cluster.stats.summary();
    cluster.shutdown().await;
    let share = s.per_worker.iter().map(|(id, w)| (id.clone(), w.ok as f64 / s.ok.max(1) as f64)).collect();
    Ok(LoadRow {
        setup: if overflow {
            format!("overflow (min_pending {})", args.overflow_min_pending)
        } else {
            "plain pull".into()
        },
        load,
        offered_fps: rate,
        published,
        results: s.results,
        ok: s.ok,
        stale: s.stale,
        drop_rate: s.stale as f64 / s.results.max(1) as f64,
        unanswered: published.saturating_sub(s.results),
        ok_fps: s.ok as f64 / args.duration.as_secs_f64(),
        latency_p50_ms: s.latency_p50_s.unwrap_or(0.0) * 1e3,
        latency_p99_ms: s.latency_p99_s.unwrap_or(0.0) * 1e3,
        share,
    })
}

pub fn run(global: &Global, args: OverloadArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(global, &Overrides::default())?;
    anyhow::ensure!(!args.workers.is_empty() && !args.loads.is_empty(), "--workers and --loads need values");
    telemetry::init(&cfg.log, "warn");
    let say = |s: String| {
        if !args.json {
            eprintln!("{s}");
        }
    };
    let (engine, photos) = crate::fleet::engine_and_photos(&cfg)?;
    let (caps, rows) = runtime()?.block_on(async {
        let mut caps = Vec::new();
        for f in &args.workers {
            say(format!("capacity of a worker with slowdown {f}x, alone ..."));
            caps.push(capacity(&cfg.nats, &engine, &photos, *f).await?);
        }
        let sum: f64 = caps.iter().sum();
        let mut rows = Vec::new();
        for &load in &args.loads {
            say(format!("load {:.0}% = {:.2} frames/s for {:?} ...", load * 100.0, load * sum, args.duration));
            rows.push(one_load(&args, &cfg.nats, &engine, &photos, load * sum, load, false).await?);
        }
        if args.workers.len() > 1 {
            let load = args.loads[0];
            say(format!("load {:.0}% with the overflow priority policy ...", load * 100.0));
            rows.push(one_load(&args, &cfg.nats, &engine, &photos, load * sum, load, true).await?);
        }
        anyhow::Ok((caps, rows))
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "workers": args.workers,
                "capacities": caps,
                "stale_after_s": args.stale_after.as_secs_f64(),
                "rows": rows
            })
        );
    } else {
        let sum: f64 = caps.iter().sum();
        println!(
            "overload: workers {:?}, capacities {caps:.2?} (sum {sum:.2} fps), staleness bound {:?}",
            args.workers, args.stale_after
        );
        println!(
            "  {:<26} {:>5} {:>8} {:>9} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9}",
            "setup", "load", "offered", "published", "ok", "stale", "drop", "ok fps", "p50 ms", "p99 ms"
        );
        for r in &rows {
            println!(
                "  {:<26} {:>4.0}% {:>8.2} {:>9} {:>7} {:>7} {:>6.1}% {:>9.2} {:>9.0} {:>9.0}",
                r.setup,
                r.load * 100.0,
                r.offered_fps,
                r.published,
                r.ok,
                r.stale,
                r.drop_rate * 100.0,
                r.ok_fps,
                r.latency_p50_ms,
                r.latency_p99_ms
            );
        }
        for r in &rows {
            let shares: Vec<String> = r.share.iter().map(|(id, s)| format!("{id} {:.0}%", s * 100.0)).collect();
            println!(
                "  {} at {:.0}%: {}{}",
                r.setup,
                r.load * 100.0,
                shares.join(", "),
                if r.unanswered > 0 { format!("; {} unanswered", r.unanswered) } else { String::new() }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
