//! The fault scenarios of issue #5. Each builds a [`Rig`], runs cameras through it, injects its
//! fault, settles, and checks with the [`checker`](super::checker). Quick sizes are what CI runs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;

use edgepool_nats::FRAMES;
use edgepool_wire::frame::header;
use edgepool_wire::{CameraId, Status};

use super::ChaosArgs;
use super::checker::{Observed, Report};
use super::corpus::{self, Expect};
use super::rig::{Rig, RigOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// kill -9 workers mid-frame, several times; replacements start at once.
    WorkerCrash,
    /// kill -9 the broker (file store) mid-run and start it again.
    BrokerKill,
    /// Graceful restart (SIGTERM) of the broker mid-run.
    BrokerRestart,
    /// 3-node JetStream cluster, R3 streams; kill -9 the FRAMES leader mid-run.
    Cluster,
    /// The broker goes away under a live camera, then comes back.
    CameraOffline,
    /// ≥ 1000 generated malformed frames interleaved with good ones.
    BadInput,
    /// SIGTERM a worker under load: it drains, nothing is redelivered.
    Drain,
    /// Publish throughput at sync_interval always / 2s / 2m (the durability trade-off).
    Sync,
    /// Long run at ~70 % of fleet capacity, kill -9 a worker every minute, RSS drift.
    Soak,
    /// Every scenario above except sync and soak.
    All,
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = clap::ValueEnum::to_possible_value(self).map(|v| v.get_name().to_owned()).unwrap_or_default();
        f.write_str(&v)
    }
}

impl Scenario {
    /// `all` expanded, duplicates removed, order kept.
    #[must_use]
    pub fn expand(list: &[Self]) -> Vec<Self> {
        let every = [
            Self::WorkerCrash,
            Self::BrokerKill,
            Self::BrokerRestart,
            Self::Cluster,
            Self::CameraOffline,
            Self::BadInput,
            Self::Drain,
        ];
        let mut out = Vec::new();
        for s in list {
            let add: &[Self] = if *s == Self::All { &every } else { std::slice::from_ref(s) };
            for a in add {
                if !out.contains(a) {
                    out.push(*a);
                }
            }
        }
        out
    }

    /// One line on what the scenario does, at this size.
    #[must_use]
    pub fn describe(self, quick: bool) -> String {
        let z = Size::of(self, quick);
        match self {
            Self::WorkerCrash => format!(
                "{} frames at {} fps into 2 one-slot workers; kill -9 a busy worker every {:?} ({} times), \
                 a replacement starts at once",
                z.frames, z.fps, z.every, z.faults
            ),
            Self::BrokerKill => format!(
                "{} frames at {} fps; kill -9 nats-server after {:?}, down {:?}, restart",
                z.frames, z.fps, z.at, z.down
            ),
            Self::BrokerRestart => format!(
                "{} frames at {} fps; SIGTERM nats-server after {:?}, down {:?}, restart",
                z.frames, z.fps, z.at, z.down
            ),
            Self::Cluster => format!(
                "3-node cluster, R3 streams; {} frames at {} fps; kill -9 the FRAMES leader after {:?}",
                z.frames, z.fps, z.at
            ),
            Self::CameraOffline => format!(
                "camera at {} fps, max 8 in flight; broker killed after {:?} for {:?}, then back",
                z.fps, z.at, z.down
            ),
            Self::BadInput => {
                format!("{} malformed frames interleaved with {} good ones into one worker", z.faults, z.frames)
            }
            Self::Drain => format!("{} frames at {} fps into 2 workers; SIGTERM one after {:?}", z.frames, z.fps, z.at),
            Self::Sync => {
                "raw publish throughput (64 in flight, 100 KB) at sync_interval always, 2s, 2m; kill -9 + restart each"
                    .into()
            }
            Self::Soak => "~70 % of measured fleet capacity; kill -9 a worker every minute \
                 (one worker never killed: its RSS drift)"
                .into(),
            Self::All => "every scenario".into(),
        }
    }
}

/// Sizes of a scenario run.
#[derive(Debug, Clone, Copy)]
struct Size {
    frames: u64,
    fps: f64,
    /// When the fault happens, after the cameras start.
    at: Duration,
    /// How long the broker stays down.
    down: Duration,
    /// Interval between repeated faults.
    every: Duration,
    /// How many faults (kills, or malformed frames for bad-input).
    faults: u64,
    ack_wait: Duration,
}

