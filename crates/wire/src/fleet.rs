//! The live capacity registry: each worker keeps one entry in the JetStream key-value bucket
//! [`BUCKET`], refreshed every few seconds and expiring [`TTL`] after its last refresh, so the
//! bucket always lists the workers that are alive. `edgepool status` and `edgepool top` read it;
//! so can any NATS client (`nats kv ls edgepool_fleet`).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The key-value bucket of the fleet registry.
pub const BUCKET: &str = "edgepool_fleet";

/// How long an entry outlives its last refresh.
pub const TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// How often workers refresh their entry.
pub const REFRESH: std::time::Duration = std::time::Duration::from_secs(5);

/// One worker's entry (key: the worker id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerEntry {
    pub id: String,
    /// CPU architecture of the worker binary.
    pub arch: String,
    /// Operator-given device label.
    #[serde(default)]
    pub label: Option<String>,
    pub slots: usize,
    /// Device emulation factor; 1 on real hardware.
    pub slowdown: f64,
    pub model: String,
    /// Frames finished per second over the last refresh interval (what it does).
    pub fps: f64,
    /// Frames per second it could do when busy: slots / mean time per frame over the recent
    /// past (what it can do). `None` until it has processed a frame.
    #[serde(default)]
    pub capacity_fps: Option<f64>,
    /// Fraction of slot time spent on frames over the last interval.
    pub busy_ratio: f64,
    /// Frames finished since start (ok + error + stale).
    pub frames_total: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The device it runs on; absent from workers older than this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceEntry>,
}

/// The device a worker runs on, as of its last refresh. Every reading a device may not have is
/// an `Option`: `None` means unknown, never 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceEntry {
    /// Kubernetes node name, or the host name.
    pub node: String,
    pub cpu_model: String,
    /// Logical CPUs of the device.
    pub cpu_cores: usize,
    pub memory_total_bytes: u64,
    /// 1 - MemAvailable / MemTotal.
    #[serde(default)]
    pub memory_used_ratio: Option<f64>,
    /// Busy share of all the device's CPUs over the last refresh interval (`/proc/stat`).
    #[serde(default)]
    pub cpu_ratio: Option<f64>,
    /// SoC temperature, where a thermal zone or hwmon sensor is readable.
    #[serde(default)]
    pub temperature_celsius: Option<f64>,
    /// Raspberry Pi throttle conditions holding now (empty: none); `None` off a Pi.
    #[serde(default)]
    pub throttled: Option<Vec<String>>,
}
