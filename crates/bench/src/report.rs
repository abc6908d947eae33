//! What `edgepool bench skew` reports (also what its chart draws).

use std::collections::BTreeMap;

use serde::Serialize;

/// One setup's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub fps: f64,
    pub seconds: f64,
    pub frames: u64,
    /// Capture-to-sink latency of the batch (includes waiting in the pre-filled queue).
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    /// Results per worker id.
    pub per_worker: BTreeMap<String, u64>,
    /// Seconds between the next-to-last and the last result: the batch's tail (0 where not
    /// measured).
    pub tail_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerRow {
    pub id: String,
    pub slowdown: f64,
    pub capacity_fps: f64,
    pub pull_frames: u64,
    pub pull_share: f64,
    pub rr_frames: u64,
    pub rr_share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SkewReport {
    pub workers: Vec<f64>,
    pub frames: u64,
    /// Frames of the round-robin setup (`--rr-frames`).
    pub rr_frames: u64,
    pub sum_capacity_fps: f64,
    pub slowest_capacity_fps: f64,
    pub pull_fps: f64,
    pub rr_fps: f64,
    pub efficiency: f64,
    pub pull_over_rr: f64,
    /// Round-robin relative to theory, N x the slowest capacity.
    pub rr_over_n_slowest: f64,
    pub pull: Run,
    pub rr: Run,
    pub per_worker: Vec<WorkerRow>,
    /// The pooled cluster again with the overflow priority policy (`--overflow`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overflow: Option<OverflowRun>,
}

/// The pooled cluster with the overflow priority policy.
#[derive(Debug, Clone, Serialize)]
pub struct OverflowRun {
    /// `min_pending` per worker (none for the fastest).
    pub min_pending: Vec<Option<u64>>,
    pub efficiency: f64,
    pub pull_over_rr: f64,
    pub run: Run,
}
