//! The `[gateway]` section: where it listens, how long a request may wait, how many may wait at
//! once, how large a body may be, and the API keys.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use edgepool_nats::Secret;
use serde::{Deserialize, Serialize};

/// CodeProject.AI Server's port: Blue Iris and the other clients default to it.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 32168);

/// Settings of `edgepool gateway` (`[gateway]`, `EDGEPOOL_GATEWAY_*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address of the DeepStack / CodeProject.AI API, /metrics, /healthz and /readyz.
    pub listen: SocketAddr,
    /// The camera id the gateway's frames carry (`frames.<camera>`), and whose results it reads
    /// (`detections.<camera>`). Replicas share it: each request has its own random sequence
    /// number, and a replica answers only its own.
    pub camera: String,
    /// The longest a request waits for its result. Past it the client gets a timeout error
    /// (`success: false`), and a worker that has not started the frame skips it.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Requests waiting for a result at once; one more is answered 503 at once, never queued.
    pub max_in_flight: usize,
    /// The largest request body in bytes (the image and the form around it): 413 beyond it.
    pub max_body: usize,
    /// The confidence a request gets when it sends no `min_confidence` (DeepStack's 0.4).
    pub min_confidence: f32,
    /// Require one of these keys in the `api_key` form field (DeepStack's field). Empty: no key.
    /// From a Secret: `EDGEPOOL_GATEWAY_API_KEY` (one key) or `api_keys` in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<Secret>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<Secret>,
    /// Also serve Frigate's `zmq` detector protocol on this endpoint (`tcp://0.0.0.0:5555`, or
    /// `ipc:///tmp/cache/zmq_detector`, Frigate's default). Off when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zmq: Option<String>,
    /// Publish requests to the interactive queue REQUESTS, which workers take before the
    /// cameras' FRAMES (default). `false` publishes them to FRAMES like a camera's frames, behind
    /// any backlog: only for comparing the two (`edgepool bench gateway`); the NATS user
    /// `gateway` of nats/auth.conf may not publish there.
    pub priority: bool,
    /// Require this token for `/metrics` (`EDGEPOOL_GATEWAY_METRICS_TOKEN`); default open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_token: Option<Secret>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN,
            camera: "gateway".into(),
            timeout: Duration::from_secs(10),
            max_in_flight: 32,
            max_body: 8 * 1024 * 1024,
            min_confidence: 0.4,
            api_key: None,
            api_keys: Vec::new(),
            zmq: None,
            priority: true,
            metrics_token: None,
        }
    }
}

/// A setting out of range.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("gateway.camera: {0}")]
    Camera(String),
    #[error("gateway.timeout: must be between 10ms and 10m, got {0:?}")]
    Timeout(Duration),
    #[error("gateway.max_in_flight: must be between 1 and 100000, got {0}")]
    MaxInFlight(usize),
    #[error("gateway.max_body: must be between 1 KiB and 64 MiB, got {0}")]
    MaxBody(usize),
    #[error("gateway.min_confidence: must be between 0 and 1, got {0}")]
    MinConfidence(String),
    #[error("gateway.api_keys: an empty key would let every request in")]
    EmptyKey,
}

impl GatewayConfig {
    /// Checks every setting; the first problem names its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        edgepool_wire::CameraId::new(self.camera.clone()).map_err(|e| ConfigError::Camera(e.to_string()))?;
        if !(Duration::from_millis(10)..=Duration::from_secs(600)).contains(&self.timeout) {
            return Err(ConfigError::Timeout(self.timeout));
        }
        if !(1..=100_000).contains(&self.max_in_flight) {
            return Err(ConfigError::MaxInFlight(self.max_in_flight));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_body) {
            return Err(ConfigError::MaxBody(self.max_body));
        }
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(ConfigError::MinConfidence(self.min_confidence.to_string()));
        }
        if self.keys().any(str::is_empty) {
            return Err(ConfigError::EmptyKey);
        }
        Ok(())
    }

    /// Every accepted API key.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.api_key.iter().chain(&self.api_keys).map(Secret::expose)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        GatewayConfig::default().validate().unwrap();
        let bad = |f: fn(&mut GatewayConfig)| {
            let mut c = GatewayConfig::default();
            f(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert!(bad(|c| c.camera = "a.b".into()).starts_with("gateway.camera"));
        assert!(bad(|c| c.timeout = Duration::ZERO).starts_with("gateway.timeout"));
        assert!(bad(|c| c.max_in_flight = 0).starts_with("gateway.max_in_flight"));
        assert!(bad(|c| c.max_body = 10).starts_with("gateway.max_body"));
        assert!(bad(|c| c.min_confidence = 1.5).starts_with("gateway.min_confidence"));
        assert!(bad(|c| c.api_keys = vec![Secret::new("")]).starts_with("gateway.api_keys"));
    }

    #[test]
    fn keys_never_serialize() {
        let c = GatewayConfig { api_key: Some(Secret::new("hunter2")), ..GatewayConfig::default() };
        let text = serde_json::to_string(&c).unwrap();
        assert!(!text.contains("hunter2") && text.contains("<redacted>"), "{text}");
    }
}
