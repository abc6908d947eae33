//! The producer side of edgepool: publish encoded frames to `frames.<camera>` with the contract's
//! headers, await every JetStream publish ack, retry with the same msg id, and bound what is in
//! flight.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use edgepool_camera::{Frame, Publisher, PublisherConfig};
//! use edgepool_wire::{CameraId, ContentType};
//!
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let js = async_nats::jetstream::new(client);
//! let camera = CameraId::new("front-door")?;
//! let mut publisher = Publisher::new(js, camera, 1, PublisherConfig::default());
//!
//! let jpeg = std::fs::read("frame.jpg")?;
//! publisher.publish(Frame::now(jpeg.into(), ContentType::Jpeg)).await?;
//! let stats = publisher.flush().await;
//! assert_eq!(stats.acked + stats.duplicates, 1);
//! # Ok(()) }
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod clip;
pub mod config;
pub mod ffmpeg;
pub mod metrics;
pub mod motion;
mod outcome;
mod publisher;
pub mod status;

pub use outcome::{AckResult, Outcome};
pub use publisher::{Frame, PublishError, Publisher, PublisherConfig, Stats, Submitted};
