#!/usr/bin/env python3
"""Live check: a real Prometheus scrapes a running `edgepool demo`, then every dashboard panel
query and every recording rule must evaluate without error and return at least one series.

Series whose value is NaN are not counted (Grafana draws nothing for them).

Steps: build (or take) the edgepool binary; start `edgepool demo --keep` from the repository root
and read the /metrics URLs it prints on stderr; write a prometheus.yml scraping them every 2 s and
loading grafana/rules/edgepool.rules.yml (evaluated every 2 s); start `prometheus`; wait until
every target is up and results flow; then query /api/v1/query for each expression and print it
with its series count. Everything started here is stopped on exit, also on failure or Ctrl-C.

Grafana placeholders are substituted the way Grafana would with "All" selected: `$__rate_interval`
becomes 30s (4 scrape intervals, as Grafana computes it for a 2 s scrape), and `$arch`, `$worker`,
`$camera` take the variable's allValue (`.*`).

Usage: python3 tools/observability/live_check.py [--bin PATH] [--prometheus PATH] [--wait 45]
           [--port 9090 --serve]   # keep everything up afterwards, e.g. for a local Grafana
Stdlib only. Exit status 0 when every query returned series.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "grafana" / "dashboards" / "edgepool.json"
RULES = ROOT / "grafana" / "rules" / "edgepool.rules.yml"
SCRAPE = "2s"
RATE_INTERVAL = "30s"
COMPONENT = re.compile(r"^(sink|worker|camera)\b\s*(\S*).*?http://([0-9.]+:[0-9]+)/metrics")


def log(msg):
    print(f"live-check: {msg}", flush=True)


class Failure(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_binary():
    """`cargo build -p edgepool`, returning the path cargo reports (honours CARGO_TARGET_DIR)."""
    log("building edgepool (cargo build -p edgepool)")
    out = subprocess.run(
        ["cargo", "build", "-p", "edgepool", "--message-format=json-render-diagnostics"],
        cwd=ROOT, stdout=subprocess.PIPE, check=False, text=True,
    )
    if out.returncode != 0:
        raise Failure("cargo build -p edgepool failed (see above)")
    for line in out.stdout.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == "edgepool" and msg.get("executable"):
            return msg["executable"]
    raise Failure("cargo did not report an edgepool executable")


class Proc:
    """A child process in its own process group, with its output collected by a thread."""

    def __init__(self, name, argv, logfile, **kw):
        self.name = name
        self.lines = []
        self.logfile = open(logfile, "w", encoding="utf-8")
        self.p = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL if name == "demo" else self.logfile, stderr=subprocess.PIPE if name == "demo" else subprocess.STDOUT,
            start_new_session=True, text=True, **kw,
        )
        if name == "demo":
            threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.p.stderr:
            self.lines.append(line.rstrip("\n"))
            self.logfile.write(line)
            self.logfile.flush()

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig, grace):
        """Sends `sig` to the process, waits `grace` seconds, then kills its whole group."""
        if self.alive():
            try:
                self.p.send_signal(sig)
                self.p.wait(timeout=grace)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        try:
            os.killpg(self.p.pid, signal.SIGKILL)  # the group we created: leftovers such as nats-server
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.logfile.close()


def http_json(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


def query(base, expr):
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        body = http_json(url)
    except urllib.error.HTTPError as e:
        body = json.load(e)
    if body.get("status") != "success":
        return None, f"{body.get('errorType')}: {body.get('error')}"
    data = body["data"]
    if data["resultType"] == "vector":
        # A NaN value (0/0, a quantile of no observations) draws nothing in Grafana: not counted.
        return sum(r["value"][1] != "NaN" for r in data["result"]), None
    if data["resultType"] == "scalar":
        return int(data["result"][1] != "NaN"), None
    return None, f"unexpected result type {data['resultType']}"


def dashboard_queries():
    """[(panel title, refId, expr as Grafana would send it)] for every target of every panel."""
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    all_values = {v["name"]: v.get("allValue") or ".*" for v in dash["templating"]["list"] if v["type"] == "query"}

    def substitute(expr):
        expr = expr.replace("$__rate_interval", RATE_INTERVAL).replace("${__rate_interval}", RATE_INTERVAL)
        for name, value in all_values.items():
            expr = re.sub(r"\$\{" + name + r"(:[a-z]+)?\}|\$" + name + r"\b", value, expr)
        if "$" in expr:
            raise Failure(f"unsubstituted placeholder in {expr!r}")
        return expr

    out = []
    panels = list(dash["panels"])
    for p in dash["panels"]:
        panels.extend(p.get("panels", []))  # panels inside collapsed rows
    for p in panels:
        for t in p.get("targets", []):
            out.append((p["title"], t["refId"], substitute(t["expr"])))
    if not out:
        raise Failure(f"no panel targets found in {DASHBOARD}")
    return out


def wait_for(what, check, timeout, procs):
    deadline = time.monotonic() + timeout
    while True:
        for p in procs:
            if not p.alive():
                raise Failure(f"{p.name} exited ({p.p.returncode}) while waiting for {what}")
        try:
            result = check()
            if result:
                return result
        except (urllib.error.URLError, ConnectionError, OSError, KeyError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.5)


def run(args, tmp, procs):
    binary = args.bin or os.environ.get("EDGEPOOL_BIN") or build_binary()
    prom_bin = args.prometheus or shutil.which("prometheus")
    if not prom_bin:
        raise Failure("prometheus not found on PATH (Debian: apt-get install prometheus)")

    # 1. The demo, from the repository root (it reads testdata/photos).
    demo_argv = [binary, "demo", "--keep", "--fps", str(args.fps), "--settle", "5s"]
    log("starting " + " ".join([Path(binary).name, *demo_argv[1:]]))
    demo = Proc("demo", demo_argv, tmp / "demo.log", cwd=ROOT)
    procs.append(demo)
    wait_for("the demo to print its endpoints", lambda: any("running until" in l for l in demo.lines), 90, [demo])
    targets = {}
    for line in demo.lines:
        m = COMPONENT.match(line)
        if m:
            kind, name, addr = m.groups()
            targets.setdefault(kind, []).append(addr)
            log(f"endpoint {kind} {name if kind != 'sink' else ''} http://{addr}/metrics".replace("  ", " "))
    if "sink" not in targets or "worker" not in targets or "camera" not in targets:
        raise Failure(f"expected sink, worker and camera endpoints on the demo's stderr, got {targets}")

    # 2. Prometheus scraping them, with our rules.
    port = args.port or free_port()
    base = f"http://127.0.0.1:{port}"
    scrape = "\n".join(
        f"  - job_name: edgepool-{kind}\n    static_configs:\n      - targets: [{', '.join(repr(a) for a in addrs)}]"
        for kind, addrs in sorted(targets.items())
    )
    config = tmp / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: {SCRAPE}\n  scrape_timeout: {SCRAPE}\n  evaluation_interval: {SCRAPE}\n"
        f"rule_files:\n  - {json.dumps(str(RULES))}\nscrape_configs:\n{scrape}\n",
        encoding="utf-8",
    )
    log(f"starting prometheus on {base} (scrape and rule evaluation every {SCRAPE})")
    prom = Proc("prometheus", [prom_bin, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                               f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"], tmp / "prometheus.log")
    procs.append(prom)
    wait_for("prometheus to be ready", lambda: urllib.request.urlopen(f"{base}/-/ready", timeout=2).status == 200, 30, procs)

    def all_up():
        active = http_json(f"{base}/api/v1/targets")["data"]["activeTargets"]
        want = sum(len(a) for a in targets.values())
        return len(active) == want and all(t["health"] == "up" for t in active)

    wait_for("every target to be up", all_up, 30, procs)
    started = time.monotonic()
    log(f"all {sum(len(a) for a in targets.values())} targets up; waiting {args.wait}s for data")
    wait_for("results at the sink", lambda: query(base, "sum(edgepool_sink_results_total) > 0")[0], 60, procs)
    time.sleep(max(0.0, args.wait - (time.monotonic() - started)))

    # 3. The rules Prometheus loaded: all healthy, and as many as the file declares.
    groups = http_json(f"{base}/api/v1/rules")["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    text = RULES.read_text(encoding="utf-8")
    declared = len(re.findall(r"^\s*- (?:record|alert):", text, re.M))
    if len(rules) != declared:
        raise Failure(f"prometheus loaded {len(rules)} rules, {RULES.name} declares {declared}")
    unhealthy = [f"{r['name']}: {r.get('lastError')}" for r in rules if r["health"] != "ok"]
    if unhealthy:
        raise Failure("rules failing to evaluate:\n  " + "\n  ".join(unhealthy))

    checks = [(f"panel {title!r} {ref}", expr) for title, ref, expr in dashboard_queries()]
    for r in rules:
        if r["type"] == "recording":
            checks.append((f"rule {r['name']}", r["query"]))
            checks.append((f"recorded {r['name']}", r["name"]))

    # 4. Every query. Empty answers are retried for a while: a 2 s rule evaluation or the sink's
    # 5 s JetStream poll may not have produced a second sample yet.
    deadline = time.monotonic() + args.retry
    results = {}
    pending = list(checks)
    while pending:
        still = []
        for label, expr in pending:
            n, err = query(base, expr)
            if err:
                results[(label, expr)] = (None, err)
            elif n == 0:
                still.append((label, expr))
                results[(label, expr)] = (0, None)
            else:
                results[(label, expr)] = (n, None)
        pending = still
        if pending and time.monotonic() < deadline:
            time.sleep(2)
        else:
            break

    failed = 0
    log(f"evaluated {len(checks)} queries against {base} after {time.monotonic() - started:.0f}s of data:")
    for label, expr in checks:
        n, err = results[(label, expr)]
        ok = err is None and n > 0
        failed += not ok
        status = f"{n:3d} series" if err is None else "ERROR    "
        print(f"  {'ok  ' if ok else 'FAIL'} {status}  {label}\n              {expr}" + (f"\n              {err}" if err else ""), flush=True)
    firing = sorted({f"{r['name']} ({r['state']})" for r in rules if r["type"] == "alerting" and r["state"] != "inactive"})
    log(f"{declared} rules loaded and healthy; alerts not inactive now: {', '.join(firing) or 'none'}")
    if failed:
        raise Failure(f"{failed} of {len(checks)} queries errored or returned no series")
    log(f"PASS: all {len(checks)} queries returned series")
    if args.serve:
        log(f"serving: Prometheus at {base}, demo running; point Grafana's datasource there. Ctrl-C stops both.")
        try:
            while all(p.alive() for p in procs):
                time.sleep(1)
        except KeyboardInterrupt:
            log("stopping the demo and prometheus")
            return
        raise Failure("the demo or prometheus exited while serving")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", help="edgepool binary (default: $EDGEPOOL_BIN, else cargo build -p edgepool)")
    ap.add_argument("--prometheus", help="prometheus binary (default: from PATH)")
    ap.add_argument("--wait", type=float, default=45, help="seconds of data to collect before querying")
    ap.add_argument("--retry", type=float, default=30, help="seconds to keep retrying queries that return nothing")
    ap.add_argument("--fps", type=float, default=4, help="frames per second per demo camera")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, prometheus.yml, tsdb)")
    ap.add_argument("--port", type=int, help="port for prometheus on 127.0.0.1 (default: a free one)")
    ap.add_argument("--serve", action="store_true", help="after the check, keep the demo and prometheus up until Ctrl-C")
    args = ap.parse_args()

    # SIGTERM (e.g. a CI timeout) must still stop the children: turn it into an exception.
    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    # Also when started in the background by a non-interactive shell, which ignores SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    tmp = Path(tempfile.mkdtemp(prefix="edgepool-live-check-"))
    procs = []
    code = 1
    try:
        run(args, tmp, procs)
        code = 0
    except Failure as e:
        log(f"FAIL: {e}")
    except KeyboardInterrupt as e:
        log(f"interrupted ({e or 'Ctrl-C'})")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for p in reversed(procs):
            # The demo drains on SIGINT (stop cameras, finish in-flight frames); prometheus on SIGTERM.
            p.stop(signal.SIGINT if p.name == "demo" else signal.SIGTERM, 20 if p.name == "demo" else 10)
        if code != 0:
            for p in procs:
                log_path = Path(p.logfile.name)
                tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
                log(f"last lines of {p.name}'s output:\n    " + "\n    ".join(tail))
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
