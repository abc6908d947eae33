#!/usr/bin/env bash
# CI helper: what tools/camera/rtsp_server.py (the real RTSP camera the camera role's integration
# tests read from) needs: GStreamer's RTSP server and the elements it uses, from Python through
# Debian's python3-gi. Installs the Debian packages that are missing (a quick dpkg-query when all
# are there), then has the server itself check the install and print the versions.
# The ffmpeg the tests run comes from the tools venv (`cargo xtask tools`), not from here.
set -euo pipefail
cd "$(dirname "$0")/.."

# gir1.2-gst-rtsp-server-1.0 already pulls in plugins-base, -good and -bad; they are named
# anyway because the server uses their elements (appsrc and appsink; qtdemux and rtph264pay;
# h264parse). gstreamer1.0-tools is only for gst-inspect-1.0 when something needs looking into.
packages=(
    python3-gi
    gir1.2-gst-rtsp-server-1.0
    gstreamer1.0-plugins-base
    gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad
    gstreamer1.0-tools
)
missing=()
for pkg in "${packages[@]}"; do
    if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "== camera-tools: installing Debian's ${missing[*]}"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi
gst-inspect-1.0 --version | sed -n 2p
# Loads gi and the GstRtspServer typelib, finds every element, and prints the versions; exits 3
# with the packages to install when anything is missing. Debian's python: only it sees python3-gi
# (the python3 on PATH may be pyenv's).
/usr/bin/python3 tools/camera/rtsp_server.py --check
