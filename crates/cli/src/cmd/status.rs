//! `edgepool status`: the fleet at a glance — workers and their share, queue depth, rates, and how
//! many replicas of each architecture would keep up with what cameras publish.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{ConsumerInfoErrorKind, GetStreamError, GetStreamErrorKind, KeyValueErrorKind};
use futures::StreamExt;
use serde::Serialize;

use edgepool_nats::{DETECTORS, FRAMES};
use edgepool_wire::fleet::{BUCKET, WorkerEntry};

use crate::config::Overrides;
use crate::{Global, app};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// How long to sample the FRAMES stream to measure the publish rate.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub sample: Duration,
    /// Print the status as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Replicas hint for one architecture.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ArchSizing {
    pub arch: String,
    pub replicas: usize,
    /// Mean measured capacity of one replica (frames/s when busy).
    pub capacity_per_replica_fps: Option<f64>,
    /// Replicas of this arch alone that would keep up with the publish rate.
    pub replicas_alone: Option<u64>,
    /// Extra replicas of this arch that would close today's shortfall (0 when keeping up).
    pub add_to_keep_up: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub workers: Vec<WorkerEntry>,
    /// Share of the fleet's recent frames per worker id.
    pub share: BTreeMap<String, f64>,
    pub fleet_fps: f64,
    pub fleet_capacity_fps: f64,
    pub publish_fps: f64,
    pub pending: u64,
    pub ack_pending: u64,
    pub waiting_pulls: u64,
    pub redelivered: u64,
    pub sizing: Vec<ArchSizing>,
}

/// Sizing hints from the fleet and the publish rate.
#[must_use]
pub fn sizing(workers: &[WorkerEntry], publish_fps: f64) -> Vec<ArchSizing> {
    let fleet_capacity: f64 = workers.iter().filter_map(|w| w.capacity_fps).sum();
    let shortfall = (publish_fps - fleet_capacity).max(0.0);
    let mut by_arch: BTreeMap<&str, Vec<&WorkerEntry>> = BTreeMap::new();
    for w in workers {
        by_arch.entry(&w.arch).or_default().push(w);
    }
    by_arch
        .into_iter()
        .map(|(arch, ws)| {
            let caps: Vec<f64> = ws.iter().filter_map(|w| w.capacity_fps).collect();
            let per = (!caps.is_empty()).then(|| caps.iter().sum::<f64>() / caps.len() as f64).filter(|c| *c > 0.0);
            ArchSizing {
                arch: arch.to_owned(),
                replicas: ws.len(),
                capacity_per_replica_fps: per,
                replicas_alone: per.map(|c| (publish_fps / c).ceil() as u64),
                add_to_keep_up: per.map(|c| (shortfall / c).ceil() as u64),
            }
        })
        .collect()
}

