//! The `edgepool` command line: one binary, one subcommand per role.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Pool heterogeneous edge devices into one object-detection cluster over NATS JetStream.
///
/// Cameras publish frames to a shared JetStream work queue; workers on any hardware pull frames
/// at their own pace, run SSD-MobileNet-v2 COCO with tract, and publish detections; a sink
/// exposes Prometheus metrics and a live feed.
#[derive(Debug, Parser)]
#[command(name = "edgepool", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the detector on image files and print what it finds (no NATS needed).
    Detect(cmd::detect::DetectArgs),
    /// Benchmarks that print ratios measured side by side in one run.
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
}

/// Parses the command line, runs the subcommand, and maps errors to an exit code.
#[must_use]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Detect(args) => cmd::detect::run(args),
        Command::Bench(b) => cmd::bench::run(b),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
