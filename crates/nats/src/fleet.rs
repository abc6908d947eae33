//! The fleet at a glance, as `edgepool status` prints it and the sink's live page shows it:
//! workers and their share (the registry bucket `edgepool_fleet`), queue depth (the `detectors`
//! consumer), the cameras' publish rate (FRAMES' last sequence over time), and how many replicas
//! of each architecture would keep up.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer;
use async_nats::jetstream::context::{ConsumerInfoErrorKind, GetStreamError, GetStreamErrorKind, KeyValueErrorKind};
use futures::StreamExt;
use serde::Serialize;

use edgepool_wire::fleet::{BUCKET, WorkerEntry};

use crate::{DETECTORS, FRAMES};

/// Replicas hint for one architecture.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ArchSizing {
    pub arch: String,
    pub replicas: usize,
    /// Mean measured capacity of one replica (frames/s when busy).
    pub capacity_per_replica_fps: Option<f64>,
    /// Replicas of this arch alone that would keep up with the publish rate.
    pub replicas_alone: Option<u64>,
    /// Extra replicas of this arch that would close today's shortfall (0 when keeping up).
    pub add_to_keep_up: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub workers: Vec<WorkerEntry>,
    /// Share of the fleet's recent frames per worker id.
    pub share: BTreeMap<String, f64>,
    pub fleet_fps: f64,
    pub fleet_capacity_fps: f64,
    pub publish_fps: f64,
    pub pending: u64,
    pub ack_pending: u64,
    pub waiting_pulls: u64,
    pub redelivered: u64,
    pub sizing: Vec<ArchSizing>,
}

/// Sizing hints from the fleet and the publish rate.
#[must_use]
pub fn sizing(workers: &[WorkerEntry], publish_fps: f64) -> Vec<ArchSizing> {
    let fleet_capacity: f64 = workers.iter().filter_map(|w| w.capacity_fps).sum();
    let shortfall = (publish_fps - fleet_capacity).max(0.0);
    let mut by_arch: BTreeMap<&str, Vec<&WorkerEntry>> = BTreeMap::new();
    for w in workers {
        by_arch.entry(&w.arch).or_default().push(w);
    }
    by_arch
        .into_iter()
        .map(|(arch, ws)| {
            let caps: Vec<f64> = ws.iter().filter_map(|w| w.capacity_fps).collect();
            let per = (!caps.is_empty()).then(|| caps.iter().sum::<f64>() / caps.len() as f64).filter(|c| *c > 0.0);
            ArchSizing {
                arch: arch.to_owned(),
                replicas: ws.len(),
                capacity_per_replica_fps: per,
                replicas_alone: per.map(|c| (publish_fps / c).ceil() as u64),
                add_to_keep_up: per.map(|c| (shortfall / c).ceil() as u64),
            }
        })
        .collect()
}

/// One reading of the registry, the queue and FRAMES' last sequence; two readings give the
/// publish rate.
#[derive(Debug, Clone)]
pub struct Observation {
    pub at: Instant,
    pub workers: Vec<WorkerEntry>,
    pub last_sequence: u64,
    pub consumer: consumer::Info,
}

impl Observation {
    /// The status from this reading and an `earlier` one (the publish rate is 0 without one).
    #[must_use]
    pub fn status(self, earlier: Option<&Observation>) -> Status {
        let publish_fps = earlier
            .map(|e| {
                let dt = self.at.duration_since(e.at).as_secs_f64();
                if dt > 0.0 { self.last_sequence.saturating_sub(e.last_sequence) as f64 / dt } else { 0.0 }
            })
            .unwrap_or(0.0);
        let workers = self.workers;
        let c = self.consumer;
        let fleet_fps: f64 = workers.iter().map(|w| w.fps).sum();
        let share =
            workers.iter().map(|w| (w.id.clone(), if fleet_fps > 0.0 { w.fps / fleet_fps } else { 0.0 })).collect();
        Status {
            sizing: sizing(&workers, publish_fps),
            fleet_capacity_fps: workers.iter().filter_map(|w| w.capacity_fps).sum(),
            workers,
            share,
            fleet_fps,
            publish_fps,
            pending: c.num_pending,
            ack_pending: c.num_ack_pending as u64,
            waiting_pulls: c.num_waiting as u64,
            redelivered: c.num_redelivered as u64,
        }
    }
}

