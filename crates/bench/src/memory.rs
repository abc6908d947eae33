//! `edgepool bench memory`: resident memory of a worker (one slot), a sink and a camera, each its
//! own process, sampled over a run at a steady load — the numbers a 1–2 GB edge board cares about.

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use edgepool::config::Overrides;
use edgepool::{Global, load_config};
use edgepool_harness::{Broker, BrokerOptions, find_server};
use edgepool_runtime::{runtime, telemetry};

#[derive(Debug, clap::Args)]
pub struct MemoryArgs {
    /// How long to run (the soak figure is 10m).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub duration: Duration,
    /// Camera rate, frames/s (keep it below the worker's capacity for a steady state).
    #[arg(long, default_value_t = 6.0)]
    pub fps: f64,
    /// Sampling interval.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub every: Duration,
    /// Print the results as one JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Row {
    component: &'static str,
    target_mib: f64,
    /// RSS when the first quarter of the run (warm-up) is over.
    steady_mib: f64,
    end_mib: f64,
    max_mib: f64,
    /// (end − steady) / steady.
    growth: f64,
}

struct Proc {
    name: &'static str,
    target: f64,
    child: Child,
    samples: Vec<(f64, f64)>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

pub fn run(global: &Global, args: MemoryArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(global, &Overrides::default())?;
    telemetry::init(&cfg.log, "warn");
    let exe = crate::edgepool_binary()?;
    runtime()?.block_on(async {
        let binary = find_server(cfg.nats.server.as_deref())?;
        let mut server = Broker::start(BrokerOptions { binary: Some(binary), ..BrokerOptions::single() })?;
        let client = async_nats::connect(server.url()).await?;
        edgepool_nats::apply(&async_nats::jetstream::new(client), Default::default())
            .await
            .map_err(anyhow::Error::from_boxed)?;
        let url = server.url();
        let spawn = |name: &'static str, target: f64, extra: &[&str]| -> anyhow::Result<Proc> {
            let child = Command::new(&exe)
                .arg(name)
                .args(["--nats-url", &url])
                .args(extra)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            Ok(Proc { name, target, child, samples: Vec::new() })
        };
        let photos = PathBuf::from("testdata/photos");
        let fps = args.fps.to_string();
        let mut procs = vec![
            spawn("worker", 256.0, &["--slots", "1", "--threads", "1", "--listen", "127.0.0.1:0"])?,
            spawn("sink", 64.0, &["--listen", "127.0.0.1:0"])?,
            spawn(
                "camera",
                64.0,
                &["--camera", "mem", "--source", &photos.to_string_lossy(), "--loop", "--fps", &fps],
            )?,
        ];
        let start = Instant::now();
        while start.elapsed() < args.duration {
            tokio::time::sleep(args.every).await;
            let t = start.elapsed().as_secs_f64();
            for p in &mut procs {
                if let Ok(Some(status)) = p.child.try_wait() {
                    anyhow::bail!("{} exited early with {status}", p.name);
                }
                if let Some(r) = edgepool_runtime::process::rss_mib(p.child.id()) {
                    p.samples.push((t, r));
                }
            }
        }
        let warm = args.duration.as_secs_f64() / 4.0;
        let rows: Vec<Row> = procs
            .iter()
            .map(|p| {
                let steady = p.samples.iter().find(|(t, _)| *t >= warm).map_or(0.0, |s| s.1);
                let end = p.samples.last().map_or(0.0, |s| s.1);
                let max = p.samples.iter().map(|s| s.1).fold(0.0, f64::max);
                Row {
                    component: p.name,
                    target_mib: p.target,
                    steady_mib: steady,
                    end_mib: end,
                    max_mib: max,
                    growth: (end - steady) / steady.max(1e-9),
                }
            })
            .collect();
        drop(procs);
        server.stop_all();
        if args.json {
            println!("{}", serde_json::json!({"seconds": args.duration.as_secs_f64(), "fps": args.fps, "rows": rows}));
        } else {
            println!(
                "resident memory over {:?} at {} frames/s (each component its own process)",
                args.duration, args.fps
            );
            println!("  {:<8} {:>8} {:>10} {:>8} {:>8} {:>8}", "process", "target", "steady", "end", "max", "growth");
            for r in &rows {
                println!(
                    "  {:<8} {:>5.0} MiB {:>6.1} MiB {:>4.1} MiB {:>4.1} MiB {:>+7.1}%",
                    r.component,
                    r.target_mib,
                    r.steady_mib,
                    r.end_mib,
                    r.max_mib,
                    r.growth * 100.0
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
