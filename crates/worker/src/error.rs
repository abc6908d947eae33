//! The worker crate's errors. Each variant is a decision for the caller: all of them stop a
//! worker before it pulls (a misconfiguration or a missing setup step), none happens per frame.

use std::path::PathBuf;

/// A worker setting serde cannot check; each names its key.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("worker.slots must be 1..=64, got {0}")]
    Slots(usize),
    #[error("worker.slowdown must be between 1 and 1000, got {0}")]
    Slowdown(f64),
    #[error("worker.pull_expires must be at least 100ms")]
    PullExpires,
    #[error("worker.progress_interval must be positive")]
    ProgressInterval,
    #[error("worker.overflow_min_pending needs worker.priority_group")]
    OverflowWithoutGroup,
    #[error("worker.publish_attempts must be at least 1")]
    PublishAttempts,
    #[error("worker.label must be at most 64 printable characters")]
    Label,
    #[error("worker.node must be 1 to 253 printable characters")]
    Node,
}

/// Why [`crate::Worker::new`] could not bind a worker to its consumer.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("worker.id")]
    Id(#[source] edgepool_wire::IdError),
    #[error("stream {stream} not found; run `edgepool setup`")]
    Stream {
        stream: &'static str,
        #[source]
        source: async_nats::jetstream::context::GetStreamError,
    },
    #[error("consumer {stream}/{consumer} not found; run `edgepool setup`")]
    Consumer {
        stream: &'static str,
        consumer: String,
        #[source]
        source: async_nats::Error,
    },
}

/// Why [`crate::load_engine`] could not load a model file.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "model not found at {}.\nRun `cargo xtask model` once to download and convert it (or set model.path).",
        path.display()
    )]
    NotFound { path: PathBuf },
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("loading {}", path.display())]
    Load {
        path: PathBuf,
        #[source]
        source: edgepool_detector::LoadError,
    },
}
