//! The edgepool gateway: the pool behind the APIs that NVRs and home-automation tools already
//! speak to a remote detector. Each request becomes one frame on the shared work queue; the
//! answer is that frame's result (docs/integrations.md).
//!
//! - [`deepstack`]: the DeepStack / CodeProject.AI object-detection HTTP API (Frigate's
//!   `deepstack` detector, Blue Iris, Agent DVR, Home Assistant's deepstack clients).
//! - [`zmq`]: Frigate's `zmq` detector protocol (raw tensors in, a `[20, 6]` array out).
//! - [`pool`]: publishing a request's frame and routing its result back.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod config;
pub mod deepstack;
pub mod pool;
pub mod zmq;

pub use config::GatewayConfig;
pub use pool::{Pool, PoolError};
