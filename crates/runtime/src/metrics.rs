//! The single catalog of every Prometheus metric edgepool exports.
//!
//! Components register their metrics from these definitions (so names, help and labels cannot
//! drift from the catalog), and `docs/metrics.md` is generated from [`CATALOG`] by
//! `edgepool metrics-doc` and checked by a test.

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One metric's definition.
#[derive(Debug, Clone, Copy)]
pub struct Def {
    pub name: &'static str,
    pub kind: Kind,
    /// Base unit (`seconds`, `bytes`, `frames`, `ratio`, ...).
    pub unit: &'static str,
    /// Variable labels, all from bounded sets.
    pub labels: &'static [&'static str],
    pub help: &'static str,
    /// Histogram buckets.
    pub buckets: Option<&'static [f64]>,
}

/// Buckets for per-stage times (decode, inference, publish): SSD-MobileNet inference is ~50 ms
/// on a laptop core and ~1 s on a Raspberry Pi, decode and publish are sub-millisecond to a few
/// ms; powers of ~2.5 from 0.5 ms to 10 s resolve all of them.
pub const STAGE_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Buckets for end-to-end latency (capture to sink): from one fast inference (~50 ms) to the
/// worker staleness bound (30 s by default), where frames stop being processed.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0];

macro_rules! def {
    ($id:ident, $name:literal, $kind:ident, $unit:literal, [$($l:literal),*], $help:literal) => {
        pub const $id: Def =
            Def { name: $name, kind: Kind::$kind, unit: $unit, labels: &[$($l),*], help: $help, buckets: None };
    };
    ($id:ident, $name:literal, Histogram($b:ident), $unit:literal, [$($l:literal),*], $help:literal) => {
        pub const $id: Def = Def {
            name: $name,
            kind: Kind::Histogram,
            unit: $unit,
            labels: &[$($l),*],
            help: $help,
            buckets: Some($b),
        };
    };
}

// Camera (producer). Every camera metric carries the `camera` label.
def!(
    CAMERA_PUBLISHED,
    "edgepool_camera_frames_published_total",
    Counter,
    "frames",
    ["camera"],
    "Frames handed to the publisher."
);
def!(
    CAMERA_OUTCOMES,
    "edgepool_camera_frames_total",
    Counter,
    "frames",
    ["camera", "outcome"],
    "Final publish outcome per frame: stored, duplicate (an earlier attempt was stored), failed."
);
def!(
    CAMERA_DROPPED,
    "edgepool_camera_frames_dropped_total",
    Counter,
    "frames",
    ["camera"],
    "Frames dropped before publishing because the in-flight bound was reached (broker slow or away)."
);
def!(
    CAMERA_RETRIES,
    "edgepool_camera_publish_retries_total",
    Counter,
    "attempts",
    ["camera"],
    "Publish attempts retried with the same msg id."
);

def!(
    CAMERA_VIDEO_FRAMES,
    "edgepool_camera_video_frames_total",
    Counter,
    "frames",
    ["camera", "decision"],
    "Video frames ffmpeg handed over at the detect rate, by what the motion gate decided: motion, keepalive \
     and every (gating off) are published, still is skipped before it costs an inference."
);
def!(
    CAMERA_MOTION_SECONDS,
    "edgepool_camera_motion_check_seconds",
    Histogram(STAGE_BUCKETS),
    "seconds",
    ["camera"],
    "Time of the motion check per video frame (target: at most 2 ms)."
);
def!(
    CAMERA_SOURCE_UP,
    "edgepool_camera_source_up",
    Gauge,
    "boolean",
    ["camera"],
    "1 while ffmpeg delivers frames from the video source, 0 while it is down and being restarted."
);
def!(
    CAMERA_SOURCE_RESTARTS,
    "edgepool_camera_source_restarts_total",
    Counter,
    "restarts",
    ["camera"],
    "Times ffmpeg was started again after the video source dropped, ended or could not be reached."
);
def!(
    CAMERA_FFMPEG_CPU,
    "edgepool_camera_ffmpeg_cpu_seconds_total",
    Counter,
    "seconds",
    ["camera"],
    "CPU time (user + system) used by the camera's ffmpeg (decoding, the fps filter, scaling), read from \
     /proc; rate() of it is the share of a core decoding takes. Linux only."
);

