//! edgepool's benchmarks and its fault-injection harness: the `edgepool-bench` binary, which
//! `edgepool bench …` runs. They live outside the `edgepool` binary so that what ships to every
//! device (and into the container image) carries none of this code; they are built and run from
//! a checkout (`cargo run --release -p edgepool-bench -- …`, `just bench-*`, `just chaos`).
//!
//! Each benchmark prints ratios measured side by side in one run (docs/performance.md); `chaos`
//! drives real processes and checks that nothing acknowledged is lost (docs/reliability.md).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod camera;
pub mod chaos;
pub mod detect;
pub mod fleet;
pub mod gateway;
pub mod memory;
pub mod overload;
pub mod pipeline;
pub mod report;
pub mod skew;
pub mod skew_chart;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;

use edgepool::Global;

/// Benchmarks that print ratios measured side by side in one run, and fault injection on real
/// processes. Run as `edgepool bench …` or `edgepool-bench …`.
#[derive(Debug, Parser)]
#[command(name = "edgepool bench", version, max_term_width = 100)]
pub struct BenchCli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Detector speed: per-stage split, fps per thread layout, peak RSS, ratio to onnxruntime.
    Detect(detect::BenchDetectArgs),
    /// Pipeline overhead over raw JetStream, and cluster throughput against the bare detector.
    Pipeline(pipeline::PipelineArgs),
    /// Pooled pull vs round-robin on emulated devices of different speeds (the headline claim).
    Skew(skew::SkewArgs),
    /// Latency and stale drops at 50/100/150 % of fleet capacity; the overflow priority policy.
    Overload(overload::OverloadArgs),
    /// What a DeepStack / CodeProject.AI client waits for through `edgepool gateway`, beside
    /// in-process detection; behind a camera backlog with and without the interactive queue.
    Gateway(gateway::GatewayArgs),
    /// Resident memory of a worker, a sink and a camera at a steady load.
    Memory(memory::MemoryArgs),
    /// What a camera costs before the pool: the motion check per frame at 1080p and 720p.
    Camera(camera::BenchCameraArgs),
    /// Fault injection on real processes (worker kill -9, broker kill/restart, cluster node
    /// loss, camera offline, malformed input, drain, soak) with a lost/duplicate checker.
    Chaos(chaos::ChaosArgs),
}

/// Parses the command line and runs one benchmark.
#[must_use]
pub fn main() -> ExitCode {
    let cli = BenchCli::parse();
    if !cli.global.check {
        edgepool::alloc::tune_by_reexec();
    }
    match run(&cli.global, cli.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

pub fn run(global: &Global, cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        // The detector bench needs no NATS or config file: it measures the detector alone.
        BenchCommand::Detect(args) => detect::run(args),
        BenchCommand::Pipeline(args) => pipeline::run(global, args),
        BenchCommand::Memory(args) => memory::run(global, args),
        BenchCommand::Camera(args) => camera::run(args),
        BenchCommand::Skew(args) => skew::run(global, args),
        BenchCommand::Overload(args) => overload::run(global, args),
        BenchCommand::Gateway(args) => gateway::run(global, args),
        BenchCommand::Chaos(args) => chaos::run(global, args),
    }
}

/// The `edgepool` binary the process benchmarks start: `$EDGEPOOL_BIN`, else the one next to
/// this binary (cargo builds both into the same directory).
pub fn edgepool_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("EDGEPOOL_BIN") {
        return Ok(PathBuf::from(p));
    }
    let me = std::env::current_exe().context("locating edgepool-bench")?;
    let sibling = me.with_file_name(format!("edgepool{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        sibling.is_file(),
        "{} not found: build it with `cargo build -p edgepool` (add --release for a release \
         edgepool-bench), or set EDGEPOOL_BIN",
        sibling.display()
    );
    Ok(sibling)
}
