#!/usr/bin/env python3
"""Live check: a real Prometheus scrapes a running `edgepool demo` and a real node-exporter, then
every dashboard panel query and every recording rule must evaluate without error and return at
least one series.

Series whose value is NaN are not counted (Grafana draws nothing for them).

Steps: build (or take) the edgepool binary; start node-exporter (`prometheus-node-exporter` or
`node_exporter` from PATH, or --node-exporter) on a free port; start `edgepool demo --keep` from the
repository root and read the /metrics URLs it prints on stderr; write a prometheus.yml scraping
them (and node-exporter as job `node`) every 2 s and loading grafana/rules/edgepool.rules.yml
(evaluated every 2 s); start `prometheus`; wait until every target is up and results flow; then
query /api/v1/query for each expression and print it with its series count, and a short summary of
the devices. Everything started here is stopped on exit, also on failure or Ctrl-C.

Sensors: the workers read temperatures from /sys/class/thermal and hwmon and a Raspberry Pi's
throttling flags from its firmware's get_throttled. A machine without them (a VM, a laptop without
the Pi firmware) would leave the temperature and throttling panels empty, so the demo then reads a
fake Raspberry Pi 4 sysfs tree (EDGEPOOL_WORKER_SYSFS_ROOT) and the check says loudly that those
values are synthetic (--fake-sysfs never|always overrides the choice).

Panels with a node-exporter part and a fallback (`... or on (node) ...`) are evaluated twice: as
they are, and with node-exporter's node_uname_info replaced by a metric that does not exist, which
is what a cluster without node-exporter sees; the fallback must return series too.

Grafana placeholders are substituted the way Grafana would with "All" selected: `$__rate_interval`
becomes 30s (4 scrape intervals, as Grafana computes it for a 2 s scrape), and `$arch`, `$worker`,
`$camera` take the variable's allValue (`.*`).

Usage: python3 tools/observability/live_check.py [--bin PATH] [--prometheus PATH] [--wait 45]
           [--node-exporter PATH] [--fake-sysfs auto|always|never]
           [--snapshot FILE.json]  # Devices-row panels' range queries (last 2 min, step 2 s)
           [--port 9090 --serve]   # keep everything up afterwards, e.g. for a local Grafana
Stdlib only. Exit status 0 when every query returned series.
"""

import argparse
import glob
import json
import math
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
NODE_EXPORTERS = ("prometheus-node-exporter", "node_exporter")  # Debian's name, upstream's name
# node-exporter collectors the dashboard and rules use (the rest only cost scrape time here).
NODE_COLLECTORS = ("cpu", "meminfo", "uname")
DEVICES_ROW = "Devices"
SNAPSHOT_SECONDS, SNAPSHOT_STEP = 120, 2
# A Raspberry Pi 4's sensors, relative to the sysfs root the worker reads.
FAKE_SYSFS = {
    "class/thermal/thermal_zone0/type": "cpu-thermal\n",
    "class/thermal/thermal_zone0/temp": "48312\n",  # millidegrees: 48.3 °C
    "devices/platform/soc/soc:firmware/get_throttled": "0x0\n",  # no under-voltage, no throttling
}
PI_GET_THROTTLED = "/sys/devices/platform/soc/soc:firmware/get_throttled"


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


def vector(base, expr):
    """[(labels, float value)] of an instant query; [] on error."""
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        body = http_json(url)
    except (urllib.error.URLError, OSError, ValueError):
        return []
    if body.get("status") != "success" or body["data"]["resultType"] != "vector":
        return []
    return [(r["metric"], float(r["value"][1])) for r in body["data"]["result"]]


def query_range(base, expr, start, end, step):
    """[{labels, values: [[t, v]]}] of a range query; NaN and infinities become null (JSON has none)."""
    url = f"{base}/api/v1/query_range?" + urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    try:
        body = http_json(url, timeout=30)
    except urllib.error.HTTPError as e:
        body = json.load(e)
    if body.get("status") != "success":
        raise Failure(f"range query failed: {body.get('errorType')}: {body.get('error')}\n  {expr}")

    def num(v):
        f = float(v)
        return f if math.isfinite(f) else None

    return [{"labels": r["metric"], "values": [[t, num(v)] for t, v in r["values"]]} for r in body["data"]["result"]]


