//! The edgepool worker: pulls frames from the shared `detectors` work queue only when it has a
//! free inference slot, runs the detector, publishes one result per frame, then acks.
//!
//! See `docs/wire.md` for the contract and `docs/architecture.md` for why pulling without
//! prefetch lets a mixed fleet reach the sum of its devices' capacities.
//!
//! # Panics while processing a frame
//!
//! A panic never costs the worker a slot: a panic in inference (on its blocking thread) or
//! anywhere else in the frame's processing is caught, the slot drops its inference state and
//! pulls the next frame. The frame is handed back with `nak_delay` (`edgepool_worker_naks_total
//! {reason="panic"}`); on its last delivery (the consumer's `max_deliver`) it is dead-lettered
//! with kind `panic` and gets an error result, like any poison frame.
//!
//! # Test hooks
//!
//! With the cargo feature `test-hooks` (off by default; only `crates/cli`'s dev-dependencies
//! turn it on, so test builds have it and release builds do not), a frame with header
//! `Edgepool-Test-Panic: async` panics in the async processing path before inference, and
//! `Edgepool-Test-Panic: blocking` panics inside the inference closure on the blocking thread.
//! A worker built with the hooks logs a warning when it starts. Without the feature the header
//! means nothing: the code is compiled out.

#![cfg_attr(test, allow(clippy::unwrap_used))]

//! # Modules, in the order a frame meets them
//!
//! `run` (the worker, its drain) → `slot` (the pull loop of one slot, panics, acks) →
//! `envelope` (the frame parsed once) → `process` (stages: judge, infer, deliver) →
//! `verdict` (what the result says) → `publish` (result, dead letter) → `outcome` (the ack);
//! all share `ctx`, which depends on none of them.

pub mod config;
mod ctx;
pub mod device;
pub mod engine;
mod envelope;
pub mod error;
pub mod metrics;
mod model_name;
pub mod models;
pub mod outcome;
mod process;
mod publish;
pub mod registry;
mod run;
mod slot;
mod snapshot;
#[cfg(feature = "test-hooks")]
mod test_hooks;
mod verdict;

pub use config::WorkerConfig;
pub use engine::{Engine, Infer, Inferred, Slot, load_engine};
pub use error::{ConfigError, EngineError, StartError};
pub use metrics::WorkerMetrics;
pub use outcome::{Outcome, RetryReason};
pub use run::{Worker, WorkerReport, default_worker_id};

/// The CPU architecture this binary was built for (`x86_64`, `aarch64`, ...).
pub const ARCH: &str = std::env::consts::ARCH;
