#!/usr/bin/env python3
"""The clients people already run, against a running `edgepool gateway` (gateway.rs starts it).

1. `requests`, the way any DeepStack / CodeProject.AI client posts: every photo; the labels and
   integer pixel boxes must match `edgepool detect` (--expected, its JSON lines) within 1 px.
2. deepstack-python 0.9 (`DeepstackObject.detect`), the client of Home Assistant's deepstack
   integrations, with its own min_confidence and api_key handling.
3. Frigate's deepstack detector, line for line (frigate/detectors/plugins/deepstack.py): the
   photo as a 320x320 RGB JPEG from PIL with its default quality, `api_key` as form data, no
   min_confidence, the [20,6] array filled in its loop; a person must be row 0.
4. Bad input, each a clear JSON error while the gateway keeps serving: no image field, not an
   image, a body over gateway.max_body, a truncated multipart body, a wrong API key, no key,
   a bad min_confidence, a custom model, an unknown path.

Prints one JSON object per check and a summary line; exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import sys
from pathlib import Path

import requests
from PIL import Image
from deepstack.core import DeepstackObject, DeepstackException

FAILED: list[str] = []


def check(name: str, ok: bool, **detail) -> None:
    print(json.dumps({"check": name, "ok": bool(ok), **detail}), flush=True)
    if not ok:
        FAILED.append(name)


def expected_boxes(line: dict, min_confidence: float) -> list[tuple[str, list[int]]]:
    w, h = line["width"], line["height"]
    px = lambda v, size: min(max(round(v * size), 0), size)  # noqa: E731
    dets = sorted((d for d in line["detections"] if d["score"] >= min_confidence), key=lambda d: -d["score"])
    return [(d["label"], [px(d["bbox"]["x_min"], w), px(d["bbox"]["y_min"], h), px(d["bbox"]["x_max"], w), px(d["bbox"]["y_max"], h)]) for d in dets]


def boxes_of(predictions: list[dict]) -> list[tuple[str, list[int]]]:
    return [(p["label"], [p["x_min"], p["y_min"], p["x_max"], p["y_max"]]) for p in predictions]


def close(a: list, b: list) -> bool:
    return len(a) == len(b) and all(la == lb and all(abs(x - y) <= 1 for x, y in zip(ba, bb)) for (la, ba), (lb, bb) in zip(a, b))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True, help="http://host:port of the gateway")
    ap.add_argument("--photos", required=True, type=Path)
    ap.add_argument("--expected", required=True, type=Path, help="`edgepool detect --json` output for the photos")
    ap.add_argument("--api-key", required=True)
    ap.add_argument("--max-body", required=True, type=int)
    args = ap.parse_args()
    detection = f"{args.url}/v1/vision/detection"
    expected = {Path(l["image"]).name: l for l in map(json.loads, args.expected.read_text().splitlines())}
    key = {"api_key": args.api_key}

    # 1. requests, every photo, at DeepStack's default and at a higher min_confidence.
    for name, line in sorted(expected.items()):
        for min_conf in (None, 0.6):
            data = dict(key, **({"min_confidence": str(min_conf)} if min_conf else {}))
            r = requests.post(detection, files={"image": (args.photos / name).read_bytes()}, data=data, timeout=60)
            body = r.json()
            want = expected_boxes(line, min_conf or 0.4)
            got = boxes_of(body.get("predictions", []))
            ordered = [p["confidence"] for p in body.get("predictions", [])] == sorted((p["confidence"] for p in body.get("predictions", [])), reverse=True)
            ints = all(isinstance(p[k], int) for p in body.get("predictions", []) for k in ("x_min", "y_min", "x_max", "y_max"))
            fields = all(k in body for k in ("success", "predictions", "count", "inferenceMs", "processMs", "analysisRoundTripMs", "moduleId", "code"))
            check(
                f"requests {name} min_confidence={min_conf or 'default'}",
                r.status_code == 200 and body.get("success") is True and close(got, want) and ordered and ints and fields and body["count"] == len(got),
                status=r.status_code, got=got, want=want, round_trip_ms=body.get("analysisRoundTripMs"), inference_ms=body.get("inferenceMs"),
            )

    # 2. deepstack-python, as Home Assistant uses it.
    host, port = args.url.removeprefix("http://").rsplit(":", 1)
    ds = DeepstackObject(host, int(port), api_key=args.api_key, timeout=30, min_confidence=0.5)
    preds = ds.detect((args.photos / "grace_hopper.jpg").read_bytes())
    want = expected_boxes(expected["grace_hopper.jpg"], 0.5)
    check("deepstack-python DeepstackObject.detect", close(boxes_of(preds), want), got=boxes_of(preds), want=want)
    wrong = DeepstackObject(host, int(port), api_key="not-the-key", timeout=30)
    try:
        wrong.detect((args.photos / "grace_hopper.jpg").read_bytes())
        check("deepstack-python with a wrong api_key raises", False)
    except DeepstackException as e:
        check("deepstack-python with a wrong api_key raises", "401" in str(e), error=str(e))

    # 3. Frigate's deepstack detector, its request and its decoding loop.
    img = Image.open(args.photos / "grace_hopper.jpg").convert("RGB").resize((320, 320))
    with io.BytesIO() as out:
        img.save(out, format="JPEG")
        jpeg = out.getvalue()
    session = requests.Session()
    response = session.post(detection, data={"api_key": args.api_key}, files={"image": jpeg}, timeout=30)
    response_json = response.json()
    labels = {0: "person", 2: "car", 31: "tie"}  # Frigate's labelmap: COCO id - 1
    rows = [[0.0] * 6 for _ in range(20)]
    w, h = img.size
    for i, d in enumerate(response_json.get("predictions")):
        if d["confidence"] < 0.4:
            break
        label = next((k for k, v in labels.items() if v == d["label"].lower()), -1)
        if label < 0:
            break
        rows[i] = [label, float(d["confidence"]), d["y_min"] / h, d["x_min"] / w, d["y_max"] / h, d["x_max"] / w]
    person = rows[0]
    check(
        "Frigate's deepstack detector: a person in row 0 of [20,6], normalized",
        person[0] == 0 and person[1] >= 0.4 and all(0.0 <= v <= 1.0 for v in person[2:]) and person[4] > person[2] and person[5] > person[3],
        row0=person, predictions=len(response_json.get("predictions")),
    )

    # 4. Bad input: a clear JSON error each, with `predictions` (Frigate and deepstack-python read it).
    def bad(name: str, want_status: int, needle: str, **kw) -> None:
        r = requests.post(kw.pop("url", detection), timeout=30, **kw)
        try:
            body = r.json()
        except ValueError:
            body = {}
        check(
            f"bad input: {name}",
            r.status_code == want_status and body.get("success") is False and needle.lower() in body.get("error", "").lower() and body.get("predictions") == [],
            status=r.status_code, error=body.get("error"),
        )

    bad("no image field", 400, "no valid image", files={"picture": b"x"}, data=key)
    bad("not an image", 400, "invalid image", files={"image": b"this is text, not a picture"}, data=key)
    bad("a truncated JPEG", 400, "invalid image", files={"image": (args.photos / "grace_hopper.jpg").read_bytes()[:3000]}, data=key)
    bad("a body over gateway.max_body", 413, "max_body", files={"image": b"\xff\xd8\xff" + b"\0" * (args.max_body + 1024)}, data=key)
    bad("a wrong api key", 401, "incorrect api key", files={"image": (args.photos / "grace_hopper.jpg").read_bytes()}, data={"api_key": "nope"})
    bad("no api key", 401, "incorrect api key", files={"image": (args.photos / "grace_hopper.jpg").read_bytes()})
    bad("min_confidence not a number", 400, "min_confidence", files={"image": (args.photos / "grace_hopper.jpg").read_bytes()}, data=dict(key, min_confidence="lots"))
    bad("a custom model", 400, "custom models", url=f"{args.url}/v1/vision/custom/licence-plate", files={"image": b"x"}, data=key)
    r = requests.get(f"{args.url}/v1/vision/nothing-here", timeout=10)
    check("an unknown path: JSON 404", r.status_code == 404 and r.json().get("predictions") == [], status=r.status_code)

    # A multipart body cut off in the middle: raw HTTP, as requests always completes its bodies.
    boundary = "edgepoolboundary"
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode() + (args.photos / "grace_hopper.jpg").read_bytes()[:2000]
    head = (f"POST /v1/vision/detection HTTP/1.1\r\nHost: gateway\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(part)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(head + part)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    body = json.loads(rest.split(b"\r\n\r\n", 1)[1] or b"{}")
    check("bad input: a truncated multipart body", b" 400 " in status_line and body.get("success") is False and body.get("predictions") == [], status=status_line.decode(), error=body.get("error"))

    # Still serving after all of it.
    r = requests.post(detection, files={"image": (args.photos / "grace_hopper.jpg").read_bytes()}, data=key, timeout=60)
    check("still serving after the bad input", r.status_code == 200 and r.json().get("success") is True)
    for path in ("/v1/server/status/ping", "/v1/status/ping", "/v1/status/updateavailable"):
        r = requests.get(f"{args.url}{path}", timeout=10)
        check(f"GET {path}", r.status_code == 200 and r.json().get("success") is True)
    r = requests.post(f"{args.url}/v1/vision/custom/list", data=key, timeout=10)
    check("POST /v1/vision/custom/list", r.status_code == 200 and r.json().get("models") == [])

    print(json.dumps({"summary": True, "failed": FAILED}))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
