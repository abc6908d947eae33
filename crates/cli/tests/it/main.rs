//! The `edgepool` crate's integration tests, one binary (so `common` and the model load once):
//! each module runs the pipeline, or a part of it, against real nats-servers started by
//! `edgepool_harness`, with the real model.
//!
//! - [`pipeline`]: end to end, setup, bad frames; [`capacity`]: a worker holds no more frames
//!   than slots; [`fleet`]: the capacity registry and `edgepool status`/`top`.
//! - [`drain`]: SIGTERM drain of a worker process; [`panic`]: a panicking frame costs no slot.
//! - [`models`]: models over NATS and hot-swap; [`security`]: the shipped auth and TLS setup;
//!   [`interop`]: a Python client that knows only docs/wire.md.
//! - [`devices`]: the device a worker runs on, in metrics, the fleet registry and `status`.
//! - [`connect_errors`]: what each role says when the broker cannot be reached or refuses it.
//! - [`stop`]: every role stops cleanly on SIGINT/SIGTERM, broker or no broker (issue #17).
//! - [`gateway`]: the DeepStack / CodeProject.AI API, driven by the clients people run.
//! - [`view`]: camera snapshots, `latest.jpg` with its boxes, MJPEG streams, the viewer limit.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

mod capacity;
mod common;
mod connect_errors;
mod devices;
mod drain;
mod fleet;
mod gateway;
mod interop;
mod models;
mod panic;
mod pipeline;
mod security;
mod stop;
mod video;
mod view;
