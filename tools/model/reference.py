#!/usr/bin/env python3
"""onnxruntime reference timings for `edgepool bench detect`.

Runs the detector model with onnxruntime on one raw input tensor (little-endian f32, NHWC
[1,300,300,3], as edgepool's preprocessing makes it) and prints one JSON object on stdout:

  {"onnxruntime": "1.26.0", "numpy": "1.26.4",
   "runs": [{"threads": 1, "iterations": 30, "ms_mean": 40.1, "ms_median": 39.8, "ms_min": 39.5, "fps": 24.9}, ...]}

One run per --threads value; each warms up first and times session.run() alone, so the numbers
compare with tract's inference stage, not with decoding.

With --profile, each run also has "nodes": onnxruntime's own profiler (enable_profiling) per
node, as the mean per frame over the timed runs (warm-up runs left out):
  [{"name": "Conv__123", "op": "FusedConv", "ms": 1.23}, ...]. The profiled session is a second
session after the timed one, so profiling does not change the timings above. The bench creates the venv this runs
in (onnxruntime==1.26.0, numpy==1.26.4); needs nothing else.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import sys
import time

import numpy as np
import onnxruntime as ort


def time_run(model: str, tensor: np.ndarray, threads: int, iterations: int, warmup: int) -> dict:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    feed = {"images": tensor}
    for _ in range(warmup):
        sess.run(None, feed)
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append((time.perf_counter() - t0) * 1e3)
    mean = statistics.fmean(times)
    return {
        "threads": threads,
        "iterations": iterations,
        "ms_mean": mean,
        "ms_median": statistics.median(times),
        "ms_min": min(times),
        "fps": 1e3 / mean,
    }


def profile_run(model: str, tensor: np.ndarray, threads: int, iterations: int, warmup: int) -> list[dict]:
    """Per-node kernel time from onnxruntime's profiler, mean per frame over the timed runs."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="edgepool-ort-profile-") as tmp:
        opts.profile_file_prefix = os.path.join(tmp, "ort")
        sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        feed = {"images": tensor}
        for _ in range(warmup + iterations):
            sess.run(None, feed)
        with open(sess.end_profiling(), encoding="utf-8") as f:
            events = json.load(f)
    runs = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    if len(runs) < warmup + iterations:
        raise SystemExit(f"reference: the profile has {len(runs)} runs, expected {warmup + iterations}")
    start = runs[warmup]
    nodes: dict[str, dict] = {}
    for e in events:
        if e.get("cat") != "Node" or e["ts"] < start or not e.get("name", "").endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")]
        n = nodes.setdefault(name, {"name": name, "op": e.get("args", {}).get("op_name", "?"), "us": 0})
        n["us"] += e["dur"]
    return [{"name": n["name"], "op": n["op"], "ms": n["us"] / 1e3 / iterations} for n in nodes.values()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True, help="raw little-endian f32 NHWC [1,300,300,3]")
    ap.add_argument("--threads", type=int, action="append", required=True,
                    help="intra-op threads; repeat for several runs")
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="add onnxruntime's per-node profile to each run")
    args = ap.parse_args()

    tensor = np.fromfile(args.input, dtype="<f4")
    if tensor.size != 300 * 300 * 3:
        print(f"reference: {args.input} has {tensor.size} values, expected 270000", file=sys.stderr)
        return 2
    tensor = tensor.reshape(1, 300, 300, 3)
    runs = [time_run(args.model, tensor, t, args.iterations, args.warmup) for t in args.threads]
    if args.profile:
        for run in runs:
            run["nodes"] = profile_run(args.model, tensor, run["threads"], args.iterations, args.warmup)
    print(json.dumps({"onnxruntime": ort.__version__, "numpy": np.__version__, "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
