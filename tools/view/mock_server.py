#!/usr/bin/env python3
"""A fake sink for working on crates/sink/src/page.html without building anything.

Serves the page from disk at / (re-read on every request, so a browser reload shows an edit) and
made-up data at /cameras, /fleet, /events (a `result` every second, now and then a `lagged`),
/cameras/ID/latest.jpg (a photo from testdata/photos; ?h= is ignored), latest.json and
stream.mjpeg. The cameras: cam-1 and cam-2 fine, cam-3 stale, cam-4 erroring, cam-5 without a
frame yet. GET /_mock/down?s=10 makes /cameras, /fleet and /events fail for 10 s (a restart).

Usage: python3 tools/view/mock_server.py [--port 8080]   then open http://127.0.0.1:8080/
Stdlib only.
"""

import argparse
import json
import random
import struct
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "crates" / "sink" / "src" / "page.html"
PHOTOS = sorted((ROOT / "testdata" / "photos").glob("*.jpg"))
LABELS = ["person", "tie", "dog", "car", "bicycle", "cup", "chair", "airplane"]
START = time.time()
down_until = 0.0


def jpeg_size(data):
    """(width, height) from a baseline or progressive JPEG's SOF marker."""
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + length
    raise ValueError("no SOF marker")


IMAGES = [(p.read_bytes(),) + jpeg_size(p.read_bytes()) for p in PHOTOS]


def rfc3339(t):
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def frame(cam_index, rev):
    return IMAGES[(cam_index + rev) % len(IMAGES)]


def result(cam_id, cam_index, seq, now, status="ok"):
    _, w, h = frame(cam_index, seq)
    rng = random.Random(f"{cam_id}-{seq}")
    dets = []
    if status == "ok":
        for _ in range(rng.randint(0, 4)):
            x, y = rng.uniform(0, .6), rng.uniform(0, .6)
            dets.append({"label": rng.choice(LABELS), "class_id": 1, "score": round(rng.uniform(.4, .99), 3),
                         "bbox": {"x_min": x, "y_min": y, "x_max": x + rng.uniform(.1, .4), "y_max": y + rng.uniform(.1, .4)}})
        dets.sort(key=lambda d: -d["score"])
    err = {"kind": "decode", "message": "JPEG ended early <truncated & 'odd'>"} if status == "error" else None
    return {"schema_version": 1, "camera": cam_id, "seq": seq, "stream_seq": seq, "captured_at": rfc3339(now - .3),
            "processed_at": rfc3339(now), "worker": rng.choice(["w1-x86_64-x1", "w2-x86_64-x4", "w3-aarch64-x1"]),
            "arch": "x86_64", "slowdown": 1.0, "model": "ssd_mobilenet_v2_coco", "width": w, "height": h, "delivery": 1,
            "timings": {"total_ms": round(rng.uniform(80, 400), 1)}, "status": status, "error": err, "detections": dets}


def cameras(now):
    tick = int(now - START)
    out = []
    for i, (cid, status) in enumerate([("cam-1", "ok"), ("cam-2", "ok"), ("cam-3", "stale"), ("cam-4", "error"), ("cam-5", "ok")]):
        rev = tick if status == "ok" else 7
        has_frame = cid != "cam-5"
        age = 0.4 if status != "stale" else 14 + tick
        res = result(cid, i, rev, now, "error" if status == "error" else "ok")
        _, w, h = frame(i, rev)
        out.append({
            "id": cid, "status": status, "last_seen": rfc3339(now - age) if has_frame else None,
            "age_s": age if has_frame else None, "fps": 2.0 if status == "ok" and has_frame else 0.0,
            "results_total": 10 * tick, "errors_total": tick if status == "error" else 0, "stale_total": 0,
            "last_status": res["status"] if has_frame else None,
            "last_labels": [d["label"] for d in res["detections"]] if has_frame else [],
            "snapshot": {"revision": rev, "seq": rev, "captured_at": rfc3339(now), "width": w, "height": h,
                         "worker": res["worker"], "status": "ok", "detections": len(res["detections"]),
                         "labels": [d["label"] for d in res["detections"]]} if has_frame else None,
            "image": f"/cameras/{cid}/latest.jpg", "stream": f"/cameras/{cid}/stream.mjpeg",
        })
    return {"now": rfc3339(now), "stale_after_s": 10, "cameras": out}