impl Size {
    fn of(s: Scenario, quick: bool) -> Self {
        let base = Self {
            frames: if quick { 60 } else { 300 },
            fps: 4.0,
            at: Duration::from_secs(if quick { 5 } else { 20 }),
            down: Duration::from_secs(if quick { 3 } else { 10 }),
            every: Duration::from_secs(if quick { 4 } else { 10 }),
            faults: if quick { 3 } else { 8 },
            ack_wait: Duration::from_secs(if quick { 4 } else { 10 }),
        };
        match s {
            // A backlog keeps both one-slot workers busy, so every kill lands mid-frame.
            Scenario::WorkerCrash => Self {
                frames: if quick { 100 } else { 800 },
                fps: if quick { 12.0 } else { 40.0 },
                every: Duration::from_secs(if quick { 4 } else { 5 }),
                ..base
            },
            Scenario::CameraOffline => Self {
                frames: if quick { 80 } else { 300 },
                fps: 5.0,
                at: Duration::from_secs(if quick { 3 } else { 10 }),
                down: Duration::from_secs(if quick { 6 } else { 30 }),
                ..base
            },
            Scenario::BadInput => {
                Self { frames: if quick { 50 } else { 300 }, faults: if quick { 1000 } else { 5000 }, ..base }
            }
            Scenario::Drain => {
                Self { frames: if quick { 40 } else { 200 }, fps: 12.0, at: Duration::from_secs(3), ..base }
            }
            _ => base,
        }
    }
}

/// One scenario's outcome: the checker's verdict plus what the scenario measured and expects.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    pub scenario: Scenario,
    pub quick: bool,
    pub what: String,
    /// Frames offered to the pipeline (published or attempted).
    pub frames: u64,
    pub check: Report,
    /// Fault to first result after it (or after the broker was back), seconds.
    pub recovery_s: Option<f64>,
    /// Scenario-specific figures.
    pub figures: BTreeMap<String, f64>,
    /// Scenario-specific expectations and whether they held.
    pub expectations: Vec<(String, bool)>,
    pub passed: bool,
    /// The run's directory when kept.
    pub dir: Option<String>,
}

impl ScenarioReport {
    fn new(scenario: Scenario, quick: bool, frames: u64, check: Report) -> Self {
        Self {
            scenario,
            quick,
            what: scenario.describe(quick),
            frames,
            check,
            recovery_s: None,
            figures: BTreeMap::new(),
            expectations: Vec::new(),
            passed: false,
            dir: None,
        }
    }

    fn expect(&mut self, what: impl Into<String>, held: bool) {
        self.expectations.push((what.into(), held));
    }

    fn figure(&mut self, name: &str, v: f64) {
        self.figures.insert(name.to_owned(), (v * 1000.0).round() / 1000.0);
    }

    fn seal(mut self, checked: bool) -> Self {
        self.passed = (!checked || self.check.passed()) && self.expectations.iter().all(|(_, ok)| *ok);
        self
    }

    /// Human-readable lines.
    pub fn print(&self) {
        println!("{}: {}", self.scenario, if self.passed { "PASS" } else { "FAIL" });
        println!("  {}", self.check.line());
        if let Some(r) = self.recovery_s {
            println!("  recovery {r:.2} s");
        }
        for (k, v) in &self.figures {
            println!("  {k} = {v}");
        }
        for (what, ok) in &self.expectations {
            println!("  [{}] {what}", if *ok { "ok" } else { "FAILED" });
        }
        if !self.check.lost_examples.is_empty() {
            println!("  lost: {}", self.check.lost_examples.join(", "));
        }
        if !self.check.duplicate_examples.is_empty() {
            println!("  duplicated: {}", self.check.duplicate_examples.join(", "));
        }
        if let Some(d) = &self.dir {
            println!("  logs: {d}");
        }
    }
}

/// The docs table: scenario, what was done, frames, acked, lost, duplicates, recovery.
#[must_use]
pub fn table(reports: &[ScenarioReport]) -> String {
    let mut s = String::from(
        "| scenario | what was done | frames | acked | results | dead letters | lost | duplicates | redelivered | \
         recovery | verdict |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        let c = &r.check;
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.scenario,
            r.what,
            r.frames,
            c.acked,
            c.results,
            c.deadlettered,
            c.lost,
            c.duplicates,
            c.redelivered,
            r.recovery_s.map_or_else(|| "–".into(), |v| format!("{v:.2} s")),
            if r.passed { "pass" } else { "FAIL" }
        ));
    }
    s
}

