#!/usr/bin/env bash
# The README's first command, run exactly as written (in the background, on free ports and a
# fresh data directory given through its environment variables): waits for /readyz, makes
# one call through the gateway to a small upstream, and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
cleanup() {
  [ -n "${serve_pid:-}" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  [ -n "${upstream_pid:-}" ] && kill "$upstream_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# A model server stand-in on a free loopback port.
python3 - "$work/upstream-port" <<'PY' &
import http.server, socketserver, sys
class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "12")
        self.end_headers()
        self.wfile.write(b"upstream ok\n")
    def log_message(self, *args):
        pass
server = socketserver.TCPServer(("127.0.0.1", 0), Answer)
open(sys.argv[1], "w").write(str(server.server_address[1]))
server.serve_forever()
PY
upstream_pid=$!

export INFERGATE_ADMIN_LISTEN=127.0.0.1:0 INFERGATE_GATEWAY_LISTEN=127.0.0.1:0
export INFERGATE_DATA_DIR="$work/data" INFERGATE_ADMIN_PASSWORD=first-run-password
export INFERGATE_ACCESS_LOG=off
# The README's first command, exactly:
cargo run --release -- serve >"$work/serve.log" 2>&1 &
serve_pid=$!

field() { sed -n "s/^ *$1 *//p" "$work/serve.log" | head -1; }
for _ in $(seq 1 1800); do
  grep -q "data directory:" "$work/serve.log" 2>/dev/null && break
  kill -0 "$serve_pid" 2>/dev/null || { cat "$work/serve.log"; echo "serve exited" >&2; exit 1; }
  sleep 1
done
admin=$(field "admin API:")
gateway=$(field "gateway:")
[ -n "$admin" ] && [ -n "$gateway" ] || { cat "$work/serve.log"; exit 1; }
for _ in $(seq 1 50); do
  curl -fsS "$admin/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "$admin/readyz" >/dev/null

bin=target/release/infergate
export INFERGATE_CONFIG_DIR="$work/client"
INFERGATE_PASSWORD=first-run-password "$bin" login --url "$admin" --user admin >/dev/null
"$bin" service create --name first-run --upstream "http://127.0.0.1:$(cat "$work/upstream-port")" -o json >"$work/service.json"
sid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["service_id"])' "$work/service.json")
"$bin" api create --service first-run --auth-type NONE >/dev/null
answer=$(curl -fsS "$gateway/v1/infers/$sid/hello")
[ "$answer" = "upstream ok" ] || { echo "the call through the gateway answered: $answer" >&2; exit 1; }
echo "first run: cargo run --release -- serve answered /readyz and relayed a call (service $sid)"
