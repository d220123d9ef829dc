#!/usr/bin/env bash
# Replaces the vendored Swagger UI (crates/infergate-admin/assets/docs) with a release of the
# npm package swagger-ui-dist, from the npm registry; prints the new files' SHA-256 sums,
# which docs.rs pins. Usage: scripts/vendor-swagger-ui.sh 5.35.0
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:?usage: $0 VERSION}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$version" >/dev/null && tar xzf swagger-ui-dist-*.tgz)
for file in swagger-ui-bundle.js swagger-ui.css LICENSE NOTICE; do
  cp "$work/package/$file" crates/infergate-admin/assets/docs/
done
sha256sum crates/infergate-admin/assets/docs/{swagger-ui-bundle.js,swagger-ui.css}
