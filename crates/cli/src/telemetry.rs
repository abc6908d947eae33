//! Logging setup (binaries only): pretty for terminals, JSON for Kubernetes, `RUST_LOG` wins.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. `default_level` applies when `RUST_LOG` is unset.
pub fn init(cfg: &LogConfig, default_level: &str) {
    let level = if cfg.level.is_empty() { default_level } else { &cfg.level };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match cfg.format {
        LogFormat::Pretty => builder.compact().try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
