//! The edgepool sink: reads results from DETECTIONS through a durable consumer, dedupes them by
//! (camera, seq), and turns them into Prometheus metrics, a JSONL file and a live feed; and
//! serves the live view (`view`): the page, camera snapshots, MJPEG streams and the fleet.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod metrics;
mod run;
pub mod stats;
pub mod view;

pub use run::{Sink, SinkConfig};
pub use stats::{SinkStats, Summary, WorkerSummary};