// Worker. Every worker metric carries `worker` and `arch`.
def!(
    WORKER_FRAMES,
    "edgepool_worker_frames_total",
    Counter,
    "frames",
    ["worker", "arch", "status"],
    "Frames finished by this worker, by result status: ok, error, stale."
);
def!(
    WORKER_ERRORS,
    "edgepool_worker_errors_total",
    Counter,
    "frames",
    ["worker", "arch", "kind"],
    "Frames that failed for good (dead-lettered), by error kind."
);
def!(
    WORKER_RETRIES,
    "edgepool_worker_naks_total",
    Counter,
    "frames",
    ["worker", "arch", "reason"],
    "Frames handed back to the queue for redelivery (nak with delay), by reason."
);
def!(
    WORKER_STAGE,
    "edgepool_worker_stage_seconds",
    Histogram(STAGE_BUCKETS),
    "seconds",
    ["worker", "arch", "stage"],
    "Time per frame in each stage: decode, preprocess, inference, postprocess, emulated_delay, publish."
);
def!(
    WORKER_BUSY,
    "edgepool_worker_busy_seconds_total",
    Counter,
    "seconds",
    ["worker", "arch"],
    "Slot-seconds spent on frames; divided by slots and wall time it is the busy ratio."
);
def!(
    WORKER_SLOTS,
    "edgepool_worker_slots",
    Gauge,
    "slots",
    ["worker", "arch"],
    "Inference slots (frames the worker may hold at once)."
);
def!(
    WORKER_IN_FLIGHT,
    "edgepool_worker_in_flight_frames",
    Gauge,
    "frames",
    ["worker", "arch"],
    "Frames held right now (at most slots)."
);
def!(
    WORKER_SLOWDOWN,
    "edgepool_worker_slowdown_ratio",
    Gauge,
    "ratio",
    ["worker", "arch"],
    "Device emulation factor (--slowdown); 1 on real hardware."
);
def!(
    WORKER_STALLS,
    "edgepool_worker_pull_stalls_total",
    Counter,
    "events",
    ["worker", "arch"],
    "Pull requests the watchdog abandoned because they outlived their expiry."
);

def!(
    WORKER_SNAPSHOTS,
    "edgepool_worker_snapshots_total",
    Counter,
    "snapshots",
    ["worker", "arch", "outcome"],
    "Camera snapshots (latest frame + result, bucket edgepool_snapshots) by outcome: `stored`, \
     `failed` (the broker refused or did not ack), `busy` (skipped: earlier writes still in \
     flight). Frames skipped because the camera had a snapshot within `worker.snapshot_interval` \
     are not counted."
);
def!(
    WORKER_SNAPSHOT_BYTES,
    "edgepool_worker_snapshot_bytes_total",
    Counter,
    "bytes",
    ["worker", "arch"],
    "Bytes of stored camera snapshots: the extra traffic snapshots put on the broker."
);
def!(
    WORKER_INFO,
    "edgepool_worker_info",
    Gauge,
    "info",
    ["worker", "arch", "device", "node", "cpu_model", "cpu_cores", "memory_bytes", "pid"],
    "Always 1: the device this worker runs on. `device` is the operator's label, `node` the \
     Kubernetes node (downward API) or host name; `pid` with the instance's host tells worker \
     endpoints of one process apart (the demo). One series per worker process: with a fixed worker \
     id (`worker.id`, e.g. the pod name) a container restart keeps it; with the default random id \
     each start is a new series and the old one ends."
);

// Device, exported by each worker about the machine it runs on; every series carries `worker`,
// `arch` and `node`. Temperature and throttling are absent (no series) where no source is readable.
def!(
    DEVICE_CPU_CORES,
    "edgepool_device_cpu_cores",
    Gauge,
    "cores",
    ["worker", "arch", "node"],
    "Logical CPUs of the device (the divisor that turns process CPU seconds into a share of the device)."
);
def!(
    DEVICE_MEMORY_TOTAL,
    "edgepool_device_memory_total_bytes",
    Gauge,
    "bytes",
    ["worker", "arch", "node"],
    "MemTotal of the device (/proc/meminfo)."
);
def!(
    DEVICE_MEMORY_AVAILABLE,
    "edgepool_device_memory_available_bytes",
    Gauge,
    "bytes",
    ["worker", "arch", "node"],
    "MemAvailable of the device (/proc/meminfo): memory that can be used without swapping."
);
def!(
    DEVICE_TEMPERATURE,
    "edgepool_device_temperature_celsius",
    Gauge,
    "celsius",
    ["worker", "arch", "node", "sensor"],
    "SoC/CPU temperature from /sys/class/thermal or hwmon; `sensor` names the zone (cpu-thermal on \
     a Pi, x86_pkg_temp, k10temp, ...). No series where none is readable."
);
def!(
    DEVICE_THROTTLED,
    "edgepool_device_throttled",
    Gauge,
    "boolean",
    ["worker", "arch", "node", "condition"],
    "Raspberry Pi firmware state now (get_throttled bits 0-3), 1 when the condition holds: \
     under_voltage, frequency_capped, throttled, soft_temperature_limit. No series off a Pi."
);

