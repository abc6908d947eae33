//! The edgepool wire contract, shared by producers, workers, the sink and subscribers.
//!
//! Everything another language needs to interoperate is specified in `docs/wire.md`; this crate
//! is the Rust side of that document. Without the `nats` feature it is plain data types (the
//! detector uses it that way); with it, it also builds NATS headers, connects, and applies the
//! stream and consumer definitions of `nats/`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod detection;
pub mod fleet;
pub mod frame;
pub mod ids;
pub mod metrics;
pub mod result;

#[cfg(feature = "nats")]
pub mod nats;

pub use detection::{BBox, BBoxError, Detection};
pub use frame::{ContentType, FrameError, FrameMeta, TimeOutOfRange, header};
pub use ids::{CameraId, FrameSeq, IdError, WorkerId, msg_id};
pub use result::{ErrorInfo, ErrorKind, ResultCamera, ResultMessage, SCHEMA_VERSION, Status, Timings};
