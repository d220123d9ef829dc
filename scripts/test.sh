#!/usr/bin/env bash
# The test suite: sets up the interop virtualenv if needed, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-interop.sh
# The browser test of the API reference drives Debian's Chromium.
if ! command -v chromium >/dev/null; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y -qq chromium >/dev/null \
    || { $sudo apt-get update -qq && $sudo apt-get install -y -qq chromium >/dev/null; }
fi
# The store suite (and the multi-node tests) also run on PostgreSQL; the local server of
# this kind of machine is used unless INFERGATE_TEST_DATABASE_URL names another.
export INFERGATE_TEST_DATABASE_URL="${INFERGATE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
cargo test --workspace "$@"
# The management API tests once more, on PostgreSQL: the test binary the run above built
# (`cargo test -p infergate-admin` would resolve features for that package alone and build
# it again).
api=$(cargo test --workspace --no-run --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if (m.get("reason") == "compiler-artifact" and m.get("executable")
            and m["target"]["name"] == "api" and "infergate-admin" in m["package_id"]):
        print(m["executable"])')
[ -x "$api" ] || { echo "the management API test binary was not found" >&2; exit 1; }
(cd crates/infergate-admin && INFERGATE_TEST_BACKEND=postgres "$api")
if command -v psql >/dev/null; then
  psql "$INFERGATE_TEST_DATABASE_URL" -qAt -c "SELECT 'DROP SCHEMA ' || nspname || ' CASCADE;' FROM pg_namespace WHERE nspname LIKE 'api\_test\_%'" \
    | psql "$INFERGATE_TEST_DATABASE_URL" -q >/dev/null 2>&1 || true
fi
