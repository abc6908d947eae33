//! What became of one published frame: the type the publisher reports and the metrics count.

use edgepool_wire::FrameSeq;

/// The final state of one in-flight frame.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub seq: FrameSeq,
    pub result: AckResult,
    pub retries: u32,
}

/// How JetStream answered a frame, after every attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckResult {
    Stored,
    Duplicate,
    Failed,
}
