#!/usr/bin/env bash
# The test suite: sets up the interop virtualenv if needed, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-interop.sh
# The store suite (and the multi-node tests) also run on PostgreSQL; the local server of
# this kind of machine is used unless INFERGATE_TEST_DATABASE_URL names another.
export INFERGATE_TEST_DATABASE_URL="${INFERGATE_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
cargo test --workspace "$@"
# The management API tests once more, on PostgreSQL.
INFERGATE_TEST_BACKEND=postgres cargo test -p infergate-admin --test api "$@"
if command -v psql >/dev/null; then
  psql "$INFERGATE_TEST_DATABASE_URL" -qAt -c "SELECT 'DROP SCHEMA ' || nspname || ' CASCADE;' FROM pg_namespace WHERE nspname LIKE 'api\_test\_%'" \
    | psql "$INFERGATE_TEST_DATABASE_URL" -q >/dev/null 2>&1 || true
fi
