#!/usr/bin/env bash
# Builds infergate with rustc's profile-guided optimisation into target/pgo/release/infergate:
# an instrumented build, a short training load (bench/ab.py's setup: replayed signed GETs
# through one core), then the build that uses the profile. Compare it with the release build:
#
#   bench/pgo.sh && python3 bench/ab.py target/pgo/release/infergate target/release/infergate
set -euo pipefail
cd "$(dirname "$0")/.."

rustup component add llvm-tools >/dev/null 2>&1 || true
profdata=$(find "$(rustc --print sysroot)" -name llvm-profdata -type f | head -1)
if [ -z "$profdata" ]; then
  echo "pgo: llvm-profdata not found; run: rustup component add llvm-tools" >&2
  exit 1
fi
[ -x target/release/infergate ] || cargo build --release --locked -p infergate -p infergate-bench
data=$(mktemp -d /tmp/infergate-pgo-XXXXXX)
RUSTFLAGS="-Cprofile-generate=$data/raw" \
  cargo build --release --locked -p infergate --target-dir target/pgo-gen
rm -rf "$data/raw"  # what the build scripts wrote while building
python3 bench/ab.py target/pgo-gen/release/infergate target/release/infergate --rounds 2 --duration 3
"$profdata" merge -o "$data/merged.profdata" "$data/raw"
RUSTFLAGS="-Cprofile-use=$data/merged.profdata" \
  cargo build --release --locked -p infergate --target-dir target/pgo
rm -rf "$data"
echo "pgo: built target/pgo/release/infergate"
