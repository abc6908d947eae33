//! The pipeline's components as real `edgepool` processes the harness can kill or stop.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, Command};

/// A child `edgepool` process (worker, sink or camera), killed when dropped.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Runs `edgepool <args>` (this very binary) against `nats_url`, logging to `dir/<name>.log`
    /// with `RUST_LOG=<log>`.
    pub fn spawn(name: &str, nats_url: &str, args: &[String], dir: &Path, log_filter: &str) -> anyhow::Result<Self> {
        let exe = crate::edgepool_binary()?;
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let child = Command::new(exe)
            .args(["--nats-url", nats_url])
            .args(args)
            // The harness's own environment must not leak into the components' configuration.
            .env_remove("EDGEPOOL_NATS_URL")
            .env("RUST_LOG", log_filter)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Self { name: name.to_owned(), child, log })
    }

    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Resident memory in MiB, while running.
    #[must_use]
    pub fn rss_mib(&self) -> Option<f64> {
        edgepool_runtime::process::rss_mib(self.pid()?)
    }

    /// `kill -9`.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM, then waits up to `grace` for a clean exit (a drain); `kill -9` after that.
    /// Returns whether it exited by itself with status 0.
    pub async fn terminate(&mut self, grace: Duration) -> bool {
        if let Some(pid) = self.child.id() {
            edgepool_harness::server::signal(pid, edgepool_harness::server::Signal::TERM);
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => {
                self.kill().await;
                false
            }
        }
    }

    /// Waits for the process to exit by itself (a camera with a frame count) within `limit`.
    pub async fn wait(&mut self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => anyhow::bail!("{} still running after {limit:?}; log:\n{}", self.name, self.log_tail()),
        }
    }

    /// Whether it has exited, without waiting.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// The last lines of its log.
    #[must_use]
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Its whole log.
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
