#!/usr/bin/env python3
"""Generates grafana/dashboards/edgepool.json (Grafana classic JSON model, schemaVersion 39).

The dashboard is written as code so each panel's question, query and unit sit together and can be
reviewed; the JSON is the artefact Grafana (and the k8s ConfigMap) loads. Edit this file, then:

    python3 tools/observability/dashboard.py          # rewrite the JSON
    python3 tools/observability/dashboard.py --check  # CI: fail if the JSON is stale

Conventions in the queries:
- `$__rate_interval` everywhere a range is needed (Grafana sizes it from the scrape interval).
- `$arch`, `$worker`, `$camera` are multi-value variables with "All" = `.*`, used as `=~` matchers.
- Labelled counters such as `edgepool_worker_errors_total` have no series until the first error.
  Panels over them add `or (0 * <a series that always exists>)` so a healthy fleet shows zero
  rather than "No data", which an operator cannot tell apart from "not scraped".
- Devices are keyed by `node`, the device's name as workers report it in `edgepool_worker_info`.
  node-exporter's series are joined to it through `node_uname_info`'s `nodename`, and every panel
  over them falls back (`or on (node)`) to what the workers measure themselves, so the row works
  without node-exporter. `node_uname_info` is written bare (no matchers): the live check swaps it
  for a metric that does not exist to evaluate those fallbacks.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "grafana" / "dashboards" / "edgepool.json"

DS = {"type": "prometheus", "uid": "${datasource}"}
RI = "$__rate_interval"

# Matchers for the template variables.
SINK_SEL = 'arch=~"$arch", worker=~"$worker", camera=~"$camera"'
WORKER_SEL = 'arch=~"$arch", worker=~"$worker"'
ARCH_SEL = 'arch=~"$arch"'
CAMERA_SEL = 'camera=~"$camera"'


def target(expr, legend, ref, instant=False):
    t = {"datasource": DS, "editorMode": "code", "expr": expr, "legendFormat": legend, "refId": ref}
    if instant:
        t.update({"instant": True, "range": False, "format": "time_series"})
    else:
        t["range"] = True
    return t


def targets(*pairs, instant=False):
    return [target(e, l, chr(ord("A") + i), instant) for i, (e, l) in enumerate(pairs)]


def timeseries(title, desc, tgts, unit="short", stack=False, percent=False, max_=None, min_=None, line_at=None):
    custom = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 20 if stack else 0,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "percent" if percent else ("normal" if stack else "none"), "group": "A"},
        "axisPlacement": "auto",
    }
    defaults = {"unit": unit, "custom": custom, "color": {"mode": "palette-classic"}}
    if max_ is not None:
        defaults["max"] = max_
    if min_ is not None:
        defaults["min"] = min_
    if line_at is not None:
        # A red dashed line at an alert's threshold.
        custom["thresholdsStyle"] = {"mode": "dashed"}
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": "transparent", "value": None}, {"color": "red", "value": line_at}]}
    return {
        "type": "timeseries",
        "title": title,
        "description": desc,
        "datasource": DS,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "showLegend": True, "calcs": ["lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": tgts,
    }


def stat(title, desc, tgts, unit="short", thresholds=None, decimals=None):
    steps = thresholds or [{"color": "green", "value": None}]
    defaults = {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}, "color": {"mode": "thresholds"}}
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat",
        "title": title,
        "description": desc,
        "datasource": DS,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
        },
        "targets": tgts,
    }


def bargauge(title, desc, tgts, unit="short", max_=None):
    defaults = {
        "unit": unit,
        "min": 0,
        "thresholds": {"mode": "absolute", "steps": [{"color": "blue", "value": None}]},
        "color": {"mode": "palette-classic"},
    }
    if max_ is not None:
        defaults["max"] = max_
    return {
        "type": "bargauge",
        "title": title,
        "description": desc,
        "datasource": DS,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "orientation": "horizontal",
            "displayMode": "gradient",
            "showUnfilled": True,
        },
        "targets": tgts,
    }


def state_timeline(title, desc, tgts, states):
    """A 0/1 (or small enum) gauge per series as coloured bands over time; `states` maps each value
    to (text, colour)."""
    mappings = [{"type": "value", "options": {str(v): {"text": text, "color": color, "index": i} for i, (v, (text, color)) in enumerate(states.items())}}]
    return {
        "type": "state-timeline",
        "title": title,
        "description": desc,
        "datasource": DS,
        "fieldConfig": {
            "defaults": {
                "custom": {"lineWidth": 0, "fillOpacity": 80},
                "mappings": mappings,
                "thresholds": {"mode": "absolute", "steps": [{"color": "text", "value": None}]},
                "color": {"mode": "thresholds"},
            },
            "overrides": [],
        },
        "options": {
            "mergeValues": True,
            "showValue": "never",
            "alignValue": "left",
            "rowHeight": 0.9,
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
            "tooltip": {"mode": "single", "sort": "none"},
        },
        "targets": tgts,
    }


def table(title, desc, tgts, columns, rename, numbers, units):
    """An instant query as a table, one row per series: `columns` (labels) in this order, the rest
    hidden; `numbers` are labels converted to numbers so `units` ({renamed column: unit}) apply."""
    hidden = {"Time": True, "Value": True, "Value #A": True, "__name__": True, "job": True, "instance": True}
    for tgt in tgts:
        tgt["format"] = "table"  # one row per series, labels as columns
    return {
        "type": "table",
        "title": title,
        "description": desc,
        "datasource": DS,
        "fieldConfig": {
            "defaults": {"custom": {"align": "auto", "cellOptions": {"type": "auto"}}, "thresholds": {"mode": "absolute", "steps": [{"color": "green", "value": None}]}},
            "overrides": [
                {"matcher": {"id": "byName", "options": name}, "properties": [{"id": "unit", "value": unit}]} for name, unit in units.items()
            ],
        },
        "options": {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"], "fields": ""}, "sortBy": [{"displayName": rename.get(columns[0], columns[0]), "desc": False}]},
        "transformations": [
            {"id": "convertFieldType", "options": {"fields": {}, "conversions": [{"targetField": n, "destinationType": "number"} for n in numbers]}},
            {"id": "organize", "options": {"excludeByName": hidden, "indexByName": {c: i for i, c in enumerate(columns)}, "renameByName": rename}},
        ],
        "targets": tgts,
    }


def zero_per_worker(metric=f"edgepool_worker_slots{{{WORKER_SEL}}}"):
    """A zero series per (arch, worker), for panels over counters that may not exist yet."""
    return f"(0 * sum by (arch, worker) ({metric}))"


# Devices. `node` is the device's name: workers report it in edgepool_worker_info{node} (the
# Kubernetes node via the downward API, else the host name); node-exporter's node_uname_info has it
# as `nodename`. Always written as a bare `node_uname_info`: see the module docstring.
NODE_NAME = 'label_replace(max by (job, instance, nodename) (node_uname_info), "node", "$1", "nodename", "(.+)")'
# node-exporter busy CPU per device (the node-mixin's definition: idle, iowait and steal are not busy).
NODE_CPU = (
    f'max by (node) ((1 - avg by (job, instance) (sum by (job, instance, cpu) (rate(node_cpu_seconds_total{{mode=~"idle|iowait|steal"}}[{RI}]))))'
    f" * on (job, instance) group_left (node) {NODE_NAME})"
)
NODE_MEM = (
    "max by (node) ((1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)"
    f" * on (job, instance) group_left (node) {NODE_NAME})"
)
# The workers' own processes per device, each process once: in `edgepool demo` every worker endpoint
# is the same process (same host and pid); Kubernetes pods repeat pids but not addresses.
WORKERS_CPU = (
    f"sum by (node) (max by (node, pid, host) (label_replace(rate(process_cpu_seconds_total[{RI}])"
    ' * on (job, instance) group_left (node, pid) edgepool_worker_info, "host", "$1", "instance", "(.*):[0-9]+")))'
    " / on (node) max by (node) (edgepool_device_cpu_cores)"
)
WORKERS_MEM = "max by (node) (1 - edgepool_device_memory_available_bytes / edgepool_device_memory_total_bytes)"
# Devices running a selected worker.
SELECTED_DEVICES = f"edgepool_worker_info{{{WORKER_SEL}}}"


def rows():
    """(row title, [(panel, width, height)]) in display order."""
    results = f"edgepool_sink_results_total{{{SINK_SEL}}}"
    share_all = "edgepool_sink_results_total"
    lat = f"edgepool_sink_end_to_end_latency_seconds_bucket{{{ARCH_SEL}}}"
    # 2.5 s is the LATENCY_BUCKETS edge the SLO is stated on (there is no 2 s bucket).
    lat_good = f'edgepool_sink_end_to_end_latency_seconds_bucket{{{ARCH_SEL}, le="2.5"}}'
    lat_count = f"edgepool_sink_end_to_end_latency_seconds_count{{{ARCH_SEL}}}"
    return [
        ("Overview", [
            (stat("Results / s", "Unique results reaching the sink, all workers and cameras selected.",
                  targets((f"sum(rate({results}[{RI}]))", "results/s"), instant=True), unit="reqps", decimals=2), 4, 4),
            (stat("Queue depth", "FRAMES/detectors pending: frames published and not yet taken by any worker.",
                  targets(("sum(edgepool_sink_consumer_pending_messages)", "pending"), instant=True),
                  thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 100}, {"color": "red", "value": 1000}]), 4, 4),
            (stat("End-to-end p99", "Capture to sink, p99 over the rate interval, selected archs.",
                  targets((f"histogram_quantile(0.99, sum by (le) (rate({lat}[{RI}])))", "p99"), instant=True), unit="s",
                  thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 2.5}, {"color": "red", "value": 10}]), 4, 4),
            (stat("Under 2.5 s (SLO)", "Share of ok results that took at most 2.5 s from capture to sink (the latency SLO's good events).",
                  targets((f"sum(rate({lat_good}[{RI}])) / sum(rate({lat_count}[{RI}]))", "good"), instant=True),
                  unit="percentunit", decimals=1,
                  thresholds=[{"color": "red", "value": None}, {"color": "orange", "value": 0.95}, {"color": "green", "value": 0.99}]), 4, 4),
            (stat("Stale + dead-lettered / s", "Frames dropped as stale or dead-lettered by the selected workers.",
                  targets((f'sum(rate(edgepool_worker_frames_total{{{WORKER_SEL}, status=~"stale|error"}}[{RI}]))', "dropped/s"), instant=True),
                  unit="reqps", decimals=2,
                  thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 0.01}]), 4, 4),
            (stat("JetStream poll", "1 when the sink's last stream/consumer info poll succeeded (every 5 s).",
                  targets(("min(edgepool_sink_jetstream_up)", "up"), instant=True),
                  thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}]), 4, 4),
        ]),
        ("Is every arch pulling its share?", [
            (timeseries("Throughput per worker", "Results per second by worker, as counted by the sink (the one target that sees the whole fleet).",
                        targets((f"sum by (worker, arch) (rate({results}[{RI}]))", "{{worker}} ({{arch}})")), unit="reqps"), 12, 8),
            (timeseries("Throughput per arch", "Results per second by architecture.",
                        targets((f"sum by (arch) (rate({results}[{RI}]))", "{{arch}}")), unit="reqps"), 12, 8),
            (timeseries("Share of work per arch", "Each arch's fraction of all results (not filtered by $arch, so the shares add up to 100%). Compare with each arch's share of capacity.",
                        targets((f"sum by (arch) (rate({share_all}{{{CAMERA_SEL}}}[{RI}])) / scalar(sum(rate({share_all}{{{CAMERA_SEL}}}[{RI}])))", "{{arch}}")),
                        unit="percentunit", stack=True, max_=1, min_=0), 12, 8),
            (bargauge("Share of work per worker", "Each worker's fraction of all results over the rate interval; a slow device should have a small but non-zero share.",
                      targets((f"sum by (worker) (rate({share_all}{{{CAMERA_SEL}}}[{RI}])) / scalar(sum(rate({share_all}{{{CAMERA_SEL}}}[{RI}])))", "{{worker}}"), instant=True),
                      unit="percentunit", max_=1), 12, 8),
        ]),
        ("Is the queue growing?", [
            (timeseries("Queue depth and lag", "pending = not yet delivered to any worker (the backlog); ack pending = held by workers; redelivered = delivered more than once and not yet acked; waiting pulls = idle worker slots.",
                        targets(
                            ("sum by (stream, consumer) (edgepool_sink_consumer_pending_messages)", "pending {{stream}}/{{consumer}}"),
                            ("sum by (stream, consumer) (edgepool_sink_consumer_ack_pending_messages)", "ack pending"),
                            ("sum by (stream, consumer) (edgepool_sink_consumer_redelivered_messages)", "redelivered"),
                            ("sum by (stream, consumer) (edgepool_sink_consumer_waiting_pulls)", "waiting pulls"),
                        ), unit="short"), 12, 8),
            (timeseries("Frames in vs results out", "Frames the cameras stored in FRAMES per second against results reaching the sink; the gap is the rate the backlog grows. The queue trend is the least-squares slope of pending.",
                        targets(
                            (f'sum(rate(edgepool_camera_frames_total{{{CAMERA_SEL}, outcome="stored"}}[{RI}]))', "frames stored/s"),
                            (f"sum(rate({results}[{RI}]))", "results/s"),
                            (f"sum(deriv(edgepool_sink_consumer_pending_messages[{RI}]))", "queue trend (msgs/s)"),
                        ), unit="short"), 12, 8),
            (timeseries("Stream messages", "Messages stored per stream: FRAMES (backlog + in progress), DETECTIONS, DEADLETTER.",
                        targets(("sum by (stream) (edgepool_sink_stream_messages)", "{{stream}}")), unit="short"), 12, 8),
            (timeseries("Stream bytes", "Bytes stored per stream; FRAMES bytes grow with the backlog (photos are ~100 KB).",
                        targets(("sum by (stream) (edgepool_sink_stream_bytes)", "{{stream}}")), unit="bytes"), 12, 8),
        ]),
        ("Where does the latency go?", [
            (timeseries("End-to-end latency p50 / p99", "Capture (captured_at) to the sink receiving the result, ok results only, per arch.",
                        targets(
                            (f"histogram_quantile(0.5, sum by (arch, le) (rate({lat}[{RI}])))", "p50 {{arch}}"),
                            (f"histogram_quantile(0.99, sum by (arch, le) (rate({lat}[{RI}])))", "p99 {{arch}}"),
                        ), unit="s"), 12, 8),
            (timeseries("Stage breakdown (mean per frame)", "Mean seconds per frame in each stage reported in results; stacked, the bars add up to the processing part of end-to-end latency. queue_wait dominating means too little capacity.",
                        targets((f"sum by (stage) (rate(edgepool_sink_stage_seconds_sum{{{ARCH_SEL}}}[{RI}])) / sum by (stage) (rate(edgepool_sink_stage_seconds_count{{{ARCH_SEL}}}[{RI}]))", "{{stage}}")),
                        unit="s", stack=True), 12, 8),
            (timeseries("Stage p99", "p99 per stage from the sink's stage histogram.",
                        targets((f"histogram_quantile(0.99, sum by (stage, le) (rate(edgepool_sink_stage_seconds_bucket{{{ARCH_SEL}}}[{RI}])))", "{{stage}}")),
                        unit="s"), 12, 8),
            (timeseries("Worker stages incl. emulated slowdown", "Mean seconds per frame per worker stage as the worker measures it, including emulated_delay (device emulation) and publish: an emulated slow device shows a large emulated_delay.",
                        targets((f"sum by (worker, stage) (rate(edgepool_worker_stage_seconds_sum{{{WORKER_SEL}}}[{RI}])) / sum by (worker, stage) (rate(edgepool_worker_stage_seconds_count{{{WORKER_SEL}}}[{RI}]))", "{{worker}} {{stage}}")),
                        unit="s"), 12, 8),
        ]),
        ("Drops, dead letters and errors", [
            (timeseries("Stale drops per worker", "Frames older than the staleness bound when a worker took them: acked without inference. Any sustained rate means the fleet cannot keep up.",
                        targets((f'sum by (worker, arch) (rate(edgepool_worker_frames_total{{{WORKER_SEL}, status="stale"}}[{RI}]))', "{{worker}}")), unit="reqps"), 8, 8),
            (timeseries("Dead-lettered frames by kind", "Frames that failed for good (their bytes go to DEADLETTER), by error kind. Zero lines per worker are drawn while there are none.",
                        targets((f"sum by (arch, worker, kind) (rate(edgepool_worker_errors_total{{{WORKER_SEL}}}[{RI}])) or {zero_per_worker()}", "{{worker}} {{kind}}")),
                        unit="reqps"), 8, 8),
            (timeseries("Results by status at the sink", "Unique results per second by status: ok, stale, error.",
                        targets((f"sum by (status) (rate({results}[{RI}]))", "{{status}}")), unit="reqps", stack=True), 8, 8),
            (timeseries("Redeliveries and stalls", "Frames handed back for redelivery (nak with delay) by reason, and pull requests the watchdog abandoned. Zero lines per worker while there are none.",
                        targets(
                            (f"sum by (worker, reason) (rate(edgepool_worker_naks_total{{{WORKER_SEL}}}[{RI}])) or {zero_per_worker()}", "nak {{worker}} {{reason}}"),
                            (f"sum by (worker) (rate(edgepool_worker_pull_stalls_total{{{WORKER_SEL}}}[{RI}]))", "stalls {{worker}}"),
                        ), unit="reqps"), 8, 8),
            (timeseries("Camera publish problems", "Frames dropped by cameras before publishing (in-flight bound reached), publishes that failed for good, and retried attempts.",
                        targets(
                            (f"sum by (camera) (rate(edgepool_camera_frames_dropped_total{{{CAMERA_SEL}}}[{RI}]))", "dropped {{camera}}"),
                            (f'sum by (camera) (rate(edgepool_camera_frames_total{{{CAMERA_SEL}, outcome="failed"}}[{RI}]))', "failed {{camera}}"),
                            (f"sum by (camera) (rate(edgepool_camera_publish_retries_total{{{CAMERA_SEL}}}[{RI}]))", "retries {{camera}}"),
                        ), unit="reqps"), 8, 8),
            (timeseries("Sink: duplicates and invalid results", "Results dropped as already seen (redelivery after a lost ack) and messages that are not valid result JSON.",
                        targets(
                            (f"sum(rate(edgepool_sink_duplicate_results_total[{RI}]))", "duplicates"),
                            (f"sum(rate(edgepool_sink_invalid_results_total[{RI}]))", "invalid"),
                        ), unit="reqps"), 8, 8),
        ]),
        ("Are the cameras up?", [
            (state_timeline("Video source up",
                            "Per video camera (edgepool camera reading RTSP, HTTP, a device or a file through ffmpeg): up while ffmpeg "
                            "delivers frames, down while the source dropped, ended or cannot be reached and ffmpeg is being restarted "
                            "(with jittered backoff). Image-file cameras have no line.",
                            targets((f"max by (camera) (edgepool_camera_source_up{{{CAMERA_SEL}}})", "{{camera}}")),
                            states={0: ("down", "red"), 1: ("up", "green")}), 10, 7),
            (stat("Skipped as still",
                  "Share of the frames sampled at the detect rate that the motion gate skipped because nothing moved: they cost "
                  "no JPEG encoding, no publish and no inference. High on a quiet scene is the point; 0 with motion gating on "
                  "means something always moves (a tree, a clock overlay: mask it) or gating is off.",
                  targets((f'sum(rate(edgepool_camera_video_frames_total{{{CAMERA_SEL}, decision="still"}}[{RI}]))'
                           f" / sum(rate(edgepool_camera_video_frames_total{{{CAMERA_SEL}}}[{RI}]))", "still"), instant=True),
                  unit="percentunit", decimals=1), 4, 7),
            (timeseries("Source restarts",
                        "Times ffmpeg was started again per camera within each rate interval (the source dropped, ended or could "
                        "not be reached). Zero on a healthy camera; a steady rate is a flapping stream or a wrong URL or password "
                        "(the camera's log says which, with the credentials redacted).",
                        targets((f"sum by (camera) (increase(edgepool_camera_source_restarts_total{{{CAMERA_SEL}}}[{RI}]))", "{{camera}}")),
                        unit="short", min_=0), 10, 7),
            (timeseries("Video frames / s by decision",
                        "Frames ffmpeg handed over at the detect rate (the camera's fps), by the motion gate's decision: motion, "
                        "keepalive (nothing moved for the keepalive period) and every (gating off) are published; still is skipped "
                        "before any inference. Stacked, a camera's bands add up to its detect rate.",
                        targets((f"sum by (camera, decision) (rate(edgepool_camera_video_frames_total{{{CAMERA_SEL}}}[{RI}]))", "{{camera}} {{decision}}")),
                        unit="short", stack=True), 8, 8),
            (timeseries("Motion check p95",
                        "p95 time of the motion check per video frame (downscale, luma, blur, compare with the running background), "
                        "per camera. The dashed line is the 2 ms target: above it the check costs a real share of a small device's CPU.",
                        targets((f"histogram_quantile(0.95, sum by (camera, le) (rate(edgepool_camera_motion_check_seconds_bucket{{{CAMERA_SEL}}}[{RI}])))", "{{camera}}")),
                        unit="s", min_=0, line_at=0.002), 8, 8),
            (timeseries("ffmpeg CPU per camera",
                        "CPU each camera's ffmpeg process uses (decoding, the fps filter, scaling), in cores: 1 = one core busy. "
                        "Read by the camera from /proc; not part of the camera process's own process_cpu_seconds_total. Decoding "
                        "dominates and grows with the stream's resolution and frame rate, not with the detect rate: use the camera's "
                        "substream where it has one.",
                        targets((f"sum by (camera) (rate(edgepool_camera_ffmpeg_cpu_seconds_total{{{CAMERA_SEL}}}[{RI}]))", "{{camera}}")),
                        unit="short", min_=0), 8, 8),
        ]),
        ("What do the cameras see?", [
            (timeseries("Detections per label and camera", "Objects detected per second by COCO label and camera.",
                        targets((f"sum by (camera, label) (rate(edgepool_sink_detections_total{{{CAMERA_SEL}}}[{RI}]))", "{{camera}} {{label}}")),
                        unit="short", stack=True), 16, 8),
            (bargauge("Detections per label", "Objects per second by label over the rate interval, selected cameras.",
                      targets((f"sum by (label) (rate(edgepool_sink_detections_total{{{CAMERA_SEL}}}[{RI}]))", "{{label}}"), instant=True)), 8, 8),
        ]),
        ("Workers", [
            (timeseries("Busy ratio per worker", "Slot-seconds spent on frames per second, divided by slots: 1 means every slot is always busy.",
                        targets((f"sum by (worker, arch) (rate(edgepool_worker_busy_seconds_total{{{WORKER_SEL}}}[{RI}])) / sum by (worker, arch) (edgepool_worker_slots{{{WORKER_SEL}}})", "{{worker}}")),
                        unit="percentunit", max_=1, min_=0), 8, 8),
            (timeseries("In flight vs slots", "Frames each worker holds now against its inference slots.",
                        targets(
                            (f"sum by (worker) (edgepool_worker_in_flight_frames{{{WORKER_SEL}}})", "in flight {{worker}}"),
                            (f"sum by (worker) (edgepool_worker_slots{{{WORKER_SEL}}})", "slots {{worker}}"),
                        ), unit="short"), 8, 8),
            (timeseries("Emulated slowdown", "Device emulation factor per worker (--slowdown); 1 on real hardware. Read with the worker stage panel.",
                        targets((f"max by (worker) (edgepool_worker_slowdown_ratio{{{WORKER_SEL}}})", "{{worker}}")), unit="x"), 8, 8),
        ]),
        ("Devices", [
            (table("Devices and their workers",
                   "One row per worker, from edgepool_worker_info: the device (node: the Kubernetes node, or the host name), the operator's --label, "
                   "CPU model, logical CPUs and memory as the worker read them from /proc, and the process id. Needs only the workers' /metrics. "
                   "In `edgepool demo` every worker is the same process, so all rows share one node and one pid.",
                   targets((f"max by (node, device, arch, worker, cpu_model, cpu_cores, memory_bytes, pid) ({SELECTED_DEVICES})", ""), instant=True),
                   columns=["node", "device", "arch", "worker", "cpu_model", "cpu_cores", "memory_bytes", "pid"],
                   rename={"device": "label", "cpu_model": "CPU", "cpu_cores": "CPUs", "memory_bytes": "memory"},
                   numbers=["cpu_cores", "memory_bytes"], units={"memory": "bytes"}), 24, 6),
            (timeseries("CPU per device",
                        "Busy CPU per device, 1 = every core busy. `total` is node-exporter's (node_cpu_seconds_total: not idle, iowait or steal), "
                        "joined by node name (node_uname_info's nodename = the worker's node); `edgepool` is the CPU of the device's worker "
                        "processes (process_cpu_seconds_total, each process once) over its cores. Without node-exporter `total` falls back to "
                        "`edgepool`, so the two lines coincide and load from other processes is invisible. A large gap between them means "
                        "something else is using the device.",
                        targets(
                            (f"({NODE_CPU} or on (node) {WORKERS_CPU}) and on (node) {SELECTED_DEVICES}", "{{node}} total"),
                            (f"{WORKERS_CPU} and on (node) {SELECTED_DEVICES}", "{{node}} edgepool"),
                        ), unit="percentunit", max_=1, min_=0), 8, 8),
            (timeseries("Memory used per device",
                        "1 - MemAvailable / MemTotal per device: node-exporter's where it runs (joined by node name), else the workers' own "
                        "/proc/meminfo reading (edgepool_device_memory_available_bytes over edgepool_device_memory_total_bytes), so this works without node-exporter. The line marks the 90% alert.",
                        targets((f"({NODE_MEM} or on (node) {WORKERS_MEM}) and on (node) {SELECTED_DEVICES}", "{{node}}")),
                        unit="percentunit", max_=1, min_=0, line_at=0.9), 8, 8),
            (timeseries("Temperature per device",
                        "Hottest reading per device and sensor, read by the workers from /sys/class/thermal and hwmon (no node-exporter needed). "
                        "Devices without a readable sensor (most VMs) have no line rather than 0. The line marks 80 °C, where a Raspberry Pi 4 "
                        "starts throttling (the alert's threshold).",
                        targets((f"max by (node, sensor) (edgepool_device_temperature_celsius{{{WORKER_SEL}}})", "{{node}} {{sensor}}")),
                        unit="celsius", line_at=80), 8, 8),
            (timeseries("Throttling per device",
                        "Raspberry Pi firmware flags (get_throttled, current state), 1 = active: under_voltage (weak power supply), "
                        "frequency_capped, throttled, soft_temperature_limit (heat). Read by the workers; only Raspberry Pis have these series.",
                        targets((f"max by (node, condition) (edgepool_device_throttled{{{WORKER_SEL}}})", "{{node}} {{condition}}")),
                        unit="short", max_=1, min_=0), 8, 8),
            (timeseries("Worker process CPU vs busy ratio",
                        "Per worker: its process's CPU as a share of the whole device (process_cpu_seconds_total over edgepool_device_cpu_cores, "
                        "which counts whole seconds, so short ranges are coarse) against its busy ratio (slots in use). Busy slots with little "
                        "CPU mean the worker waits for something (a starved CPU, slow publishes, emulated slowdown). Needs no node-exporter. "
                        "In `edgepool demo` all workers, the sink and the cameras are one process, so every worker shows the same CPU.",
                        targets(
                            (f"sum by (arch, worker, node) (rate(process_cpu_seconds_total[{RI}]) * on (job, instance) group_left (arch, worker, node) {SELECTED_DEVICES})"
                             f" / on (arch, worker, node) max by (arch, worker, node) (edgepool_device_cpu_cores{{{WORKER_SEL}}})", "{{worker}} process CPU"),
                            (f"sum by (arch, worker) (rate(edgepool_worker_busy_seconds_total{{{WORKER_SEL}}}[{RI}])) / sum by (arch, worker) (edgepool_worker_slots{{{WORKER_SEL}}})",
                             "{{worker}} busy"),
                        ), unit="percentunit", max_=1, min_=0), 8, 8),
            (timeseries("Results / s per device",
                        "The work each device does: results per second counted at the sink, summed over the device's workers (joined by worker "
                        "id to edgepool_worker_info's node). Read beside the CPU panel: a device whose results fall while its total CPU stays "
                        "high and its edgepool CPU falls is starved by something else (EdgepoolDeviceCPUContention).",
                        targets((f"sum by (node) (sum by (arch, worker) (rate({results}[{RI}])) * on (arch, worker) group_left (node) max by (arch, worker, node) ({SELECTED_DEVICES}))", "{{node}}")),
                        unit="reqps"), 8, 8),
        ]),
    ]


def variables():
    def query_var(name, label, query, desc):
        return {
            "name": name,
            "label": label,
            "description": desc,
            "type": "query",
            "datasource": DS,
            "definition": query,
            "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "refresh": 2,
            "regex": "",
            "sort": 1,
            "multi": True,
            "includeAll": True,
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [],
            "hide": 0,
            "skipUrlSync": False,
        }

    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "regex": "",
            "current": {},
            "options": [],
            "refresh": 1,
            "hide": 0,
            "includeAll": False,
            "multi": False,
            "skipUrlSync": False,
        },
        query_var("arch", "arch", "label_values(edgepool_sink_results_total, arch)", "CPU architecture of the workers."),
        query_var("worker", "worker", 'label_values(edgepool_sink_results_total{arch=~"$arch"}, worker)', "Worker id."),
        query_var("camera", "camera", "label_values(edgepool_sink_results_total, camera)", "Camera id."),
    ]


def dashboard():
    panels, next_id, y = [], 1, 0
    for title, items in rows():
        panels.append({"type": "row", "title": title, "collapsed": False, "id": next_id, "panels": [],
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        next_id, y, x, row_h = next_id + 1, y + 1, 0, 0
        for panel, w, h in items:
            if x + w > 24:
                x, y, row_h = 0, y + row_h, 0
            panel = {"id": next_id, "gridPos": {"h": h, "w": w, "x": x, "y": y}, **panel}
            panels.append(panel)
            next_id, x, row_h = next_id + 1, x + w, max(row_h, h)
        y += row_h
    return {
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
            "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard",
        }]},
        "description": "edgepool: throughput and share per arch, queue depth, end-to-end latency and its stages, drops, video cameras (source up, restarts, motion gating, ffmpeg CPU), detections, worker busy ratio, devices (CPU, memory, temperature, throttling). Generated by tools/observability/dashboard.py.",
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "liveNow": False,
        "panels": panels,
        "refresh": "10s",
        "schemaVersion": 39,
        "tags": ["edgepool"],
        "templating": {"list": variables()},
        "time": {"from": "now-30m", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": "edgepool",
        "uid": "edgepool",
        "version": 1,
        "weekStart": "",
    }


def main():
    text = json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"
    if "--check" in sys.argv[1:]:
        if not OUT.is_file() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT.relative_to(ROOT)} is stale; regenerate it with: python3 tools/observability/dashboard.py", file=sys.stderr)
            return 1
        print(f"{OUT.relative_to(ROOT)} matches tools/observability/dashboard.py")
        return 0
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
