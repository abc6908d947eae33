//! Logging setup (binaries only): pretty for terminals, JSON for Kubernetes, `RUST_LOG` wins.

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// Log output (`[log]` in the config file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `pretty` for terminals, `json` for Kubernetes.
    pub format: LogFormat,
    /// Filter when `RUST_LOG` is unset, e.g. `info` or `edgepool_worker=debug,info`.
    /// Empty: each command's default (`info` for services, `warn` for interactive commands).
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Pretty, level: String::new() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Directives added to every default filter: async-nats logs each connection event (every
/// failed reconnect attempt, once a second while the broker is away) at INFO; the roles log the
/// connection's ups and downs themselves, once each (`edgepool_nats::ConnectionLog`).
const QUIET_DEPENDENCIES: &str = "async_nats=warn";

/// The filter for `level` (or `default_level` when empty) with [`QUIET_DEPENDENCIES`].
#[must_use]
pub fn default_filter(level: &str, default_level: &str) -> String {
    let level = if level.is_empty() { default_level } else { level };
    if level.contains("async_nats") { level.to_owned() } else { format!("{level},{QUIET_DEPENDENCIES}") }
}

/// `RUST_LOG` with [`QUIET_DEPENDENCIES`] too: `RUST_LOG=info` (a common setting in manifests)
/// asks for our INFO lines, not for one line per reconnect attempt. A filter that names
/// `async_nats`, or asks for `debug`/`trace` everywhere, is taken as it is.
#[must_use]
pub fn env_filter(rust_log: &str) -> String {
    let everything_verbose = rust_log.split(',').any(|d| matches!(d.trim(), "debug" | "trace"));
    if everything_verbose { rust_log.to_owned() } else { default_filter(rust_log, "") }
}

/// Installs the global subscriber. `default_level` applies when `RUST_LOG` and `log.level` are
/// unset.
pub fn init(cfg: &LogConfig, default_level: &str) {
    let from_env = std::env::var(EnvFilter::DEFAULT_ENV)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::try_new(env_filter(&v)).ok());
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(default_filter(&cfg.level, default_level)));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match cfg.format {
        LogFormat::Pretty => builder.compact().try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_stay_quiet_unless_asked() {
        assert_eq!(default_filter("", "info"), "info,async_nats=warn");
        assert_eq!(default_filter("debug", "info"), "debug,async_nats=warn");
        assert_eq!(default_filter("async_nats=debug,info", "info"), "async_nats=debug,info");
    }

    #[test]
    fn rust_log_at_info_stays_quiet_about_reconnect_attempts() {
        assert_eq!(env_filter("info"), "info,async_nats=warn");
        assert_eq!(env_filter("edgepool_worker=debug,info"), "edgepool_worker=debug,info,async_nats=warn");
        assert_eq!(env_filter("async_nats=info,warn"), "async_nats=info,warn");
        assert_eq!(env_filter("trace"), "trace");
        assert_eq!(env_filter("warn,debug"), "warn,debug");
    }
}
