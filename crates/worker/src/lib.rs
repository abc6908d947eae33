//! The edgepool worker: pulls frames from the shared `detectors` work queue only when it has a
//! free inference slot, runs the detector, publishes one result per frame, then acks.
//!
//! See `docs/wire.md` for the contract and `docs/architecture.md` for why pulling without
//! prefetch lets a mixed fleet reach the sum of its devices' capacities.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod config;
pub mod engine;
pub mod metrics;
pub mod models;
pub mod outcome;
mod process;
pub mod registry;
mod run;

pub use config::WorkerConfig;
pub use engine::Engine;
pub use metrics::WorkerMetrics;
pub use outcome::Outcome;
pub use run::{Worker, WorkerReport, default_worker_id};

/// The CPU architecture this binary was built for (`x86_64`, `aarch64`, ...).
pub const ARCH: &str = std::env::consts::ARCH;
