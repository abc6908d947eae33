#!/usr/bin/env python3
"""Load check: what 50 page viewers and 20 MJPEG viewers cost a saturated `edgepool demo --keep`,
measured side by side with no viewers.

Method. Start `edgepool demo --keep --cameras 2 --workers 1,4 --fps F --settle 5s` in its own
process group (stderr to demo.log in a temp dir) and read the `page`, `nats-server` and `capacity`
lines it prints. The pipeline must be saturated, so that throughput measures capacity rather than
echoing the offered rate: with `--fps auto` (the default) the demo starts at 4 fps per camera and,
when the cameras then offer less than 1.3x or more than 1.8x the capacity the demo measured, it is
restarted once at 1.5x. That capacity is the demo's quick estimate at its start and varies between
starts (4.2 to 6.7 frames/s on the same 2-core machine, against 4.8 to 5.5 ok results/s actually
reached), so saturation is checked on the data: every phase must have `stale` results.
Overloaded frames go stale after 30 s and are answered `stale` cheaply, so throughput is **ok
results per second**: the delta of `edgepool_sink_results_total{status="ok"}` (summed over the
arch, worker and camera labels) on the sink's /metrics.

Warm-up: at least --warmup seconds after both cameras show a snapshot, and until the first `stale`
result (at 1.5x the backlog's head reaches the 30 s staleness bound ~90 s after the start; from
then on the backlog stops growing and the pipeline is in its steady state), at most 180 s.

Then phases of --phase seconds, alternating to cancel drift: none, viewers, none, viewers. Viewers
(--pages page viewers and --streams MJPEG viewers) start at a phase's start, each after a random
delay of up to 1 s so that their polls do not run in lockstep, and stop at its end. Each phase's
window skips its first 5 s (connection set-up; the previous phase's teardown). Over the window:
ok results/s (and all results/s), CPU of the demo process (utime+stime of /proc/PID/stat; it runs
every role but the broker) and of its nats-server child (found by ppid), host CPU busy (/proc/stat),
CPU of this load generator (getrusage; it shares the machine's cores), MJPEG parts/s received,
page requests/s, SSE events/s; demo and nats-server RSS (VmRSS) at the window's end and the demo's
highest once-a-second sample; the mean compute time per processed frame from the results' stage
timings (`edgepool_sink_stage_seconds`; "infer ms" is its inference part: when it grows with viewers,
the viewers' work took CPU from the workers). CPU is in % of one core (200 % = both cores of a
2-core machine).
Result: ok/s with viewers over ok/s without (each side the mean of its phases); the target is a
drop of at most 5 %. The two none phases' difference is printed as the noise floor.

A page viewer does what crates/sink/src/page.html does, over raw HTTP/1.1 on asyncio streams:
GET /cameras 1 s after the previous one ended, GET /fleet likewise every 2 s, one GET /events
(server-sent events) kept open and read, and GET /cameras/ID/latest.jpg?h=240&v=REV whenever a
camera's snapshot revision in /cameras changed (on its own connection, as a browser loads images
beside its fetches; a failed image is asked again at the next poll, like the page). Those three
request loops use one keep-alive connection each, as a browser reuses its connections; a request
on a reused connection that the server had closed is retried once on a new one (counted as a
retry, not an error). An MJPEG viewer reads GET /cameras/ID/stream.mjpeg (alternating cameras)
and counts the multipart parts (boundary `--edgepoolframe`, each framed by its Content-Length).
Streams that end or stay silent for 30 s count as errors and reconnect after 3 s.

The demo is stopped on exit, also on failure, Ctrl-C or SIGTERM: SIGINT to its group, 20 s, then SIGKILL;
its nats-server (own process group, killed by the kernel when the demo dies) is checked gone.

Usage: load_check.py --edgepool PATH [--fps auto|F] [--phase 45] [--pages 50] [--streams 20]
           [--warmup 30] [--json PATH] [--keep-tmp]
Stdlib only. Exit status: 0 after a measurement, whatever it found (it prints whether the target
was met); 1 when a viewer saw an error or a status other than 200; 2 when the demo did not start
or died.
"""

import argparse
import asyncio
import json
import os
import random
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo import Demo, Failure, proc_stat  # noqa: E402 (tools/view/demo.py)
from urllib.parse import quote, urlsplit

