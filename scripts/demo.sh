#!/usr/bin/env bash
# Command 1: install what is needed, build, and run the gateway with the built-in test-pattern camera registered
# as stream "demo". Extra arguments go to the gateway (for example --port 8010).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -p gateway
exec "${CARGO_TARGET_DIR:-target}/release/gateway" --demo "$@"