/// Runs one scenario.
pub async fn run(s: Scenario, server: &Path, args: &ChaosArgs) -> anyhow::Result<ScenarioReport> {
    let z = Size::of(s, args.quick);
    let opts = RigOptions {
        nodes: if s == Scenario::Cluster { 3 } else { 1 },
        sync_interval: None,
        ack_wait: z.ack_wait,
        photos: args.photos.clone(),
    };
    if s == Scenario::Sync {
        return Box::pin(sync_interval(server, args)).await;
    }
    let mut rig = Rig::start(server, opts).await?;
    let result = match s {
        Scenario::WorkerCrash => worker_crash(&mut rig, z).await,
        Scenario::BrokerKill => broker_fault(&mut rig, z, true).await,
        Scenario::BrokerRestart => broker_fault(&mut rig, z, false).await,
        Scenario::Cluster => cluster(&mut rig, z).await,
        Scenario::CameraOffline => camera_offline(&mut rig, z).await,
        Scenario::BadInput => bad_input(&mut rig, z).await,
        Scenario::Drain => drain(&mut rig, z).await,
        Scenario::Soak => soak(&mut rig, args.duration, args.quick).await,
        Scenario::Sync | Scenario::All => unreachable!("handled above"),
    };
    let mut report = match result {
        Ok(mut r) => {
            r.quick = args.quick;
            r.what = s.describe(args.quick);
            r
        }
        Err(e) => {
            let dir = rig.keep();
            return Err(e.context(format!("scenario {s} (logs kept in {})", dir.display())));
        }
    };
    if args.keep || !report.passed {
        report.dir = Some(rig.keep().display().to_string());
    }
    Ok(report)
}

/// Standard start: sink, `workers` one-slot workers.
async fn components(rig: &mut Rig, workers: usize) -> anyhow::Result<()> {
    rig.start_sink().await?;
    for _ in 0..workers {
        rig.add_worker(&[]).await?;
    }
    Ok(())
}

fn settle_limit(z: Size) -> Duration {
    Duration::from_secs_f64(z.frames as f64 / z.fps) + Duration::from_secs(90)
}

async fn worker_crash(rig: &mut Rig, z: Size) -> anyhow::Result<ScenarioReport> {
    components(rig, 2).await?;
    rig.start_camera("c1", z.frames, z.fps, 32)?;
    let mut kills: Vec<OffsetDateTime> = Vec::new();
    rig.pause(Duration::from_secs(2)).await;
    for _ in 0..z.faults {
        // The oldest live worker: with a backlog it is in the middle of a frame.
        let victim = rig.workers.iter_mut().position(|w| !w.exited()).unwrap_or(0);
        rig.workers[victim].kill().await;
        kills.push(OffsetDateTime::now_utc());
        rig.respawn_worker(&[])?;
        rig.pause(z.every).await;
    }
    rig.settle(settle_limit(z) + z.ack_wait * 2).await?;
    let check = rig.finish().await?;
    let observed = Observed::read(&rig.js, None).await?;
    // Redelivery delay: from the kill before it to the moment a worker took the frame again.
    let mut worst: f64 = 0.0;
    for r in observed.results.values().flatten().filter(|r| r.delivery > 1) {
        let taken = r.processed_at - time::Duration::seconds_f64(r.timings.total_ms / 1e3);
        if let Some(kill) = kills.iter().rev().find(|k| **k <= taken) {
            worst = worst.max((taken - *kill).as_seconds_f64());
        }
    }
    let frames = camera_published(rig, "c1");
    let mut rep = ScenarioReport::new(Scenario::WorkerCrash, false, frames, check);
    rep.figure("kills", kills.len() as f64);
    rep.figure("ack_wait_s", z.ack_wait.as_secs_f64());
    rep.figure("redelivery_max_s", worst);
    rep.recovery_s = Some(worst);
    let margin = 5.0;
    rep.expect(
        format!("each kill left a frame to redeliver (redelivered {} ≥ 1)", rep.check.redelivered),
        rep.check.redelivered >= 1,
    );
    rep.expect(
        format!("redelivered within ack_wait + {margin} s (worst {worst:.2} s)"),
        worst <= z.ack_wait.as_secs_f64() + margin,
    );
    Ok(rep.seal(true))
}

