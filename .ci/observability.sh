#!/usr/bin/env bash
# CI stage: observability (issues 7 and 18). The alert and recording rules pass `promtool check
# rules` and their unit tests (every file in grafana/rules/tests/); the dashboard JSON matches its
# generator; and the live check runs a real Prometheus against `edgepool demo` and a real
# node-exporter, evaluating every panel query and recording rule.
# Installs Debian's prometheus package (promtool and the server) and prometheus-node-exporter when
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    missing+=(prometheus)
fi
if ! command -v prometheus-node-exporter >/dev/null && ! command -v node_exporter >/dev/null; then
    missing+=(prometheus-node-exporter)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "== observability: installing Debian's ${missing[*]}"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    # The package's own service is not needed (the live check starts node-exporter itself), and
    # CI containers have no init to start it anyway.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
prometheus --version 2>&1 | head -1
{ command -v prometheus-node-exporter >/dev/null && prometheus-node-exporter --version 2>&1 || node_exporter --version 2>&1; } | head -1

echo "== observability: promtool check rules"
promtool check rules grafana/rules/edgepool.rules.yml

echo "== observability: promtool test rules"
shopt -s nullglob
tests=(grafana/rules/tests/*.yml)
if [ "${#tests[@]}" -eq 0 ]; then
    echo "no rule tests in grafana/rules/tests/" >&2
    exit 1
fi
promtool test rules "${tests[@]}"

echo "== observability: dashboard JSON is generated"
python3 tools/observability/dashboard.py --check

echo "== observability: live check (real Prometheus scraping edgepool demo)"
# The demo needs nats-server (xtask installs it; a quick no-op when present) and the model. The
# model is fetched only when missing: `cargo xtask model` re-converts a cached model that lacks
# its verification stamp, which takes minutes and is the tests stage's business.
cargo xtask tools
model_dir="${EDGEPOOL_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/edgepool/models}"
if [ ! -f "$model_dir/ssd_mobilenet_v2_coco.onnx" ]; then
    cargo xtask model
fi
python3 tools/observability/live_check.py
