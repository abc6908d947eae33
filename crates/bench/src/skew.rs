//! `edgepool bench skew`: the headline claim, measured. Emulated devices of different speeds
//! (`--slowdown`) process the same frames twice: (a) pooled, pulling from the one shared work
//! queue; (b) round-robin, each worker with its own queue and frames dealt to them in turn — what
//! an L4 load balancer in front of the devices does. Pull should reach the sum of the devices'
//! standalone capacities; round-robin should come out near N x the slowest.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer;
use bytes::Bytes;

use edgepool_nats::{DETECTORS, FRAMES};
use edgepool_wire::ContentType;
use edgepool_worker::Engine;

use edgepool::config::Overrides;
use edgepool::{Global, load_config};
use edgepool_harness::LocalCluster;
use edgepool_runtime::{runtime, telemetry};

use crate::fleet::{bench_worker, capacity, prefill, run_of, worker_id};
use crate::report::{OverflowRun, Run, SkewReport, WorkerRow};

#[derive(Debug, clap::Args)]
pub struct SkewArgs {
    /// Slowdown factor of each emulated worker: `1,10` is a device and one 10x slower.
    #[arg(long, value_delimiter = ',', default_value = "1,10")]
    pub workers: Vec<f64>,
    /// Frames per setup (default: about `--seconds` of work for the pooled cluster).
    #[arg(long)]
    pub frames: Option<u64>,
    /// Target duration of the pooled run when `--frames` is not given.
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Frames for the round-robin setup [default: as `--frames`]. Round-robin deals half of
    /// them to each of two devices whatever their speed, so at 1:100 a pooled batch of 200
    /// frames would take the slow device over 15 minutes; its throughput (N x the slowest)
    /// does not depend on the batch size, so a smaller batch measures it in minutes.
    #[arg(long)]
    pub rr_frames: Option<u64>,
    /// Print everything as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write a PNG chart of throughput and share per worker, pull vs round-robin.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Also run the pooled cluster with the overflow priority policy: a slower worker pulls
    /// only while more frames wait than the faster ones finish during one of its frames, so
    /// the end of a batch is not left waiting on a slow device's last frame.
    #[arg(long)]
    pub overflow: bool,
}

/// For each worker slower than the fastest: how many frames the faster workers complete
/// during one of its frames. Below that backlog, a frame it took would finish after the faster
/// ones could have served it, so it waits in the overflow group.
#[must_use]
pub fn overflow_thresholds(caps: &[f64]) -> Vec<Option<u64>> {
    let fastest = caps.iter().copied().fold(0.0, f64::max);
    caps.iter()
        .map(|c| {
            if *c >= fastest {
                return None;
            }
            let faster: f64 = caps.iter().filter(|o| *o > c).sum();
            Some((faster / c).ceil().max(1.0) as u64)
        })
        .collect()
}

/// (a) The pooled cluster: every worker pulls from `detectors`.
async fn pooled(
    nats: &edgepool_nats::NatsConfig,
    engine: &Engine,
    photos: &[(String, ContentType, Bytes)],
    slowdowns: &[f64],
    n: u64,
    overflow: Option<&[Option<u64>]>,
) -> anyhow::Result<Run> {
    let mut cluster = LocalCluster::start(nats, &prometheus::Registry::new()).await?;
    if overflow.is_some() {
        crate::fleet::use_overflow_group(&cluster.js).await?;
    }
    let cameras: Vec<String> = (0..4).map(|c| format!("cam-{c}")).collect();
    prefill(&cluster.js, &cameras, n, photos).await?;
    for (i, f) in slowdowns.iter().enumerate() {
        let mut cfg = bench_worker(*f, DETECTORS);
        if let Some(min) = overflow {
            cfg.priority_group = Some(crate::fleet::GROUP.into());
            cfg.overflow_min_pending = min[i];
        }
        cluster.add_worker(&worker_id(i, *f), cfg, engine.clone(), &prometheus::Registry::new()).await?;
    }
    let first = cluster.wait_results(1, Duration::from_secs(120)).await.map_err(|_| anyhow::anyhow!("no result"))?;
    let (almost, done) = last_two(&cluster, n, Duration::from_secs(3600), "pooled").await?;
    let mut run = run_of(&cluster, n, (done - first).as_secs_f64());
    run.tail_seconds = (done - almost).as_secs_f64();
    cluster.shutdown().await;
    Ok(run)
}