PAGE_LINE = re.compile(r"^page\s+(http://\S+?)/?\s*$")
NATS_LINE = re.compile(r"^nats-server\s+(nats://\S+)(?:.*\bpid (\d+))?")
CAPACITY_LINE = re.compile(r"^capacity\s+~([\d.]+) frames/s.*cameras offer ([\d.]+)")
METRIC_LINE = re.compile(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

CAMERAS = 2
WORKER_SLOWDOWNS = "1,4"  # one fast worker, one emulating a 4x slower device
FIRST_FPS = 4.0  # per camera, the first start with --fps auto
OVERLOAD = 1.5  # offered / capacity that --fps auto aims for
OVERLOAD_OK = (1.3, 1.8)  # the first start is kept when it lands in here
WARMUP_MAX = 180.0  # seconds to wait at most for the first stale result
SKIP = 5.0  # seconds at a phase's start left out of its window
TARGET = 0.05  # at most this drop in ok results/s with viewers
REQUEST_TIMEOUT = 10.0
STREAM_IDLE = 30.0  # SSE sends a keep-alive every 15 s, MJPEG repeats a frame every 10 s
RECONNECT_S = 3.0  # EventSource's default retry
BOUNDARY = b"--edgepoolframe"
PAGE_KINDS = ("cameras", "fleet", "image")
KINDS = (*PAGE_KINDS, "events", "mjpeg")
STAGES = ("decode", "preprocess", "inference", "postprocess")  # per ok result, from edgepool_sink_stage_seconds


def log(msg):
    print(f"load-check: {msg}", flush=True)




# ---------------------------------------------------------------------------------------------
# The demo and its processes


def cpu_s(pid):
    s = proc_stat(pid) if pid else None
    return s[2] if s else None


def rss_mib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, TypeError):
        pass
    return None


def find_child(ppid, comm):
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (s := proc_stat(entry.name)) and s[1] == ppid and s[0] == comm:
            return int(entry.name)
    return None


