//! `edgepool bench`: benchmarks that print ratios. (Being written.)

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Detector speed: per-stage split, fps per thread layout, ratio to onnxruntime.
    Detect,
}

pub fn run(_cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
