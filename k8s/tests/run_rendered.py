#!/usr/bin/env python3
"""Runs the rendered microk8s overlay as local processes, end to end, and proves its denials.

What `kubectl apply -k k8s/overlays/microk8s` would run, started from the rendered manifests on
loopback: no cluster, no images, the real binaries.

1. Copies k8s/ to a temporary directory and runs `edgepool auth init` into its
   components/credentials/generated (as an operator would), then renders overlays/microk8s and
   jobs/model-push with `kubectl kustomize`.
2. Starts the NATS StatefulSet's three servers as a cluster on loopback: each with the rendered
   container's arguments and environment, its projected volume (the ConfigMap's config files and
   the Secret's auth.conf and certificate) written where the mount says, and the StatefulSet's
   route URLs. Only addresses change: the Service and pod DNS names (nats, nats-N.nats-headless)
   become 127.0.0.1 with a port per server, and each server gets its own monitoring port
   (--http_port), since they share one host. The certificate carries 127.0.0.1 as well as the
   service names, so clients still verify the server and the routes still verify each other.
3. Runs the setup Job's command (retried as the Job's restartPolicy would, until JetStream has
   a leader), then the model-push Job's push container with the cached model as /upload/model.onnx.
4. Starts both worker Deployments, the sink and the gateway, each with its Pod spec's arguments,
   envFrom (ConfigMap nats-client, its own role's Secrets) and mounted Secret nats-ca. Waits for
   each container's readinessProbe.
5. Publishes photos as camera cam-1 from outside the cluster (camera-cam-1.env and ca.crt from
   `auth init`, over TLS to the client port) and checks that their results reach a subscriber
   (`edgepool watch` with subscriber.env), with a person found in grace_hopper.jpg, and that the
   sink counted them (its /metrics, with the metrics token from Secret sink-http). Posts
   grace_hopper.jpg to the gateway's DeepStack / CodeProject.AI API (POST /v1/vision/detection,
   multipart, with the API key from Secret gateway-http) and checks that a person comes back.
6. Proves the denials against that same deployment: a camera cannot read detections; a
   subscriber cannot publish frames; a worker (with the pod's own Secret) cannot delete or purge
   a stream; no credentials are refused; a plaintext client is refused; a route without the
   cluster's client certificate is refused; the sink's HTTP without a token, or with a wrong one,
   answers 401 without echoing it, while its probes stay open; the gateway's API without the API
   key, or with a wrong one, answers 401, and its /metrics wants its own token, while its probes
   stay open.

Prints one line per check and ends with "N passed, M failed"; exits 1 on any failure. Run through
.ci/k8s-checks.sh (after `cargo xtask tools` and the model), or directly:

    python k8s/tests/run_rendered.py --kubectl kubectl --edgepool target/debug/edgepool \\
        --nats-server ~/.cache/edgepool/tools/bin/nats-server --model ~/.cache/edgepool/models/ssd_mobilenet_v2_coco.onnx
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
PHOTOS = ROOT / "testdata" / "photos"
OVERLAY = "overlays/microk8s"
CAMERA = "cam-1"
# The photos cam-1 publishes: grace_hopper.jpg has a person in it (the detector's known answer).
FRAMES = ["grace_hopper.jpg", "rocket.jpg", "chelsea.png", "coffee.png"]


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"ok   {name}{' (' + detail + ')' if detail else ''}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {name}{': ' + detail if detail else ''}", flush=True)
        return ok


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- rendering


def stage(tmp: Path, edgepool: str) -> tuple[Path, Path]:
    """A copy of k8s/ with credentials from `auth init` (never the operator's own files)."""
    def skip(_dir: str, names: list[str]) -> set[str]:
        return {n for n in names if f"{n}.example" in names} | {"__pycache__", "generated"} & set(names)

    root = tmp / "k8s"
    shutil.copytree(K8S, root, ignore=skip)
    # base/generated holds the copies of nats/*.conf: put it back.
    shutil.copytree(K8S / "base" / "generated", root / "base" / "generated", dirs_exist_ok=True)
    for example in root.rglob("*.env.example"):
        shutil.copyfile(example, example.with_suffix(""))
    creds = root / "components" / "credentials" / "generated"
    out = subprocess.run([edgepool, "auth", "init", str(creds), f"--camera={CAMERA},cam-2"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"edgepool auth init failed:\n{out.stderr}")
    return root, creds


def render(kubectl: str, root: Path, name: str) -> list[dict]:
    out = subprocess.run([kubectl, "kustomize", str(root / name)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"kubectl kustomize k8s/{name} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def find(objs: list[dict], kind: str, name: str) -> dict | None:
    return next((o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name), None)


def data_of(o: dict) -> dict[str, str]:
    if o["kind"] == "Secret":
        return {k: base64.b64decode(v).decode() for k, v in o.get("data", {}).items()} | o.get("stringData", {})
    return dict(o.get("data", {}))


def container(w: dict, name: str) -> dict:
    return next(c for c in w["spec"]["template"]["spec"]["containers"] if c["name"] == name)


class PodRun:
    """One container of a rendered Pod spec, made local: its volumes written under `dir`, its
    environment as Kubernetes builds it, its arguments and environment with mount paths pointing
    at the local copies."""

    def __init__(self, objs: list[dict], w: dict, c: dict, dir: Path, pod: str, node: str = "node-0") -> None:
        self.name, self.dir = pod, dir
        dir.mkdir(parents=True, exist_ok=True)
        self.mounts = self._volumes(objs, w, c)
        env: dict[str, str] = {}
        for src in c.get("envFrom", []):
            kind, ref = ("Secret", src["secretRef"]) if "secretRef" in src else ("ConfigMap", src["configMapRef"])
            o = find(objs, kind, ref["name"])
            if o is None:
                if not ref.get("optional"):
                    raise SystemExit(f"{pod}: envFrom {kind} {ref['name']} is not rendered")
                continue
            env.update(data_of(o))
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = str(e["value"])
            else:
                field = e["valueFrom"]["fieldRef"]["fieldPath"]
                env[e["name"]] = {"metadata.name": pod, "spec.nodeName": node}[field]
        self.env = {k: self.local(v) for k, v in env.items()}
        args = [*c.get("command", [])[1:], *c.get("args", [])]
        # $(VAR) in args expands from the container's environment, as the kubelet does.
        self.args = [self.local(re.sub(r"\$\((\w+)\)", lambda m: self.env.get(m.group(1), m.group(0)), a)) for a in args]
        self.probe = c.get("readinessProbe")

    def _volumes(self, objs: list[dict], w: dict, c: dict) -> dict[str, Path]:
        vols = {v["name"]: v for v in w["spec"]["template"]["spec"].get("volumes", [])}
        # A StatefulSet's claims: an empty directory, as a new PVC is.
        vols |= {t["metadata"]["name"]: {} for t in w["spec"].get("volumeClaimTemplates", [])}
        out = {}
        for m in c.get("volumeMounts", []):
            v, local = vols[m["name"]], self.dir / m["name"]
            local.mkdir(parents=True, exist_ok=True)
            if "projected" in v:
                sources = [(("Secret", s["secret"]) if "secret" in s else ("ConfigMap", s["configMap"])) for s in v["projected"]["sources"]]
            elif "secret" in v:
                sources = [("Secret", {**v["secret"], "name": v["secret"]["secretName"]})]
            elif "configMap" in v:
                sources = [("ConfigMap", v["configMap"])]
            else:
                sources = []  # emptyDir: an empty directory
            for kind, src in sources:
                o = find(objs, kind, src["name"])
                if o is None:
                    if not src.get("optional"):
                        raise SystemExit(f"{self.name}: volume {m['name']} needs {kind} {src['name']}, not rendered")
                    continue
                data = data_of(o)
                files = {it["path"]: data[it["key"]] for it in src["items"]} if src.get("items") else data
                for path, content in files.items():
                    (local / path).parent.mkdir(parents=True, exist_ok=True)
                    (local / path).write_text(content)
                    (local / path).chmod(0o600)
            out[m["mountPath"].rstrip("/")] = local
        return out

    def local(self, value: str) -> str:
        if not self.mounts:
            return value
        # One pass: a local copy may itself live under a mount path (/tmp).
        mounts = "|".join(re.escape(m) for m in sorted(self.mounts, key=len, reverse=True))
        return re.sub(rf"(?<![\w/.])({mounts})(?=/|$)", lambda m: str(self.mounts[m.group(1)]), value)


# ---------------------------------------------------------------- processes


class Procs:
    def __init__(self, logs: Path) -> None:
        self.logs, self.running = logs, {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")
        full_env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **env}
        p = subprocess.Popen(argv, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.running[name] = p
        return p

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str, timeout: float = 30) -> int | None:
        p = self.running.pop(name, None)
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                return None
        return p.returncode

    def stop_all(self) -> dict[str, int | None]:
        return {n: self.stop(n) for n in list(self.running)[::-1]}


def http(url: str, token: str | None = None, timeout: float = 5, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=data, headers={**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError as e:
        return 0, str(e)


def wait_until(what: str, fn, timeout: float, procs: Procs | None = None, name: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return
        if procs and name and procs.running[name].poll() is not None:
            raise SystemExit(f"{name} exited ({procs.running[name].returncode}) before {what}:\n{procs.log(name)[-4000:]}")
        time.sleep(0.2)
    tail = procs.log(name)[-4000:] if procs and name else ""
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}")


def env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


# ---------------------------------------------------------------- the deployment


class Deployment:
    def __init__(self, args, tmp: Path, rep: Report) -> None:
        self.args, self.tmp, self.rep = args, tmp, rep
        self.procs = Procs(tmp)
        root, self.creds = stage(tmp, args.edgepool)
        self.objs = render(args.kubectl, root, OVERLAY)
        self.push_objs = render(args.kubectl, root, "jobs/model-push")
        print(f"-- rendered k8s/{OVERLAY}: {len(self.objs)} objects; k8s/jobs/model-push: {len(self.push_objs)}", flush=True)
        self.ports: list[int] = []
        self.cluster_ports: list[int] = []
        self.monitor_ports: list[int] = []

    # Service DNS names -> loopback.
    def client_url(self, url: str) -> str:
        scheme = url.split("://", 1)[0]
        assert re.fullmatch(r"\w+://nats:4222", url), f"unexpected NATS URL {url}"
        return ",".join(f"{scheme}://127.0.0.1:{p}" for p in self.ports)

    def listen_local(self, args: list[str]) -> tuple[list[str], int | None]:
        port, out = None, []
        for a in args:
            if a.startswith("--listen="):
                port = free_port()
                a = f"--listen=127.0.0.1:{port}"
            elif a.startswith("--zmq=tcp://"):
                a = f"--zmq=tcp://127.0.0.1:{free_port()}"
            out.append(a)
        return out, port

    def start_nats(self) -> None:
        sts = find(self.objs, "StatefulSet", "nats")
        replicas = sts["spec"]["replicas"]
        self.ports = [free_port() for _ in range(replicas)]
        self.cluster_ports = [free_port() for _ in range(replicas)]
        self.monitor_ports = [free_port() for _ in range(replicas)]
        headless = sts["spec"]["serviceName"]
        for i in range(replicas):
            pod = f"nats-{i}"
            run = PodRun(self.objs, sts, container(sts, "nats"), self.tmp / pod, pod)
            argv = []
            for a in run.args:
                flag, _, value = a.partition("=")
                if flag == "--addr":
                    value = "127.0.0.1"
                elif flag == "--port":
                    value = str(self.ports[i])
                elif flag == "--store_dir":
                    value = str(self.tmp / pod / "data")
                elif flag == "--pid":
                    value = str(self.tmp / pod / "nats.pid")
                elif flag == "--cluster":
                    value = f"nats://127.0.0.1:{self.cluster_ports[i]}"
                elif flag == "--cluster_advertise":
                    value = f"127.0.0.1:{self.cluster_ports[i]}"
                elif flag == "--routes":
                    value = re.sub(
                        rf"nats-(\d+)\.{headless}:6222", lambda m: f"127.0.0.1:{self.cluster_ports[int(m.group(1))]}", value
                    )
                argv.append(f"{flag}={value}" if value else flag)
            argv.append(f"--http_port={self.monitor_ports[i]}")
            self.procs.start(pod, [self.args.nats_server, *argv], run.env)
            self.nats_pod = run
        probe = container(sts, "nats")["readinessProbe"]["httpGet"]["path"]
        for i in range(replicas):
            wait_until(f"nats-{i} {probe}", lambda i=i: http(f"http://127.0.0.1:{self.monitor_ports[i]}{probe}")[0] == 200, 60, self.procs, f"nats-{i}")
        routes = [json.loads(http(f"http://127.0.0.1:{p}/routez")[1]).get("routes") or [] for p in self.monitor_ports]
        peers = [len({r.get("remote_name") for r in rs}) for rs in routes]
        self.rep.check(f"{replicas} NATS servers from the StatefulSet's args and projected config form a cluster over TLS routes", all(n == replicas - 1 for n in peers), f"peers per server {peers}")
        conf = "\n".join(p.read_text() for p in (self.tmp / "nats-0" / "config").glob("*.conf"))
        self.rep.check("the broker's config includes the users (auth.conf) and TLS (tls.conf, cluster-tls.conf)", all(f"include ./{f}" in conf for f in ("auth.conf", "tls.conf", "cluster-tls.conf")))

    def client(self, objs: list[dict], kind: str, name: str, cname: str, pod: str) -> PodRun:
        w = find(objs, kind, name)
        run = PodRun(objs, w, container(w, cname), self.tmp / pod, pod)
        run.env["EDGEPOOL_NATS_URL"] = self.client_url(run.env["EDGEPOOL_NATS_URL"])
        return run

    def run_setup(self) -> None:
        run = self.client(self.objs, "Job", "setup", "setup", "setup")
        argv = [self.args.edgepool, *run.args]
        # restartPolicy OnFailure: the Job retries until JetStream has a meta leader.
        deadline, last = time.monotonic() + 90, None
        while time.monotonic() < deadline:
            last = subprocess.run(argv, env={"PATH": os.environ["PATH"], **run.env}, capture_output=True, text=True, timeout=60)
            if last.returncode == 0:
                break
            time.sleep(2)
        self.rep.check("the setup Job's command creates the streams as user setup", last.returncode == 0, f"{run.args}" if last.returncode == 0 else last.stderr[-2000:])
        if last.returncode != 0:
            raise SystemExit(1)

    def run_model_push(self) -> None:
        run = self.client(self.push_objs + [o for o in self.objs if o["kind"] in ("Secret", "ConfigMap")], "Job", "model-push", "push", "model-push")
        upload = run.mounts["/upload"]
        os.symlink(self.args.model, upload / "model.onnx")
        out = subprocess.run([self.args.edgepool, *run.args], env={"PATH": os.environ["PATH"], **run.env}, capture_output=True, text=True, timeout=300)
        self.rep.check("the model-push Job's push container stores the model as user admin", out.returncode == 0, out.stderr[-2000:] if out.returncode else "")
        if out.returncode != 0:
            raise SystemExit(1)

    def start_role(self, kind: str, name: str, cname: str, pod: str) -> tuple[PodRun, int]:
        run = self.client(self.objs, kind, name, cname, pod)
        argv, port = self.listen_local(run.args)
        self.procs.start(pod, [self.args.edgepool, *argv], run.env)
        probe = run.probe["httpGet"]["path"]
        wait_until(f"{pod} {probe}", lambda: http(f"http://127.0.0.1:{port}{probe}")[0] == 200, 180, self.procs, pod)
        return run, port


# ---------------------------------------------------------------- checks


def camera_env(d: Deployment, user_file: str) -> dict[str, str]:
    env = env_file(d.creds / user_file)
    return {
        **env,
        "EDGEPOOL_NATS_URL": ",".join(f"tls://127.0.0.1:{p}" for p in d.ports),
        "EDGEPOOL_NATS_TLS_CA": str(d.creds / "ca.crt"),
        "EDGEPOOL_NATS_TLS_REQUIRED": "true",
    }


def flow(d: Deployment, sink_port: int, sink_env: dict[str, str]) -> None:
    rep, procs = d.rep, d.procs
    watch_env = camera_env(d, "subscriber.env")
    procs.start("subscriber", [d.args.edgepool, "watch", "--json", f"--camera={CAMERA}"], watch_env)
    time.sleep(2)
    sources = [str(PHOTOS / f) for f in FRAMES]
    out = subprocess.run(
        [d.args.edgepool, "camera", f"--camera={CAMERA}", "--source", *sources, f"--count={len(FRAMES)}"],
        env={"PATH": os.environ["PATH"], **camera_env(d, f"camera-{CAMERA}.env")},
        capture_output=True, text=True, timeout=120,
    )
    rep.check(f"camera {CAMERA} publishes {len(FRAMES)} photos from outside over TLS with its own user", out.returncode == 0, out.stderr[-2000:] if out.returncode else "")

    def results() -> list[dict]:
        lines = [l for l in procs.log("subscriber").splitlines() if l.startswith("{")]
        return [json.loads(l) for l in lines]

    try:
        wait_until(f"{len(FRAMES)} results at the subscriber", lambda: len(results()) >= len(FRAMES), 180, procs, "subscriber")
    except SystemExit as e:
        rep.check("results reach a subscriber", False, str(e)[-2000:])
        return
    got = results()
    ok = [r for r in got if r.get("status") == "ok"]
    workers = sorted({r.get("worker") for r in got})
    person = any(any(det.get("label") == "person" for det in r.get("detections", [])) for r in got)
    rep.check("their results reach user subscriber (edgepool watch)", len(ok) == len(FRAMES) and person, f"{len(ok)} ok results from workers {workers}, person found in grace_hopper.jpg: {person}")

    token = sink_env["EDGEPOOL_SINK_METRICS_TOKEN"]
    counted = 0.0

    def sink_counted() -> bool:
        nonlocal counted
        status, body = http(f"http://127.0.0.1:{sink_port}/metrics", token)
        counted = sum(float(l.rsplit(" ", 1)[1]) for l in body.splitlines() if l.startswith("edgepool_sink_results_total{") and f'camera="{CAMERA}"' in l)
        return status == 200 and counted >= len(FRAMES)

    try:
        wait_until("the sink's count", sink_counted, 60)
        rep.check("the sink (user sink) counted them, scraped with the metrics token", True, f"edgepool_sink_results_total{{camera=\"{CAMERA}\"}} {counted:.0f}")
    except SystemExit:
        rep.check("the sink (user sink) counted them, scraped with the metrics token", False, f"counted {counted}")


async def denials(d: Deployment, worker_env: dict[str, str]) -> None:
    rep = d.rep
    url = f"tls://127.0.0.1:{d.ports[0]}"
    ctx = ssl.create_default_context(cafile=str(d.creds / "ca.crt"))

    async def connect(env: dict[str, str] | None, errors: list[str] | None = None, **kw):
        async def on_error(e: Exception) -> None:
            if errors is not None:
                errors.append(str(e))

        opts = dict(servers=[url], tls=ctx, allow_reconnect=False, connect_timeout=5, error_cb=on_error, **kw)
        if env:
            opts.update(user=env["EDGEPOOL_NATS_USER"], password=env["EDGEPOOL_NATS_PASSWORD"], inbox_prefix=env["EDGEPOOL_NATS_INBOX_PREFIX"])
        return await nats.connect(**opts)

    async def until(errors: list[str], needle: str) -> bool:
        for _ in range(50):
            if any(needle.lower() in e.lower() for e in errors):
                return True
            await asyncio.sleep(0.1)
        return False

    admin = await connect(env_file(d.creds / "admin.env"))
    ajs = admin.jetstream()

    # A camera cannot read detections.
    errors: list[str] = []
    cam = await connect(env_file(d.creds / f"camera-{CAMERA}.env"), errors)
    await cam.subscribe("detections.>")
    denied = await until(errors, 'Subscription to "detections.>"')
    rep.check(f"camera {CAMERA} cannot read detections", denied, errors[-1] if errors else "no violation reported")
    await cam.close()

    # A subscriber cannot publish frames.
    errors = []
    sub = await connect(env_file(d.creds / "subscriber.env"), errors)
    before = (await ajs.stream_info("FRAMES")).state.last_seq
    try:
        await sub.jetstream().publish(f"frames.{CAMERA}", (PHOTOS / "grace_hopper.jpg").read_bytes(), timeout=2)
        published = True
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.Error):
        published = False
    after = (await ajs.stream_info("FRAMES")).state.last_seq
    rep.check("user subscriber cannot publish frames", not published and after == before and await until(errors, f'publish to "frames.{CAMERA}"'), f"FRAMES last_seq {before} -> {after}; {errors[-1] if errors else ''}")
    await sub.close()

    # A worker, with the credentials its pod gets, cannot delete or purge a stream.
    errors = []
    wk = await connect(worker_env, errors)
    wjs = wk.jetstream(timeout=2)
    outcomes = []
    for what, op in (("delete FRAMES", wjs.delete_stream("FRAMES")), ("purge FRAMES", wjs.purge_stream("FRAMES")), ("delete DETECTIONS", wjs.delete_stream("DETECTIONS"))):
        try:
            await op
            outcomes.append(f"{what}: done")
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.Error) as e:
            outcomes.append(f"{what}: refused ({type(e).__name__})")
    streams = sorted([s.config.name for s in await ajs.streams_info()])
    rep.check("user worker cannot delete or purge a stream", all("refused" in o for o in outcomes) and {"FRAMES", "DETECTIONS"} <= set(streams), "; ".join(outcomes))
    await wk.close()
    await admin.close()

    # No credentials: refused.
    try:
        nc = await connect(None)
        await nc.close()
        rep.check("a client without credentials is refused", False, "connected")
    except Exception as e:  # noqa: BLE001 - any refusal is the expected outcome; shown below
        rep.check("a client without credentials is refused", "uthorization" in str(e) or isinstance(e, nats.errors.Error), f"{type(e).__name__}: {e}")


def plaintext_refused(d: Deployment, worker_env: dict[str, str]) -> None:
    """A client that speaks plain NATS with valid credentials: the server wants TLS first."""
    with socket.create_connection(("127.0.0.1", d.ports[0]), timeout=5) as s:
        info = s.recv(4096).decode(errors="replace")
        creds = {"user": worker_env["EDGEPOOL_NATS_USER"], "pass": worker_env["EDGEPOOL_NATS_PASSWORD"], "verbose": False, "pedantic": False}
        try:
            s.sendall(f"CONNECT {json.dumps(creds)}\r\nPING\r\n".encode())
            time.sleep(0.5)
            reply = s.recv(4096).decode(errors="replace")
        except OSError as e:
            reply = f"closed: {e}"
    required = '"tls_required":true' in info.replace(" ", "")
    d.rep.check("a plaintext client (valid credentials) is refused", required and "PONG" not in reply, f"INFO says tls_required; answer to CONNECT+PING: {reply.strip()[:80]!r}" if reply.strip() else "INFO says tls_required; the server closed the connection without a PONG")


def route_without_cert_refused(d: Deployment) -> None:
    ctx = ssl.create_default_context(cafile=str(d.creds / "ca.crt"))
    try:
        with socket.create_connection(("127.0.0.1", d.cluster_ports[0]), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(b"CONNECT {}\r\nPING\r\n")
                data = s.recv(4096)
        refused, detail = data == b"", f"read {data[:60]!r}"
    except (ssl.SSLError, OSError) as e:
        refused, detail = True, f"{type(e).__name__}: {str(e)[:80]}"
    d.rep.check("a route connection without the cluster's client certificate is refused", refused, detail)


def multipart(fields: dict[str, str], files: dict[str, Path]) -> tuple[bytes, str]:
    """A multipart/form-data body, as an NVR posts it: the text fields, then each file with its
    name and a content type. Returns the body and its Content-Type."""
    boundary = f"edgepool-{os.urandom(12).hex()}"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    for k, path in files.items():
        kind = "image/png" if path.suffix == ".png" else "image/jpeg"
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"; filename="{path.name}"\r\nContent-Type: {kind}\r\n\r\n'
        parts.append(head.encode() + path.read_bytes() + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def detect(port: int, api_key: str | None, photo: str = "grace_hopper.jpg") -> tuple[int, dict]:
    """POST /v1/vision/detection with the photo and, if given, the API key (DeepStack's form)."""
    body, kind = multipart({"api_key": api_key} if api_key is not None else {}, {"image": PHOTOS / photo})
    status, text = http(f"http://127.0.0.1:{port}/v1/vision/detection", data=body, headers={"Content-Type": kind}, timeout=30)
    try:
        return status, json.loads(text)
    except ValueError:
        return status, {"body": text[:200]}


def gateway_api(d: Deployment, port: int, gateway_env: dict[str, str]) -> None:
    """The gateway (user gateway) answers a DeepStack request with the API key of Secret
    gateway-http: the pool's workers find the person in grace_hopper.jpg."""
    status, body = detect(port, gateway_env["EDGEPOOL_GATEWAY_API_KEY"])
    labels = [p.get("label") for p in body.get("predictions", [])]
    d.rep.check(
        "the gateway (user gateway) answers POST /v1/vision/detection with the API key: grace_hopper.jpg has a person",
        status == 200 and body.get("success") is True and "person" in labels,
        f"HTTP {status}, success {body.get('success')}, labels {labels}" + ("" if body.get("success") else f", {body.get('error') or body}"),
    )


def gateway_http(d: Deployment, port: int, gateway_env: dict[str, str]) -> None:
    key, wrong = gateway_env["EDGEPOOL_GATEWAY_API_KEY"], "x" * 43
    (no_key, nk_body), (bad_key, bk_body) = detect(port, None), detect(port, wrong)
    echoed = wrong in json.dumps(bk_body)
    d.rep.check(
        "the gateway's API without the API key, or with a wrong one: 401, no predictions, key not echoed",
        no_key == 401 and bad_key == 401 and not nk_body.get("predictions") and not bk_body.get("predictions") and nk_body.get("success") is False and not echoed,
        f"no key {no_key} {nk_body.get('error')!r}, wrong key {bad_key}",
    )
    base = f"http://127.0.0.1:{port}"
    metrics = {"no token": http(base + "/metrics")[0], "API key": http(base + "/metrics", key)[0]}
    status, text = http(base + "/metrics", gateway_env["EDGEPOOL_GATEWAY_METRICS_TOKEN"])
    served = len(re.findall(r"^edgepool_gateway_\w+", text, re.M))
    probes = {p: http(base + p)[0] for p in ("/healthz", "/readyz")}
    d.rep.check(
        "the gateway's /metrics wants its own token (not the API key); probes stay open",
        set(metrics.values()) == {401} and status == 200 and served > 0 and set(probes.values()) == {200},
        f"/metrics {metrics}, with the metrics token {status} ({served} edgepool_gateway_* samples), probes {probes}",
    )


def sink_http(d: Deployment, port: int, sink_env: dict[str, str]) -> None:
    base = f"http://127.0.0.1:{port}"
    wrong = "x" * 43
    results = {}
    for path in ("/", "/events", "/cameras", "/metrics"):
        results[path] = (http(base + path, timeout=2)[0], http(base + path, wrong, timeout=2))
    echoed = any(wrong in body for _, (_, body) in results.values())
    no_token = {p: s for p, (s, _) in results.items()}
    wrong_token = {p: w[0] for p, (_, w) in results.items()}
    d.rep.check("the sink's page, /events, /cameras and /metrics without a token, or a wrong one: 401, token not echoed", set(no_token.values()) == {401} and set(wrong_token.values()) == {401} and not echoed, f"no token {no_token}, wrong token {wrong_token}")
    status, _ = http(base + "/cameras", sink_env["EDGEPOOL_SINK_TOKEN"])
    metrics_with_page_token = http(base + "/metrics", sink_env["EDGEPOOL_SINK_TOKEN"])[0]
    probes = {p: http(base + p)[0] for p in ("/healthz", "/readyz")}
    d.rep.check("with the viewer token /cameras answers; /metrics wants its own token; probes stay open", status == 200 and metrics_with_page_token == 401 and set(probes.values()) == {200}, f"/cameras {status}, /metrics with the viewer token {metrics_with_page_token}, probes {probes}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kubectl", default="kubectl")
    ap.add_argument("--edgepool", required=True)
    ap.add_argument("--nats-server", required=True)
    ap.add_argument("--model", required=True, help="the converted ONNX model, pushed as the model-push Job would")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, rendered files)")
    args = ap.parse_args()
    args.edgepool, args.model = str(Path(args.edgepool).resolve()), str(Path(args.model).resolve())

    # nats-py closing TLS connections makes asyncio warn about eof_received; not ours to fix.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    rep = Report()
    tmp = Path(tempfile.mkdtemp(prefix="edgepool-rendered-"))
    d = Deployment(args, tmp, rep)
    try:
        d.start_nats()
        d.run_setup()
        d.run_model_push()
        workers = []
        for arch in ("amd64", "arm64"):
            run, port = d.start_role("Deployment", f"worker-{arch}", "worker", f"worker-{arch}-0")
            workers.append(run)
        sink, sink_port = d.start_role("Deployment", "sink", "sink", "sink-0")
        gateway, gateway_port = d.start_role("Deployment", "gateway", "gateway", "gateway-0")
        rep.check("both worker Deployments, the sink and the gateway are ready with their rendered args, env and mounts", True,
                  f"users {[w.env['EDGEPOOL_NATS_USER'] for w in workers]}, {sink.env['EDGEPOOL_NATS_USER']}, {gateway.env['EDGEPOOL_NATS_USER']}")
        flow(d, sink_port, sink.env)
        gateway_api(d, gateway_port, gateway.env)
        asyncio.run(denials(d, workers[0].env))
        plaintext_refused(d, workers[0].env)
        route_without_cert_refused(d)
        sink_http(d, sink_port, sink.env)
        gateway_http(d, gateway_port, gateway.env)
        codes = d.procs.stop_all()
        rep.check("every process stops on SIGTERM with exit 0", all(c == 0 for c in codes.values()), str(codes))
    except SystemExit as e:
        if e.code not in (0, None):
            rep.check("the deployment ran", False, str(e))
    finally:
        d.procs.stop_all()
        if args.keep or rep.failed:
            print(f"logs and rendered files kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"run_rendered: {rep.passed} passed, {rep.failed} failed")
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