def host_cpu():
    """(busy, total) jiffies of all cores together, from /proc/stat."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(v[:8])  # guest time is already counted in user
    return total - v[3] - v[4], total


def own_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


# ---------------------------------------------------------------------------------------------
# Minimal HTTP/1.1 over asyncio streams


class Closed(ConnectionError):
    """The connection closed before any byte of the response."""


class Retryable(ConnectionError):
    """A reused keep-alive connection the server had closed: the request can be sent again."""


async def read_head(reader):
    line = await reader.readline()
    if not line:
        raise Closed("connection closed before a response")
    parts = line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise ConnectionError(f"not an HTTP/1 response: {line[:60]!r}")
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n"):
        if not line:
            raise ConnectionError("connection closed in the response headers")
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(parts[1]), headers


class Body:
    """A response body read piece by piece: chunked, Content-Length, or up to the close."""

    def __init__(self, reader, status, headers):
        self.reader = reader
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        self.left = None if self.chunked else int(headers.get("content-length", "-1"))
        if status in (204, 304) or 100 <= status < 200:
            self.left = 0
        self.done = self.left == 0

    async def read(self):
        """The next piece; b"" at the body's end."""
        if self.done:
            return b""
        if self.chunked:
            line = await self.reader.readline()
            if not line:
                raise ConnectionError("connection closed in a chunked body")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                while (line := await self.reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self.done = True
                return b""
            data = await self.reader.readexactly(size)
            await self.reader.readexactly(2)
            return data
        data = await self.reader.read(1 << 16 if self.left < 0 else min(self.left, 1 << 16))
        if self.left < 0:
            self.done = not data
        elif not data:
            raise ConnectionError(f"connection closed with {self.left} body bytes to go")
        else:
            self.left -= len(data)
            self.done = self.left == 0
        return data

    async def read_all(self):
        out = bytearray()
        while data := await self.read():
            out += data
        return bytes(out)


class Conn:
    """One HTTP/1.1 connection, kept alive across requests; reopened after an error or a close."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None
        self.used = False

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def send(self, path, headers=""):
        """Sends GET `path` and reads the status and headers."""
        if self.writer is None or self.writer.is_closing():
            self.close()
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
            self.used = False
        reused, self.used = self.used, True
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                          f"User-Agent: edgepool-load-check\r\n{headers}\r\n".encode())
        try:
            await self.writer.drain()
            return await read_head(self.reader)
        except (Closed, ConnectionResetError, BrokenPipeError) as e:
            if reused:
                raise Retryable(str(e)) from e
            raise

    async def get(self, path):
        """(status, body, retried). Any failure closes the connection and raises."""
        retried = False
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                try:
                    status, headers = await self.send(path)
                except Retryable:
                    self.close()
                    retried = True
                    status, headers = await self.send(path)
                body = await Body(self.reader, status, headers).read_all()
        except BaseException:
            self.close()
            raise
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body, retried


# ---------------------------------------------------------------------------------------------
# Viewers


class Kind:
    """Counters of one kind of request."""

    def __init__(self):
        self.requests = self.bytes = self.errors = self.retries = self.parts = self.events = self.lagged = 0
        self.statuses = Counter()
        self.error_samples = []

    def error(self, e):
        self.errors += 1
        msg = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if msg not in self.error_samples and len(self.error_samples) < 5:
            self.error_samples.append(msg)

    def snapshot(self):
        d = {k: getattr(self, k) for k in ("requests", "bytes", "errors", "retries", "parts", "events", "lagged")}
        d["statuses"] = {str(k): v for k, v in sorted(self.statuses.items())}
        d["error_samples"] = list(self.error_samples)
        return d


class Viewers:
    """--pages page viewers and --streams MJPEG viewers, started and stopped together."""

    def __init__(self, base, cameras, stats):
        u = urlsplit(base)
        self.host, self.port = u.hostname, u.port
        self.cameras, self.stats = cameras, stats
        self.tasks, self.crashed = [], []

    def start(self, pages, streams):
        self.tasks = [asyncio.create_task(self.page(random.uniform(0, 1))) for _ in range(pages)]
        self.tasks += [asyncio.create_task(self.mjpeg(self.cameras[i % len(self.cameras)], random.uniform(0, 1)))
                       for i in range(streams)]

    async def stop(self):
        for t in self.tasks:
            t.cancel()
        results = await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []
        self.crashed = [repr(r) for r in results if isinstance(r, Exception)]
        if self.crashed:
            log(f"  {len(self.crashed)} viewers crashed, e.g. {self.crashed[0]}")

    async def get(self, conn, path, kind):
        """GET `path`, counted under `kind`; the body when the status is 200, else None."""
        k = self.stats[kind]
        try:
            status, body, retried = await conn.get(path)
        except asyncio.CancelledError:
            raise
        except (OSError, EOFError, ValueError, TimeoutError) as e:
            k.error(e)
            return None
        k.requests += 1
        k.retries += retried
        k.bytes += len(body)
        k.statuses[status] += 1
        return body if status == 200 else None

    async def page(self, delay):
        await asyncio.sleep(delay)
        conns = [Conn(self.host, self.port) for _ in range(3)]
        want, pending, wake = {}, {}, asyncio.Event()

        async def cameras():
            while True:
                body = await self.get(conns[0], "/cameras", "cameras")
                if body is not None:
                    try:
                        cams = json.loads(body)["cameras"]
                    except (ValueError, KeyError, TypeError) as e:
                        self.stats["cameras"].error(ValueError(f"/cameras: {e}"))
                        cams = []
                    for cam in cams:
                        rev = (cam.get("snapshot") or {}).get("revision")
                        if rev is not None and rev != want.get(cam.get("id")):
                            want[cam["id"]] = pending[cam["id"]] = rev
                            wake.set()
                await asyncio.sleep(1.0)

        async def images():
            while True:
                await wake.wait()
                wake.clear()
                while pending:
                    cam, rev = pending.popitem()
                    path = f"/cameras/{quote(cam, safe='')}/latest.jpg?h=240&v={rev}"
                    if await self.get(conns[1], path, "image") is None and want.get(cam) == rev:
                        want[cam] = None  # failed: asked again at the next poll, like the page

        async def fleet():
            while True:
                await self.get(conns[2], "/fleet", "fleet")
                await asyncio.sleep(2.0)

        try:
            async with asyncio.TaskGroup() as tg:
                for loop in (cameras(), images(), fleet(), self.stream("/events", "events", self.sse_parser)):
                    tg.create_task(loop)
        finally:
            for c in conns:
                c.close()

    async def mjpeg(self, camera, delay):
        await asyncio.sleep(delay)
        await self.stream(f"/cameras/{quote(camera, safe='')}/stream.mjpeg", "mjpeg", self.mjpeg_parser)

    async def stream(self, path, kind, make_parser):
        """Keeps GET `path` open and feeds its body to a parser; reconnects after an error."""
        k = self.stats[kind]
        accept = "Accept: text/event-stream\r\nCache-Control: no-cache\r\n" if kind == "events" else ""
        while True:
            conn = Conn(self.host, self.port)
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    status, headers = await conn.send(path, accept)
                k.requests += 1
                k.statuses[status] += 1
                body = Body(conn.reader, status, headers)
                if status != 200:
                    async with asyncio.timeout(REQUEST_TIMEOUT):
                        k.bytes += len(await body.read_all())
                    await asyncio.sleep(float(headers.get("retry-after", RECONNECT_S)))
                    continue
                parse = make_parser(k)
                while True:
                    async with asyncio.timeout(STREAM_IDLE):
                        data = await body.read()
                    if not data:
                        raise ConnectionError("the server ended the stream")
                    k.bytes += len(data)
                    parse(data)
            except asyncio.CancelledError:
                raise
            except (OSError, EOFError, ValueError, TimeoutError) as e:
                k.error(e)
            finally:
                conn.close()
            await asyncio.sleep(RECONNECT_S)

    @staticmethod
    def sse_parser(k):
        buf = bytearray()

        def parse(data):
            buf.extend(data.replace(b"\r\n", b"\n") if b"\r" in data else data)
            while (i := buf.find(b"\n\n")) >= 0:
                block = bytes(buf[:i])
                del buf[:i + 2]
                if block.startswith(b"event: lagged") or b"\nevent: lagged" in block:
                    k.lagged += 1
                elif b"data:" in block:
                    k.events += 1
        return parse

    @staticmethod
    def mjpeg_parser(k):
        buf, need = bytearray(), [None]  # need: bytes of the current part still to come (JPEG + CRLF)

        def parse(data):
            buf.extend(data)
            while True:
                if need[0] is None:
                    i = buf.find(b"\r\n\r\n")
                    if i < 0:
                        if len(buf) > 4096:
                            raise ValueError("no part header in the first 4 KiB")
                        return
                    head = bytes(buf[:i]).lstrip(b"\r\n")
                    del buf[:i + 4]
                    if not head.startswith(BOUNDARY):
                        raise ValueError(f"a part does not start with {BOUNDARY.decode()}: {head[:40]!r}")
                    m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                    if not m:
                        raise ValueError("a part without Content-Length")
                    need[0] = int(m.group(1)) + 2
                if len(buf) < need[0]:
                    return
                del buf[:need[0]]
                need[0] = None
                k.parts += 1
        return parse


# ---------------------------------------------------------------------------------------------
# Measurement


async def fetch(base, path):
    """GET `path` on a connection of its own; the body (Failure unless 200)."""
    u = urlsplit(base)
    conn = Conn(u.hostname, u.port)
    try:
        status, body, _ = await conn.get(path)
    finally:
        conn.close()
    if status != 200:
        raise Failure(f"GET {path} answered {status}")
    return body


async def scrape(base):
    """The sink's /metrics as {name: [(labels, value)]}."""
    body = await fetch(base, "/metrics")
    out = {}
    for line in body.decode("utf-8", "replace").splitlines():
        if line and not line.startswith("#") and (m := METRIC_LINE.match(line)):
            out.setdefault(m.group(1), []).append((dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def metric_sum(metrics, name, **labels):
    return sum(v for lab, v in metrics.get(name, []) if all(lab.get(k) == want for k, want in labels.items()))


async def sample(base, demo, stats):
    try:
        m = await scrape(base)
    except (OSError, EOFError, ValueError, TimeoutError, Failure) as e:
        log(f"  scraping /metrics failed ({e!r}); once more")
        m = await scrape(base)
    t = time.monotonic()
    user, system = own_cpu()
    return {
        "t": t,
        "ok": metric_sum(m, "edgepool_sink_results_total", status="ok"),
        "stale": metric_sum(m, "edgepool_sink_results_total", status="stale"),
        "results": metric_sum(m, "edgepool_sink_results_total"),
        "renders": metric_sum(m, "edgepool_sink_snapshot_renders_total"),
        "snapshots": metric_sum(m, "edgepool_sink_snapshots_total", outcome="kept"),
        "stream_viewers": metric_sum(m, "edgepool_sink_stream_viewers"),
        "refused": metric_sum(m, "edgepool_sink_stream_viewers_refused_total"),
        "stages": {st: (metric_sum(m, "edgepool_sink_stage_seconds_sum", stage=st),
                        metric_sum(m, "edgepool_sink_stage_seconds_count", stage=st)) for st in STAGES},
        "demo_cpu": cpu_s(demo.p.pid),
        "nats_cpu": cpu_s(demo.nats_pid),
        "host": host_cpu(),
        "own_user": user,
        "own_sys": system,
        "demo_rss": rss_mib(demo.p.pid),
        "nats_rss": rss_mib(demo.nats_pid) if demo.nats_pid else None,
        "viewers": {kind: stats[kind].snapshot() for kind in KINDS},
    }


def rates(a, b):
    dt = b["t"] - a["t"]
    per_s = lambda key: (b[key] - a[key]) / dt  # noqa: E731
    pct = lambda key: None if a[key] is None or b[key] is None else 100 * (b[key] - a[key]) / dt  # noqa: E731
    d = lambda kind, key: b["viewers"][kind][key] - a["viewers"][kind][key]  # noqa: E731
    busy, total = b["host"][0] - a["host"][0], b["host"][1] - a["host"][1]
    return {
        "window_s": round(dt, 2),
        "ok_per_s": per_s("ok"),
        "results_per_s": per_s("results"),
        "stale_per_s": per_s("stale"),
        "snapshots_per_s": per_s("snapshots"),
        "renders_per_s": per_s("renders"),
        "demo_cpu_pct": pct("demo_cpu"),
        "nats_cpu_pct": pct("nats_cpu"),
        "host_busy_pct": 100 * os.cpu_count() * busy / total if total else None,
        "loadgen_cpu_pct": 100 * ((b["own_user"] + b["own_sys"]) - (a["own_user"] + a["own_sys"])) / dt,
        "loadgen_user_s": b["own_user"] - a["own_user"],
        "loadgen_sys_s": b["own_sys"] - a["own_sys"],
        "demo_rss_mib_end": b["demo_rss"],
        "nats_rss_mib_end": b["nats_rss"],
        "stream_viewers_open_end": b["stream_viewers"],
        "stream_viewers_refused": b["refused"] - a["refused"],
        "mjpeg_frames_per_s": d("mjpeg", "parts") / dt,
        "mjpeg_bytes_per_s": d("mjpeg", "bytes") / dt,
        "page_requests_per_s": sum(d(k, "requests") for k in PAGE_KINDS) / dt,
        "page_bytes_per_s": sum(d(k, "bytes") for k in (*PAGE_KINDS, "events")) / dt,
        "image_requests_per_s": d("image", "requests") / dt,
        "sse_events_per_s": d("events", "events") / dt,
        "sse_lagged": d("events", "lagged"),
        "viewer_errors": sum(d(k, "errors") for k in KINDS),
        # Mean compute time per processed frame (both workers; the emulated slowdown not included):
        # rising with viewers means the viewers' work took CPU from inference.
        "stage_ms": {st: (1e3 * (b["stages"][st][0] - a["stages"][st][0]) / n if (n := b["stages"][st][1] - a["stages"][st][1])
                          else None) for st in STAGES},
    }


async def run_phase(name, with_viewers, args, base, demo, stats, cameras):
    viewers = Viewers(base, cameras, stats)
    start = time.monotonic()
    log(f"phase {name}: {'%d page + %d MJPEG viewers' % (args.pages, args.streams) if with_viewers else 'no viewers'}"
        f", {args.phase:.0f} s")
    if with_viewers:
        viewers.start(args.pages, args.streams)
    try:
        await asyncio.sleep(SKIP)
        a = await sample(base, demo, stats)
        rss_max = a["demo_rss"] or 0
        while (left := start + args.phase - time.monotonic()) > 0:
            await asyncio.sleep(min(1.0, left))
            demo.check_alive(f"phase {name}")
            rss_max = max(rss_max, rss_mib(demo.p.pid) or 0)
        b = await sample(base, demo, stats)
    finally:
        if with_viewers:
            await viewers.stop()
    r = {"phase": name, "viewers": with_viewers, **rates(a, b), "demo_rss_mib_max": max(rss_max, b["demo_rss"] or 0),
         "viewers_crashed": viewers.crashed}
    log(f"  ok {r['ok_per_s']:.2f}/s, demo CPU {r['demo_cpu_pct']:.0f} %, host busy {r['host_busy_pct']:.0f} %, "
        f"load generator {r['loadgen_cpu_pct']:.1f} %" + (f", MJPEG {r['mjpeg_frames_per_s']:.1f} frames/s, "
                                                           f"page {r['page_requests_per_s']:.1f} req/s" if with_viewers else ""))
    return r


async def wait_for(what, check, timeout, demo, interval=0.5):
    """Polls `check` (sync or async) until it returns something truthy; fails after `timeout`
    seconds or when the demo exits."""
    deadline, last_error = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        demo.check_alive(f"waiting for {what}")
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
        except (OSError, ValueError, KeyError, TypeError, Failure) as e:
            last_error = e
        await asyncio.sleep(interval)
    raise Failure(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


async def launch(args, fps, logfile):
    argv = [args.edgepool, "demo", "--keep", "--cameras", str(CAMERAS), "--workers", WORKER_SLOWDOWNS,
            "--fps", f"{fps:g}", "--settle", "5s"]
    log("starting " + " ".join([Path(args.edgepool).name, *argv[1:]]))
    demo = Demo(argv, logfile, say=log)
    try:
        def lines():
            page, nats, cap = demo.find(PAGE_LINE), demo.find(NATS_LINE), demo.find(CAPACITY_LINE)
            return (page, nats, cap) if page and nats and cap else None
        page, nats, cap = await wait_for("the `page`, `nats-server` and `capacity` lines on its stderr", lines, 180, demo)
        info = {"page": page.group(1), "nats_url": nats.group(1), "fps": fps, "capacity": float(cap.group(1)),
                "offered": float(cap.group(2))}
        printed = int(nats.group(2)) if nats.group(2) else None
        demo.nats_pid = find_child(demo.p.pid, "nats-server") or printed
        if demo.nats_pid is None:
            log("no nats-server child found; its CPU is not measured")
        elif printed and printed != demo.nats_pid:
            log(f"the demo printed nats-server pid {printed}, its child is {demo.nats_pid}; measuring the child")
        info["nats_pid"], info["demo_pid"] = demo.nats_pid, demo.p.pid
        return demo, info
    except BaseException:
        demo.stop()
        raise


async def start_demo(args, logfile):
    fps = FIRST_FPS if args.fps == "auto" else float(args.fps)
    demo, info = await launch(args, fps, logfile)
    load = info["offered"] / info["capacity"]
    log(f"capacity ~{info['capacity']:.1f} frames/s, cameras offer {info['offered']:.1f} ({100 * load:.0f} %)")
    if args.fps == "auto" and not OVERLOAD_OK[0] <= load <= OVERLOAD_OK[1]:
        fps = max(0.1, round(OVERLOAD * info["capacity"] / CAMERAS, 1))
        log(f"restarting at {fps:g} fps per camera to offer ~{100 * OVERLOAD:.0f} % of the capacity")
        demo.stop()
        demo, info = await launch(args, fps, logfile)
        load = info["offered"] / info["capacity"]
        log(f"capacity ~{info['capacity']:.1f} frames/s, cameras offer {info['offered']:.1f} ({100 * load:.0f} %)")
    if load < 1.2:
        log(f"WARNING: the cameras offer only {100 * load:.0f} % of the capacity; throughput may follow the "
            "offered rate rather than measure capacity")
    info["load"] = load
    return demo, info


def fmt(v, spec):
    return "–" if v is None else format(v, spec)


def report(phases, info, args):
    cols = [("phase", "phase", "<8"), ("viewers", None, "<8"), ("ok/s", "ok_per_s", ".2f"),
            ("all/s", "results_per_s", ".2f"), ("demo CPU%", "demo_cpu_pct", ".0f"), ("nats CPU%", "nats_cpu_pct", ".0f"),
            ("host busy%", "host_busy_pct", ".0f"), ("demo RSS MiB end/max", None, ""),
            ("loadgen CPU%", "loadgen_cpu_pct", ".1f"), ("MJPEG fr/s", "mjpeg_frames_per_s", ".1f"),
            ("page req/s", "page_requests_per_s", ".1f"), ("SSE ev/s", "sse_events_per_s", ".0f"),
            ("infer ms", None, "")]
    rows = []
    for p in phases:
        row = []
        for title, key, spec in cols:
            if title == "viewers":
                row.append(f"{args.pages}+{args.streams}" if p["viewers"] else "0")
            elif title == "infer ms":
                row.append(fmt(p["stage_ms"]["inference"], ".0f"))
            elif title.startswith("demo RSS"):
                row.append(f"{fmt(p['demo_rss_mib_end'], '.0f')}/{fmt(p['demo_rss_mib_max'], '.0f')}")
            elif key == "phase":
                row.append(p["phase"])
            else:
                row.append(fmt(p[key], spec))
        rows.append(row)
    widths = [max(len(c[0]), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    line = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    print()
    print(f"demo: {CAMERAS} cameras x {info['fps']:g} fps = {info['offered']:.1f} offered, capacity ~{info['capacity']:.1f} "
          f"frames/s ({100 * info['load']:.0f} %); workers {WORKER_SLOWDOWNS}; windows {args.phase - SKIP:.0f} s; "
          f"CPU in % of one core ({os.cpu_count()} cores); infer ms: mean inference time per processed frame")
    print(line([c[0] for c in cols]))
    print(line(["-" * w for w in widths]))
    for r in rows:
        print(line(r))

    none = [p for p in phases if not p["viewers"]]
    loaded = [p for p in phases if p["viewers"]]
    mean = lambda ps, key: sum(p[key] for p in ps) / len(ps)  # noqa: E731
    base, with_v = mean(none, "ok_per_s"), mean(loaded, "ok_per_s")
    ratio = with_v / base if base else float("nan")
    noise = abs(none[0]["ok_per_s"] - none[-1]["ok_per_s"]) / base if base and len(none) > 1 else None
    delta = lambda key: None if any(p[key] is None for p in phases) else mean(loaded, key) - mean(none, key)  # noqa: E731
    print()
    each = lambda ps: " ".join(format(p["ok_per_s"], ".2f") for p in ps)  # noqa: E731
    print(f"throughput (ok results/s): none {each(none)} -> mean {base:.2f}; viewers {each(loaded)} -> mean {with_v:.2f}")
    print(f"ratio viewers/none = {ratio:.3f} ({100 * (ratio - 1):+.1f} %)"
          + (f"; the two none phases differ by {100 * noise:.1f} % (noise floor)" if noise is not None else ""))
    print(f"with viewers: demo CPU {fmt(delta('demo_cpu_pct'), '+.0f')} % of a core, nats-server "
          f"{fmt(delta('nats_cpu_pct'), '+.0f')} %, host busy {fmt(delta('host_busy_pct'), '+.0f')} %, demo RSS "
          f"{fmt(delta('demo_rss_mib_end'), '+.0f')} MiB at the end "
          f"(max {max(p['demo_rss_mib_max'] for p in phases):.0f} MiB); load generator {mean(loaded, 'loadgen_cpu_pct'):.1f} % "
          "of a core on the same machine")
    print(f"viewers: MJPEG {mean(loaded, 'mjpeg_frames_per_s'):.1f} frames/s total "
          f"({mean(loaded, 'mjpeg_frames_per_s') / max(args.streams, 1):.2f} per viewer; snapshots arrive at "
          f"{mean(loaded, 'snapshots_per_s'):.2f}/s for {CAMERAS} cameras), page {mean(loaded, 'page_requests_per_s'):.1f} "
          f"requests/s ({mean(loaded, 'image_requests_per_s'):.1f} images), SSE {mean(loaded, 'sse_events_per_s'):.0f} events/s, "
          f"renders {mean(loaded, 'renders_per_s'):.2f}/s (none: {mean(none, 'renders_per_s'):.2f}/s)")
    if any(p["stale_per_s"] <= 0 for p in phases):
        print("WARNING: a phase had no stale results: the pipeline may not have been saturated, and then ok/s "
              "follows the offered rate instead of measuring capacity")
    else:
        print(f"saturated: stale results in every phase ({' '.join(format(p['stale_per_s'], '.2f') for p in phases)} /s)")
    met = ratio >= 1 - TARGET
    print(f"target ≤ {100 * TARGET:.0f} % throughput drop: {'met' if met else 'not met'}")
    return {"ok_per_s_none": base, "ok_per_s_viewers": with_v, "ratio": ratio, "none_noise": noise,
            "target_drop": TARGET, "target_met": met}


async def run(args, logfile):
    # SIGTERM (and SIGHUP) cancel the run like Ctrl-C does, so the demo is still stopped.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        asyncio.get_running_loop().add_signal_handler(sig, asyncio.current_task().cancel)
    demo, info = await start_demo(args, logfile)
    stats = {kind: Kind() for kind in KINDS}
    try:
        base = info["page"]
        log(f"page {base}/, broker {info['nats_url']} (nats-server pid {info['nats_pid']}), demo pid {info['demo_pid']}")

        async def cameras_ready():
            cams = json.loads(await fetch(base, "/cameras"))["cameras"]
            return [c["id"] for c in cams] if len(cams) == CAMERAS and all(c.get("snapshot") for c in cams) else None
        cameras = await wait_for(f"/cameras to list {CAMERAS} cameras, each with a snapshot", cameras_ready, 120, demo)

        t0 = time.monotonic()
        log(f"warm-up: at least {args.warmup:.0f} s, and until the first stale result (at most {WARMUP_MAX:.0f} s)")
        await asyncio.sleep(args.warmup)

        async def stale():
            return metric_sum(await scrape(base), "edgepool_sink_results_total", status="stale") > 0
        if not await wait_for_soft(stale, t0 + WARMUP_MAX, demo):
            log(f"no stale result after {WARMUP_MAX:.0f} s: the backlog may still be growing")
        info["warmup_s"] = round(time.monotonic() - t0, 1)
        log(f"warm-up done after {info['warmup_s']:.0f} s")

        phases = []
        for i, with_viewers in enumerate((False, True, False, True), 1):
            phases.append(await run_phase(f"{i}-{'viewers' if with_viewers else 'none'}", with_viewers, args, base,
                                          demo, stats, cameras))
    except Failure:
        log(f"demo log tail ({logfile}):\n{demo.tail()}")
        raise
    finally:
        demo.stop()

    summary = report(phases, info, args)
    totals = {kind: stats[kind].snapshot() for kind in KINDS}
    bad = {kind: t for kind, t in totals.items() if t["errors"] or any(s != "200" for s in t["statuses"])}
    crashed = [c for p in phases for c in p["viewers_crashed"]]
    print("viewer totals:")
    for kind, t in totals.items():
        extra = {"mjpeg": f", {t['parts']} parts", "events": f", {t['events']} events, {t['lagged']} lagged"}.get(kind, "")
        print(f"  {kind:<8} {t['requests']} requests, {t['bytes'] / 1e6:.1f} MB, statuses {t['statuses']}, "
              f"{t['errors']} errors, {t['retries']} retries{extra}" + (f"; e.g. {t['error_samples']}" if t["errors"] else ""))
    if crashed:
        print(f"  {len(crashed)} viewers crashed, e.g. {crashed[0]}")
    if args.json:
        doc = {"args": {k: v for k, v in vars(args).items() if k != "json"}, "demo": info, "phases": phases,
               "summary": summary, "viewer_totals": totals}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {args.json}")
    if bad or crashed:
        print("FAIL: viewers saw errors or statuses other than 200", file=sys.stderr, flush=True)
        return 1
    return 0


async def wait_for_soft(check, deadline, demo):
    """Like wait_for, but returns False at `deadline` instead of failing."""
    while time.monotonic() < deadline:
        demo.check_alive("warming up")
        try:
            if await check():
                return True
        except (OSError, ValueError, Failure):
            pass
        await asyncio.sleep(1)
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--edgepool", required=True, help="path to the edgepool binary")
    ap.add_argument("--fps", default="auto",
                    help=f"frames/s per camera, or auto: start at {FIRST_FPS:g} and restart once at {OVERLOAD:g}x the "
                         "capacity the demo measured unless the first start lands near it (default auto)")
    ap.add_argument("--phase", type=float, default=45, help="seconds per phase (default 45; the first 5 s are skipped)")
    ap.add_argument("--pages", type=int, default=50, help="page viewers (default 50)")
    ap.add_argument("--streams", type=int, default=20, help="MJPEG viewers (default 20)")
    ap.add_argument("--warmup", type=float, default=30, help="minimum warm-up seconds (default 30)")
    ap.add_argument("--json", help="write every number to this JSON file")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir with demo.log")
    args = ap.parse_args()
    args.edgepool = str(Path(args.edgepool).resolve())
    if not os.access(args.edgepool, os.X_OK):
        sys.exit(f"load-check: {args.edgepool} is not an executable")
    if args.fps != "auto":
        try:
            if float(args.fps) <= 0:
                raise ValueError
        except ValueError:
            sys.exit(f"load-check: --fps must be auto or a positive number, not {args.fps!r}")
    if args.phase <= SKIP + 5:
        sys.exit(f"load-check: --phase must be more than {SKIP + 5:.0f} s")
    tmp = Path(tempfile.mkdtemp(prefix="edgepool-load-"))
    try:
        return asyncio.run(run(args, tmp / "demo.log"))
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr, flush=True)
        return 2
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
