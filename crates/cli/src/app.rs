//! The one start-up and shut-down sequence every command shares, so each command is only its
//! own work (the pattern of mini-redis's `server::run(listener, shutdown)`):
//!
//! 1. configuration: defaults < `--config` file < `EDGEPOOL_*` < flags;
//! 2. `--check`: print it (secrets redacted) and exit;
//! 3. logging; 4. the tokio runtime; 5. SIGINT/SIGTERM → one [`CancellationToken`], a second
//!    signal exits at once;
//! 6. the command's body, with [`Ctx`] to serve HTTP endpoints and connect to NATS;
//! 7. the end, bounded: HTTP endpoints stop, NATS clients flush within [`FLUSH_TIMEOUT`], and
//!    the runtime waits at most [`edgepool_runtime::BLOCKING_GRACE`] for blocking work.
//!
//! Every step that can wait on the broker is raced against the shutdown token, so a command
//! exits within its drain timeout plus a small margin whether the broker is up, down or gone
//! mid-drain.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::Router;
use tokio_util::sync::CancellationToken;

use edgepool_runtime::signal::AbandonNote;
use edgepool_runtime::{http, telemetry};

use crate::config::{Config, Overrides};
use crate::{Global, load_config, print_check};

/// How long a stopping command waits for its NATS client to flush what it buffered.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// What a command's body gets.
#[derive(Debug)]
pub struct Ctx {
    pub cfg: Config,
    /// Cancelled on the first SIGINT or SIGTERM.
    pub shutdown: CancellationToken,
    /// Set what a second signal would abandon (for its one-line message).
    pub abandons: AbandonNote,
    http_stop: CancellationToken,
}

/// The body of a command was stopped by a signal before it could start its work (e.g. while
/// waiting for the broker): a clean exit, not an error.
#[derive(Debug, thiserror::Error)]
#[error("stopped by a signal before connecting to NATS")]
pub struct Stopped;

impl Ctx {
    /// Serves `router` on `addr` (port 0 picks one) until the command ends; returns the bound
    /// address.
    pub async fn serve(&self, addr: SocketAddr, router: Router) -> anyhow::Result<SocketAddr> {
        http::serve(addr, router, self.http_stop.clone())
            .await
            .map_err(|e| anyhow::Error::new(e).context(format!("binding HTTP on {addr}")))
    }

    /// [`Ctx::serve`] at a lower CPU priority ([`http::serve_yielding`], nice
    /// [`http::VIEW_NICE`]): for the sink's page, images and streams, so viewers never take CPU
    /// from inference on a shared machine.
    pub fn serve_yielding(&self, addr: SocketAddr, router: Router) -> anyhow::Result<SocketAddr> {
        http::serve_yielding(addr, router, self.http_stop.clone(), http::VIEW_NICE)
            .map_err(|e| anyhow::Error::new(e).context(format!("binding HTTP on {addr}")))
    }

    /// Connects to NATS as `name`. Long-running roles (`wait_for_server`) wait while no server
    /// answers, saying so; a signal ends the wait with [`Stopped`].
    pub async fn connect(&self, name: &str, wait_for_server: bool) -> anyhow::Result<async_nats::Client> {
        tokio::select! {
            r = self.cfg.nats.connect(name, wait_for_server) => Ok(r?),
            () = self.shutdown.cancelled() => Err(Stopped.into()),
        }
    }
}

/// An error as a person reads it: the message, then each underlying cause on its own line.
/// anyhow's `{:#}` joins the chain with `: `, which runs a multi-line hint (such as
/// [`edgepool_nats::ConnectError`]'s) into the cause; and async-nats repeats its source in its
/// own message, so a cause whose text the line before already shows is left out.
#[must_use]
pub fn report(err: &anyhow::Error) -> String {
    let mut out = err.to_string();
    let mut previous = out.clone();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !previous.contains(&text) {
            out.push_str("\n  caused by: ");
            out.push_str(&text);
        }
        previous = text;
    }
    out
}

/// Flushes `client` for at most [`FLUSH_TIMEOUT`], then drops it. A client whose broker is gone
/// would wait for the reconnect forever, so a disconnected one is not flushed at all: the
/// flush could only time out, and what it holds (acks, publishes) is redelivered or retried.
pub async fn close(client: async_nats::Client) {
    if client.connection_state() == async_nats::connection::State::Disconnected {
        tracing::warn!("NATS is unreachable: exiting without flushing (unacknowledged work is redelivered)");
        return;
    }
    match tokio::time::timeout(FLUSH_TIMEOUT, client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "flushing NATS on exit"),
        Err(_) => tracing::warn!("NATS did not take the last messages within {FLUSH_TIMEOUT:?}; exiting anyway"),
    }
}

/// Runs a command through the shared sequence (module docs). `default_log` is the log filter
/// when neither `RUST_LOG` nor `log.level` is set (`info` for services, `warn` for interactive
/// commands).
pub fn run<F, Fut>(global: &Global, flags: &Overrides, default_log: &str, body: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = anyhow::Result<ExitCode>>,
{
    let cfg = load_config(global, flags)?;
    if global.check {
        return Ok(print_check(&cfg));
    }
    run_with(cfg, default_log, body)
}

/// [`run`] with a configuration already loaded (and `--check` already handled).
pub fn run_with<F, Fut>(cfg: Config, default_log: &str, body: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = anyhow::Result<ExitCode>>,
{
    telemetry::init(&cfg.log, default_log);
    let rt = edgepool_runtime::runtime()?;
    let result = rt.block_on(async move {
        let abandons = AbandonNote::default();
        let shutdown = edgepool_runtime::signal::shutdown_on_signals(abandons.clone());
        let http_stop = CancellationToken::new();
        let ctx = Ctx { cfg, shutdown: shutdown.clone(), abandons, http_stop: http_stop.clone() };
        let r = body(ctx).await;
        http_stop.cancel();
        match r {
            Err(e) if e.is::<Stopped>() => {
                tracing::info!("{e}");
                Ok(ExitCode::SUCCESS)
            }
            other => other,
        }
    });
    edgepool_runtime::shutdown_runtime(rt);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("IO error: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn reports_put_each_cause_on_its_own_line_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = anyhow::Error::new(Repeats(io)).context("no server at x.\n  Start one");
        assert_eq!(report(&err), "no server at x.\n  Start one\n  caused by: IO error: refused");
        assert_eq!(report(&anyhow::anyhow!("alone")), "alone");
    }
}
