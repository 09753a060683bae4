#!/usr/bin/env bash
# Installs what the gateway and its tests need on a fresh Debian bookworm machine (run as root, or with sudo).
# Idempotent and quick when everything is already there.
set -euo pipefail

# janus: the WebRTC reference server of the benchmark harness (gateway-bench).
PACKAGES=(
  pkg-config
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstreamer-plugins-bad1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  gstreamer1.0-libav gstreamer1.0-tools gstreamer1.0-nice gstreamer1.0-rtsp gstreamer1.0-x
  libgstrtspserver-1.0-dev ffmpeg fonts-dejavu-core
  chromium chromium-driver
  janus
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust 1.92 or newer (rustup)" >&2; exit 1; }