def dashboard_targets():
    """[{row, title, type, unit, refId, legend, expr}] for every target of every panel, in dashboard
    order, with `expr` as Grafana would send it."""
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    all_values = {v["name"]: v.get("allValue") or ".*" for v in dash["templating"]["list"] if v["type"] == "query"}

    def substitute(expr):
        expr = expr.replace("$__rate_interval", RATE_INTERVAL).replace("${__rate_interval}", RATE_INTERVAL)
        for name, value in all_values.items():
            expr = re.sub(r"\$\{" + name + r"(:[a-z]+)?\}|\$" + name + r"\b", value, expr)
        if re.search(r"\$(?!\d)", expr):  # $1 and the like are label_replace's, not Grafana's
            raise Failure(f"unsubstituted placeholder in {expr!r}")
        return expr

    panels, row = [], None
    for p in dash["panels"]:
        if p["type"] == "row":
            row = p["title"]
            panels.extend((row, q) for q in p.get("panels", []))  # panels inside collapsed rows
        else:
            panels.append((row, p))
    out = []
    for row, p in panels:
        for t in p.get("targets", []):
            out.append({
                "row": row, "title": p["title"], "type": p["type"],
                "unit": p.get("fieldConfig", {}).get("defaults", {}).get("unit"),
                "refId": t["refId"], "legend": t.get("legendFormat", ""), "expr": substitute(t["expr"]),
            })
    if not out:
        raise Failure(f"no panel targets found in {DASHBOARD}")
    return out


def without_node_exporter(expr):
    """The expression as a cluster without node-exporter sees it: node-exporter's series reach the
    devices only through node_uname_info, so a name that matches nothing removes them."""
    return re.sub(r"\bnode_uname_info\b", "edgepool_live_check_no_node_exporter", expr)


def sensors_on_this_machine():
    """(a readable temperature, the Raspberry Pi firmware's get_throttled), roughly as a worker finds
    them: any thermal zone, or a hwmon chip's temp1_input (the worker takes only CPU chips')."""
    temperature = False
    for f in glob.glob("/sys/class/thermal/thermal_zone*/temp") + glob.glob("/sys/class/hwmon/hwmon*/temp1_input"):
        try:
            int(Path(f).read_text(encoding="ascii").strip())
            temperature = True
            break
        except (OSError, ValueError):
            continue
    try:
        Path(PI_GET_THROTTLED).read_text(encoding="ascii")
        throttled = True
    except OSError:
        throttled = False
    return temperature, throttled


def write_fake_sysfs(root):
    for rel, content in FAKE_SYSFS.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(content, encoding="ascii")


def loud(lines):
    bar = "!" * 100
    log(bar)
    for line in lines:
        log("!! " + line)
    log(bar)


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


