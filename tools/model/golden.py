#!/usr/bin/env python3
"""Golden outputs of the detector model, made and checked with onnxruntime.

testdata/golden/ holds one input tensor and the raw model outputs for it:
  grace_hopper_input.u8     the NHWC [1,300,300,3] input of testdata/photos/grace_hopper.jpg as
                            edgepool's Rust preprocessing makes it (RGB, bilinear stretch to
                            300x300); stored as u8 because the values are integral 0..255.
                            Regenerate with `EDGEPOOL_BLESS=1 cargo test -p edgepool-detector
                            --test it parity::` (the test then rewrites it and fails, to be re-run).
  grace_hopper_boxes.f32    raw little-endian f32, [1,1917,4]
  grace_hopper_scores.f32   raw little-endian f32, [1,1917,91]
  manifest.json             shapes, file names, tolerance and the tool versions used

Subcommands:
  make  --model M   run onnxruntime on the committed input tensor, write the outputs + manifest
  check --model M   run onnxruntime on the committed input tensor and exit 1 if any output
                    differs from the committed one by more than the tolerance (1e-4)

Needs numpy and onnxruntime only (tools/model/fetch_model.py runs `check` in its converter venv:
numpy<2, onnxruntime==1.26.0).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "testdata" / "golden"
MANIFEST = GOLDEN / "manifest.json"
INPUT_FILE = "grace_hopper_input.u8"
INPUT_SHAPE = [1, 300, 300, 3]
OUTPUTS = {"boxes": [1, 1917, 4], "scores": [1, 1917, 91]}
TOLERANCE = 1e-4


def load_input(golden: Path) -> np.ndarray:
    raw = np.fromfile(golden / INPUT_FILE, dtype=np.uint8)
    want = int(np.prod(INPUT_SHAPE))
    if raw.size != want:
        sys.exit(f"golden: {golden / INPUT_FILE} has {raw.size} bytes, expected {want}")
    return raw.reshape(INPUT_SHAPE).astype(np.float32)


def run_model(model: Path, tensor: np.ndarray) -> dict[str, np.ndarray]:
    opts = ort.SessionOptions()
    # One thread: the golden values must not depend on the machine's core count.
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    if names != list(OUTPUTS):
        sys.exit(f"golden: model outputs are {names}, expected {list(OUTPUTS)}")
    values = sess.run(None, {"images": tensor})
    out = {}
    for (name, shape), value in zip(OUTPUTS.items(), values):
        if list(value.shape) != shape:
            sys.exit(f"golden: output {name} has shape {list(value.shape)}, expected {shape}")
        out[name] = np.ascontiguousarray(value, dtype="<f4")
    return out


def make(args: argparse.Namespace) -> int:
    golden = Path(args.golden)
    outputs = run_model(Path(args.model), load_input(golden))
    manifest = {
        "description": "raw outputs of ssd_mobilenet_v2_coco.onnx on the committed input tensor",
        "source_image": "testdata/photos/grace_hopper.jpg",
        "input": {"file": INPUT_FILE, "dtype": "u8", "shape": INPUT_SHAPE, "layout": "NHWC RGB"},
        "outputs": {},
        "tolerance": TOLERANCE,
        "made_with": {"onnxruntime": ort.__version__, "numpy": np.__version__},
    }
    for name, value in outputs.items():
        file = f"grace_hopper_{name}.f32"
        value.tofile(golden / file)
        manifest["outputs"][name] = {"file": file, "dtype": "f32le", "shape": list(value.shape)}
    (golden / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"golden: wrote {', '.join(outputs)} to {golden}", file=sys.stderr)
    return 0


def check(args: argparse.Namespace) -> int:
    golden = Path(args.golden)
    manifest = json.loads((golden / "manifest.json").read_text())
    tolerance = float(manifest.get("tolerance", TOLERANCE))
    outputs = run_model(Path(args.model), load_input(golden))
    ok = True
    for name, value in outputs.items():
        spec = manifest["outputs"][name]
        want = np.fromfile(golden / spec["file"], dtype="<f4").reshape(spec["shape"])
        diff = float(np.max(np.abs(value - want)))
        status = "ok" if diff <= tolerance else "MISMATCH"
        print(f"golden: {name}: max abs diff {diff:.3g} (tolerance {tolerance:g}) {status}", file=sys.stderr)
        ok &= diff <= tolerance
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, func in (("make", make), ("check", check)):
        p = sub.add_parser(name)
        p.add_argument("--model", required=True, help="path to ssd_mobilenet_v2_coco.onnx")
        p.add_argument("--golden", default=str(GOLDEN), help="golden directory (default: %(default)s)")
        p.set_defaults(func=func)
    args = ap.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
