//! The `edgepool` command line: one binary, one subcommand per role.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod alloc;
pub mod app;
pub mod cmd;
pub mod config;
pub use edgepool_detector::draw;

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
    /// TOML configuration file (sections: nats, model, detector, worker, publisher, sink,
    /// gateway, log, video, cameras.<id>).
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
    /// Publish frames: image files as one camera, or video cameras through ffmpeg (RTSP, HTTP,
    /// USB, files; one from --source or all of the config file), gated on motion.
    Camera(cmd::camera::CameraArgs),
    /// Pull frames from the shared work queue, detect objects, publish results.
    Worker(cmd::worker::WorkerArgs),
    /// Models in the NATS Object Store bucket MODELS, loaded by name by workers.
    #[command(subcommand)]
    Model(cmd::model::ModelCommand),
    /// Read results: dedupe, Prometheus metrics, JSONL file, live feed (/events), the live page (/).
    Sink(cmd::sink::SinkArgs),
    /// The pool as a DeepStack / CodeProject.AI object-detection server (POST
    /// /v1/vision/detection) for Frigate, Blue Iris, Agent DVR and Home Assistant.
    Gateway(cmd::gateway::GatewayArgs),
    /// Tail detection results in the terminal.
    Watch(cmd::watch::WatchArgs),
    /// Run the whole pipeline locally on an embedded nats-server, with a summary.
    Demo(cmd::demo::DemoArgs),
    /// The fleet: workers and their share, queue depth, rates, replicas needed per arch.
    Status(cmd::status::StatusArgs),
    /// A live terminal view of the fleet: per-worker fps, share, busy ratio; queue; p99 latency.
    Top(cmd::top::TopArgs),
    /// Credentials for a secure deployment: `auth init DIR` (CA, server certificate, NATS users
    /// per role and camera, the server's auth.conf, the sink's HTTP token).
    #[command(subcommand)]
    Auth(cmd::auth::AuthCommand),
    /// Print docs/metrics.md, generated from the metric catalog.
    MetricsDoc,
    /// Benchmarks and fault injection: runs the separate `edgepool-bench` binary (built from a
    /// checkout, not shipped in the image); `edgepool bench --help` lists them.
    #[command(disable_help_flag = true)]
    Bench(cmd::bench::BenchArgs),
}

impl Command {
    /// The config keys this command's flags set: only flags actually given. A flag's default
    /// belongs in the config structs, or it would silently beat the file and the environment.
    #[must_use]
    pub fn overrides(&self) -> Overrides {
        match self {
            Self::Detect(a) => a.overrides(),
            Self::Camera(a) => a.overrides(),
            Self::Worker(a) => a.overrides(),
            Self::Sink(a) => a.overrides(),
            Self::Gateway(a) => a.overrides(),
            Self::Demo(a) => a.overrides(),
            _ => Overrides::default(),
        }
    }
}

/// Loads the layered configuration with this command's flags on top.
pub fn load_config(global: &Global, flags: &Overrides) -> anyhow::Result<Config> {
    load_config_from(global, flags, std::env::vars())
}