async fn broker_fault(rig: &mut Rig, z: Size, kill: bool) -> anyhow::Result<ScenarioReport> {
    components(rig, 2).await?;
    rig.start_camera("c1", z.frames, z.fps, 32)?;
    rig.pause(z.at).await;
    let fault = Instant::now();
    if kill {
        rig.broker.kill(0);
    } else {
        rig.broker.stop(0);
    }
    rig.pause(z.down).await;
    rig.broker.restart(0)?;
    let startup = rig.broker.wait_ready(0).await?;
    let back = Instant::now();
    let first = rig.wait_results_after(back, Duration::from_secs(60)).await;
    rig.settle(settle_limit(z)).await?;
    let check = rig.finish().await?;
    let frames = camera_published(rig, "c1");
    let scenario = if kill { Scenario::BrokerKill } else { Scenario::BrokerRestart };
    let mut rep = ScenarioReport::new(scenario, false, frames, check);
    rep.figure("broker_down_s", (back - fault).as_secs_f64());
    rep.figure("broker_startup_s", startup.as_secs_f64());
    rep.figure("first_result_after_restart_s", first.map_or(-1.0, |d| d.as_secs_f64()));
    rep.recovery_s = first.map(|d| d.as_secs_f64());
    rep.expect("results flow again after the restart (workers and sink reconnected)", first.is_some());
    camera_figures(rig, &mut rep, "c1");
    Ok(rep.seal(true))
}

async fn cluster(rig: &mut Rig, z: Size) -> anyhow::Result<ScenarioReport> {
    components(rig, 2).await?;
    rig.start_camera("c1", z.frames, z.fps, 32)?;
    rig.pause(z.at).await;
    let info = rig.js.get_stream(FRAMES).await?.info().await?.clone();
    let leader = info.cluster.and_then(|c| c.leader).unwrap_or_default();
    let victim = (0..rig.broker.len()).find(|i| rig.broker.name(*i) == leader).unwrap_or(0);
    let fault = Instant::now();
    rig.broker.kill(victim);
    let first = rig.wait_results_after(fault, Duration::from_secs(60)).await;
    rig.settle(settle_limit(z)).await?;
    let check = rig.finish().await?;
    let frames = camera_published(rig, "c1");
    let mut rep = ScenarioReport::new(Scenario::Cluster, false, frames, check);
    rep.figure("killed_node_was_frames_leader", f64::from(u8::from(rig.broker.name(victim) == leader)));
    rep.figure("first_result_after_kill_s", first.map_or(-1.0, |d| d.as_secs_f64()));
    rep.recovery_s = first.map(|d| d.as_secs_f64());
    rep.expect(format!("killed the FRAMES leader ({leader})"), !leader.is_empty());
    rep.expect("the pipeline continued on two nodes", first.is_some());
    camera_figures(rig, &mut rep, "c1");
    Ok(rep.seal(true))
}

async fn camera_offline(rig: &mut Rig, z: Size) -> anyhow::Result<ScenarioReport> {
    components(rig, 1).await?;
    rig.start_camera("c1", z.frames, z.fps, 8)?;
    rig.pause(z.at).await;
    let rss_before = camera_rss(rig);
    rig.broker.kill(0);
    let offline_from = rig.started.elapsed().as_secs_f64();
    rig.pause(z.down).await;
    let offline_to = rig.started.elapsed().as_secs_f64();
    rig.broker.restart(0)?;
    rig.broker.wait_ready(0).await?;
    let back = Instant::now();
    let first = rig.wait_results_after(back, Duration::from_secs(60)).await;
    rig.settle(settle_limit(z)).await?;
    let check = rig.finish().await?;
    let frames = camera_published(rig, "c1");
    let during: Vec<f64> = rig
        .rss
        .get("camera-c1")
        .map(|v| v.iter().filter(|(t, _)| *t >= offline_from && *t <= offline_to).map(|(_, m)| *m).collect())
        .unwrap_or_default();
    let rss_peak = during.iter().copied().fold(0.0, f64::max);
    let mut rep = ScenarioReport::new(Scenario::CameraOffline, false, frames, check);
    rep.recovery_s = first.map(|d| d.as_secs_f64());
    camera_figures(rig, &mut rep, "c1");
    rep.figure("camera_rss_before_mib", rss_before);
    rep.figure("camera_rss_peak_offline_mib", rss_peak);
    let dropped = rep.figures.get("camera_dropped").copied().unwrap_or(0.0);
    let failed = rep.figures.get("camera_failed").copied().unwrap_or(0.0);
    let acked_after = rig.acked.frames.iter().filter(|(_, seq)| *seq as f64 > z.fps * offline_to).count();
    rep.figure("acked_after_outage", acked_after as f64);
    rep.expect(
        format!("frames beyond the in-flight bound were dropped and counted (dropped {dropped}, failed {failed})"),
        dropped > 0.0,
    );
    rep.expect(
        format!("camera memory stayed bounded while offline (+{:.1} MiB ≤ 16)", rss_peak - rss_before),
        rss_before > 0.0 && rss_peak - rss_before <= 16.0,
    );
    rep.expect(format!("the camera resumed ({acked_after} frames acked after the outage)"), acked_after > 0);
    Ok(rep.seal(true))
}