// Sink.
def!(
    SINK_RESULTS,
    "edgepool_sink_results_total",
    Counter,
    "results",
    ["arch", "worker", "camera", "status"],
    "Unique results received, by worker, camera and status. A worker's series are removed after 10 min \
     without results, at most 256 workers at once (worker ids change at every start)."
);
def!(
    SINK_DUPLICATES,
    "edgepool_sink_duplicate_results_total",
    Counter,
    "results",
    [],
    "Results dropped because (camera, seq) was already seen."
);
def!(
    SINK_INVALID,
    "edgepool_sink_invalid_results_total",
    Counter,
    "results",
    [],
    "Messages on detections.* that are not valid result JSON."
);
def!(
    SINK_LATENCY,
    "edgepool_sink_end_to_end_latency_seconds",
    Histogram(LATENCY_BUCKETS),
    "seconds",
    ["arch"],
    "From capture (captured_at) to the sink receiving the result."
);
def!(
    SINK_STAGE,
    "edgepool_sink_stage_seconds",
    Histogram(STAGE_BUCKETS),
    "seconds",
    ["arch", "stage"],
    "Per-stage times reported in results: queue_wait, decode, preprocess, inference, postprocess."
);
def!(
    SINK_DETECTIONS,
    "edgepool_sink_detections_total",
    Counter,
    "objects",
    ["camera", "label"],
    "Objects detected, by camera and COCO label."
);
def!(
    SINK_LAST_RESULT,
    "edgepool_sink_last_result_timestamp_seconds",
    Gauge,
    "seconds",
    [],
    "Unix time of the last result received."
);

// The sink's view of JetStream, polled from stream and consumer info.
def!(
    JS_STREAM_MESSAGES,
    "edgepool_sink_stream_messages",
    Gauge,
    "messages",
    ["stream"],
    "Messages stored in a stream (FRAMES: the backlog not yet taken by a worker plus frames in progress)."
);
def!(JS_STREAM_BYTES, "edgepool_sink_stream_bytes", Gauge, "bytes", ["stream"], "Bytes stored in a stream.");
def!(
    JS_CONSUMER_PENDING,
    "edgepool_sink_consumer_pending_messages",
    Gauge,
    "messages",
    ["stream", "consumer"],
    "Messages not yet delivered to the consumer: the queue depth."
);
def!(
    JS_CONSUMER_ACK_PENDING,
    "edgepool_sink_consumer_ack_pending_messages",
    Gauge,
    "messages",
    ["stream", "consumer"],
    "Messages delivered and not yet acknowledged: frames held by workers."
);
def!(
    JS_CONSUMER_REDELIVERED,
    "edgepool_sink_consumer_redelivered_messages",
    Gauge,
    "messages",
    ["stream", "consumer"],
    "Messages delivered more than once and not yet acknowledged (a worker died or handed a frame back)."
);
def!(
    JS_CONSUMER_WAITING,
    "edgepool_sink_consumer_waiting_pulls",
    Gauge,
    "requests",
    ["stream", "consumer"],
    "Pull requests waiting for messages: idle worker slots."
);
def!(
    SINK_VIEWERS,
    "edgepool_sink_stream_viewers",
    Gauge,
    "viewers",
    [],
    "Open MJPEG streams (`/cameras/<id>/stream.mjpeg`); at `sink.max_stream_viewers` new ones get 503."
);
def!(
    SINK_VIEWS_REFUSED,
    "edgepool_sink_stream_viewers_refused_total",
    Counter,
    "requests",
    [],
    "MJPEG stream requests answered 503 because `sink.max_stream_viewers` streams were open."
);
def!(
    SINK_SNAPSHOTS,
    "edgepool_sink_snapshots_total",
    Counter,
    "snapshots",
    ["outcome"],
    "Camera snapshots the sink read from the bucket edgepool_snapshots: `kept`, or `invalid` (not a \
     result + frame) or `dropped` (past `sink.max_cameras`)."
);
def!(
    SINK_RENDERS,
    "edgepool_sink_snapshot_renders_total",
    Counter,
    "images",
    [],
    "Annotated JPEGs rendered for latest.jpg and the MJPEG streams (each is cached per snapshot and size, \
     so viewers share one render)."
);
def!(JS_UP, "edgepool_sink_jetstream_up", Gauge, "boolean", [], "1 when the last stream/consumer info poll succeeded.");