/// When the next-to-last and the last of `n` results arrived: the gap between them is the
/// batch's tail, long when the last frame sat on a slow device while the others idled.
async fn last_two(
    cluster: &LocalCluster,
    n: u64,
    timeout: Duration,
    what: &str,
) -> anyhow::Result<(std::time::Instant, std::time::Instant)> {
    let stalled = |got| anyhow::anyhow!("{what} run stalled at {got} of {n}");
    let almost = cluster.wait_results(n.saturating_sub(1).max(1), timeout).await.map_err(stalled)?;
    let done = cluster.wait_results(n, timeout).await.map_err(stalled)?;
    Ok((almost, done))
}

/// (b) Round-robin: worker `i` has its own durable consumer filtered on `frames.rr-<i>`, and
/// frame `j` is published to camera `rr-<j mod N>` — dealt in turn, whatever each device's speed.
async fn round_robin(
    nats: &edgepool_nats::NatsConfig,
    engine: &Engine,
    photos: &[(String, ContentType, Bytes)],
    slowdowns: &[f64],
    n: u64,
) -> anyhow::Result<Run> {
    let mut cluster = LocalCluster::start(nats, &prometheus::Registry::new()).await?;
    let frames = cluster.js.get_stream(FRAMES).await.context("getting stream FRAMES")?;
    // A work-queue stream allows no overlapping consumers: the shared one makes way.
    frames.delete_consumer(DETECTORS).await.context("deleting the shared consumer")?;
    let cameras: Vec<String> = (0..slowdowns.len()).map(|i| format!("rr-{i}")).collect();
    for (i, cam) in cameras.iter().enumerate() {
        frames
            .create_consumer(consumer::pull::Config {
                durable_name: Some(format!("rr-{i}")),
                filter_subject: format!("frames.{cam}"),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                max_deliver: 5,
                ..Default::default()
            })
            .await
            .with_context(|| format!("creating consumer rr-{i}"))?;
    }
    prefill(&cluster.js, &cameras, n, photos).await?;
    for (i, f) in slowdowns.iter().enumerate() {
        let cfg = bench_worker(*f, &format!("rr-{i}"));
        cluster.add_worker(&worker_id(i, *f), cfg, engine.clone(), &prometheus::Registry::new()).await?;
    }
    let first = cluster.wait_results(1, Duration::from_secs(120)).await.map_err(|_| anyhow::anyhow!("no result"))?;
    let (almost, done) = last_two(&cluster, n, Duration::from_secs(7200), "round-robin").await?;
    let mut run = run_of(&cluster, n, (done - first).as_secs_f64());
    run.tail_seconds = (done - almost).as_secs_f64();
    cluster.shutdown().await;
    Ok(run)
}

