#!/usr/bin/env bash
# CI stage: browser. The sink's page (crates/sink/src/page.html) in a real headless Chromium against
# a real `edgepool demo --keep`: tile images, the fleet panel against `edgepool status --json`, the
# live feed, the large view, and no sideways scroll on a phone (tools/view/browser_check.py).
# Installs Debian's chromium and chromium-driver when missing, and selenium (pinned) into a venv
# under the edgepool cache. Screenshots go to $BROWSER_SCREENSHOTS (default: a fresh temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."

SELENIUM_VERSION=4.27.1

missing=()
if ! command -v chromium >/dev/null; then
    missing+=(chromium)
fi
if ! command -v chromedriver >/dev/null; then
    missing+=(chromium-driver)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "== browser: installing Debian's ${missing[*]}"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
chromium --version 2>/dev/null | head -1
chromedriver --version | head -1

# A venv of its own: Debian's python refuses system-wide pip installs (PEP 668), and selenium's
# pin stays out of the other stages' way. pip is quick when the pin is already satisfied.
venv="${XDG_CACHE_HOME:-$HOME/.cache}/edgepool/browser-venv"
if [ ! -x "$venv/bin/python" ]; then
    echo "== browser: creating $venv"
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check "selenium==$SELENIUM_VERSION"

# The demo needs nats-server (xtask installs it; a quick no-op when present) and the model, fetched
# only when missing (see .ci/observability.sh for why not `cargo xtask model` every time).
cargo xtask tools
model_dir="${EDGEPOOL_MODEL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/edgepool/models}"
if [ ! -f "$model_dir/ssd_mobilenet_v2_coco.onnx" ]; then
    cargo xtask model
fi

echo "== browser: cargo build -p edgepool"
cargo build -q -p edgepool --bin edgepool
bin="${CARGO_TARGET_DIR:-$PWD/target}/debug/edgepool"  # .ci/run exports CARGO_TARGET_DIR

echo "== browser: the sink's page in headless Chromium against edgepool demo"
"$venv/bin/python" tools/view/browser_check.py --edgepool "$bin" \
    --screenshots "${BROWSER_SCREENSHOTS:-$(mktemp -d)}"