def print_devices(base, synthetic):
    """A few of the Devices rules' values now, per device and per worker."""

    def by(expr, *keys):
        return {tuple(m.get(k, "") for k in keys): v for m, v in vector(base, expr)}

    def pct(v):
        return "-" if v is None else f"{100 * v:.0f}%"

    cpu = by("edgepool:device_cpu_utilisation:ratio1m", "node")
    node_cpu = by("edgepool:node_cpu_utilisation:ratio1m", "node")
    proc_cpu = by("edgepool:device_process_cpu:ratio1m", "node")
    mem = by("edgepool:device_memory_used:ratio", "node")
    node_mem = by("edgepool:node_memory_used:ratio", "node")
    worker_mem = by("edgepool:worker_meminfo_used:ratio", "node")
    temp = by("edgepool:device_temperature_celsius:max", "node")
    throttled = by("edgepool:device_throttled:max", "node", "condition")
    results = by("edgepool:results_by_node:rate5m", "node")
    info = vector(base, "edgepool_worker_info")
    nodes = sorted({m.get("node", "") for m, _ in info} | {k[0] for k in cpu})
    log("devices" + (" (temperature and throttling are SYNTHETIC: fake Raspberry Pi 4 sysfs)" if synthetic else "") + ":")
    for node in nodes:
        workers = [m for m, _ in info if m.get("node") == node]
        first = workers[0] if workers else {}
        flags = sorted(c for (n, c), v in throttled.items() if n == node and v > 0)
        conditions = sorted(c for (n, c) in throttled if n == node)
        print(f"  node {node!r}: {first.get('cpu_model', '?')}, {first.get('cpu_cores', '?')} CPUs, "
              f"{int(first.get('memory_bytes', 0) or 0) / 2**30:.1f} GiB; {len(workers)} worker(s) in "
              f"{len({w.get('pid') for w in workers})} process(es)", flush=True)
        print(f"    CPU {pct(cpu.get((node,)))} (node-exporter {pct(node_cpu.get((node,)))}, edgepool processes {pct(proc_cpu.get((node,)))}); "
              f"memory {pct(mem.get((node,)))} (node-exporter {pct(node_mem.get((node,)))}, workers' meminfo {pct(worker_mem.get((node,)))}); "
              f"temperature {'-' if (node,) not in temp else f'{temp[(node,)]:.1f} °C'}"
              f"{' (synthetic)' if synthetic and (node,) in temp else ''}; "
              f"throttled: {', '.join(flags) if flags else ('none of ' + ', '.join(conditions) if conditions else '-')}"
              f"{' (synthetic)' if synthetic and conditions else ''}; "
              f"results {results.get((node,), 0):.2f}/s", flush=True)
    busy = by("edgepool:worker_busy:ratio1m", "worker")
    for (worker, node), v in sorted(by("edgepool:worker_process_cpu:ratio1m", "worker", "node").items()):
        print(f"    worker {worker} on {node!r}: process CPU {pct(v)} of the device, busy {pct(busy.get((worker,)))}", flush=True)


def write_snapshot(base, path, tgts, started, procs, synthetic):
    """Range queries of the Devices row's targets over the last SNAPSHOT_SECONDS, for rendering."""
    have = time.monotonic() - started
    if have < SNAPSHOT_SECONDS:
        log(f"snapshot: waiting {SNAPSHOT_SECONDS - have:.0f}s more for {SNAPSHOT_SECONDS}s of data")
        wait_for("snapshot data", lambda: time.monotonic() - started >= SNAPSHOT_SECONDS, SNAPSHOT_SECONDS, procs)
    end = time.time()
    start = end - SNAPSHOT_SECONDS
    panels = []
    for t in tgts:
        if not panels or panels[-1]["title"] != t["title"]:
            panels.append({"title": t["title"], "type": t["type"], "unit": t["unit"], "targets": []})
        series = query_range(base, t["expr"], start, end, SNAPSHOT_STEP)
        panels[-1]["targets"].append({"refId": t["refId"], "legendFormat": t["legend"], "expr": t["expr"], "series": series})
    if not panels:
        raise Failure(f"no panels in the {DEVICES_ROW!r} row of {DASHBOARD}")
    out = {
        "dashboard": str(DASHBOARD.relative_to(ROOT)), "row": DEVICES_ROW,
        "start": start, "end": end, "step": SNAPSHOT_STEP, "rate_interval": RATE_INTERVAL,
        "synthetic_sensors": synthetic,
        "note": ("temperature and throttling come from a fake Raspberry Pi 4 sysfs (not measured)" if synthetic
                 else "all values measured on this machine"),
        "panels": panels,
    }
    Path(path).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    n = sum(len(tt["series"]) for p in panels for tt in p["targets"])
    log(f"snapshot: wrote {path} ({len(panels)} panels, {sum(len(p['targets']) for p in panels)} targets, {n} series, "
        f"{SNAPSHOT_SECONDS}s at {SNAPSHOT_STEP}s steps)")