pub fn run(global: &Global, args: SkewArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(global, &Overrides::default())?;
    anyhow::ensure!(!args.workers.is_empty(), "--workers needs at least one slowdown factor");
    anyhow::ensure!(args.workers.iter().all(|f| *f >= 1.0), "slowdown factors are >= 1");
    telemetry::init(&cfg.log, "warn");
    let say = |s: String| {
        if !args.json {
            eprintln!("{s}");
        }
    };
    let (engine, photos) = crate::fleet::engine_and_photos(&cfg)?;

    let report = runtime()?.block_on(async {
        let mut caps = Vec::new();
        for f in &args.workers {
            say(format!("capacity of a worker with slowdown {f}x, alone ..."));
            caps.push(capacity(&cfg.nats, &engine, &photos, *f).await?);
        }
        let sum: f64 = caps.iter().sum();
        let slowest = caps.iter().copied().fold(f64::INFINITY, f64::min);
        let n = args.frames.unwrap_or((sum * args.seconds).round() as u64).max(args.workers.len() as u64 * 4);
        say(format!("capacities {caps:.2?} fps (sum {sum:.2}); {n} frames per setup"));
        say("(a) pooled pull cluster ...".into());
        let pull = pooled(&cfg.nats, &engine, &photos, &args.workers, n, None).await?;
        let rr_n = args.rr_frames.unwrap_or(n).max(args.workers.len() as u64 * 2);
        say(format!(
            "    {:.2} fps; (b) round-robin, {rr_n} frames, expect about {:.0} s ...",
            pull.fps,
            rr_n as f64 / (args.workers.len() as f64 * slowest)
        ));
        let rr = round_robin(&cfg.nats, &engine, &photos, &args.workers, rr_n).await?;
        let overflow = if args.overflow {
            let min = overflow_thresholds(&caps);
            say(format!("(a') pooled with the overflow priority policy, min_pending {min:?} ..."));
            let run = pooled(&cfg.nats, &engine, &photos, &args.workers, n, Some(&min)).await?;
            Some(OverflowRun { efficiency: run.fps / sum, pull_over_rr: run.fps / rr.fps, min_pending: min, run })
        } else {
            None
        };
        let per_worker = args
            .workers
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let id = worker_id(i, *f);
                let p = pull.per_worker.get(&id).copied().unwrap_or(0);
                let r = rr.per_worker.get(&id).copied().unwrap_or(0);
                WorkerRow {
                    id,
                    slowdown: *f,
                    capacity_fps: caps[i],
                    pull_frames: p,
                    pull_share: p as f64 / n as f64,
                    rr_frames: r,
                    rr_share: r as f64 / rr_n as f64,
                }
            })
            .collect();
        anyhow::Ok(SkewReport {
            workers: args.workers.clone(),
            frames: n,
            rr_frames: rr_n,
            sum_capacity_fps: sum,
            slowest_capacity_fps: slowest,
            pull_fps: pull.fps,
            rr_fps: rr.fps,
            efficiency: pull.fps / sum,
            pull_over_rr: pull.fps / rr.fps,
            rr_over_n_slowest: rr.fps / (args.workers.len() as f64 * slowest),
            pull,
            rr,
            per_worker,
            overflow,
        })
    })?;

    if let Some(path) = &args.plot {
        crate::skew_chart::write(&report, path)?;
        say(format!("chart written to {}", path.display()));
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &SkewReport) {
    let skew: Vec<String> = r.workers.iter().map(|f| format!("{f}")).collect();
    println!(
        "skew {} — {} frames per pooled setup, {} round-robin (devices emulated with --slowdown on one machine)",
        skew.join(":"),
        r.frames,
        r.rr_frames
    );
    println!(
        "  {:<12} {:>9} {:>12} {:>11} {:>10} {:>9}",
        "worker", "slowdown", "capacity", "pull share", "rr share", ""
    );
    for w in &r.per_worker {
        println!(
            "  {:<12} {:>8}x {:>8.2} fps {:>10.1}% {:>9.1}%",
            w.id,
            w.slowdown,
            w.capacity_fps,
            w.pull_share * 100.0,
            w.rr_share * 100.0
        );
    }
    println!("  sum of capacities        {:>8.2} fps", r.sum_capacity_fps);
    println!("  pull (pooled)            {:>8.2} fps   efficiency = pull / sum = {:.3}", r.pull_fps, r.efficiency);
    println!(
        "  round-robin              {:>8.2} fps   = {:.2} x (N x slowest = {:.2} fps)",
        r.rr_fps,
        r.rr_over_n_slowest,
        r.workers.len() as f64 * r.slowest_capacity_fps
    );
    println!("  pull / round-robin       {:>8.2}x", r.pull_over_rr);
    if let Some(o) = &r.overflow {
        println!(
            "  pull with overflow       {:>8.2} fps   efficiency {:.3}, {:.2}x round-robin (min_pending {:?})",
            o.run.fps, o.efficiency, o.pull_over_rr, o.min_pending
        );
    }
    println!(
        "  batch latency p50/p99    pull {:.0}/{:.0} ms, round-robin {:.0}/{:.0} ms",
        r.pull.latency_p50_ms, r.pull.latency_p99_ms, r.rr.latency_p50_ms, r.rr.latency_p99_ms
    );
    let overflow_tail =
        r.overflow.as_ref().map_or(String::new(), |o| format!(", overflow {:.2} s", o.run.tail_seconds));
    println!(
        "  batch tail (last result after the one before it): pull {:.2} s{overflow_tail}, round-robin {:.2} s",
        r.pull.tail_seconds, r.rr.tail_seconds
    );
}

#[cfg(test)]
mod tests {
    use super::overflow_thresholds;

    #[test]
    fn slower_workers_wait_for_what_the_faster_ones_finish_meanwhile() {
        assert_eq!(overflow_thresholds(&[11.2, 1.13]), vec![None, Some(10)]);
        assert_eq!(overflow_thresholds(&[10.0, 2.5, 0.5]), vec![None, Some(4), Some(25)]);
        // Equal devices: nobody waits.
        assert_eq!(overflow_thresholds(&[5.0, 5.0]), vec![None, None]);
    }
}
