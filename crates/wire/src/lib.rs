//! The edgepool wire contract, shared by producers, workers, the sink and subscribers.
//!
//! Everything another language needs to interoperate is specified in `docs/wire.md`; this crate
//! is the Rust side of that document: plain data types with no NATS client, so the detector and
//! any tool can use it. Putting them on NATS (headers, connection, the definitions of `nats/`) is
//! `edgepool-nats`'s job.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod detection;
pub mod fleet;
pub mod frame;
pub mod ids;
pub mod kind;
pub mod result;
pub mod snapshot;
pub mod trigger;

pub use detection::{BBox, BBoxError, Detection};
pub use frame::{ContentType, FrameError, FrameMeta, TimeOutOfRange, header};
pub use ids::{CameraId, FrameSeq, IdError, WorkerId, msg_id};
pub use result::{ErrorInfo, ErrorKind, ResultCamera, ResultMessage, SCHEMA_VERSION, Status, Timings};
pub use trigger::Trigger;
