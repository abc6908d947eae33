//! In-memory aggregates of what the sink saw, for summaries (`edgepool demo`, benchmarks).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Mutex;

use edgepool_wire::{ResultMessage, Status};
use serde::Serialize;

/// How many result ids the deduplicator remembers. Redeliveries arrive within minutes, far fewer
/// results than this even at thousands per second.
pub const DEDUPE_CAPACITY: usize = 1 << 20;

/// Latency samples kept for percentiles (the most recent ones).
const MAX_SAMPLES: usize = 1 << 20;

/// Latency samples of [`SinkStats::recent_latency`] (the live page's p50/p99).
const RECENT_SAMPLES: usize = 1000;

/// Per-worker totals.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkerSummary {
    pub arch: String,
    pub device_label: Option<String>,
    pub slowdown: f64,
    pub results: u64,
    pub ok: u64,
    pub errors: u64,
    pub stale: u64,
    /// Sum of per-frame processing time (ms), for average service time.
    pub busy_ms: f64,
}

/// A snapshot of the aggregates.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub results: u64,
    pub ok: u64,
    pub errors: u64,
    pub stale: u64,
    pub duplicates: u64,
    pub invalid: u64,
    pub per_worker: BTreeMap<String, WorkerSummary>,
    pub labels: BTreeMap<String, u64>,
    /// End-to-end latency percentiles of ok results, seconds.
    pub latency_p50_s: Option<f64>,
    pub latency_p99_s: Option<f64>,
}

#[derive(Debug, Default)]
struct Inner {
    seen: HashSet<String>,
    order: VecDeque<String>,
    summary: Summary,
    latencies: VecDeque<f64>,
    recent: VecDeque<f64>,
    ids: Vec<(String, Option<u64>, Status)>,
    keep_ids: bool,
}

/// Shared, thread-safe aggregates.
#[derive(Debug, Default)]
pub struct SinkStats {
    inner: Mutex<Inner>,
}

impl SinkStats {
    /// Also keep every result's `(camera, seq, status)`, for checkers.
    #[must_use]
    pub fn keeping_ids() -> Self {
        let s = Self::default();
        s.lock().keep_ids = true;
        s
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records `r` unless its id was seen before; returns whether it was new.
    pub fn record(&self, r: &ResultMessage, e2e: Option<f64>) -> bool {
        let mut g = self.lock();
        let id = r.msg_id();
        if g.seen.contains(&id) {
            g.summary.duplicates += 1;
            return false;
        }
        g.seen.insert(id.clone());
        g.order.push_back(id);
        if g.order.len() > DEDUPE_CAPACITY
            && let Some(old) = g.order.pop_front()
        {
            g.seen.remove(&old);
        }
        if g.keep_ids {
            g.ids.push((r.camera.to_string(), r.seq, r.status));
        }
        let s = &mut g.summary;
        s.results += 1;
        let w = s.per_worker.entry(r.worker.to_string()).or_default();
        w.arch.clone_from(&r.arch);
        w.device_label.clone_from(&r.device_label);
        w.slowdown = r.slowdown;
        w.results += 1;
        w.busy_ms += r.timings.total_ms;
        match r.status {
            Status::Ok => {
                s.ok += 1;
                w.ok += 1;
                for d in &r.detections {
                    *s.labels.entry(d.label.clone()).or_default() += 1;
                }
            }
            Status::Error => {
                s.errors += 1;
                w.errors += 1;
            }
            Status::Stale => {
                s.stale += 1;
                w.stale += 1;
            }
        }
        if r.status == Status::Ok
            && let Some(l) = e2e
        {
            g.latencies.push_back(l);
            if g.latencies.len() > MAX_SAMPLES {
                g.latencies.pop_front();
            }
            g.recent.push_back(l);
            if g.recent.len() > RECENT_SAMPLES {
                g.recent.pop_front();
            }
        }
        true
    }

    pub fn invalid(&self) {
        self.lock().summary.invalid += 1;
    }

    /// A snapshot with latency percentiles.
    #[must_use]
    pub fn summary(&self) -> Summary {
        let g = self.lock();
        let mut s = g.summary.clone();
        let mut l: Vec<f64> = g.latencies.iter().copied().collect();
        drop(g);
        l.sort_by(f64::total_cmp);
        s.latency_p50_s = percentile(&l, 0.50);
        s.latency_p99_s = percentile(&l, 0.99);
        s
    }

    /// End-to-end latency p50 and p99 of the last [`RECENT_SAMPLES`] `ok` results, and how many
    /// there were.
    #[must_use]
    pub fn recent_latency(&self) -> (Option<f64>, Option<f64>, usize) {
        let mut l: Vec<f64> = self.lock().recent.iter().copied().collect();
        l.sort_by(f64::total_cmp);
        (percentile(&l, 0.50), percentile(&l, 0.99), l.len())
    }

    /// Every result's `(camera, seq, status)` (only with [`SinkStats::keeping_ids`]).
    #[must_use]
    pub fn ids(&self) -> Vec<(String, Option<u64>, Status)> {
        self.lock().ids.clone()
    }
}

/// Nearest-rank percentile of sorted samples.
#[must_use]
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile(&[3.0], 0.99), Some(3.0));
    }
}
