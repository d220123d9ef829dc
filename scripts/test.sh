#!/usr/bin/env bash
# The test suite: sets up the interop virtualenv if needed, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-interop.sh
cargo test --workspace "$@"
