//! edgepool's NATS plumbing: how a role connects (URL, credentials, TLS, inbox prefix,
//! reconnect policy, and errors that say what went wrong), the frame headers of the contract on
//! an `async_nats::HeaderMap`, and the stream, consumer and bucket definitions of `nats/`,
//! applied idempotently by `edgepool setup`.
//!
//! The definitions are compiled in from `nats/`, the single source every binary and the docs
//! share: the sink's consumer too (`nats/consumers/DETECTIONS.sink.json`).

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod config;
mod error;
pub mod fleet;
mod headers;
mod setup;

pub use config::{DEFAULT_URL, InboxPrefix, InboxPrefixError, NatsConfig, Secret, reconnect_delay};
pub use error::ConnectError;
pub use headers::{frame_headers, header_str};
pub use setup::{Applied, Change, SetupOptions, apply, sink_consumer};

/// The FRAMES work queue.
pub const FRAMES: &str = "FRAMES";
/// Results, replayable.
pub const DETECTIONS: &str = "DETECTIONS";
/// Frames that failed for good.
pub const DEADLETTER: &str = "DEADLETTER";
/// Interactive frames (the gateway's requests): every worker slot takes these first.
pub const REQUESTS: &str = "REQUESTS";
/// The one durable pull consumer every worker shares (one on FRAMES, one on REQUESTS).
pub const DETECTORS: &str = "detectors";

/// The definitions in `nats/`, compiled in so every binary applies the same thing.
pub const STREAM_FILES: [(&str, &str); 4] = [
    (FRAMES, include_str!("../../../nats/streams/FRAMES.json")),
    (REQUESTS, include_str!("../../../nats/streams/REQUESTS.json")),
    (DETECTIONS, include_str!("../../../nats/streams/DETECTIONS.json")),
    (DEADLETTER, include_str!("../../../nats/streams/DEADLETTER.json")),
];
/// `nats/consumers/FRAMES.detectors.json`: the workers' shared consumer.
pub const DETECTORS_FILE: &str = include_str!("../../../nats/consumers/FRAMES.detectors.json");
/// `nats/consumers/REQUESTS.detectors.json`: the workers' shared consumer of interactive frames.
pub const REQUEST_DETECTORS_FILE: &str = include_str!("../../../nats/consumers/REQUESTS.detectors.json");
/// `nats/consumers/DETECTIONS.sink.json`: the sink's consumer; each sink binds it under its own
/// durable name (`sink.durable`), with `deliver_policy` `all` when it replays.
pub const SINK_FILE: &str = include_str!("../../../nats/consumers/DETECTIONS.sink.json");
/// `nats/nats-server.conf`, for brokers the project starts itself.
pub const SERVER_CONF: &str = include_str!("../../../nats/nats-server.conf");
