//! The per-frame outcome, and the one place that turns it into a JetStream acknowledgement.

use std::time::Duration;

use async_nats::jetstream::{AckKind, Message};

use edgepool_wire::ErrorKind;

/// What processing decided for a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A result (ok) was published and acknowledged by the broker: ack the frame.
    Done,
    /// Too old when taken: a `stale` result was published; ack without inference.
    Stale,
    /// Bad for good: dead letter and error result are published; terminate redelivery.
    Poison { kind: ErrorKind },
    /// Transient failure: hand the frame back for redelivery after `delay` (zero: at once).
    Retry { reason: RetryReason, delay: Duration },
}

/// Why a frame was handed back: the `reason` label of `edgepool_worker_naks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryReason {
    /// Processing panicked (in inference or around it).
    Panic,
    /// The detector failed for a reason of this worker, not of the frame.
    InferenceFailed,
    /// The result could not be published (and acknowledged by the broker).
    PublishFailed,
    /// The dead letter could not be published.
    DeadletterFailed,
    /// The frame arrived after shutdown began: another worker takes it at once.
    Shutdown,
}

impl RetryReason {
    /// Every reason, for tests and documentation.
    pub const ALL: [Self; 5] =
        [Self::Panic, Self::InferenceFailed, Self::PublishFailed, Self::DeadletterFailed, Self::Shutdown];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Panic => "panic",
            Self::InferenceFailed => "inference_failed",
            Self::PublishFailed => "publish_failed",
            Self::DeadletterFailed => "deadletter_failed",
            Self::Shutdown => "shutdown",
        }
    }

    /// The error kind a frame gets when this failure strikes on its last delivery. Failures to
    /// publish have none: they would fail the same way publishing the dead letter.
    #[must_use]
    pub fn last_delivery_kind(self) -> Option<ErrorKind> {
        match self {
            Self::Panic => Some(ErrorKind::Panic),
            Self::InferenceFailed => Some(ErrorKind::InferenceFailed),
            Self::PublishFailed | Self::DeadletterFailed | Self::Shutdown => None,
        }
    }
}

/// The acknowledgement an outcome calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Finished: ack and wait for the server's confirmation.
    Ack,
    /// Finished for good (poison): terminate and wait for the confirmation.
    Term,
    /// Hand back, redelivered after the delay (`None`: at once).
    Nak(Option<Duration>),
}

impl Outcome {
    /// The acknowledgement this outcome calls for.
    #[must_use]
    pub fn ack(&self) -> Ack {
        match self {
            Self::Done | Self::Stale => Ack::Ack,
            Self::Poison { .. } => Ack::Term,
            Self::Retry { delay, .. } => Ack::Nak((!delay.is_zero()).then_some(*delay)),
        }
    }
}

/// Acknowledges `msg` according to `outcome`. Acks of finished frames wait for the server's
/// confirmation (double ack): after that, no redelivery can produce a second result.
pub async fn acknowledge(msg: &Message, outcome: &Outcome) -> Result<(), async_nats::Error> {
    match outcome.ack() {
        Ack::Ack => msg.double_ack().await,
        Ack::Term => msg.double_ack_with(AckKind::Term).await,
        Ack::Nak(delay) => msg.ack_with(AckKind::Nak(delay)).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_decides_the_ack() {
        let d = Duration::from_secs(2);
        assert_eq!(Outcome::Done.ack(), Ack::Ack);
        assert_eq!(Outcome::Stale.ack(), Ack::Ack);
        assert_eq!(Outcome::Poison { kind: ErrorKind::Corrupt }.ack(), Ack::Term);
        assert_eq!(Outcome::Retry { reason: RetryReason::PublishFailed, delay: d }.ack(), Ack::Nak(Some(d)));
        let at_once = Outcome::Retry { reason: RetryReason::Shutdown, delay: Duration::ZERO };
        assert_eq!(at_once.ack(), Ack::Nak(None), "a zero delay hands the frame back at once");
    }

    #[test]
    fn retry_reasons_are_bounded_snake_case_labels() {
        for r in RetryReason::ALL {
            assert!(r.as_str().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{r:?}");
        }
        assert_eq!(RetryReason::Panic.last_delivery_kind(), Some(ErrorKind::Panic));
        assert_eq!(RetryReason::InferenceFailed.last_delivery_kind(), Some(ErrorKind::InferenceFailed));
        assert_eq!(RetryReason::PublishFailed.last_delivery_kind(), None);
    }
}