// Gateway (the DeepStack / CodeProject.AI API in front of the pool).
def!(
    GATEWAY_REQUESTS,
    "edgepool_gateway_requests_total",
    Counter,
    "requests",
    ["api", "outcome"],
    "Requests answered, by API (`detection`, `zmq`, `list`, `status`, `other`) and outcome: `ok`, `bad_request` \
     (no or bad image, bad field, bad body), `unauthorized` (API key), `too_large`, `overloaded` (503 at \
     `gateway.max_in_flight`), `timeout` (no result within `gateway.timeout`), `unavailable` (broker)."
);
def!(
    GATEWAY_SECONDS,
    "edgepool_gateway_request_seconds",
    Histogram(LATENCY_BUCKETS),
    "seconds",
    ["api"],
    "Time from a request's arrival to its answer, as the client sees it minus the network."
);
def!(
    GATEWAY_OVERHEAD,
    "edgepool_gateway_overhead_seconds",
    Histogram(STAGE_BUCKETS),
    "seconds",
    [],
    "A successful detection's round trip minus the worker's own time (decode to post-processing): the \
     queue, the broker and the gateway."
);
def!(
    GATEWAY_IN_FLIGHT,
    "edgepool_gateway_in_flight_requests",
    Gauge,
    "requests",
    [],
    "Requests waiting for their result now; at `gateway.max_in_flight` new ones get 503."
);

/// Every metric, in documentation order.
pub const CATALOG: &[Def] = &[
    CAMERA_PUBLISHED,
    CAMERA_OUTCOMES,
    CAMERA_DROPPED,
    CAMERA_RETRIES,
    CAMERA_VIDEO_FRAMES,
    CAMERA_MOTION_SECONDS,
    CAMERA_SOURCE_UP,
    CAMERA_SOURCE_RESTARTS,
    CAMERA_FFMPEG_CPU,
    WORKER_FRAMES,
    WORKER_ERRORS,
    WORKER_RETRIES,
    WORKER_STAGE,
    WORKER_BUSY,
    WORKER_SLOTS,
    WORKER_IN_FLIGHT,
    WORKER_SLOWDOWN,
    WORKER_STALLS,
    WORKER_SNAPSHOTS,
    WORKER_SNAPSHOT_BYTES,
    WORKER_INFO,
    DEVICE_CPU_CORES,
    DEVICE_MEMORY_TOTAL,
    DEVICE_MEMORY_AVAILABLE,
    DEVICE_TEMPERATURE,
    DEVICE_THROTTLED,
    SINK_RESULTS,
    SINK_DUPLICATES,
    SINK_INVALID,
    SINK_LATENCY,
    SINK_STAGE,
    SINK_DETECTIONS,
    SINK_LAST_RESULT,
    JS_STREAM_MESSAGES,
    JS_STREAM_BYTES,
    JS_CONSUMER_PENDING,
    JS_CONSUMER_ACK_PENDING,
    JS_CONSUMER_REDELIVERED,
    JS_CONSUMER_WAITING,
    JS_UP,
    SINK_VIEWERS,
    SINK_VIEWS_REFUSED,
    SINK_SNAPSHOTS,
    SINK_RENDERS,
    GATEWAY_REQUESTS,
    GATEWAY_SECONDS,
    GATEWAY_OVERHEAD,
    GATEWAY_IN_FLIGHT,
];