async fn bad_input(rig: &mut Rig, z: Size) -> anyhow::Result<ScenarioReport> {
    components(rig, 1).await?;
    // Most malformed frames carry a whole photo, and DEADLETTER keeps 1 GiB (discard old): the
    // full corpus would evict its own first dead letters by that policy before the check
    // (4 GiB: with FRAMES and DETECTIONS, the most the server's 8 GB file store reserves).
    let mut dl = rig.js.get_stream(edgepool_nats::DEADLETTER).await?.info().await?.config.clone();
    dl.max_bytes = 4 << 30;
    rig.js.update_stream(dl).await?;
    let images = edgepool::cmd::load_images(std::slice::from_ref(&rig.opts.photos))?;
    let camera = CameraId::new("bad")?;
    // The smaller of the server's max_payload and FRAMES' max_msg_size (equal in nats/).
    let max_msg = rig.js.get_stream(FRAMES).await?.info().await?.config.max_message_size;
    let server_max = rig.client.server_info().max_payload;
    let max_payload = usize::try_from(max_msg).ok().filter(|m| *m > 0).map_or(server_max, |m| m.min(server_max));
    // Good frames use seqs from 1, bad ones from 1_000_000: both are known to the checker.
    let bad = corpus::generate(&images, &camera, 1_000_000, usize::try_from(z.faults)?, max_payload, 0x5eed);
    let good_every = (bad.len() / usize::try_from(z.frames.max(1))?).max(1);
    let mut expected: BTreeMap<u64, (&'static str, &'static str)> = BTreeMap::new();
    let mut by_stream_seq_expected: BTreeMap<u64, (&'static str, &'static str)> = BTreeMap::new();
    let mut refused_ok = 0u64;
    let mut refused_acked = 0u64;
    let mut good_seq = 1u64;
    let mut good_keys = Vec::new();
    let good_camera = CameraId::new("good")?;
    let mut sent = 0u64;
    for (i, b) in bad.iter().enumerate() {
        if i % good_every == 0 && good_seq <= z.frames {
            let (_, ct, bytes) = &images[usize::try_from(good_seq)? % images.len()];
            let meta = edgepool_wire::FrameMeta {
                camera: good_camera.clone(),
                seq: edgepool_wire::FrameSeq(good_seq),
                captured_at: OffsetDateTime::now_utc(),
                content_type: *ct,
                traceparent: None,
                trigger: None,
                motion_regions: Vec::new(),
                deadline: None,
                raw_size: None,
            };
            let h = edgepool_nats::frame_headers(&meta)?;
            rig.js.publish_with_headers(format!("frames.{good_camera}"), h, bytes.clone()).await?.await?;
            rig.acked.frames.insert((good_camera.to_string(), good_seq));
            good_keys.push(good_seq);
            good_seq += 1;
            sent += 1;
        }
        sent += 1;
        // Restamped at publish: the corpus is generated up front, and a frame older than the
        // worker's staleness bound would be answered `stale` instead of its error.
        let headers = b.stamped_headers(OffsetDateTime::now_utc());
        let published = match rig.js.publish_with_headers(b.subject.clone(), headers, b.payload.clone()).await {
            Ok(ack) => ack.await.ok(),
            Err(_) => None,
        };
        match (&b.expect, published) {
            (Expect::RefusedByBroker, None) => refused_ok += 1,
            (Expect::RefusedByBroker, Some(_)) => refused_acked += 1,
            (Expect::Poison { .. }, None) => anyhow::bail!("the broker refused a {} frame it should store", b.case),
            (Expect::Poison { kind }, Some(ack)) => {
                let h = Some(&b.headers);
                let camera_ok =
                    edgepool_wire::frame::subject_token(&b.subject).is_some_and(|t| CameraId::new(t).is_ok());
                let seq = edgepool_nats::header_str(h, header::SEQ).and_then(|s| s.trim().parse::<u64>().ok());
                match (camera_ok, seq) {
                    (true, Some(seq)) => {
                        let cam = edgepool_wire::frame::subject_token(&b.subject).unwrap_or_default().to_owned();
                        rig.acked.frames.insert((cam, seq));
                        expected.insert(seq, (b.case, kind));
                    }
                    _ => {
                        rig.acked.by_stream_seq.insert(ack.sequence);
                        by_stream_seq_expected.insert(ack.sequence, (b.case, kind));
                    }
                }
            }
        }
        if i % 50 == 0 {
            rig.sample_rss();
            // Stay well under FRAMES' per-camera cap (1000, discard old): a deeper backlog would
            // be trimmed by policy, which is not what this scenario tests.
            while rig.js.get_stream(FRAMES).await?.consumer_info(edgepool_nats::DETECTORS).await?.num_pending > 400 {
                rig.pause(Duration::from_millis(200)).await;
            }
        }
    }
    let settle = Duration::from_secs(120) + Duration::from_secs_f64(z.frames as f64 / 2.0);
    rig.settle(settle).await?;
    let rss: Vec<f64> = rig.rss.get("w1").map(|v| v.iter().map(|(_, m)| *m).collect()).unwrap_or_default();
    let crashed = rig.workers.iter_mut().any(|w| w.exited());
    let check = rig.finish().await?;
    let observed = Observed::read(&rig.js, None).await?;
    let mut wrong: Vec<String> = Vec::new();
    let mut check_kind = |name: String,
                          results: Option<&Vec<edgepool_wire::ResultMessage>>,
                          dead: Option<&Vec<super::checker::DeadLetter>>,
                          case: &str,
                          kind: &str| {
        let r_ok = results.is_some_and(|v| {
            v.iter().all(|r| r.status == Status::Error && r.error.as_ref().is_some_and(|e| e.kind == kind))
        });
        let d_ok = dead.is_some_and(|v| v.iter().all(|d| d.kind == kind));
        if !(r_ok && d_ok) && wrong.len() < 20 {
            let got = results
                .and_then(|v| v.first())
                .map(|r| format!("{:?}/{}", r.status, r.error.as_ref().map_or("", |e| e.kind.as_str())));
            wrong.push(format!(
                "{name} ({case}): expected {kind}, result {got:?}, dead letter {:?}",
                dead.and_then(|v| v.first()).map(|d| d.kind.clone())
            ));
        }
    };
    let mut bad_checked = 0;
    for (seq, (case, kind)) in &expected {
        let key = ("bad".to_owned(), *seq);
        check_kind(format!("bad/{seq}"), observed.results.get(&key), observed.dead.get(&key), case, kind);
        bad_checked += 1;
    }
    for (s, (case, kind)) in &by_stream_seq_expected {
        check_kind(
            format!("stream seq {s}"),
            observed.results_by_stream_seq.get(s),
            observed.dead_by_stream_seq.get(s),
            case,
            kind,
        );
        bad_checked += 1;
    }
    let good_ok = good_keys
        .iter()
        .filter(|s| {
            observed.results.get(&("good".to_owned(), **s)).is_some_and(|v| v.iter().all(|r| r.status == Status::Ok))
        })
        .count();
    let mut rep = ScenarioReport::new(Scenario::BadInput, false, sent, check);
    rep.figure("malformed", bad.len() as f64);
    rep.figure("good", good_keys.len() as f64);
    rep.figure("refused_by_broker", refused_ok as f64);
    rep.figure("worker_rss_first_mib", rss.first().copied().unwrap_or(0.0));
    rep.figure("worker_rss_half_mib", rss.get(rss.len() / 2).copied().unwrap_or(0.0));
    rep.figure("worker_rss_max_mib", rss.iter().copied().fold(0.0, f64::max));
    rep.figure("worker_rss_last_mib", rss.last().copied().unwrap_or(0.0));
    let cases = super::checker::tally(bad.iter().map(|b| b.case));
    for (case, n) in &cases {
        rep.figure(&format!("case_{case}"), *n as f64);
    }
    rep.expect(format!("≥ 1000 malformed frames ({})", bad.len()), bad.len() >= 1000 || rep.quick);
    rep.expect(
        format!(
            "every malformed frame answered with its error kind and dead-lettered with it ({} checked, {} wrong)",
            bad_checked,
            wrong.len()
        ),
        wrong.is_empty(),
    );
    rep.expect(
        format!("payloads over max_payload refused by the broker ({refused_ok} refused, {refused_acked} stored)"),
        refused_acked == 0,
    );
    rep.expect(
        format!("every good frame got an ok result ({good_ok}/{})", good_keys.len()),
        good_ok == good_keys.len(),
    );
    rep.expect("the worker never exited (0 crashes)", !crashed);
    let max = rss.iter().copied().fold(0.0, f64::max);
    rep.expect(format!("worker RSS bounded (max {max:.1} MiB ≤ 512)"), max > 0.0 && max <= 512.0);
    for w in wrong {
        rep.expect(w, false);
    }
    Ok(rep.seal(true))
}

