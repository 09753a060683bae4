#!/usr/bin/env bash
# Command 2: install what is needed and run every check: formatting, clippy, and all tests (unit, integration with
# a real RTSP server, GStreamer decoding, HTTP API, the hub benchmark in quick mode), then 30 s of each fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --all-targets -- --test-threads=2
bash scripts/fuzz.sh --ci
