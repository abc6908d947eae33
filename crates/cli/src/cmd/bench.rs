//! `edgepool bench`: benchmarks that print ratios measured side by side in one run. A small
//! dispatcher; each benchmark lives in its own module.

use std::process::ExitCode;

use super::{bench_detect, bench_memory, bench_overload, bench_pipeline, bench_skew};
use crate::Global;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Detector speed: per-stage split, fps per thread layout, peak RSS, ratio to onnxruntime.
    Detect(bench_detect::BenchDetectArgs),
    /// Pipeline overhead over raw JetStream, and cluster throughput against the bare detector.
    Pipeline(bench_pipeline::PipelineArgs),
    /// Pooled pull vs round-robin on emulated devices of different speeds (the headline claim).
    Skew(bench_skew::SkewArgs),
    /// Latency and stale drops at 50/100/150 % of fleet capacity; the overflow priority policy.
    Overload(bench_overload::OverloadArgs),
    /// Resident memory of a worker, a sink and a camera at a steady load.
    Memory(bench_memory::MemoryArgs),
    /// Fault injection on real processes (worker kill -9, broker kill/restart, cluster node
    /// loss, camera offline, malformed input, drain, soak) with a lost/duplicate checker.
    Chaos(crate::chaos::ChaosArgs),
}

pub fn run(global: &Global, cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        // The detector bench needs no NATS or config file: it measures the detector alone.
        BenchCommand::Detect(args) => bench_detect::run(args),
        BenchCommand::Pipeline(args) => bench_pipeline::run(global, args),
        BenchCommand::Memory(args) => bench_memory::run(global, args),
        BenchCommand::Skew(args) => bench_skew::run(global, args),
        BenchCommand::Overload(args) => bench_overload::run(global, args),
        BenchCommand::Chaos(args) => crate::chaos::run(global, args),
    }
}