pub fn run(global: &Global, args: StatusArgs) -> anyhow::Result<ExitCode> {
    app::run(global, &Overrides::default(), "warn", |ctx| async move {
        let client = ctx.connect("edgepool-status", false).await?;
        let js = async_nats::jetstream::new(client);
        let status = collect(&js, args.sample).await?;
        if args.json {
            println!("{}", serde_json::to_string(&status)?);
        } else {
            print(&status);
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The fix when a definition of `nats/` is missing. Any other failure (timeout, lost connection,
/// permissions) keeps its own error and does not send the reader to `edgepool setup`.
const RUN_SETUP: &str = "run `edgepool setup` first";

fn stream_missing(e: &GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Reads the registry, the consumer and the publish rate.
pub async fn collect(js: &async_nats::jetstream::Context, sample: Duration) -> anyhow::Result<Status> {
    let kv = js.get_key_value(BUCKET).await.map_err(|e| {
        let missing = matches!(e.kind(), KeyValueErrorKind::GetBucket)
            && std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<GetStreamError>())
                .is_some_and(stream_missing);
        let what = format!("reading the fleet registry bucket {BUCKET}");
        anyhow::Error::new(e).context(if missing { format!("{what}: it does not exist; {RUN_SETUP}") } else { what })
    })?;
    let mut workers = Vec::new();
    let mut keys = kv.keys().await.with_context(|| format!("listing the fleet registry bucket {BUCKET}"))?;
    while let Some(k) = keys.next().await {
        let Ok(k) = k else { continue };
        if let Ok(Some(v)) = kv.get(&k).await
            && let Ok(e) = serde_json::from_slice::<WorkerEntry>(&v)
        {
            workers.push(e);
        }
    }
    workers.sort_by(|a, b| a.arch.cmp(&b.arch).then(a.id.cmp(&b.id)));
    let stream = js.get_stream(FRAMES).await.map_err(|e| {
        let what = format!("reading stream {FRAMES}");
        let missing = stream_missing(&e);
        anyhow::Error::new(e).context(if missing { format!("{what}: it does not exist; {RUN_SETUP}") } else { what })
    })?;
    let first = (Instant::now(), stream.get_info().await?.state.last_sequence);
    tokio::time::sleep(sample).await;
    let second = (Instant::now(), stream.get_info().await?.state.last_sequence);
    let publish_fps = (second.1 - first.1) as f64 / (second.0 - first.0).as_secs_f64();
    let c = stream.consumer_info(DETECTORS).await.map_err(|e| {
        let missing = match e.kind() {
            ConsumerInfoErrorKind::NotFound | ConsumerInfoErrorKind::StreamNotFound => true,
            ConsumerInfoErrorKind::JetStream(j) => j.error_code() == ErrorCode::CONSUMER_NOT_FOUND,
            _ => false,
        };
        let what = format!("reading consumer {DETECTORS} of {FRAMES}");
        anyhow::Error::new(e).context(if missing { format!("{what}: it does not exist; {RUN_SETUP}") } else { what })
    })?;
    let fleet_fps: f64 = workers.iter().map(|w| w.fps).sum();
    let share = workers.iter().map(|w| (w.id.clone(), if fleet_fps > 0.0 { w.fps / fleet_fps } else { 0.0 })).collect();
    Ok(Status {
        sizing: sizing(&workers, publish_fps),
        fleet_capacity_fps: workers.iter().filter_map(|w| w.capacity_fps).sum(),
        workers,
        share,
        fleet_fps,
        publish_fps,
        pending: c.num_pending,
        ack_pending: c.num_ack_pending as u64,
        waiting_pulls: c.num_waiting as u64,
        redelivered: c.num_redelivered as u64,
    })
}

fn print(s: &Status) {
    println!(
        "queue: {} pending, {} held by workers, {} idle pulls, {} redelivered",
        s.pending, s.ack_pending, s.waiting_pulls, s.redelivered
    );
    println!(
        "rates: cameras publish {:.2} frames/s; fleet finishes {:.2} frames/s; fleet capacity {:.2} frames/s",
        s.publish_fps, s.fleet_fps, s.fleet_capacity_fps
    );
    println!();
    println!(
        "  {:<28} {:<8} {:<10} {:>5} {:>8} {:>8} {:>9} {:>6} {:>6}",
        "worker", "arch", "label", "slots", "slowdown", "fps", "capacity", "busy", "share"
    );
    for w in &s.workers {
        println!(
            "  {:<28} {:<8} {:<10} {:>5} {:>7}x {:>8.2} {:>9} {:>5.0}% {:>5.0}%",
            w.id,
            w.arch,
            w.label.as_deref().unwrap_or("-"),
            w.slots,
            w.slowdown,
            w.fps,
            w.capacity_fps.map_or_else(|| "-".into(), |c| format!("{c:.2}")),
            w.busy_ratio * 100.0,
            s.share.get(&w.id).copied().unwrap_or(0.0) * 100.0
        );
    }
    let devices: Vec<&WorkerEntry> = s.workers.iter().filter(|w| w.device.is_some()).collect();
    if !devices.is_empty() {
        println!();
        println!(
            "  {:<28} {:<20} {:>5} {:>9} {:>5} {:>5} {:>6}  cpu model / throttling",
            "device of worker", "node", "cores", "memory", "cpu", "mem", "temp"
        );
        for w in devices {
            let Some(d) = &w.device else { continue };
            let pct = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{:.0}%", r * 100.0));
            let throttle = match &d.throttled {
                Some(t) if t.is_empty() => " (not throttled)".to_owned(),
                Some(t) => format!(" (THROTTLED: {})", t.join(", ")),
                None => String::new(),
            };
            println!(
                "  {:<28} {:<20} {:>5} {:>7.1}G {:>5} {:>5} {:>6}  {}{throttle}",
                w.id,
                d.node,
                d.cpu_cores,
                d.memory_total_bytes as f64 / f64::from(1u32 << 30),
                pct(d.cpu_ratio),
                pct(d.memory_used_ratio),
                d.temperature_celsius.map_or_else(|| "-".to_owned(), |t| format!("{t:.0}°C")),
                d.cpu_model,
            );
        }
    }
    if s.workers.is_empty() {
        println!("  (no workers registered in the last {} s)", edgepool_wire::fleet::TTL.as_secs());
    }
    println!();
    println!("sizing for {:.2} frames/s:", s.publish_fps);
    for a in &s.sizing {
        match (a.capacity_per_replica_fps, a.replicas_alone, a.add_to_keep_up) {
            (Some(c), Some(alone), Some(add)) => println!(
                "  {}: {} replicas, {:.2} frames/s each; {} would keep up alone; {}",
                a.arch,
                a.replicas,
                c,
                alone,
                if add == 0 { "the fleet keeps up".to_owned() } else { format!("add {add} to keep up") }
            ),
            _ => println!("  {}: {} replicas, capacity not measured yet (no frames processed)", a.arch, a.replicas),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(id: &str, arch: &str, cap: Option<f64>) -> WorkerEntry {
        WorkerEntry {
            id: id.into(),
            arch: arch.into(),
            label: None,
            slots: 1,
            slowdown: 1.0,
            model: "m".into(),
            fps: 0.0,
            capacity_fps: cap,
            busy_ratio: 0.0,
            frames_total: 0,
            updated_at: time::OffsetDateTime::UNIX_EPOCH,
            device: None,
        }
    }

    #[test]
    fn sizing_per_arch() {
        let ws = [w("a", "x86_64", Some(10.0)), w("b", "aarch64", Some(1.0)), w("c", "aarch64", Some(3.0))];
        let s = sizing(&ws, 20.0);
        let arm = s.iter().find(|a| a.arch == "aarch64").unwrap();
        assert_eq!(arm.capacity_per_replica_fps, Some(2.0));
        assert_eq!(arm.replicas_alone, Some(10));
        assert_eq!(arm.add_to_keep_up, Some(3), "shortfall 20 - 14 = 6 frames/s at 2 each");
        let x86 = s.iter().find(|a| a.arch == "x86_64").unwrap();
        assert_eq!((x86.replicas_alone, x86.add_to_keep_up), (Some(2), Some(1)));
        let keeping_up = sizing(&ws, 5.0);
        assert!(keeping_up.iter().all(|a| a.add_to_keep_up == Some(0)));
    }
}
