//! `edgepool bench …`: the benchmarks and the chaos harness are the separate `edgepool-bench`
//! binary (crates/bench), so the `edgepool` that ships to devices carries none of their code.
//! This command finds that binary and hands it the whole command line.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// Everything after `bench`, handed over untouched.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    pub args: Vec<OsString>,
}

const BENCHMARKS: &str = "\
benchmarks (edgepool-bench):
  detect    detector speed: per-stage split, fps per thread layout, peak RSS, ratio to onnxruntime
  pipeline  pipeline overhead over raw JetStream, cluster throughput against the bare detector
  skew      pooled pull vs round-robin on emulated devices of different speeds
  overload  latency and stale drops at 50/100/150 % of fleet capacity
  memory    resident memory of a worker, a sink and a camera at a steady load
  camera    what a camera costs before the pool: the motion check per frame
  chaos     fault injection on real processes with a lost/duplicate checker";

/// `edgepool-bench` next to this binary, else on `PATH`.
fn find() -> Option<PathBuf> {
    let name = format!("edgepool-bench{}", std::env::consts::EXE_SUFFIX);
    let sibling = std::env::current_exe().ok().map(|e| e.with_file_name(&name)).filter(|p| p.is_file());
    sibling.or_else(|| std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(&name)).find(|p| p.is_file()))
}

/// Replaces this process with `edgepool-bench`, passing every argument but `bench` itself (the
/// global options before it included). Returns only when that is impossible.
pub fn run() -> anyhow::Result<ExitCode> {
    let Some(bench) = find() else {
        anyhow::bail!(
            "the benchmarks are not part of this edgepool binary: they are the separate \
             edgepool-bench binary, built from a checkout with\n    cargo build --release -p \
             edgepool-bench\nnext to edgepool, or run directly with `cargo run --release -p \
             edgepool-bench -- <benchmark> …`.\n{BENCHMARKS}"
        );
    };
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "bench") {
        args.remove(i);
    }
    use std::os::unix::process::CommandExt as _;
    let err = std::process::Command::new(&bench).args(args).exec();
    Err(anyhow::Error::new(err).context(format!("running {}", bench.display())))
}
