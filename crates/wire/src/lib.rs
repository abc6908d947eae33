//! The edgepool wire contract, shared by producers, workers, the sink and subscribers.
//!
//! Everything another language needs to interoperate is specified in `docs/wire.md`; this crate
//! is the Rust side of that document. Without the `nats` feature it is plain data types (the
//! detector uses it that way); with it, it also builds NATS headers and applies stream settings.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod detection;

pub use detection::{BBox, BBoxError, Detection};
