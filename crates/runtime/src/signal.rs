//! One shutdown signal for a whole process. SIGINT (Ctrl-C) or SIGTERM (Kubernetes, systemd)
//! cancels a token every component watches: stop taking work, finish or hand back what is in
//! flight, flush, exit 0. A second signal means "now": the process prints one line saying what
//! it abandons and exits with the conventional code, 130 after SIGINT, 143 after SIGTERM.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use tokio_util::sync::CancellationToken;

type Describe = Box<dyn Fn() -> String + Send + Sync>;

/// What the process would abandon if it exited now, for the second signal's message, e.g.
/// "2 frames in flight (JetStream redelivers them)". Components set it once they know.
#[derive(Clone, Default)]
pub struct AbandonNote(Arc<Mutex<Option<Describe>>>);

impl AbandonNote {
    /// Sets how to describe what would be abandoned.
    pub fn set(&self, describe: impl Fn() -> String + Send + Sync + 'static) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(describe));
    }

    /// The description now (empty when nothing was set).
    #[must_use]
    pub fn describe(&self) -> String {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|f| f()).unwrap_or_default()
    }
}

impl fmt::Debug for AbandonNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AbandonNote").field(&self.describe()).finish()
    }
}

/// Which signal arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

impl Signal {
    /// `SIGINT` or `SIGTERM`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Interrupt => "SIGINT",
            Self::Terminate => "SIGTERM",
        }
    }

    /// The exit code of a process ended by this signal, by shell convention (128 + number).
    #[must_use]
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Interrupt => 130,
            Self::Terminate => 143,
        }
    }
}

/// The line printed when a second signal ends the process.
#[must_use]
pub fn second_signal_message(sig: Signal, abandons: &str) -> String {
    if abandons.is_empty() {
        format!("second {}: exiting now", sig.name())
    } else {
        format!("second {}: exiting now, abandoning {abandons}", sig.name())
    }
}

/// A token cancelled on the first SIGINT or SIGTERM; the second exits the process at once
/// after printing [`second_signal_message`]. Must be called inside a tokio runtime.
#[must_use]
pub fn shutdown_on_signals(abandons: AbandonNote) -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let Some(first) = next_signal().await else { return };
        tracing::info!("{}: shutting down (a second signal exits at once)", first.name());
        t.cancel();
        let Some(second) = next_signal().await else { return };
        eprintln!("{}", second_signal_message(second, &abandons.describe()));
        std::process::exit(second.exit_code());
    });
    token
}

/// Waits for SIGINT or SIGTERM; `None` when signals cannot be watched (then never).
async fn next_signal() -> Option<Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    // Re-registering is cheap, and tokio keeps the handler installed once registered, so a
    // signal between two calls is not lost to the default action (which would kill us).
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| tracing::error!(error = %e, "cannot watch SIGINT")).ok()?;
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| tracing::error!(error = %e, "cannot watch SIGTERM")).ok()?;
    tokio::select! {
        _ = int.recv() => Some(Signal::Interrupt),
        _ = term.recv() => Some(Signal::Terminate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abandon_note_describes_the_latest_setting() {
        let note = AbandonNote::default();
        assert_eq!(note.describe(), "");
        let n = Arc::new(std::sync::atomic::AtomicU64::new(2));
        let m = Arc::clone(&n);
        note.clone().set(move || format!("{} frames in flight", m.load(std::sync::atomic::Ordering::Relaxed)));
        assert_eq!(note.describe(), "2 frames in flight");
        n.store(0, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(note.describe(), "0 frames in flight");
    }

    #[test]
    fn second_signal_says_what_it_abandons_and_uses_the_conventional_code() {
        assert_eq!(Signal::Interrupt.exit_code(), 130);
        assert_eq!(Signal::Terminate.exit_code(), 143);
        assert_eq!(
            second_signal_message(Signal::Terminate, "1 frame in flight"),
            "second SIGTERM: exiting now, abandoning 1 frame in flight"
        );
        assert_eq!(second_signal_message(Signal::Interrupt, ""), "second SIGINT: exiting now");
    }
}
