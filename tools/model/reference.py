#!/usr/bin/env python3
"""onnxruntime reference timings for `edgepool bench detect`.

Runs the detector model with onnxruntime on one raw input tensor (little-endian f32, NHWC
[1,300,300,3], as edgepool's preprocessing makes it) and prints one JSON object on stdout:

  {"onnxruntime": "1.26.0", "numpy": "1.26.4",
   "runs": [{"threads": 1, "iterations": 30, "ms_mean": 40.1, "ms_median": 39.8, "ms_min": 39.5, "fps": 24.9}, ...]}

One run per --threads value; each warms up first and times session.run() alone, so the numbers
compare with tract's inference stage, not with decoding. The bench creates the venv this runs
in (onnxruntime==1.26.0, numpy==1.26.4); needs nothing else.
"""
from __future__ import annotations

import argparse
import json
import statistics
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True, help="raw little-endian f32 NHWC [1,300,300,3]")
    ap.add_argument("--threads", type=int, action="append", required=True,
                    help="intra-op threads; repeat for several runs")
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()

    tensor = np.fromfile(args.input, dtype="<f4")
    if tensor.size != 300 * 300 * 3:
        print(f"reference: {args.input} has {tensor.size} values, expected 270000", file=sys.stderr)
        return 2
    tensor = tensor.reshape(1, 300, 300, 3)
    runs = [time_run(args.model, tensor, t, args.iterations, args.warmup) for t in args.threads]
    print(json.dumps({"onnxruntime": ort.__version__, "numpy": np.__version__, "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
