//! The project's one rig: real nats-server processes ([`server`]) and a local pipeline on them
//! ([`cluster`]), shared by `edgepool demo`, the integration tests, the benchmarks and the
//! chaos harness, plus where the test data lives ([`fixtures`]).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cluster;
pub mod fixtures;
pub mod server;
pub mod streams;

pub use cluster::LocalCluster;
pub use server::{Broker, BrokerOptions, Conf, find_server};
pub use streams::read_stream;
