#!/usr/bin/env bash
# CI stage: observability (issue 7). The alert and recording rules pass `promtool check rules` and
# their unit tests; the dashboard JSON matches its generator; and the live check runs a real
# Prometheus against `edgepool demo`, evaluating every panel query and recording rule.
# Installs Debian's prometheus package (promtool and the server) when either is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    echo "== observability: installing Debian's prometheus package"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus
fi
prometheus --version 2>&1 | head -1

echo "== observability: promtool check rules"
promtool check rules grafana/rules/edgepool.rules.yml

echo "== observability: promtool test rules"
promtool test rules grafana/rules/tests/*.yml

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