async fn drain(rig: &mut Rig, z: Size) -> anyhow::Result<ScenarioReport> {
    components(rig, 2).await?;
    rig.start_camera("c1", z.frames, z.fps, 32)?;
    rig.pause(z.at).await;
    // SIGTERM while both one-slot workers hold a frame, so the drain has something to finish.
    let mut held = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let c = rig.js.get_stream(FRAMES).await?.consumer_info(edgepool_nats::DETECTORS).await?;
        held = c.num_ack_pending;
        if held >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let clean = rig.workers[0].terminate(Duration::from_secs(40)).await;
    let took = started.elapsed();
    rig.settle(settle_limit(z)).await?;
    let check = rig.finish().await?;
    let frames = camera_published(rig, "c1");
    let mut rep = ScenarioReport::new(Scenario::Drain, false, frames, check);
    rep.figure("drain_s", took.as_secs_f64());
    rep.figure("frames_held_at_sigterm", held as f64);
    rep.expect(format!("SIGTERM came while the workers held frames ({held})"), held >= 1);
    rep.expect("the worker exited 0 after SIGTERM", clean);
    rep.expect(format!("no redeliveries ({})", rep.check.redelivered), rep.check.redelivered == 0);
    Ok(rep.seal(true))
}

async fn soak(rig: &mut Rig, duration: Duration, quick: bool) -> anyhow::Result<ScenarioReport> {
    // w1 is never killed: its RSS is the drift figure. w2/w3 (and their replacements) are.
    components(rig, 3).await?;
    // Capacity: a burst through the three workers, rate between the 5th and the last result.
    let burst = 36;
    rig.start_camera("calibrate", burst, 200.0, 64)?;
    rig.settle(Duration::from_secs(180)).await?;
    let capacity = {
        let seen = rig.arrivals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = seen.len();
        anyhow::ensure!(n >= 10, "calibration produced only {n} results");
        (n - 5) as f64 / (seen[n - 1] - seen[4]).as_secs_f64().max(1e-3)
    };
    let fps = (capacity * 0.7 * 10.0).round() / 10.0;
    let frames = (fps * duration.as_secs_f64()).round() as u64;
    rig.start_camera("c1", frames, fps, 32)?;
    let every = if quick { Duration::from_secs(15) } else { Duration::from_secs(60) };
    let run_start = rig.started.elapsed().as_secs_f64();
    let end = Instant::now() + duration;
    let mut kills = 0u64;
    let mut victim_turn = 0usize;
    while Instant::now() + every <= end {
        rig.pause(every).await;
        // Alternate between the killable workers that are alive (never w1, index 0).
        let alive: Vec<usize> = (1..rig.workers.len()).filter(|i| !rig.workers[*i].exited()).collect();
        if let Some(i) = alive.get(victim_turn % alive.len().max(1)) {
            rig.workers[*i].kill().await;
            kills += 1;
            victim_turn += 1;
            rig.respawn_worker(&[])?;
        }
    }
    rig.settle(duration + Duration::from_secs(120)).await?;
    let samples: Vec<(f64, f64)> = rig.rss.get("w1").cloned().unwrap_or_default();
    let check = rig.finish().await?;
    let run_len = duration.as_secs_f64();
    let window = |from: f64, to: f64| -> f64 {
        let v: Vec<f64> = samples
            .iter()
            .filter(|(t, _)| *t >= run_start + from * run_len && *t <= run_start + to * run_len)
            .map(|(_, m)| *m)
            .collect();
        if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 }
    };
    let steady = window(0.2, 0.3);
    let end_rss = window(0.9, 1.0);
    let drift = if steady > 0.0 { (end_rss - steady) / steady } else { f64::NAN };
    let published = camera_published(rig, "c1") + burst;
    let mut rep = ScenarioReport::new(Scenario::Soak, quick, published, check);
    rep.figure("capacity_fps", capacity);
    rep.figure("camera_fps", fps);
    rep.figure("load", fps / capacity);
    rep.figure("seconds", run_len);
    rep.figure("kills", kills as f64);
    rep.figure("w1_rss_steady_mib", steady);
    rep.figure("w1_rss_end_mib", end_rss);
    rep.figure("w1_rss_drift", drift);
    rep.expect(format!("a worker killed every {every:?} ({kills} kills)"), kills >= 1);
    rep.expect(format!("RSS drift of the surviving worker under 10 % ({:+.1} %)", drift * 100.0), drift.abs() < 0.10);
    Ok(rep.seal(true))
}

