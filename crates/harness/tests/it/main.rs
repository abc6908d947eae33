//! Tests of the rig itself, against real nats-servers: [`broker`] (start, ports, kill, restart,
//! cluster, freeze) and [`cluster`] (the in-process pipeline's own helpers).

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

mod broker;
mod cluster;
