//! The per-frame outcome, and the one place that turns it into a JetStream acknowledgement.

use std::time::Duration;

use async_nats::jetstream::{AckKind, Message};

/// What processing decided for a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A result (ok) was published and acknowledged by the broker: ack the frame.
    Done,
    /// Too old when taken: a `stale` result was published; ack without inference.
    Stale,
    /// Bad for good: dead letter and error result are published; terminate redelivery.
    Poison { kind: String },
    /// Transient failure: hand the frame back for redelivery after a delay.
    Retry { reason: &'static str, delay: Duration },
}

/// Acknowledges `msg` according to `outcome`. Acks of finished frames wait for the server's
/// confirmation (double ack): after that, no redelivery can produce a second result.
pub async fn acknowledge(msg: &Message, outcome: &Outcome) -> Result<(), async_nats::Error> {
    match outcome {
        Outcome::Done | Outcome::Stale => msg.double_ack().await,
        Outcome::Poison { .. } => msg.double_ack_with(AckKind::Term).await,
        Outcome::Retry { delay, .. } => msg.ack_with(AckKind::Nak(Some(*delay))).await,
    }
}