/// The standard `process_*` series of the prometheus crate's process collector (Linux), served
/// by every role next to its own metrics; see [`register_process`]. They carry no labels of their
/// own: Prometheus's `job` and `instance` tell the processes apart. In `edgepool demo` every role
/// runs in one process, so each of its endpoints reports that same process.
pub const PROCESS: &[Def] = &[
    pdef("process_cpu_seconds_total", Kind::Counter, "seconds", "Total user and system CPU time spent."),
    pdef("process_resident_memory_bytes", Kind::Gauge, "bytes", "Resident memory size."),
    pdef("process_virtual_memory_bytes", Kind::Gauge, "bytes", "Virtual memory size."),
    pdef(
        "process_virtual_memory_max_bytes",
        Kind::Gauge,
        "bytes",
        "Virtual memory limit (RLIMIT_AS); no series when unlimited, as usual.",
    ),
    pdef("process_open_fds", Kind::Gauge, "fds", "Open file descriptors."),
    pdef("process_max_fds", Kind::Gauge, "fds", "Maximum number of open file descriptors."),
    pdef("process_threads", Kind::Gauge, "threads", "OS threads in the process."),
    pdef("process_start_time_seconds", Kind::Gauge, "seconds", "Start time of the process since the Unix epoch."),
];

const fn pdef(name: &'static str, kind: Kind, unit: &'static str, help: &'static str) -> Def {
    Def { name, kind, unit, labels: &[], help, buckets: None }
}

/// A registry for one role's `/metrics`, with this process's [`PROCESS`] series in it.
#[must_use]
pub fn role_registry() -> prometheus::Registry {
    let r = prometheus::Registry::new();
    if let Err(e) = register_process(&r) {
        // Only a second registration in the same registry fails, which cannot happen here.
        tracing::warn!(error = %e, "process metrics not registered");
    }
    r
}

/// Registers this process's collector (the [`PROCESS`] series) in `r`. A no-op off Linux.
pub fn register_process(r: &prometheus::Registry) -> prometheus::Result<()> {
    #[cfg(target_os = "linux")]
    r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
    #[cfg(not(target_os = "linux"))]
    let _ = r;
    Ok(())
}

mod build {
    use prometheus::{
        Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    };

    use super::{Def, Kind};

    fn opts(d: &Def) -> Opts {
        Opts::new(d.name, d.help)
    }

    impl Def {
        fn check(&self, kind: Kind, vec: bool) {
            debug_assert_eq!(self.kind, kind, "{} is a {}", self.name, self.kind.as_str());
            debug_assert_eq!(!self.labels.is_empty(), vec, "{} labels", self.name);
        }

        /// Registers a counter without labels.
        pub fn counter(&self, r: &Registry) -> prometheus::Result<IntCounter> {
            self.check(Kind::Counter, false);
            let m = IntCounter::with_opts(opts(self))?;
            r.register(Box::new(m.clone()))?;
            Ok(m)
        }

        /// Registers a labelled counter.
        pub fn counter_vec(&self, r: &Registry) -> prometheus::Result<IntCounterVec> {
            self.check(Kind::Counter, true);
            let m = IntCounterVec::new(opts(self), self.labels)?;
            r.register(Box::new(m.clone()))?;
            Ok(m)
        }

        /// Registers a float counter (seconds) with labels, as a gauge-free `CounterVec`.
        pub fn float_counter_vec(&self, r: &Registry) -> prometheus::Result<prometheus::CounterVec> {
            self.check(Kind::Counter, true);
            let m = prometheus::CounterVec::new(opts(self), self.labels)?;
            r.register(Box::new(m.clone()))?;
            Ok(m)
        }

        /// Registers a gauge without labels.
        pub fn gauge(&self, r: &Registry) -> prometheus::Result<IntGauge> {
            self.check(Kind::Gauge, false);
            let m = IntGauge::with_opts(opts(self))?;
            r.register(Box::new(m.clone()))?;
            Ok(m)
        }

        /// Registers a labelled gauge.
        pub fn gauge_vec(&self, r: &Registry) -> prometheus::Result<IntGaugeVec> {
            self.check(Kind::Gauge, true);
            let m = IntGaugeVec::new(opts(self), self.labels)?;
            r.register(Box::new(m.clone()))?;
            Ok(m)
        }

        /// A labelled float gauge that is not registered, for a collector that reads its values
        /// when scraped.
        pub fn unregistered_gauge_vec(&self) -> prometheus::Result<prometheus::GaugeVec> {
            self.check(Kind::Gauge, true);
            prometheus::GaugeVec::new(opts(self), self.labels)
        }

        /// Registers a labelled float gauge.
        pub fn float_gauge_vec(&self, r: &Registry) -> prometheus::Result<prometheus::GaugeVec> {
            self.check(Kind::Gauge, true);
            let m = prometheus::GaugeVec::new(opts(self), self.labels)?;
            r.register(Box::new(m.clone()))?;
            Ok(m)
        }