/// Publish throughput per `sync_interval`, and a kill -9 + restart of each (the OS keeps what
/// was written, so a process kill loses nothing at any setting; fsync only matters for power
/// loss or a kernel crash, which this machine cannot simulate).
async fn sync_interval(server: &Path, args: &ChaosArgs) -> anyhow::Result<ScenarioReport> {
    let n: u64 = if args.quick { 1000 } else { 5000 };
    let payload = bytes::Bytes::from(vec![0x5a_u8; 100 * 1024]);
    let mut rep = ScenarioReport::new(Scenario::Sync, args.quick, 0, Report::default());
    let mut rates = Vec::new();
    for setting in ["always", "2s", "2m"] {
        let opts = RigOptions {
            nodes: 1,
            sync_interval: Some(setting.to_owned()),
            ack_wait: Duration::from_secs(30),
            photos: args.photos.clone(),
        };
        let mut rig = Rig::start(server, opts).await?;
        let started = Instant::now();
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let mut acked = 0u64;
        for i in 0..n {
            let mut h = async_nats::HeaderMap::new();
            h.insert(header::MSG_ID, format!("sync-{i}").as_str());
            // Ten subjects: FRAMES keeps at most 1000 messages per camera (discard old).
            let fut = rig.js.publish_with_headers(format!("frames.sync-{}", i % 10), h, payload.clone()).await?;
            in_flight.push(fut.into_future());
            while in_flight.len() >= 64 {
                if let Some(r) = futures::StreamExt::next(&mut in_flight).await {
                    acked += u64::from(r.is_ok());
                }
            }
        }
        while let Some(r) = futures::StreamExt::next(&mut in_flight).await {
            acked += u64::from(r.is_ok());
        }
        let secs = started.elapsed().as_secs_f64();
        rig.broker.kill(0);
        rig.broker.restart(0)?;
        rig.broker.wait_ready(0).await?;
        let stored = rig.js.get_stream(FRAMES).await?.info().await?.state.messages;
        let rate = acked as f64 / secs;
        rates.push(rate);
        rep.figure(&format!("fps_{setting}"), rate);
        rep.figure(&format!("stored_after_kill_{setting}"), stored as f64);
        rep.expect(
            format!("sync_interval {setting}: {stored} of {acked} acked messages survived kill -9"),
            stored == acked,
        );
        rep.frames += n;
    }
    rep.figure("ratio_always_vs_2s", rates[0] / rates[1]);
    rep.figure("ratio_2s_vs_2m", rates[1] / rates[2]);
    Ok(rep.seal(false))
}

fn camera_rss(rig: &Rig) -> f64 {
    rig.cameras.iter().find(|(n, _)| n == "c1").and_then(|(_, p)| p.rss_mib()).unwrap_or(0.0)
}

/// Frames the camera offered (its summary's `published`; the ack log when it has none).
fn camera_published(rig: &Rig, name: &str) -> u64 {
    rig.camera_summary(name)
        .and_then(|v| v["stats"]["published"].as_u64())
        .unwrap_or_else(|| rig.acked.frames.iter().filter(|(c, _)| c == name).count() as u64)
}

fn camera_figures(rig: &Rig, rep: &mut ScenarioReport, name: &str) {
    if let Some(v) = rig.camera_summary(name) {
        for k in ["published", "acked", "duplicates", "failed", "dropped", "retries"] {
            rep.figure(&format!("camera_{k}"), v["stats"][k].as_f64().unwrap_or(0.0));
        }
    }
}
