//! Reliability harness (`edgepool bench chaos`): drives real processes (nats-server, workers,
//! sink, cameras), records which frames were acknowledged, injects faults, and checks at the end
//! that every acknowledged frame has a result or a dead letter, exactly once.
//!
//! - brokers: `edgepool_harness::Broker`, nats-server nodes to kill, stop and restart on the
//!   same ports and store.
//! - [`procs`]: `edgepool` component processes.
//! - [`rig`]: a running pipeline of those, with RSS sampling and result arrival times.
//! - [`checker`]: acked set vs DETECTIONS / DEADLETTER / sink output → lost and duplicates.
//! - [`scenarios`]: the faults of issue #5, each with a quick (CI) and a full size.
//! - [`corpus`]: generated malformed frames.

pub mod checker;
pub mod corpus;
pub mod procs;
pub mod rig;
pub mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use edgepool::{Global, load_config};
use edgepool_runtime::{runtime, telemetry};

pub use scenarios::{Scenario, ScenarioReport};

#[derive(Debug, clap::Args)]
pub struct ChaosArgs {
    /// Scenarios to run, comma separated; `all` runs every one except `soak` and `sync`.
    #[arg(value_enum, value_delimiter = ',', required = true)]
    pub scenarios: Vec<Scenario>,
    /// The short form CI runs: fewer frames, shorter faults, `ack_wait` 4 s.
    #[arg(long)]
    pub quick: bool,
    /// Folder of photos the cameras replay.
    #[arg(long, default_value = "testdata/photos")]
    pub photos: PathBuf,
    /// Length of the soak run.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    pub duration: Duration,
    /// Print the reports as one JSON array.
    #[arg(long)]
    pub json: bool,
    /// Keep each run's directory (component logs, ack logs, sink output) and print its path.
    #[arg(long)]
    pub keep: bool,
}

pub fn run(global: &Global, args: ChaosArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(global, &edgepool::config::Overrides::default())?;
    if global.check {
        return Ok(edgepool::print_check(&cfg));
    }
    telemetry::init(&cfg.log, "warn");
    anyhow::ensure!(
        args.photos.is_dir(),
        "photos folder {} not found (run from the repository root or pass --photos)",
        args.photos.display()
    );
    let server = edgepool_harness::find_server(cfg.nats.server.as_deref())?;
    let list = Scenario::expand(&args.scenarios);
    runtime()?.block_on(async move {
        let mut reports = Vec::new();
        for s in list {
            if !args.json {
                eprintln!("== {s}: {}", s.describe(args.quick));
            }
            let r = Box::pin(scenarios::run(s, &server, &args)).await?;
            if !args.json {
                r.print();
            }
            reports.push(r);
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&reports)?);
        } else if reports.len() > 1 {
            println!("\n{}", scenarios::table(&reports));
        }
        Ok(if reports.iter().all(|r| r.passed) { ExitCode::SUCCESS } else { ExitCode::from(1) })
    })
}
