#!/usr/bin/env python3
"""Frigate's zmq detector, against a running `edgepool gateway --zmq` (gateway.rs starts it).

Speaks exactly what frigate/detectors/plugins/zmq_ipc.py sends: a REQ socket that connects, the
model handshake of newer Frigate versions, then `[header JSON, tensor bytes]` with a C-order
uint8 NHWC tensor (here grace_hopper.jpg resized to 300x300 and 320x320 by PIL), decoding the
single 480-byte reply into a [20, 6] float32 array as Frigate's `_decode_response` does. Then bad
requests (a bad shape, a bad dtype, a tensor whose size does not match its shape, one frame),
each answered with an error, and a good request afterwards.

Prints one JSON object per check and a summary line; exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import zmq
from PIL import Image

FAILED: list[str] = []


def check(name: str, ok: bool, **detail) -> None:
    print(json.dumps({"check": name, "ok": bool(ok), **detail}), flush=True)
    if not ok:
        FAILED.append(name)


def socket(ctx: zmq.Context, endpoint: str, timeout_ms: int) -> zmq.Socket:
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.RCVTIMEO, timeout_ms)
    s.setsockopt(zmq.SNDTIMEO, timeout_ms)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    return s


def decode(frames: list[bytes]) -> list[list[float]] | None:
    """Frigate's _decode_response: one frame of exactly 20*6*4 bytes."""
    if len(frames) == 1 and len(frames[0]) == 20 * 6 * 4:
        flat = struct.unpack("<120f", frames[0])
        return [list(flat[i * 6:(i + 1) * 6]) for i in range(20)]
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--photos", required=True, type=Path)
    args = ap.parse_args()
    ctx = zmq.Context()
    s = socket(ctx, args.endpoint, 30000)

    # The handshake newer Frigate sends before any frame.
    s.send(json.dumps({"model_request": True, "model_name": "ssd_mobilenet_v2_coco.onnx"}).encode())
    reply = json.loads(s.recv())
    check("model handshake", reply == {"model_available": True, "model_loaded": True}, reply=reply)

    for side in (300, 320):
        img = Image.open(args.photos / "grace_hopper.jpg").convert("RGB").resize((side, side))
        tensor = img.tobytes()  # C-order H x W x 3, uint8: numpy's tobytes(order="C") of [1,H,W,3]
        header = {"shape": [1, side, side, 3], "dtype": "uint8", "model_type": "ssd"}
        s.send_multipart([json.dumps(header).encode(), tensor])
        frames = s.recv_multipart()
        rows = decode(frames)
        row0 = rows[0] if rows else None
        ok = (
            rows is not None
            and row0[0] == 0.0  # person, Frigate's label index 0
            and row0[1] >= 0.4
            and all(0.0 <= v <= 1.0 for v in row0[2:])
            and row0[4] > row0[2] and row0[5] > row0[3]
            and all(r[1] <= row0[1] for r in rows)
            and all(v == 0.0 for r in rows if r[1] == 0.0 for v in r)
        )
        check(f"{side}x{side} tensor: a person in row 0 of [20,6]", ok, row0=row0, frames=[len(f) for f in frames])

    def bad(name: str, parts: list[bytes], needle: str) -> None:
        # A fresh socket per request, as Frigate recreates its own after a bad reply.
        b = socket(ctx, args.endpoint, 10000)
        b.send_multipart(parts)
        frames = b.recv_multipart()
        b.close()
        try:
            body = json.loads(frames[0]) if len(frames) == 1 else {}
        except ValueError:
            body = {}
        check(f"bad request: {name}", needle in body.get("error", ""), error=body.get("error"))

    good_tensor = Image.open(args.photos / "grace_hopper.jpg").convert("RGB").resize((320, 320)).tobytes()
    bad("a shape that is not NHWC RGB", [json.dumps({"shape": [1, 3, 320, 320], "dtype": "uint8"}).encode(), good_tensor], "shape")
    bad("a float32 tensor", [json.dumps({"shape": [1, 320, 320, 3], "dtype": "float32"}).encode(), good_tensor], "dtype")
    bad("a tensor shorter than its shape", [json.dumps({"shape": [1, 320, 320, 3], "dtype": "uint8"}).encode(), good_tensor[:1000]], "needs 307200")
    bad("a header that is not JSON", [b"{nope", good_tensor], "not JSON")
    bad("one frame only", [b"just one"], "frames")

    s.send_multipart([json.dumps({"shape": [1, 320, 320, 3], "dtype": "uint8", "model_type": "ssd"}).encode(), good_tensor])
    rows = decode(s.recv_multipart())
    check("still serving after the bad requests", rows is not None and rows[0][0] == 0.0)

    print(json.dumps({"summary": True, "failed": FAILED}))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
