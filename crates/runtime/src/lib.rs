//! What every edgepool role shares at run time, so each role's `main` is only its own work:
//!
//! - [`signal`]: SIGINT/SIGTERM cancel one token; a second signal exits at once.
//! - [`telemetry`]: the tracing subscriber (pretty or JSON) and its default filter.
//! - [`http`]: `/metrics`, `/healthz` and `/readyz`, which every long-running role serves.
//! - [`metrics`]: the metric catalog, the single source of every metric's name, help and labels
//!   (and of `docs/metrics.md`).
//! - [`process`]: this process's resident memory, for reports and benchmarks.
//! - [`shutdown_runtime`]: a tokio runtime's end that cannot hang on a stuck blocking task.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod http;
pub mod metrics;
pub mod process;
pub mod signal;
pub mod telemetry;

use std::time::Duration;

/// A multi-threaded tokio runtime for a role.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("edgepool").build()
}

/// How long a finished role waits for blocking tasks (an inference still running on a
/// blocking thread) before its process exits anyway.
pub const BLOCKING_GRACE: Duration = Duration::from_secs(2);

/// Drops `rt` without waiting for blocking tasks longer than [`BLOCKING_GRACE`]: dropping a
/// runtime waits for every blocking task, and an inference, or a DNS lookup of an unreachable
/// host, must not keep a stopped process alive.
pub fn shutdown_runtime(rt: tokio::runtime::Runtime) {
    rt.shutdown_timeout(BLOCKING_GRACE);
}
