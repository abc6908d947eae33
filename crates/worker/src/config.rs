//! Worker settings (`[worker]` in the config file, `EDGEPOOL_WORKER_*`, `edgepool worker` flags).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// How one worker pulls and processes frames.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Unique id in the fleet. Default: the host name (the pod name on Kubernetes) plus a
    /// random suffix.
    pub id: Option<String>,
    /// Free-form device label shown in results and the fleet view (`pi4`, `laptop`, ...).
    pub label: Option<String>,
    /// Inference slots: frames held and processed at once. A worker never holds more frames than
    /// this (no prefetch), which is what lets a mixed fleet reach the sum of its capacities.
    pub slots: usize,
    /// Frames older than this when taken are answered with a `stale` result and not processed:
    /// live video loses its value quickly, and skipping them keeps latency bounded in overload.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// A `captured_at` further in the future than this is an absurd header (poison).
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
    /// Delay asked for when handing a frame back after a transient failure.
    #[serde(with = "humantime_serde")]
    pub nak_delay: Duration,
    /// Expiry of each pull request. Shutdown does not wait for it: an idle slot waits only a
    /// short grace for a frame already in transit, and hands such a frame back at once.
    #[serde(with = "humantime_serde")]
    pub pull_expires: Duration,
    /// Interval of in-progress acks while a frame is being processed (keep well below the
    /// consumer's `ack_wait`).
    #[serde(with = "humantime_serde")]
    pub progress_interval: Duration,
    /// Upper bound on the SIGTERM drain (keep below the pod's terminationGracePeriodSeconds).
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Device emulation for tests, benchmarks and demos on one machine: after each real
    /// inference, wait (slowdown - 1) x the measured inference time. 1 means real hardware.
    /// Reported in results and metrics so it cannot be mistaken for a real device.
    pub slowdown: f64,
    /// Attempts to publish a result (with the same msg id) before handing the frame back.
    pub publish_attempts: u32,
    /// Address of the worker's /metrics, /healthz and /readyz endpoint.
    pub listen: Option<SocketAddr>,
    /// The durable pull consumer on FRAMES to take frames from. Every worker shares
    /// `detectors`; benchmarks bind workers to their own consumers to build a round-robin
    /// baseline.
    pub consumer: String,
    /// NATS >= 2.11 priority group to pull in. Required when the consumer defines
    /// `priority_groups` (see docs/architecture.md, "Overflow").
    pub priority_group: Option<String>,
    /// With the consumer's `overflow` priority policy: only take frames while at least this many
    /// are pending. Set it on slow devices so they serve the backlog and leave the
    /// latency-critical head of the queue to fast ones.
    pub overflow_min_pending: Option<u64>,
    /// The device's name in metrics (`edgepool_worker_info{node}`) and the fleet registry, the
    /// key that joins a worker to node-exporter's series. Kubernetes: `spec.nodeName` through
    /// the downward API (`EDGEPOOL_WORKER_NODE`). Default: the host name.
    pub node: Option<String>,
    /// Where the SoC temperature (`class/thermal`, `class/hwmon`) and a Raspberry Pi's throttle
    /// state are read. Only tests point it elsewhere.
    pub sysfs_root: PathBuf,
    /// Write the latest processed frame of each camera with its result to the bucket
    /// `edgepool_snapshots`, for the sink's live page, `latest.jpg` and MJPEG streams
    /// (docs/view.md). Off: no snapshot traffic at all.
    pub snapshots: bool,
    /// At most one snapshot per camera per this interval, from each worker (default 500 ms:
    /// ≤ 2 per second). Only frames answered `ok` are stored.
    #[serde(with = "humantime_serde")]
    pub snapshot_interval: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            id: None,
            label: None,
            slots: 1,
            stale_after: Duration::from_secs(30),
            max_clock_skew: Duration::from_secs(300),
            nak_delay: Duration::from_secs(2),
            pull_expires: Duration::from_secs(3),
            progress_interval: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(25),
            slowdown: 1.0,
            publish_attempts: 5,
            listen: None,
            consumer: edgepool_nats::DETECTORS.to_owned(),
            priority_group: None,
            overflow_min_pending: None,
            node: None,
            sysfs_root: PathBuf::from("/sys"),
            snapshots: true,
            snapshot_interval: edgepool_wire::snapshot::DEFAULT_INTERVAL,
        }
    }
}

impl WorkerConfig {
    /// Checks values that serde cannot: each error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.slots == 0 || self.slots > 64 {
            return Err(ConfigError::Slots(self.slots));
        }
        if !(self.slowdown.is_finite() && self.slowdown >= 1.0 && self.slowdown <= 1000.0) {
            return Err(ConfigError::Slowdown(self.slowdown));
        }
        if self.pull_expires < Duration::from_millis(100) {
            return Err(ConfigError::PullExpires);
        }
        if self.progress_interval.is_zero() {
            return Err(ConfigError::ProgressInterval);
        }
        if self.overflow_min_pending.is_some() && self.priority_group.is_none() {
            return Err(ConfigError::OverflowWithoutGroup);
        }
        if self.publish_attempts == 0 {
            return Err(ConfigError::PublishAttempts);
        }
        if let Some(label) = &self.label
            && (label.len() > 64 || label.chars().any(char::is_control))
        {
            return Err(ConfigError::Label);
        }
        if let Some(node) = &self.node
            && (node.is_empty() || node.len() > 253 || node.chars().any(char::is_control))
        {
            return Err(ConfigError::Node);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_each_bad_value_names_its_key() {
        assert_eq!(WorkerConfig::default().validate(), Ok(()));
        let bad = |f: fn(&mut WorkerConfig)| {
            let mut c = WorkerConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert_eq!(bad(|c| c.slots = 0), ConfigError::Slots(0));
        assert_eq!(bad(|c| c.slowdown = 0.5), ConfigError::Slowdown(0.5));
        assert_eq!(bad(|c| c.pull_expires = Duration::from_millis(10)), ConfigError::PullExpires);
        assert_eq!(bad(|c| c.overflow_min_pending = Some(1)), ConfigError::OverflowWithoutGroup);
        assert!(bad(|c| c.publish_attempts = 0).to_string().starts_with("worker.publish_attempts"));
    }
}