/// The fix when a definition of `nats/` is missing. Any other failure (timeout, lost connection,
/// permissions) keeps its own error and does not send the reader to `edgepool setup`.
const RUN_SETUP: &str = "run `edgepool setup` first";

fn stream_missing(e: &GetStreamError) -> bool {
    matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Reads the registry, the consumer and the publish rate.
pub async fn collect(js: &async_nats::jetstream::Context, sample: Duration) -> anyhow::Result<Status> {
    let first = observe(js).await?;
    tokio::time::sleep(sample).await;
    let second = observe(js).await?;
    Ok(second.status(Some(&first)))
}

/// Reads the registry, the consumer and FRAMES' last sequence once.
pub async fn observe(js: &async_nats::jetstream::Context) -> anyhow::Result<Observation> {
    let kv = js.get_key_value(BUCKET).await.map_err(|e| {
        let missing = matches!(e.kind(), KeyValueErrorKind::GetBucket)
            && std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<GetStreamError>())
                .is_some_and(stream_missing);
        let what = format!("reading the fleet registry bucket {BUCKET}");
        anyhow::Error::new(e).context(if missing { format!("{what}: it does not exist; {RUN_SETUP}") } else { what })
    })?;
    let mut workers = Vec::new();
    let mut keys = kv.keys().await.with_context(|| format!("listing the fleet registry bucket {BUCKET}"))?;
    while let Some(k) = keys.next().await {
        let Ok(k) = k else { continue };
        if let Ok(Some(v)) = kv.get(&k).await
            && let Ok(e) = serde_json::from_slice::<WorkerEntry>(&v)
        {
            workers.push(e);
        }
    }
    workers.sort_by(|a, b| a.arch.cmp(&b.arch).then(a.id.cmp(&b.id)));
    let stream = js.get_stream(FRAMES).await.map_err(|e| {
        let what = format!("reading stream {FRAMES}");
        let missing = stream_missing(&e);
        anyhow::Error::new(e).context(if missing { format!("{what}: it does not exist; {RUN_SETUP}") } else { what })
    })?;
    let last_sequence = stream.get_info().await.context("reading FRAMES' state")?.state.last_sequence;
    let c = stream.consumer_info(DETECTORS).await.map_err(|e| {
        let missing = match e.kind() {
            ConsumerInfoErrorKind::NotFound | ConsumerInfoErrorKind::StreamNotFound => true,
            ConsumerInfoErrorKind::JetStream(j) => j.error_code() == ErrorCode::CONSUMER_NOT_FOUND,
            _ => false,
        };
        let what = format!("reading consumer {DETECTORS} of {FRAMES}");
        anyhow::Error::new(e).context(if missing { format!("{what}: it does not exist; {RUN_SETUP}") } else { what })
    })?;
    Ok(Observation { at: Instant::now(), workers, last_sequence, consumer: c })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(id: &str, arch: &str, cap: Option<f64>) -> WorkerEntry {
        WorkerEntry {
            id: id.into(),
            arch: arch.into(),
            label: None,
            slots: 1,
            slowdown: 1.0,
            model: "m".into(),
            fps: 0.0,
            capacity_fps: cap,
            busy_ratio: 0.0,
            frames_total: 0,
            updated_at: time::OffsetDateTime::UNIX_EPOCH,
            device: None,
        }
    }

    #[test]
    fn sizing_per_arch() {
        let ws = [w("a", "x86_64", Some(10.0)), w("b", "aarch64", Some(1.0)), w("c", "aarch64", Some(3.0))];
        let s = sizing(&ws, 20.0);
        let arm = s.iter().find(|a| a.arch == "aarch64").unwrap();
        assert_eq!(arm.capacity_per_replica_fps, Some(2.0));
        assert_eq!(arm.replicas_alone, Some(10));
        assert_eq!(arm.add_to_keep_up, Some(3), "shortfall 20 - 14 = 6 frames/s at 2 each");
        let x86 = s.iter().find(|a| a.arch == "x86_64").unwrap();
        assert_eq!((x86.replicas_alone, x86.add_to_keep_up), (Some(2), Some(1)));
        let keeping_up = sizing(&ws, 5.0);
        assert!(keeping_up.iter().all(|a| a.add_to_keep_up == Some(0)));
    }
}
