//! The checker, after Jepsen's and NATS's JetStream tests: every frame has an identity (camera,
//! seq); the set of frames whose publish the broker acknowledged is recorded while the run goes;
//! at the end that set is compared with what came out — results on DETECTIONS, copies on
//! DEADLETTER and the lines the sink wrote.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use anyhow::Context as _;
use async_nats::jetstream;
use serde::Serialize;

use edgepool_nats::{DEADLETTER, DETECTIONS, header_str};
use edgepool_wire::frame::header;
use edgepool_wire::{ResultMessage, Status};

/// A frame's identity: its camera and sequence number.
pub type FrameKey = (String, u64);

/// Frames the broker acknowledged. Frames without a usable identity (bad input with an invalid
/// camera or no sequence header) are known by their FRAMES stream sequence instead.
#[derive(Debug, Default, Clone)]
pub struct Acked {
    pub frames: BTreeSet<FrameKey>,
    pub by_stream_seq: BTreeSet<u64>,
}

impl Acked {
    /// Adds the sequence numbers of `camera`'s ack log (one number per line, as written by
    /// `edgepool camera --ack-log`). A camera killed mid-line leaves a partial last line, which
    /// is ignored: that ack was never recorded.
    pub fn read_ack_log(&mut self, camera: &str, path: &Path) -> anyhow::Result<usize> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut n = 0;
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Ok(seq) = line.trim().parse() {
                self.frames.insert((camera.to_owned(), seq));
                n += 1;
            }
        }
        Ok(n)
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.frames.len() + self.by_stream_seq.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One dead-lettered copy.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub kind: String,
    pub stream_seq: Option<u64>,
}

/// Everything that came out of the pipeline, indexed by frame.
#[derive(Debug, Default)]
pub struct Observed {
    pub results: HashMap<FrameKey, Vec<ResultMessage>>,
    pub results_by_stream_seq: HashMap<u64, Vec<ResultMessage>>,
    pub dead: HashMap<FrameKey, Vec<DeadLetter>>,
    pub dead_by_stream_seq: HashMap<u64, Vec<DeadLetter>>,
    /// Lines the sink wrote per frame (its JSONL file).
    pub sink_lines: HashMap<FrameKey, u32>,
    /// DETECTIONS messages that are not valid results (must be 0).
    pub unreadable: u64,
}

impl Observed {
    /// Reads DETECTIONS and DEADLETTER in full, and the sink's JSONL file when given.
    pub async fn read(js: &jetstream::Context, sink_jsonl: Option<&Path>) -> anyhow::Result<Self> {
        let mut o = Self::default();
        for msg in read_stream(js, DETECTIONS).await? {
            let Ok(r) = serde_json::from_slice::<ResultMessage>(&msg.payload) else {
                o.unreadable += 1;
                continue;
            };
            o.results_by_stream_seq.entry(r.stream_seq).or_default().push(r.clone());
            if let Some(seq) = r.seq {
                o.results.entry((r.camera.to_string(), seq)).or_default().push(r);
            }
        }
        for msg in read_stream(js, DEADLETTER).await? {
            let h = msg.headers.as_ref();
            let kind = header_str(h, header::ERROR_KIND).unwrap_or("").to_owned();
            let stream_seq = header_str(h, header::STREAM_SEQ).and_then(|s| s.parse().ok());
            let dl = DeadLetter { kind, stream_seq };
            if let Some(s) = stream_seq {
                o.dead_by_stream_seq.entry(s).or_default().push(dl.clone());
            }
            let camera = msg.subject.as_str().split_once('.').map(|(_, c)| c.to_owned());
            let seq = header_str(h, header::SEQ).and_then(|s| s.trim().parse().ok());
            if let (Some(camera), Some(seq)) = (camera, seq) {
                o.dead.entry((camera, seq)).or_default().push(dl);
            }
        }
        if let Some(path) = sink_jsonl {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                if let Ok(r) = serde_json::from_str::<ResultMessage>(line)
                    && let Some(seq) = r.seq
                {
                    *o.sink_lines.entry((r.camera.to_string(), seq)).or_default() += 1;
                }
            }
        }
        Ok(o)
    }

    fn results_of<'a>(&'a self, key: Option<&FrameKey>, stream_seq: Option<u64>) -> &'a [ResultMessage] {
        let found = match (key, stream_seq) {
            (Some(k), _) => self.results.get(k),
            (None, Some(s)) => self.results_by_stream_seq.get(&s),
            (None, None) => None,
        };
        found.map_or(&[], Vec::as_slice)
    }

    fn dead_of<'a>(&'a self, key: Option<&FrameKey>, stream_seq: Option<u64>) -> &'a [DeadLetter] {
        let found = match (key, stream_seq) {
            (Some(k), _) => self.dead.get(k),
            (None, Some(s)) => self.dead_by_stream_seq.get(&s),
            (None, None) => None,
        };
        found.map_or(&[], Vec::as_slice)
    }
}