def run(args, tmp, procs):
    binary = args.bin or os.environ.get("EDGEPOOL_BIN") or build_binary()
    prom_bin = args.prometheus or shutil.which("prometheus")
    if not prom_bin:
        raise Failure("prometheus not found on PATH (Debian: apt-get install prometheus)")
    ne_bin = args.node_exporter or next(filter(None, map(shutil.which, NODE_EXPORTERS)), None)
    if not ne_bin:
        raise Failure(f"node-exporter not found on PATH as {' or '.join(NODE_EXPORTERS)} "
                      "(Debian: apt-get install prometheus-node-exporter; or --node-exporter PATH)")

    # 1. node-exporter, as on every node of a cluster with the observability addon.
    ne_addr = f"127.0.0.1:{free_port()}"
    ne_argv = [ne_bin, f"--web.listen-address={ne_addr}", "--collector.disable-defaults",
               *(f"--collector.{c}" for c in NODE_COLLECTORS)]
    log(f"starting {Path(ne_bin).name} on http://{ne_addr}/metrics (collectors: {', '.join(NODE_COLLECTORS)})")
    ne = Proc("node-exporter", ne_argv, tmp / "node-exporter.log")
    procs.append(ne)
    wait_for("node-exporter to serve /metrics",
             lambda: urllib.request.urlopen(f"http://{ne_addr}/metrics", timeout=2).status == 200, 30, [ne])

    # 2. Sensors: real ones if this machine has them, else a fake Raspberry Pi 4.
    temperature, throttled = sensors_on_this_machine()
    fake = args.fake_sysfs == "always" or (args.fake_sysfs == "auto" and not (temperature and throttled))
    env = dict(os.environ)
    # The workers' node name must be this host's, which node-exporter's nodename is.
    env.pop("EDGEPOOL_WORKER_NODE", None)
    if fake:
        sysfs = tmp / "sysfs"
        write_fake_sysfs(sysfs)
        env["EDGEPOOL_WORKER_SYSFS_ROOT"] = str(sysfs)
        args.synthetic = True
        loud([
            "SYNTHETIC SENSORS: " + ("--fake-sysfs always" if args.fake_sysfs == "always" else
                                     "this machine has " + " and ".join(
                                         w for w, have in (("no readable thermal zone or hwmon sensor", temperature),
                                                           ("no Raspberry Pi firmware get_throttled", throttled)) if not have)),
            f"the demo's workers read a FAKE Raspberry Pi 4 sysfs: EDGEPOOL_WORKER_SYSFS_ROOT={sysfs}",
            "temperature (cpu-thermal 48.3 °C) and throttling (get_throttled 0x0) are NOT measured values",
        ])
    elif temperature and throttled:
        log("sensors: this machine's own thermal zone and Raspberry Pi get_throttled (no synthetic values)")
    else:
        log("sensors: --fake-sysfs never, and this machine lacks "
            + " and ".join(w for w, have in (("a readable thermal sensor", temperature), ("the Pi firmware's get_throttled", throttled)) if not have)
            + ": the temperature/throttling panels and rules will have no series")

    # 3. The demo, from the repository root (it reads testdata/photos).
    demo_argv = [binary, "demo", "--keep", "--fps", str(args.fps), "--settle", "5s"]
    log("starting " + " ".join([Path(binary).name, *demo_argv[1:]]))
    demo = Proc("demo", demo_argv, tmp / "demo.log", cwd=ROOT, env=env)
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

    # 4. Prometheus scraping them and node-exporter, with our rules.
    port = args.port or free_port()
    base = f"http://127.0.0.1:{port}"
    jobs = {f"edgepool-{kind}": addrs for kind, addrs in targets.items()}
    jobs["node"] = [ne_addr]
    scrape = "\n".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: [{', '.join(repr(a) for a in addrs)}]"
        for job, addrs in sorted(jobs.items())
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

    want = sum(len(a) for a in jobs.values())

    def all_up():
        active = http_json(f"{base}/api/v1/targets")["data"]["activeTargets"]
        return len(active) == want and all(t["health"] == "up" for t in active)

    wait_for("every target to be up", all_up, 30, procs)
    started = time.monotonic()
    log(f"all {want} targets up (node-exporter included); waiting {args.wait}s for data")
    wait_for("results at the sink", lambda: query(base, "sum(edgepool_sink_results_total) > 0")[0], 60, procs)
    time.sleep(max(0.0, args.wait - (time.monotonic() - started)))

    # 5. The rules Prometheus loaded: all healthy, and as many as the file declares.
    groups = http_json(f"{base}/api/v1/rules")["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    text = RULES.read_text(encoding="utf-8")
    declared = len(re.findall(r"^\s*- (?:record|alert):", text, re.M))
    if len(rules) != declared:
        raise Failure(f"prometheus loaded {len(rules)} rules, {RULES.name} declares {declared}")
    unhealthy = [f"{r['name']}: {r.get('lastError')}" for r in rules if r["health"] != "ok"]
    if unhealthy:
        raise Failure("rules failing to evaluate:\n  " + "\n  ".join(unhealthy))

    panel_targets = dashboard_targets()
    checks = []
    for t in panel_targets:
        checks.append((f"panel {t['title']!r} {t['refId']}", t["expr"]))
        if "node_uname_info" in t["expr"] and "or on (node)" in t["expr"]:
            checks.append((f"panel {t['title']!r} {t['refId']} without node-exporter (fallback)", without_node_exporter(t["expr"])))
    for r in rules:
        if r["type"] == "recording":
            checks.append((f"rule {r['name']}", r["query"]))
            checks.append((f"recorded {r['name']}", r["name"]))
    # node-exporter's node name (nodename) is the workers' node: the join the Devices row relies on.
    checks.append(("node-exporter joined to the workers by node name",
                   "edgepool:node_cpu_utilisation:ratio1m and on (node) edgepool_worker_info"))

    # 6. Every query. Empty answers are retried for a while: a 2 s rule evaluation or the sink's
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
    print_devices(base, args.synthetic)
    # Every role's endpoint serves the process collector's series (sink, worker and camera jobs).
    expr = 'count by (job) (process_resident_memory_bytes{job=~"edgepool-.*"})'
    n, err = query(base, expr)
    ok = err is None and n == 3
    failed += not ok
    print(f"  {'ok  ' if ok else 'FAIL'} {n} of 3 edgepool jobs serve process_* series\n              {expr}", flush=True)
    if failed:
        raise Failure(f"{failed} of {len(checks)} queries errored or returned no series")
    log(f"PASS: all {len(checks)} queries returned series")
    if args.snapshot:
        write_snapshot(base, args.snapshot, [t for t in panel_targets if t["row"] == DEVICES_ROW], started, procs, args.synthetic)
    if args.serve:
        log(f"serving: Prometheus at {base}, demo running; point Grafana's datasource there. Ctrl-C stops everything.")
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
    ap.add_argument("--node-exporter", help=f"node-exporter binary (default: {' or '.join(NODE_EXPORTERS)} from PATH)")
    ap.add_argument("--fake-sysfs", choices=["auto", "always", "never"], default="auto",
                    help="give the demo's workers a fake Raspberry Pi 4 sysfs (synthetic temperature and throttling): "
                         "auto = when this machine lacks a readable thermal sensor or the Pi firmware's get_throttled")
    ap.add_argument("--snapshot", metavar="FILE.json",
                    help=f"write range queries of every {DEVICES_ROW!r} row panel target (last {SNAPSHOT_SECONDS}s, "
                         f"step {SNAPSHOT_STEP}s) to this JSON file")
    ap.add_argument("--wait", type=float, default=45, help="seconds of data to collect before querying")
    ap.add_argument("--retry", type=float, default=30, help="seconds to keep retrying queries that return nothing")
    ap.add_argument("--fps", type=float, default=4, help="frames per second per demo camera")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, prometheus.yml, tsdb)")
    ap.add_argument("--port", type=int, help="port for prometheus on 127.0.0.1 (default: a free one)")
    ap.add_argument("--serve", action="store_true", help="after the check, keep the demo and prometheus up until Ctrl-C")
    args = ap.parse_args()
    args.synthetic = False

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
            # The demo drains on SIGINT (stop cameras, finish in-flight frames); the others on SIGTERM.
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