/// [`load_config`] with the environment given (tests pass a fixed list).
pub fn load_config_from(
    global: &Global,
    flags: &Overrides,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<Config> {
    let mut all = Overrides::default();
    global.overrides(&mut all);
    all.extend(flags);
    config::load(global.config.as_deref(), env, &all)
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
        Command::Detect(args) => cmd::detect::run(&cli.global, args),
        Command::Bench(_) => cmd::bench::run(),
        Command::MetricsDoc => {
            print!("{}", edgepool_runtime::metrics::markdown());
            Ok(ExitCode::SUCCESS)
        }
        Command::Auth(a) => cmd::auth::run(a),
        Command::Setup(a) => cmd::setup::run(&cli.global, a),
        Command::Camera(a) => cmd::camera::run(&cli.global, a),
        Command::Worker(a) => cmd::worker::run(&cli.global, a),
        Command::Model(m) => cmd::model::run(&cli.global, m),
        Command::Sink(a) => cmd::sink::run(&cli.global, a),
        Command::Gateway(a) => cmd::gateway::run(&cli.global, a),
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
    match check_text(cfg) {
        Ok(t) => {
            print!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// What `--check` prints: a first line `configuration OK`, then the effective configuration as
/// TOML (a valid `--config` file; secrets print as `<redacted>`).
fn check_text(cfg: &Config) -> anyhow::Result<String> {
    Ok(format!("configuration OK\n{}\n", toml_text(cfg)?))
}

fn toml_text(cfg: &Config) -> anyhow::Result<String> {
    Ok(toml::to_string_pretty(cfg)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Cli {
        Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// Loads the configuration as `main` would for this command line, with `file` and `env`.
    fn load(argv: &[&str], file: Option<&std::path::Path>, env: Vec<(String, String)>) -> Config {
        let mut argv = argv.to_vec();
        let shown;
        if let Some(f) = file {
            shown = f.display().to_string();
            argv.splice(1..1, ["--config", shown.as_str()]);
        }
        let cli = parse(&argv);
        load_config_from(&cli.global, &cli.command.overrides(), env).unwrap_or_else(|e| panic!("{argv:?}: {e:#}"))
    }

    #[test]
    fn commands_without_flags_set_no_config_key() {
        for argv in [
            &["edgepool", "sink"][..],
            &["edgepool", "worker"],
            &["edgepool", "demo"],
            &["edgepool", "detect", "photo.jpg"],
            &["edgepool", "setup"],
            &["edgepool", "watch"],
            &["edgepool", "status"],
            &["edgepool", "top"],
            &["edgepool", "model", "list"],
        ] {
            let o = parse(argv).command.overrides();
            assert!(o.is_empty(), "{argv:?}: defaults override config keys {:?}", o.keys().collect::<Vec<_>>());
        }
    }

    /// Every config key that also has a flag: its file and env values survive when the flag is
    /// not given, and the flag wins when it is.
    #[test]
    fn file_and_env_values_survive_absent_flags() {
        type Get = fn(&Config) -> String;
        type Case<'a> = (&'a [&'a str], &'a str, &'a str, &'a str, &'a str, Get);
        let cases: &[Case<'_>] = &[
            (
                &["edgepool", "sink"],
                "[sink]\nlisten = \"0.0.0.0:7001\"\n",
                "EDGEPOOL_SINK_LISTEN",
                "0.0.0.0:7002",
                "--listen=0.0.0.0:7003",
                |c| format!("{:?}", c.sink.listen),
            ),
            (&["edgepool", "demo"], "[worker]\nslots = 3\n", "EDGEPOOL_WORKER_SLOTS", "4", "--slots=5", |c| {
                c.worker.slots.to_string()
            }),
            (
                &["edgepool", "demo"],
                "[detector]\nthreads = 3\n",
                "EDGEPOOL_DETECTOR_THREADS",
                "4",
                "--threads=5",
                |c| c.detector.threads.to_string(),
            ),
            (
                &["edgepool", "detect", "photo.jpg"],
                "[detector]\nthreads = 3\n",
                "EDGEPOOL_DETECTOR_THREADS",
                "4",
                "--threads=5",
                |c| c.detector.threads.to_string(),
            ),
            (
                &["edgepool", "detect", "photo.jpg"],
                "[detector]\nscore_threshold = 0.25\n",
                "EDGEPOOL_DETECTOR_SCORE_THRESHOLD",
                "0.75",
                "--threshold=0.125",
                |c| c.detector.score_threshold.to_string(),
            ),
            (&["edgepool", "worker"], "[worker]\nslots = 3\n", "EDGEPOOL_WORKER_SLOTS", "4", "--slots=5", |c| {
                c.worker.slots.to_string()
            }),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (i, (argv, toml, var, value, flag, get)) in cases.iter().enumerate() {
            let file = dir.path().join(format!("{i}.toml"));
            std::fs::write(&file, toml).unwrap();
            let from_file = get(&load(argv, Some(&file), env(&[])));
            let from_env = get(&load(argv, Some(&file), env(&[(var, value)])));
            let default = get(&load(argv, None, env(&[])));
            let flagged = get(&load(&[*argv, &[*flag]].concat(), Some(&file), env(&[(var, value)])));
            let want_file = get(&config::load(Some(&file), env(&[]), &Overrides::default()).unwrap());
            let want_env = get(&config::load(None, env(&[(var, value)]), &Overrides::default()).unwrap());
            assert_eq!(from_file, want_file, "{argv:?}: the file's value of {var} was overridden");
            assert_eq!(from_env, want_env, "{argv:?}: {var} was overridden");
            assert_ne!(from_file, default, "{argv:?}: the test file must change {var}");
            assert_ne!(flagged, from_env, "{argv:?}: {flag} must beat file and env");
        }
    }

    #[test]
    fn check_prints_toml_that_round_trips_with_secrets_redacted() {
        let secret = "hunter2-check";
        let cfg = config::load(
            None,
            env(&[
                ("EDGEPOOL_NATS_PASSWORD", secret),
                ("EDGEPOOL_WORKER_SLOTS", "3"),
                ("EDGEPOOL_SINK_LISTEN", "0.0.0.0:9"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        let text = check_text(&cfg).unwrap();
        let body = text.strip_prefix("configuration OK\n").unwrap_or_else(|| panic!("first line:\n{text}"));
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
        let table: toml::Table = toml::from_str(body).unwrap_or_else(|e| panic!("not TOML: {e}\n{body}"));
        assert_eq!(table["worker"]["slots"].as_integer(), Some(3), "{body}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("check.toml");
        std::fs::write(&file, body).unwrap();
        let back = config::load(Some(&file), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), serde_json::to_value(&cfg).unwrap(), "{body}");
    }
}