/// The verdict: `lost` and `duplicates` must be 0.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Frames whose publish the broker acknowledged.
    pub acked: u64,
    /// Acknowledged frames with a result on DETECTIONS (any status).
    pub results: u64,
    pub ok: u64,
    pub error: u64,
    pub stale: u64,
    /// Acknowledged frames with a copy on DEADLETTER.
    pub deadlettered: u64,
    /// Acknowledged frames with neither a result nor a dead letter.
    pub lost: u64,
    /// Results (and dead letters) beyond one per frame, on the streams and in the sink's output.
    pub duplicates: u64,
    /// Results stored on DETECTIONS for frames whose publish was never acknowledged (an ack lost
    /// on the way back: the frame was stored anyway). Expected after broker faults; not an error.
    pub unacked_results: u64,
    /// Results computed on a redelivery (delivery > 1): the cost of a crash.
    pub redelivered: u64,
    /// Acknowledged frames with a result on DETECTIONS that the sink did not write (0 when the
    /// sink kept up; only counted when a sink file is given).
    pub sink_missing: u64,
    /// Results the sink wrote more than once.
    pub sink_duplicates: u64,
    /// Messages on DETECTIONS that do not parse as results.
    pub unreadable: u64,
    /// Up to 20 lost frames, for the log.
    pub lost_examples: Vec<String>,
    /// Up to 20 duplicated frames.
    pub duplicate_examples: Vec<String>,
}

impl Report {
    /// Compares `acked` with `observed`. With `with_sink`, the sink's output is checked too.
    #[must_use]
    pub fn check(acked: &Acked, observed: &Observed, with_sink: bool) -> Self {
        let mut r = Self { acked: acked.len() as u64, unreadable: observed.unreadable, ..Self::default() };
        let keyed = acked.frames.iter().map(|k| (Some(k), None));
        let unkeyed = acked.by_stream_seq.iter().map(|s| (None, Some(*s)));
        for (key, stream_seq) in keyed.chain(unkeyed) {
            let name =
                key.map_or_else(|| format!("stream seq {}", stream_seq.unwrap_or(0)), |(c, s)| format!("{c}/{s}"));
            let results = observed.results_of(key, stream_seq);
            let dead = observed.dead_of(key, stream_seq);
            if results.is_empty() && dead.is_empty() {
                r.lost += 1;
                if r.lost_examples.len() < 20 {
                    r.lost_examples.push(name.clone());
                }
            }
            if let Some(first) = results.first() {
                r.results += 1;
                match first.status {
                    Status::Ok => r.ok += 1,
                    Status::Error => r.error += 1,
                    Status::Stale => r.stale += 1,
                }
            }
            if !dead.is_empty() {
                r.deadlettered += 1;
            }
            r.redelivered += u64::from(results.iter().any(|x| x.delivery > 1));
            let extra = results.len().saturating_sub(1) + dead.len().saturating_sub(1);
            let mut sink_extra = 0;
            if with_sink && let Some(k) = key {
                let lines = observed.sink_lines.get(k).copied().unwrap_or(0);
                if lines == 0 && !results.is_empty() {
                    r.sink_missing += 1;
                }
                sink_extra = lines.saturating_sub(1);
                r.sink_duplicates += u64::from(sink_extra);
            }
            if extra > 0 || sink_extra > 0 {
                r.duplicates += (extra + sink_extra as usize) as u64;
                if r.duplicate_examples.len() < 20 {
                    r.duplicate_examples.push(name);
                }
            }
        }
        let acked_keys: BTreeSet<&FrameKey> = acked.frames.iter().collect();
        r.unacked_results = observed.results.keys().filter(|k| !acked_keys.contains(k)).count() as u64;
        r
    }

    /// Whether nothing acknowledged was lost or duplicated.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.duplicates == 0 && self.unreadable == 0 && self.sink_missing == 0
    }

    /// `acked / results / deadlettered / lost / duplicates` and the rest, on one line.
    #[must_use]
    pub fn line(&self) -> String {
        format!(
            "acked {} · results {} (ok {}, error {}, stale {}) · deadlettered {} · lost {} · duplicates {} · \
             redelivered {} · unacked-but-stored {} · sink missing {} · sink duplicates {}",
            self.acked,
            self.results,
            self.ok,
            self.error,
            self.stale,
            self.deadlettered,
            self.lost,
            self.duplicates,
            self.redelivered,
            self.unacked_results,
            self.sink_missing,
            self.sink_duplicates
        )
    }
}

pub use edgepool_harness::read_stream;

/// Counts per key, for summaries (e.g. results per worker).
#[must_use]
pub fn tally<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i.to_owned()).or_default() += 1;
    }
    m
}