        /// Registers a float gauge without labels.
        pub fn float_gauge(&self, r: &Registry) -> prometheus::Result<prometheus::Gauge> {
            self.check(Kind::Gauge, false);
            let m = prometheus::Gauge::with_opts(opts(self))?;
            r.register(Box::new(m.clone()))?;
            Ok(m)
        }

        /// Registers a labelled histogram with the definition's buckets.
        pub fn histogram_vec(&self, r: &Registry) -> prometheus::Result<HistogramVec> {
            self.check(Kind::Histogram, true);
            let o = HistogramOpts::new(self.name, self.help).buckets(self.buckets.unwrap_or_default().to_vec());
            let m = HistogramVec::new(o, self.labels)?;
            r.register(Box::new(m.clone()))?;
            Ok(m)
        }

        /// Registers a histogram without labels.
        pub fn histogram(&self, r: &Registry) -> prometheus::Result<Histogram> {
            self.check(Kind::Histogram, false);
            let o = HistogramOpts::new(self.name, self.help).buckets(self.buckets.unwrap_or_default().to_vec());
            let m = Histogram::with_opts(o)?;
            r.register(Box::new(m.clone()))?;
            Ok(m)
        }
    }
}

/// `docs/metrics.md`, generated from [`CATALOG`].
#[must_use]
pub fn markdown() -> String {
    let mut s = String::from(
        "# Metrics\n\nGenerated from the code's single catalog (`crates/runtime/src/metrics.rs`) by \
         `edgepool metrics-doc`; a test fails when this file and the code differ.\n\n\
         | name | type | unit | labels | meaning |\n|---|---|---|---|---|\n",
    );
    for d in CATALOG {
        s.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            d.name,
            d.kind.as_str(),
            d.unit,
            if d.labels.is_empty() {
                "—".to_owned()
            } else {
                d.labels.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", ")
            },
            d.help
        ));
    }
    s.push_str(
        "\n## Process metrics (every role)\n\nThe prometheus crate's process collector (Linux). No labels \
         of their own: `job` and `instance` tell processes apart. In `edgepool demo` all roles share \
         one process, so every endpoint reports it.\n\n| name | type | unit | meaning |\n|---|---|---|---|\n",
    );
    for d in PROCESS {
        s.push_str(&format!("| `{}` | {} | {} | {} |\n", d.name, d.kind.as_str(), d.unit, d.help));
    }
    s.push_str("\n## Histogram buckets\n\n");
    s.push_str(&format!(
        "- `STAGE_BUCKETS` (seconds): {STAGE_BUCKETS:?}\n- `LATENCY_BUCKETS` (seconds): {LATENCY_BUCKETS:?}\n"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    /// Label cardinality is tested where series are made, by simulating what grows them (e.g. the
    /// sink's `per_worker_series_stay_bounded_across_restarts`), not by a list of names here.
    fn names_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for d in CATALOG {
            assert!(seen.insert(d.name), "{} twice", d.name);
            assert!(d.name.starts_with("edgepool_"), "{}", d.name);
            assert_eq!(
                d.kind == Kind::Counter,
                d.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                d.name
            );
            if d.unit == "seconds" {
                assert!(d.name.contains("_seconds"), "{}", d.name);
            }
            assert_eq!(d.kind == Kind::Histogram, d.buckets.is_some(), "{}", d.name);
        }
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn process_table_is_what_the_collector_exports() {
        let r = prometheus::Registry::new();
        register_process(&r).unwrap();
        let mut got: Vec<_> = r.gather().iter().map(|f| f.name().to_owned()).collect();
        let mut want: Vec<_> = PROCESS.iter().map(|d| d.name.to_owned()).collect();
        if !got.iter().any(|n| n == "process_virtual_memory_max_bytes") {
            want.retain(|n| n != "process_virtual_memory_max_bytes"); // no RLIMIT_AS here
        }
        got.sort();
        want.sort();
        assert_eq!(got, want);
        let cpu = r.gather().into_iter().find(|f| f.name() == "process_cpu_seconds_total").unwrap();
        assert!(cpu.get_metric()[0].get_counter().get_value() >= 0.0);
        let rss = r.gather().into_iter().find(|f| f.name() == "process_resident_memory_bytes").unwrap();
        assert!(rss.get_metric()[0].get_gauge().get_value() > 1e6, "a running test binary has > 1 MB resident");
    }
}
