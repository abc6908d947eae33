#!/usr/bin/env python3
"""Interop check from another language: a nats-py producer publishes frames exactly as
docs/wire.md says, and a nats-py subscriber reads the results from JetStream and validates each
against docs/result.schema.json. Prints one JSON line per result and a final summary line.

Usage: nats_py_client.py --url URL --photos DIR --schema FILE [--camera pycam]
"""
import argparse
import asyncio
import datetime
import json
import pathlib
import sys

import jsonschema
import nats
from nats.js.api import ConsumerConfig, DeliverPolicy


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--photos", required=True)
    ap.add_argument("--schema", required=True)
    ap.add_argument("--camera", default="pycam")
    args = ap.parse_args()

    schema = json.loads(pathlib.Path(args.schema).read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    photos = sorted(p for p in pathlib.Path(args.photos).iterdir() if p.suffix in (".jpg", ".png"))

    nc = await nats.connect(args.url)
    js = nc.jetstream()

    sent = {}
    for seq, photo in enumerate(photos, start=1):
        ctype = "image/png" if photo.suffix == ".png" else "image/jpeg"
        headers = {
            "Nats-Msg-Id": f"{args.camera}-{seq}",
            "Content-Type": ctype,
            "Edgepool-Seq": str(seq),
            "Edgepool-Captured-At": now_rfc3339(),
            "traceparent": f"00-{seq:032x}-{seq:016x}-01",
        }
        ack = await js.publish(f"frames.{args.camera}", photo.read_bytes(), headers=headers)
        assert ack.stream == "FRAMES", ack
        sent[seq] = photo.name
    # One bad frame: no Edgepool-Seq. It must come back as an error result that validates too.
    bad_seq = len(photos) + 1
    await js.publish(f"frames.{args.camera}", b"not an image",
                     headers={"Nats-Msg-Id": f"{args.camera}-x", "Content-Type": "image/jpeg",
                              "Edgepool-Captured-At": now_rfc3339()})

    sub = await js.pull_subscribe(f"detections.{args.camera}", durable=None, stream="DETECTIONS",
                                  config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
    results = []
    deadline = asyncio.get_event_loop().time() + 90
    while len(results) < len(sent) + 1 and asyncio.get_event_loop().time() < deadline:
        try:
            msgs = await sub.fetch(10, timeout=2)
        except nats.errors.TimeoutError:
            continue
        for m in msgs:
            result = json.loads(m.data)
            errors = sorted(validator.iter_errors(result), key=str)
            if errors:
                print(json.dumps({"invalid": result, "errors": [e.message for e in errors]}))
                return 1
            assert m.headers.get("Nats-Msg-Id"), "results carry their dedupe id"
            results.append(result)
            await m.ack()
    await nc.close()

    ok = [r for r in results if r["status"] == "ok"]
    errors = [r for r in results if r["status"] == "error"]
    for r in ok:
        print(json.dumps({"photo": sent[r["seq"]], "labels": sorted({d["label"] for d in r["detections"]}),
                          "traceparent": r.get("traceparent")}))
    print(json.dumps({"summary": True, "published": len(sent) + 1, "results": len(results), "ok": len(ok),
                      "errors": [e["error"]["kind"] for e in errors], "bad_seq": bad_seq}))
    return 0 if len(ok) == len(sent) and len(errors) == 1 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