def fleet(now):
    workers = [("w1-x86_64-x1", "x86_64", None, 1, 1.0, 2.9, .72), ("w2-x86_64-x4", "x86_64", None, 1, 4.0, .8, .96),
               ("w3-aarch64-x1", "aarch64", "pi4", 2, 1.0, 1.1, .55)]
    total = sum(w[5] for w in workers)
    return {"updated_at": rfc3339(now - 1), "error": None,
            "latency": {"p50_s": .214, "p99_s": .931, "samples": 300},
            "status": {"workers": [{"id": i, "arch": a, "label": lb, "slots": sl, "slowdown": sd, "model": "ssd", "fps": f,
                                    "capacity_fps": f / b, "busy_ratio": b, "frames_total": 100, "updated_at": rfc3339(now),
                                    "device": None} for i, a, lb, sl, sd, f, b in workers],
                       "share": {w[0]: w[5] / total for w in workers[:2]},  # w3 missing: the page shows 0
                       "fleet_fps": total, "fleet_capacity_fps": 6.3, "publish_fps": 4.0, "pending": 3, "ack_pending": 2,
                       "waiting_pulls": 0, "redelivered": 0, "sizing": []}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def send(self, code, body, ctype, **headers):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        global down_until
        url = urlsplit(self.path)
        parts, now = url.path.strip("/").split("/"), time.time()
        if url.path == "/_mock/down":
            down_until = now + float(parse_qs(url.query).get("s", ["10"])[0])
            return self.send(200, b"down\n", "text/plain")
        if now < down_until and url.path in ("/cameras", "/fleet", "/events"):
            return self.send(503, b"restarting\n", "text/plain")
        if url.path == "/":
            return self.send(200, PAGE.read_bytes(), "text/html; charset=utf-8")
        if url.path in ("/cameras", "/fleet"):
            body = cameras(now) if url.path == "/cameras" else fleet(now)
            return self.send(200, json.dumps(body).encode(), "application/json")
        if url.path == "/events":
            return self.events()
        if len(parts) == 3 and parts[0] == "cameras":
            cams = {c["id"]: (i, c) for i, c in enumerate(cameras(now)["cameras"])}
            if parts[1] in cams and cams[parts[1]][1]["snapshot"]:
                i, cam = cams[parts[1]]
                rev = cam["snapshot"]["revision"]
                if parts[2] == "latest.jpg":
                    return self.send(200, frame(i, rev)[0], "image/jpeg")
                if parts[2] == "latest.json":
                    body = result(cam["id"], i, rev, now, "error" if cam["status"] == "error" else "ok")
                    return self.send(200, json.dumps(body).encode(), "application/json")
                if parts[2] == "stream.mjpeg":
                    return self.mjpeg(i)
        self.send(404, b"not found\n", "text/plain")

    def stream_headers(self, ctype):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def events(self):
        self.stream_headers("text/event-stream")
        n = 0
        try:
            while time.time() >= down_until:
                n += 1
                i = random.randrange(5)
                status = "error" if i == 3 else "stale" if n % 11 == 0 else "ok"
                msg = f"event: lagged\ndata: {random.randint(2, 9)}\n\n" if n % 17 == 0 else \
                    f"event: result\ndata: {json.dumps(result(f'cam-{i + 1}', i, n, time.time(), status))}\n\n"
                self.wfile.write(msg.encode())
                self.wfile.flush()
                time.sleep(1)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def mjpeg(self, i):
        self.stream_headers("multipart/x-mixed-replace; boundary=frame")
        try:
            for n in range(600):
                jpg = frame(i, n)[0]
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg) + jpg + b"\r\n")
                self.wfile.flush()
                time.sleep(1)
        except (BrokenPipeError, ConnectionResetError):
            pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print(f"page  http://{args.host}:{server.server_address[1]}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
