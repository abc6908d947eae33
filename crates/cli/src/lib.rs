//! The `edgepool` command line: one binary, one subcommand per role.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod alloc;
pub mod app;
pub mod cmd;
pub mod config;
pub mod draw;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Overrides};

/// Pool heterogeneous edge devices into one object-detection cluster over NATS JetStream.
///
/// Cameras publish frames to a shared JetStream work queue; workers on any hardware pull frames
/// at their own pace, run SSD-MobileNet-v2 COCO with tract, and publish detections; a sink
/// exposes Prometheus metrics and a live feed.
///
/// Configuration layers, later wins: built-in defaults, `--config FILE` (TOML), environment
/// variables `EDGEPOOL_<SECTION>_<KEY>` (e.g. EDGEPOOL_NATS_URL, EDGEPOOL_WORKER_SLOTS), flags.
/// See docs/configuration.md.
#[derive(Debug, Parser)]
#[command(name = "edgepool", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct Global {
    /// TOML configuration file (sections: nats, model, detector, worker, publisher, sink, log).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// NATS server URL(s), comma separated [env: EDGEPOOL_NATS_URL]. `edgepool demo` starts
    /// its own server when none is given; other commands default to nats://127.0.0.1:4222.
    /// When no server answers there, worker, sink and camera wait for one (a warning says what
    /// is wrong, then a reminder every 30 s); other commands fail at once, exit code 2.
    #[arg(long, global = true, value_name = "URL")]
    pub nats_url: Option<String>,
    /// NATS credentials file (.creds) [env: EDGEPOOL_NATS_CREDS].
    #[arg(long, global = true, value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// NATS user [env: EDGEPOOL_NATS_USER]; the password comes from EDGEPOOL_NATS_PASSWORD or
    /// the config file, never from a flag (flags show up in `ps`).
    #[arg(long, global = true, value_name = "USER")]
    pub nats_user: Option<String>,
    /// CA bundle to verify the NATS server's TLS certificate [env: EDGEPOOL_NATS_TLS_CA].
    #[arg(long, global = true, value_name = "FILE")]
    pub nats_tls_ca: Option<PathBuf>,
    /// Client certificate for mutual TLS [env: EDGEPOOL_NATS_TLS_CERT].
    #[arg(long, global = true, value_name = "FILE")]
    pub nats_tls_cert: Option<PathBuf>,
    /// Client key for mutual TLS [env: EDGEPOOL_NATS_TLS_KEY].
    #[arg(long, global = true, value_name = "FILE")]
    pub nats_tls_key: Option<PathBuf>,
    /// Log format: pretty (terminals) or json (Kubernetes) [env: EDGEPOOL_LOG_FORMAT].
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<edgepool_runtime::telemetry::LogFormat>,
    /// Load and validate arguments and configuration, print the result (secrets redacted) and
    /// exit: 0 when valid, 2 when not. Used to check Kubernetes manifests.
    #[arg(long, global = true)]
    pub check: bool,
}

impl Global {
    fn overrides(&self, o: &mut Overrides) {
        o.set("nats.url", self.nats_url.clone())
            .path("nats.creds", self.nats_creds.as_deref())
            .set("nats.user", self.nats_user.clone())
            .path("nats.tls_ca", self.nats_tls_ca.as_deref())
            .path("nats.tls_cert", self.nats_tls_cert.as_deref())
            .path("nats.tls_key", self.nats_tls_key.as_deref())
            .set(
                "log.format",
                self.log_format.map(|f| match f {
                    edgepool_runtime::telemetry::LogFormat::Pretty => "pretty",
                    edgepool_runtime::telemetry::LogFormat::Json => "json",
                }),
            );
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the detector on image files and print what it finds (no NATS needed).
    Detect(cmd::detect::DetectArgs),
    /// Create or update the JetStream streams and the shared consumer (idempotent).
    Setup(cmd::setup::SetupArgs),
    /// Publish image files as frames from one camera (or producer app).
    Camera(cmd::camera::CameraArgs),
    /// Pull frames from the shared work queue, detect objects, publish results.
    Worker(cmd::worker::WorkerArgs),
    /// Models in the NATS Object Store bucket MODELS, loaded by name by workers.
    #[command(subcommand)]
    Model(cmd::model::ModelCommand),
    /// Read results: dedupe, Prometheus metrics, JSONL file, live feed (/events).
    Sink(cmd::sink::SinkArgs),
    /// Tail detection results in the terminal.
    Watch(cmd::watch::WatchArgs),
    /// Run the whole pipeline locally on an embedded nats-server, with a summary.
    Demo(cmd::demo::DemoArgs),
    /// The fleet: workers and their share, queue depth, rates, replicas needed per arch.
    Status(cmd::status::StatusArgs),
    /// A live terminal view of the fleet: per-worker fps, share, busy ratio; queue; p99 latency.
    Top(cmd::top::TopArgs),
    /// Print docs/metrics.md, generated from the metric catalog.
    MetricsDoc,
    /// Benchmarks and fault injection: runs the separate `edgepool-bench` binary (built from a
    /// checkout, not shipped in the image); `edgepool bench --help` lists them.
    #[command(disable_help_flag = true)]
    Bench(cmd::bench::BenchArgs),
}

/// Loads the layered configuration with this command's flags on top.
pub fn load_config(global: &Global, flags: &Overrides) -> anyhow::Result<Config> {
    let mut o = Overrides::default();
    global.overrides(&mut o);
    let mut all = o;
    all.extend(flags);
    config::load(global.config.as_deref(), std::env::vars(), &all)
}

/// Parses the command line, runs the subcommand, and maps errors to an exit code.
#[must_use]
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Worker(_) | Command::Sink(_) | Command::Camera(_) | Command::Demo(_))
        && !cli.global.check
    {
        alloc::tune_by_reexec();
    }
    let result = match cli.command {
        Command::Detect(args) => cmd::detect::run(args),
        Command::Bench(_) => cmd::bench::run(),
        Command::MetricsDoc => {
            print!("{}", edgepool_runtime::metrics::markdown());
            Ok(ExitCode::SUCCESS)
        }
        Command::Setup(a) => cmd::setup::run(&cli.global, a),
        Command::Camera(a) => cmd::camera::run(&cli.global, a),
        Command::Worker(a) => cmd::worker::run(&cli.global, a),
        Command::Model(m) => cmd::model::run(&cli.global, m),
        Command::Sink(a) => cmd::sink::run(&cli.global, a),
        Command::Watch(a) => cmd::watch::run(&cli.global, a),
        Command::Demo(a) => cmd::demo::run(&cli.global, a),
        Command::Status(a) => cmd::status::run(&cli.global, a),
        Command::Top(a) => cmd::top::run(&cli.global, a),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", app::report(&err));
            ExitCode::from(2)
        }
    }
}

/// For `--check`: prints the effective configuration and exits successfully.
pub fn print_check(cfg: &Config) -> ExitCode {
    match toml_text(cfg) {
        Ok(t) => {
            println!("configuration OK\n{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn toml_text(cfg: &Config) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(cfg)?)
}
