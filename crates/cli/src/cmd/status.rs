//! `edgepool status`: the fleet at a glance — workers and their share, queue depth, rates, and how
//! many replicas of each architecture would keep up with what cameras publish.

use std::process::ExitCode;
use std::time::Duration;

pub use edgepool_nats::fleet::{ArchSizing, Status, collect, sizing};
use edgepool_wire::fleet::WorkerEntry;

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
