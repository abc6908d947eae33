//! The fleet as `edgepool status` computes it (`edgepool_nats::fleet`), polled in the background
//! while someone looks at it, for `GET /fleet` and the page's fleet panel.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use edgepool_nats::fleet::{Observation, Status, observe};

/// How often the fleet is read while it is being viewed.
pub const POLL: Duration = Duration::from_secs(2);

/// Polling stops this long after the last `/fleet` request.
const IDLE_AFTER: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct Latest {
    status: Option<Status>,
    updated_at: Option<OffsetDateTime>,
    error: Option<String>,
    previous: Option<Observation>,
    asked: Option<Instant>,
}

/// The last fleet status read, and whether anyone asked for it lately.
#[derive(Debug, Default)]
pub struct Fleet {
    latest: Mutex<Latest>,
    wanted: AtomicBool,
    wake: tokio::sync::Notify,
}

/// `GET /fleet`.
#[derive(Debug, Serialize)]
pub struct FleetView {
    #[serde(with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
    pub error: Option<String>,
    pub latency: Latency,
    pub status: Option<Status>,
}

/// End-to-end latency (capture to sink) of recent `ok` results.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50_s: Option<f64>,
    pub p99_s: Option<f64>,
    pub samples: usize,
}

impl Fleet {
    /// The latest reading; wakes the poller when it was idle.
    pub fn view(&self, p50_s: Option<f64>, p99_s: Option<f64>, samples: usize) -> FleetView {
        let mut g = self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        g.asked = Some(Instant::now());
        if !self.wanted.swap(true, Ordering::Relaxed) {
            self.wake.notify_one();
        }
        FleetView {
            updated_at: g.updated_at,
            error: g.error.clone(),
            latency: Latency { p50_s, p99_s, samples },
            status: g.status.clone(),
        }
    }

    /// Reads the fleet every [`POLL`] while it is viewed, until `shutdown`.
    pub async fn poll(&self, js: async_nats::jetstream::Context, shutdown: CancellationToken) {
        loop {
            if !self.wanted.load(Ordering::Relaxed) {
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = shutdown.cancelled() => return,
                }
            }
            let read = tokio::select! {
                r = tokio::time::timeout(Duration::from_secs(10), observe(&js)) => r,
                () = shutdown.cancelled() => return,
            };
            {
                let mut g = self.latest.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match read {
                    Ok(Ok(obs)) => {
                        // The publish rate is FRAMES' growth since the previous reading.
                        let earlier = g.previous.take();
                        g.status = Some(obs.clone().status(earlier.as_ref()));
                        g.previous = Some(obs);
                        g.updated_at = Some(OffsetDateTime::now_utc());
                        g.error = None;
                    }
                    Ok(Err(e)) => g.error = Some(format!("{e:#}")),
                    Err(_) => g.error = Some("reading the fleet timed out after 10 s".into()),
                }
                if g.asked.is_none_or(|t| t.elapsed() > IDLE_AFTER) {
                    self.wanted.store(false, Ordering::Relaxed);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}
