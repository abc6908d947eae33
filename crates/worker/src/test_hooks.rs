//! Fault injection for tests: compiled only with the `test-hooks` feature, which only the CLI's
//! dev-dependencies enable, so release builds cannot be made to panic by a frame header.

use edgepool_nats::header_str;

/// The header a test sets on a frame to make its processing panic: `async` or `blocking`.
pub(crate) const PANIC_HEADER: &str = "Edgepool-Test-Panic";

/// Where processing panics when a frame asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PanicPoint {
    /// On the reactor, in the slot's own task, before inference.
    Async,
    /// In the inference closure on the blocking thread.
    Blocking,
}

/// The panic point `msg` asks for, if any.
pub(crate) fn panic_point(headers: Option<&async_nats::HeaderMap>) -> Option<PanicPoint> {
    match header_str(headers, PANIC_HEADER)?.trim() {
        "async" => Some(PanicPoint::Async),
        "blocking" => Some(PanicPoint::Blocking),
        _ => None,
    }
}

/// Panics if the frame asked for a panic at `here`.
pub(crate) fn panic_if(asked: Option<PanicPoint>, here: PanicPoint) {
    assert!(asked != Some(here), "test hook: {PANIC_HEADER} asked for a panic at {here:?}");
}

/// Says loudly that this build reacts to test headers.
pub(crate) fn warn_compiled_in() {
    tracing::warn!(
        header = PANIC_HEADER,
        "test hooks compiled in: frames with this header panic on purpose; never deploy this build"
    );
}
