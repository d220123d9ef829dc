#!/usr/bin/env python3
"""infergate side by side with nginx, HAProxy and Envoy, on loopback.

Every proxy is pinned to the same core (--proxy-core); the upstream (an nginx answering a fixed
JSON from memory) and the load generators run on the other cores (--load-cores). Two targets
are always loaded at the same time, by two load generators with the same connection count and
duration, for several short rounds: their ratio is then immune to the speed changes of virtual
cores. An nginx-vs-nginx pair shows the noise floor.

Run bench/setup.sh once, then:  python3 bench/run.py   (see bench/README.md)
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import socket
import statistics
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESPONSE = '{"id":"bench","object":"prediction","model":"bench","outputs":[0.12,0.57,0.31]}'
HMAC_KEY = b"bench-hmac-key-0123456789abcdefgh"
NJS_MODULE = "/usr/lib/nginx/modules/ngx_http_js_module.so"


GIVEN_PORTS = set()


def free_port():
    """A loopback port free now and not handed out before in this run (the kernel may offer
    a port again once the probing socket is closed, before its first taker binds it)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in GIVEN_PORTS:
            GIVEN_PORTS.add(port)
            return port


def tool(name, extra=()):
    for cand in [*extra, shutil.which(name), f"/usr/sbin/{name}"]:
        if cand and Path(cand).exists():
            return str(cand)
    sys.exit(f"bench: {name} not found; run bench/setup.sh first")


def per_thread(pid, read):
    """The sum of `read(task folder)` over every thread of a process (threads that end while
    being read count nothing)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += read(task)
        except (OSError, ValueError, IndexError):
            pass
    return total


def cpu_seconds(pid):
    """CPU time of every thread of a process, from schedstat (nanoseconds)."""
    return per_thread(pid, lambda t: int((t / "schedstat").read_text().split()[0])) / 1e9


def sleeps(pid):
    """Times the process's threads gave up the core of their own accord (blocked), in all."""
    return per_thread(pid, lambda t: sum(
        int(line.split()[1]) for line in (t / "status").read_text().splitlines()
        if line.startswith("voluntary_ctxt_switches:")))


def user_sys_ticks(pid):
    """(user, system) CPU clock ticks of a process, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def wait_http(url, timeout=30.0):
    # An HTTPS listener of the bench's private CA: only whether it answers matters here.
    insecure = ssl._create_unverified_context() if url.startswith("https:") else None
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1, context=insecure).read()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"bench: {url} did not answer within {timeout:.0f} s")


class Procs:
    def __init__(self, work):
        self.work = work
        self.procs = []

    def start(self, name, core, argv, env=None, stdout=None):
        log = open(self.work / f"{name}.log", "w")
        p = subprocess.Popen(["taskset", "-c", core, *argv], stdout=stdout or log,
                             stderr=log, env=env, text=True)
        self.procs.append(p)
        return p

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


# ---------------------------------------------------------------- configurations

def nginx_conf(work, name, body, main=""):
    path = work / f"{name}.conf"
    path.write_text(f"""
{main}
worker_processes 1;
daemon off;
master_process off;
pid {work}/{name}.pid;
error_log {work}/{name}.err warn;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_temp_path {work}/{name}-body;
  proxy_temp_path {work}/{name}-proxy;
  fastcgi_temp_path {work}/{name}-fcgi;
  uwsgi_temp_path {work}/{name}-uwsgi;
  scgi_temp_path {work}/{name}-scgi;
  {body}
}}
""")
    return path


LARGE_BODY = 256 * 1024
SSE_EVENTS = 200


def sse_body():
    """A streamed chat completion of SSE_EVENTS events as OpenAI sends it, with the final
    usage chunk and [DONE]."""
    chunk = ('data: {{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1735689600,'
             '"model":"bench","choices":[{{"index":0,"delta":{{"content":"tok{}"}},'
             '"finish_reason":null}}]}}\n\n')
    events = [chunk.format(i) for i in range(SSE_EVENTS - 2)]
    events.append('data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1735689600,'
                  '"model":"bench","choices":[],"usage":{"prompt_tokens":12,'
                  f'"completion_tokens":{SSE_EVENTS - 2},"total_tokens":{SSE_EVENTS + 10}}}}}\n\n')
    events.append("data: [DONE]\n\n")
    return "".join(events)


def private_ca(work):
    """A private CA and a certificate for localhost and 127.0.0.1 it signed (ECDSA P-256):
    the paths of the CA, the certificate and its key."""
    ca, ca_key = work / "ca.pem", work / "ca.key"
    cert, key, csr = work / "upstream.pem", work / "upstream.key", work / "upstream.csr"
    ext = work / "upstream.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)
    run("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=infergate bench CA")
    run("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=localhost")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return ca, cert, key


def upstream_conf(work, port, tls_port=None):
    """The model server's stand-in; with `tls_port`, it also listens there over TLS
    (HTTP/1.1) with a certificate of the private CA (`work/ca.pem`)."""
    (work / "sse200.txt").write_text(sse_body())
    tls = ""
    if tls_port:
        _, cert, key = private_ca(work)
        tls = (f"listen 127.0.0.1:{tls_port} ssl backlog=4096;\n"
               f"    ssl_certificate {cert};\n    ssl_certificate_key {key};")
    return nginx_conf(work, "upstream", f"""
  client_body_buffer_size 64k;
  client_body_in_single_buffer on;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    {tls}
    # Where traced nodes send their spans (OTLP/HTTP); the body is read and dropped.
    location = /v1/traces {{ return 200; }}
    location ~ /echo$ {{
      mirror /_read_body;
      mirror_request_body on;
      default_type application/json;
      return 200 $request_body;
    }}
    location = /_read_body {{ internal; return 204; }}
    location ~ /sse$ {{
      default_type text/event-stream;
      return 200 'data: {{"token":"hello"}}\\n\\n';
    }}
    location ~ /chat/completions$ {{
      types {{ }}
      default_type text/event-stream;
      root {work};
      # A streamed POST gets the same file: a static file answers POST with 405, which
      # goes (as a GET) to the file's own location.
      error_page 405 =200 /sse200.txt;
      try_files /sse200.txt =404;
    }}
    location = /sse200.txt {{
      types {{ }}
      default_type text/event-stream;
      root {work};
    }}
    location / {{
      default_type application/json;
      return 200 '{RESPONSE}';
    }}
  }}
""")


def nginx_proxy_conf(work, name, port, upstream, check=False, https=False, listen_tls=False):
    """nginx as a plain reverse proxy; with `check`, it first verifies the same HMAC-SHA256
    header as HAProxy does, in njs (nginx's JavaScript module); with `https`, the upstream
    is called over TLS, verified against the private CA, sessions reused; with
    `listen_tls`, clients connect over TLS (the private CA's certificate for localhost,
    TLS 1.2 and 1.3, session tickets on, nginx's default)."""
    main = http = deny = ""
    listen = f"listen 127.0.0.1:{port} backlog=4096;"
    if listen_tls:
        # TLS 1.3 as infergate speaks it (nginx 1.22's default stops at TLS 1.2).
        listen = (f"listen 127.0.0.1:{port} ssl backlog=4096;\n    "
                  f"ssl_certificate {work}/upstream.pem;\n    "
                  f"ssl_certificate_key {work}/upstream.key;\n    "
                  "ssl_protocols TLSv1.2 TLSv1.3;")
    scheme, tls = "http", ""
    if https:
        scheme = "https"
        tls = (f"proxy_ssl_verify on;\n      proxy_ssl_trusted_certificate {work}/ca.pem;\n"
               "      proxy_ssl_name localhost;\n      proxy_ssl_server_name on;\n"
               "      proxy_ssl_session_reuse on;")
    if check:
        script = work / "hmac.js"
        script.write_text(f"""
var crypto = require('crypto');
// HMAC-SHA256 over "X-Sdk-Date\\npath", compared with X-Signature (hex).
function valid(r) {{
  var date = r.headersIn['X-Sdk-Date'], sig = r.headersIn['X-Signature'];
  if (!date || !sig) return '0';
  var mac = crypto.createHmac('sha256', '{HMAC_KEY.decode()}').update(date + '\\n' + r.uri);
  return mac.digest('hex') === sig ? '1' : '0';
}}
export default {{ valid }};
""")
        main = f"load_module {NJS_MODULE};"
        http = f"js_import hmac from {script};\n  js_set $hmac_valid hmac.valid;"
        deny = 'if ($hmac_valid != "1") { return 401; }'
    return nginx_conf(work, name, f"""
  {http}
  upstream up {{ server 127.0.0.1:{upstream}; keepalive 512; keepalive_requests 100000000; }}
  # Large request bodies are buffered in memory, not in a temporary file.
  client_body_buffer_size 1m;
  client_max_body_size 2m;
  server {{
    {listen}
    location / {{
      {deny}
      proxy_pass {scheme}://up;
      {tls}
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}
  }}""", main)


def haproxy_conf(work, port, upstream):
    key = base64.b64encode(HMAC_KEY).decode()
    path = work / "haproxy.cfg"
    path.write_text(f"""
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:{port}
  # HMAC-SHA256 over "X-Sdk-Date\\npath", compared with X-Signature (hex).
  http-request set-var(txn.sig) req.hdr(x-signature)
  http-request set-var(txn.path) path
  http-request deny deny_status 401 unless {{ req.hdr(x-sdk-date),concat(\\n,txn.path),hmac(sha256,{key}),hex,lower,strcmp(txn.sig) eq 0 }}
  default_backend be
backend be
  http-reuse always
  server up 127.0.0.1:{upstream}
""")
    return path


def envoy_conf(work, port, upstream):
    hcm = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
    router = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
    conf = {
        "static_resources": {
            "listeners": [{
                "name": "bench",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": hcm,
                        "stat_prefix": "bench",
                        "route_config": {"virtual_hosts": [{
                            "name": "all", "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "up"}}],
                        }]},
                        "http_filters": [{"name": "envoy.filters.http.router",
                                          "typed_config": {"@type": router}}],
                    },
                }]}],
            }],
            "clusters": [{
                "name": "up", "type": "STATIC", "connect_timeout": "5s",
                "load_assignment": {"cluster_name": "up", "endpoints": [{"lb_endpoints": [{
                    "endpoint": {"address": {"socket_address": {
                        "address": "127.0.0.1", "port_value": upstream}}}}]}]},
            }],
        },
    }
    path = work / "envoy.json"
    path.write_text(json.dumps(conf))
    return path


# ---------------------------------------------------------------- infergate

class Infergate:
    """`infergate serve` on its own data folder with one service, one APP API and one
    authorized app; `name` keeps several apart in one run, `serve_args` are added to serve's."""

    def __init__(self, procs, work, core, binary, upstream, wrapper=(), name="infergate",
                 serve_args=()):
        self.binary = binary
        self.env = dict(os.environ, INFERGATE_CONFIG_DIR=str(work / f"{name}-cli"),
                        INFERGATE_ADMIN_PASSWORD="bench-Admin-pass-1", INFERGATE_LOG="warn")
        if wrapper:
            # The server's allocator setting, given here: set by itself, it would start its
            # program again in place, out from under the wrapper (valgrind).
            self.env.setdefault("MIMALLOC_PURGE_DELAY", "10000")
        out_path = work / f"{name}.out"
        out = open(out_path, "w")
        self.proc = procs.start(name, core, [
            *wrapper, binary, "serve", "--data-dir", str(work / f"{name}-data"),
            "--admin-listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0",
            "--access-log", "off", *serve_args], env=self.env, stdout=out)
        self.admin = self.gateway = None
        deadline = time.time() + 120
        while time.time() < deadline and not (self.admin and self.gateway):
            time.sleep(0.1)
            for line in out_path.read_text().splitlines():
                if line.strip().startswith("admin API:"):
                    self.admin = line.split()[-1]
                if line.strip().startswith("gateway:"):
                    self.gateway = line.split()[-1]
            if self.proc.poll() is not None:
                sys.exit("bench: infergate serve exited; see its log in " + str(work))
        if not (self.admin and self.gateway):
            sys.exit("bench: infergate did not print its addresses")
        self.cli("login", "--url", self.admin, "--user", "admin",
                 env={"INFERGATE_PASSWORD": "bench-Admin-pass-1"})
        service = self.cli("service", "create", "--name", "bench", "--upstream",
                           f"http://127.0.0.1:{upstream}", "-o", "json")
        api = self.cli("api", "create", "--service", "bench", "--auth-type", "APP", "-o", "json")
        app = self.cli("app", "create", "--name", "bench", "-o", "json")
        self.cli("app", "authorize", "--app", "bench", "--service", "bench", "-o", "json")
        self.service_id = service.get("service_id") or service.get("id")
        app_obj = app.get("app", app)
        self.app_key, self.app_secret = app_obj["app_key"], app_obj["app_secret"]
        self.base = find_key(api, "predict_url")

    def throttle(self, limit):
        """Binds a policy of `limit` calls a minute per API to the bench service: every call
        is counted, none refused while the limit is out of reach."""
        self.cli("throttle", "create", "--name", "bench_limit", "--api-limit", str(limit),
                 "--unit", "MINUTE", "-o", "json")
        self.cli("throttle", "bind", "bench_limit", "--service", "bench", "-o", "json")
        return self

    def cli(self, *args, env=None):
        out = subprocess.run([self.binary, *args], env=dict(self.env, **(env or {})),
                             capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"bench: infergate {' '.join(args)} failed: {out.stderr.strip()}")
        try:
            return json.JSONDecoder().raw_decode(out.stdout.strip())[0]
        except json.JSONDecodeError:
            return {}

    def signed_headers(self, method, url, body_file=None):
        argv = ["sign", "--app-key", self.app_key, "--app-secret", self.app_secret,
                "-X", method, url]
        if body_file:
            argv += ["--data-binary", f"@{body_file}", "-H", "Content-Type: application/json"]
        out = subprocess.run([self.binary, *argv], env=self.env, capture_output=True, text=True,
                             check=True)
        return [line for line in out.stdout.splitlines() if ":" in line]


def find_key(obj, key):
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for v in obj.values():
            found = find_key(v, key)
            if found:
                return found
    if isinstance(obj, list):
        for v in obj:
            found = find_key(v, key)
            if found:
                return found
    return None


# ---------------------------------------------------------------- measuring

class Target:
    """What a load generator sends to one side of a pair; with `load_args`, infergate-load
    sends it (with those arguments) instead of wrk."""

    def __init__(self, name, url, pid, headers=(), body_file=None, load_args=None):
        self.name, self.url, self.pid = name, url, pid
        self.headers, self.body_file = list(headers), body_file
        self.load_args = load_args


def wrk_cmd(args, target, core):
    if target.load_args is not None:
        cmd = ["taskset", "-c", core, args.load, "-c", str(args.connections),
               "-d", str(args.duration), *target.load_args]
    else:
        cmd = ["taskset", "-c", core, args.wrk, "-t1", f"-c{args.connections}",
               f"-d{args.duration}s", "-s", str(BENCH / "report.lua")]
    for h in target.headers:
        cmd += ["-H", h]
    return cmd + [target.url]


def paired(args, a, b):
    """Loads a and b at the same time for args.rounds rounds; one dict per round."""
    rounds = []
    for _ in range(args.rounds):
        cpu0 = (cpu_seconds(a.pid), cpu_seconds(b.pid))
        ticks0 = (user_sys_ticks(a.pid), user_sys_ticks(b.pid))
        sleeps0 = (sleeps(a.pid), sleeps(b.pid))
        t0 = time.time()
        procs = []
        for target, core in ((a, args.load_cores[0]), (b, args.load_cores[-1])):
            env = dict(os.environ, BENCH_BODY_FILE=target.body_file or "")
            procs.append(subprocess.Popen(wrk_cmd(args, target, core), env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
        outs = [p.communicate() for p in procs]
        wall = time.time() - t0
        cpu1 = (cpu_seconds(a.pid), cpu_seconds(b.pid))
        ticks1 = (user_sys_ticks(a.pid), user_sys_ticks(b.pid))
        sleeps1 = (sleeps(a.pid), sleeps(b.pid))
        r = {}
        for key, target, (out, err), c0, c1, t0, t1, s0, s1 in zip(
                "ab", (a, b), outs, cpu0, cpu1, ticks0, ticks1, sleeps0, sleeps1):
            line = [l for l in out.splitlines() if l.startswith("{")]
            if not line:
                sys.exit(f"bench: wrk against {target.name} printed no result: {out}{err}")
            res = json.loads(line[-1])
            if res["non_2xx"] or res["errors"]:
                sys.exit(f"bench: {target.name} answered {res['non_2xx']} non-2xx and "
                         f"{res['errors']} errors; its log is in {args.work}")
            res["rps"] = res["requests"] / res["seconds"]
            res["cpu_us"] = (c1 - c0) * 1e6 / max(res["requests"], 1)
            res["cpu_share"] = (c1 - c0) / wall
            res["sleeps"] = (s1 - s0) / max(res["requests"], 1)
            user, system = t1[0] - t0[0], t1[1] - t0[1]
            res["kernel_share"] = system / max(user + system, 1)
            r[key] = res
        r["ratio"] = r["a"]["rps"] / r["b"]["rps"]
        rounds.append(r)
    return rounds


def hmac_headers(path):
    """`X-Sdk-Date` and `X-Signature` (HMAC-SHA256 over "date\npath") for the HMAC peers."""
    date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    sig = hmac.new(HMAC_KEY, f"{date}\n{path}".encode(), hashlib.sha256).hexdigest()
    return [f"X-Sdk-Date: {date}", f"X-Signature: {sig}"]


def answers_the_stream(target, usage_chunk):
    """The target answers its request with the whole SSE answer (with or without its usage
    chunk): a load run measures what it should."""
    body = Path(target.body_file).read_bytes() if target.body_file else None
    req = urllib.request.Request(target.url, data=body,
                                 headers=dict(h.split(": ", 1) for h in target.headers))
    with urllib.request.urlopen(req, timeout=10) as res:
        text = res.read().decode()
    want = SSE_EVENTS - (0 if usage_chunk else 1)
    got = text.count("data: ")
    if got != want or ('"usage"' in text) != usage_chunk:
        sys.exit(f"bench: {target.name} answered {got} events, not {want} "
                 f"(usage chunk expected: {usage_chunk}): {text[:200]!r}")
    return target


def hmac_check_works(target):
    """The peer answers the signed request and refuses one whose signature is one digit off."""
    sent = dict(h.split(": ", 1) for h in target.headers)
    date, sig = sent["X-Sdk-Date"], sent["X-Signature"]

    def status(signature):
        req = urllib.request.Request(target.url, headers={
            "X-Sdk-Date": date, "X-Signature": signature})
        try:
            with urllib.request.urlopen(req, timeout=5) as res:
                return res.status
        except urllib.error.HTTPError as err:
            return err.code
    wrong = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    got = (status(sig), status(wrong))
    if got != (200, 401):
        sys.exit(f"bench: {target.name} answered {got[0]} to a signed request and {got[1]} "
                 "to a wrongly signed one (200 and 401 expected)")


def med(values):
    return statistics.median(values)


def summarize(name, a, b, rounds):
    ratios = [r["ratio"] for r in rounds]
    cpu_ratio = [r["a"]["cpu_us"] / r["b"]["cpu_us"] for r in rounds]
    side = lambda k, f: med([r[k][f] for r in rounds])
    return {
        "pair": name, "a": a.name, "b": b.name,
        "ratio": med(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
        "cpu_ratio": med(cpu_ratio),
        "a_rps": side("a", "rps"), "b_rps": side("b", "rps"),
        "a_p50": side("a", "p50_us"), "a_p99": side("a", "p99_us"),
        "b_p50": side("b", "p50_us"), "b_p99": side("b", "p99_us"),
        "a_cpu": side("a", "cpu_us"), "b_cpu": side("b", "cpu_us"),
        "a_kernel": side("a", "kernel_share"), "b_kernel": side("b", "kernel_share"),
        "core_busy": med([r["a"]["cpu_share"] + r["b"]["cpu_share"] for r in rounds]),
        "a_sleeps": side("a", "sleeps"), "b_sleeps": side("b", "sleeps"),
        "rounds": rounds,
    }


def load(args, url, extra=(), core=None):
    cmd = ["taskset", "-c", core or args.load_cores[-1], args.load, url, *extra]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"bench: infergate-load failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def open_loop(args, ig, direct_url, nginx_url):
    """A proxy and the upstream itself loaded at --rate at once: the gateway (fresh signature
    per request), then nginx, each with its own direct run alongside."""
    common = ["--rate", str(args.rate), "-c", "16", "-d", str(args.duration)]
    # Both generators sign every request (nginx ignores the headers): they share a core with
    # the upstream, so they must cost it the same.
    signing = ["--app-key", ig.app_key, "--app-secret", ig.app_secret]
    proxies = {"gateway": [ig.base + "/predict", *signing], "nginx": [nginx_url, *signing]}
    rounds = []
    for _ in range(args.rounds):
        result = {}
        for name, target in proxies.items():
            cmds = [
                ["taskset", "-c", args.load_cores[0], args.load, target[0], *common,
                 *target[1:]],
                ["taskset", "-c", args.load_cores[-1], args.load, direct_url, *common],
            ]
            if args.apart:
                res = [json.loads(subprocess.run(c, capture_output=True, text=True)
                                  .stdout.strip().splitlines()[-1]) for c in cmds]
            else:
                procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True) for c in cmds]
                res = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
            for r in res:
                if r["non_2xx"] or r["errors"]:
                    sys.exit(f"bench: open-loop run had failures: {r}")
            result[name], result[f"direct_{name}"] = res
        rounds.append(result)
    return rounds


def first_event(args, ig, direct_url, nginx_url):
    """(through the gateway, direct, through nginx) p50 of the first event, per round."""
    rows = []
    for _ in range(args.rounds):
        via = load(args, ig.base + "/sse", ["--first-event", "1000", "--app-key", ig.app_key,
                                            "--app-secret", ig.app_secret])
        direct = load(args, direct_url, ["--first-event", "1000"])
        nginx = load(args, nginx_url, ["--first-event", "1000"])
        rows.append((via["p50_us"], direct["p50_us"], nginx["p50_us"]))
    return rows


def first_event_usage(args, ig, quiet):
    """(usage read, accounting off) p50 of the first event of the streamed chat completion,
    per round."""
    rows = []
    for _ in range(args.rounds):
        p50 = []
        for node in (ig, quiet):
            r = load(args, node.base + "/chat/completions", [
                "--first-event", "1000", "--app-key", node.app_key,
                "--app-secret", node.app_secret])
            p50.append(r["p50_us"])
        rows.append(tuple(p50))
    return rows


def fresh_vs_once(args, ig):
    rows = {"fresh": [], "once": []}
    for _ in range(args.rounds):
        for mode in ("fresh", "once"):
            c0 = cpu_seconds(ig.proc.pid)
            r = load(args, ig.base + "/predict", [
                "-c", str(args.connections), "-d", str(args.duration), "--sign", mode,
                "--app-key", ig.app_key, "--app-secret", ig.app_secret])
            c1 = cpu_seconds(ig.proc.pid)
            if r["non_2xx"] or r["errors"]:
                sys.exit(f"bench: the {mode} signature run had failures: {r}")
            rows[mode].append({"rps": r["rps"], "cpu_us": (c1 - c0) * 1e6 / r["requests"]})
    return rows


# ---------------------------------------------------------------- report

def machine():
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split()[1]
    return f"{os.cpu_count()} × {model}, {int(mem) // 1024 // 1024} GiB, {platform.platform()}"


def git_commit():
    out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "crates"],
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + (" (+ uncommitted changes)" if dirty else "")


def report(args, pairs, open_rounds, sse, signing, versions, first_usage=None):
    lines = [f"Machine: {machine()}",
             f"Commit: {git_commit()}; {versions}",
             f"Command: `python3 bench/run.py {' '.join(sys.argv[1:])}`".replace("  ", " "),
             f"Proxies on core {args.proxy_core}; upstream and load generators on "
             f"{','.join(args.load_cores)}; {args.rounds} rounds × {args.duration} s, "
             f"{args.connections} connections per load generator (wrk -t1).", "",
             "| pair (a vs b, loaded together) | a req/s | b req/s | ratio a/b median [min–max] "
             "| a p50/p99 µs | b p50/p99 µs | a CPU µs/req | b CPU µs/req | CPU ratio "
             "| in kernel a / b | core busy | blocked per request a / b |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in pairs:
        lines.append(
            f"| {p['pair']} | {p['a_rps']:,.0f} | {p['b_rps']:,.0f} | **{p['ratio']:.3f}** "
            f"[{p['ratio_min']:.3f}–{p['ratio_max']:.3f}] | {p['a_p50']:.0f} / {p['a_p99']:.0f} "
            f"| {p['b_p50']:.0f} / {p['b_p99']:.0f} | {p['a_cpu']:.1f} | {p['b_cpu']:.1f} "
            f"| {p['cpu_ratio']:.3f} | {p['a_kernel'] * 100:.0f}% / {p['b_kernel'] * 100:.0f}% "
            f"| {p['core_busy'] * 100:.0f}% | {p['a_sleeps']:.3f} / {p['b_sleeps']:.3f} |")
    for p in pairs:
        if "sha256_us" in p:
            extra = p["a_cpu"] - p["b_cpu"]
            lines += ["", f"{LARGE_BODY // 1024} KiB signed POST: infergate's CPU per call over "
                      f"nginx's {extra:.1f} µs; SHA-256 of the body alone on the proxy core "
                      f"{p['sha256_us']:.1f} µs (infergate-load --time-sha256); extra / SHA-256 "
                      f"**{extra / p['sha256_us']:.2f}** (target ≤ 1.10)."]
    if open_rounds:
        p = lambda key, q: med([r[key][q] for r in open_rounds])
        added = lambda name, q: med([r[name][q] - r[f"direct_{name}"][q] for r in open_rounds])
        late = max(max(v["late_p99_us"] for v in r.values()) for r in open_rounds)
        when = "one after the other" if args.apart else "at the same time"
        lines += ["", f"Open loop at {args.rate:.0f} req/s: a proxy and the upstream itself "
                  f"loaded {when}, each at that rate (the proxied load with a fresh "
                  f"signature per request, through either proxy); median of {len(open_rounds)} rounds; schedule lag "
                  f"p99 ≤ {late} µs:", "",
                  "| through | p50 µs | p99 µs | direct p50 / p99 µs | added p50 µs | added p99 µs |",
                  "|---|---|---|---|---|---|"]
        for name, label in (("gateway", "**infergate**"), ("nginx", "nginx (plain proxy)")):
            lines.append(
                f"| {label} | {p(name, 'p50_us')} | {p(name, 'p99_us')} "
                f"| {p('direct_' + name, 'p50_us')} / {p('direct_' + name, 'p99_us')} "
                f"| **{added(name, 'p50_us')}** | **{added(name, 'p99_us')}** |")
    if sse:
        diffs = [v - d for v, d, _ in sse]
        nginx_diffs = [n - d for _, d, n in sse]
        lines += ["", "SSE, time to the first event (p50 of 1,000 sequential requests per "
                  f"round): through the gateway minus direct, per round: "
                  f"{', '.join(f'{x} µs' for x in diffs)}; median **{med(diffs)} µs** "
                  f"(through nginx minus direct: median {med(nginx_diffs)} µs)."]
    if first_usage:
        on, off = [r[0] for r in first_usage], [r[1] for r in first_usage]
        lines += ["", f"{SSE_EVENTS}-event SSE chat completion, time to the first event (p50 of "
                  "1,000 sequential signed GETs per round, one node after the other): usage "
                  f"read {', '.join(f'{x} µs' for x in on)}; accounting off "
                  f"{', '.join(f'{x} µs' for x in off)}; medians **{med(on)} µs** vs "
                  f"**{med(off)} µs** (difference {med(on) - med(off)} µs)."]
    if signing:
        f_cpu = med([r["cpu_us"] for r in signing["fresh"]])
        o_cpu = med([r["cpu_us"] for r in signing["once"]])
        lines += ["", "Fresh signature per request vs one replayed signature (infergate-load, "
                  "one after the other): gateway CPU per request "
                  f"{f_cpu:.1f} µs vs {o_cpu:.1f} µs (ratio {f_cpu / o_cpu:.3f}); "
                  f"req/s {med([r['rps'] for r in signing['fresh']]):,.0f} vs "
                  f"{med([r['rps'] for r in signing['once']]):,.0f}."]
    return "\n".join(lines)


def profile(args, procs, binary, up):
    """Instruction counts per request under callgrind: where the gateway's time goes."""
    out = args.work / "callgrind.out"
    traced = ["--otlp-endpoint", f"http://127.0.0.1:{up}"] if args.traced else []
    ig = Infergate(procs, args.work, args.proxy_core, binary, up, wrapper=[
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no"],
        serve_args=traced)
    url = ig.base + "/predict?model=bench&stream=false"
    key = ["--app-key", ig.app_key, "--app-secret", ig.app_secret]
    if args.profile_body:
        url = ig.base + "/echo"
        key += ["-X", "POST", "--body-bytes", str(args.profile_body)]
    if args.profile_new_connections:
        key += ["--new-connection"]
    load(args, url, ["-c", "8", "-d", "5", *key])  # warm up: pools, caches
    subprocess.run(["callgrind_control", "-z", str(ig.proc.pid)], check=True,
                   capture_output=True)
    r = load(args, url, ["-c", "8", "-d", str(args.duration), *key])
    subprocess.run(["callgrind_control", "-d", str(ig.proc.pid)], check=True,
                   capture_output=True)
    time.sleep(1)
    dumps = sorted(args.work.glob("callgrind.out*"), key=lambda p: p.stat().st_mtime)
    annotate = lambda *flags: subprocess.run(
        ["callgrind_annotate", *flags, str(dumps[-1])], capture_output=True, text=True).stdout
    total = 0
    for line in annotate().splitlines():
        if "PROGRAM TOTALS" in line:
            total = int(line.split()[0].replace(",", ""))
    print(f"{r['requests']} requests; {total:,} instructions; "
          f"{total / max(r['requests'], 1):,.0f} instructions per request")
    print(annotate("--inclusive=yes", "--threshold=99")[:20000])
    print(f"(full data: {dumps[-1]})")


def sample(args, procs, binary, up):
    """Where the time goes on the real CPU: perf's software `cpu-clock` sampling (no hardware
    counters needed) attached to infergate and an nginx plain proxy while both are loaded
    together, as in the pair; prints each one's kernel/user split and its top symbols."""
    ig = Infergate(procs, args.work, args.proxy_core, binary, up)
    url = ig.base + "/predict?model=bench&stream=false"
    a = Target("infergate", url, ig.proc.pid, ig.signed_headers("GET", url))
    large = None
    if args.large:
        large = args.work / "body-large.json"
        large.write_text(json.dumps({"inputs": "x" * LARGE_BODY})[:LARGE_BODY].ljust(LARGE_BODY))
        a = Target("infergate", url, ig.proc.pid, ig.signed_headers("POST", url, large), str(large))
    if args.traced:
        traced = Infergate(procs, args.work, args.proxy_core, binary, up, name="infergate-traced",
                           serve_args=["--otlp-endpoint", f"http://127.0.0.1:{up}"])
        url = traced.base + "/predict?model=bench&stream=false"
        b = Target("infergate-traced", url, traced.proc.pid, traced.signed_headers("GET", url))
    else:
        ports, pids = start_peers(args, procs, ("nginx-a",), up)
        b = Target("nginx", f"http://127.0.0.1:{ports['nginx-a']}/predict", pids["nginx-a"],
                   body_file=large and str(large))
    duration, args.rounds = args.duration, 1
    args.duration = 2
    paired(args, a, b)  # warm up: pools, caches
    args.duration = duration
    data = {t.name: args.work / f"perf-{t.name}.data" for t in (a, b)}
    recorders = [subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "10000", "-g",
                                   "-o", str(data[t.name]), "-p", str(t.pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for t in (a, b)]
    time.sleep(0.3)
    r = paired(args, a, b)[0]
    for rec in recorders:
        rec.send_signal(2)
        rec.wait()
    report_of = lambda name, *flags: subprocess.run(
        ["perf", "report", "-i", str(data[name]), "--no-children", "-g", "none", *flags],
        capture_output=True, text=True).stdout
    for key, t in (("a", a), ("b", b)):
        print(f"{t.name}: {r[key]['rps']:,.0f} req/s, {r[key]['cpu_us']:.1f} CPU µs/req "
              "(sampling slows both)")
        rows = [l for l in report_of(t.name, "--sort", "dso").splitlines()
                if l.strip() and not l.startswith("#")]
        print("\n".join(rows[:5]))
        rows = [l for l in report_of(t.name, "--sort", "dso,sym").splitlines()
                if l.strip() and not l.startswith("#") and "[k]" not in l]
        print("\n".join(rows[:30]) + f"\n(full data: {data[t.name]})\n")


def start_peers(args, procs, names, up):
    """Starts the named nginx proxies (`nginx-hmac` checking the HMAC header) and `haproxy`
    on the proxy core and waits until each answers; their (ports, pids)."""
    ports = {n: free_port() for n in names}
    pids = {}
    for n in names:
        if n == "haproxy":
            argv = [tool("haproxy"), "-db", "-f", str(haproxy_conf(args.work, ports[n], up))]
        elif n == "nginx-https":
            argv = [tool("nginx"), "-c", str(
                nginx_proxy_conf(args.work, n, ports[n], args.tls_up, https=True))]
        elif n == "nginx-tls":
            argv = [tool("nginx"), "-c", str(
                nginx_proxy_conf(args.work, n, ports[n], up, listen_tls=True))]
        else:
            argv = [tool("nginx"), "-c", str(
                nginx_proxy_conf(args.work, n, ports[n], up, check=n == "nginx-hmac"))]
        pids[n] = procs.start(n, args.proxy_core, argv).pid
    for n, port in ports.items():
        wait_http(f"{'https' if n == 'nginx-tls' else 'http'}://127.0.0.1:{port}/")
    return ports, pids


def syscalls(args, procs, binary, up):
    """System calls per request of infergate, nginx (plain proxy) and the two HMAC peers,
    counted by strace attached during a load run: the kernel side of where the time goes."""
    ig = Infergate(procs, args.work, args.proxy_core, binary, up)
    ports, pids = start_peers(args, procs, ("nginx-a", "nginx-hmac", "haproxy"), up)
    key = ["--app-key", ig.app_key, "--app-secret", ig.app_secret]
    signed = [a for h in hmac_headers("/predict") for a in ("-H", h)]
    runs = [("infergate", ig.proc.pid, ig.base + "/predict?model=bench&stream=false", key),
            ("nginx", pids["nginx-a"], f"http://127.0.0.1:{ports['nginx-a']}/predict", []),
            ("haproxy-hmac", pids["haproxy"], f"http://127.0.0.1:{ports['haproxy']}/predict",
             signed),
            ("nginx-hmac", pids["nginx-hmac"],
             f"http://127.0.0.1:{ports['nginx-hmac']}/predict", signed)]
    for name, pid, url, extra in runs:
        load(args, url, ["-c", "8", "-d", "2", *extra])  # warm up: pools, caches
        out = args.work / f"strace-{name}.txt"
        tracer = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), "-p", str(pid)],
                                  stderr=subprocess.DEVNULL)
        time.sleep(1)
        r = load(args, url, ["-c", "8", "-d", str(args.duration), *extra])
        tracer.send_signal(2)
        tracer.wait()
        if r["non_2xx"] or r["errors"]:
            sys.exit(f"bench: {name} answered {r['non_2xx']} non-2xx and {r['errors']} errors")
        print(f"{name}: {r['requests']} requests; calls per request:")
        for line in out.read_text().splitlines():
            f = line.split()
            if len(f) >= 5 and f[3].isdigit():
                print(f"  {f[-1]:<16} {int(f[3]) / max(r['requests'], 1):6.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--proxy-core", default="0")
    ap.add_argument("--load-cores", default="1", help="comma-separated cores for load and upstream")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=4, help="seconds per round")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rate", type=float, default=5000.0, help="open-loop rate")
    ap.add_argument("--only", default="", help="comma-separated pair names to run")
    ap.add_argument("--apart", action="store_true",
                    help="open loop: load the proxy and the direct path one after the other")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379",
                    help="the Redis of the throttled-redis pair")
    ap.add_argument("--throttle-limit", type=int, default=100_000_000,
                    help="calls a minute of the throttled pairs' policy (never reached)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--out", help="also write the report to this file")
    ap.add_argument("--profile", action="store_true",
                    help="run infergate under callgrind instead and print instructions per request")
    ap.add_argument("--syscalls", action="store_true",
                    help="count system calls per request of infergate and nginx under strace")
    ap.add_argument("--large", action="store_true",
                    help=f"with --sample: a signed {LARGE_BODY // 1024} KiB POST instead of the GET")
    ap.add_argument("--sample", action="store_true",
                    help="sample infergate and nginx (loaded together) with perf cpu-clock")
    ap.add_argument("--traced", action="store_true",
                    help="with --sample: an infergate tracing every call instead of nginx; "
                    "with --profile: the profiled infergate traces every call")
    ap.add_argument("--profile-body", type=int, default=0, metavar="BYTES",
                    help="with --profile: signed POSTs of this many body bytes instead of GETs")
    ap.add_argument("--profile-new-connections", action="store_true",
                    help="with --profile: a new connection for every call (what a connection "
                    "costs beside its call)")
    ap.add_argument("--binary", default=str(ROOT / "target/release/infergate"),
                    help="the infergate binary to run (with --no-build)")
    args = ap.parse_args()
    args.load_cores = args.load_cores.split(",")

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "infergate", "-p",
                        "infergate-bench"], cwd=ROOT, check=True)
    binary = args.binary
    args.load = str(ROOT / "target/release/infergate-load")
    nginx, haproxy = tool("nginx"), tool("haproxy")
    args.wrk = tool("wrk")
    envoy = tool("envoy", [BENCH / ".venv/bin/envoy"])
    versions = "; ".join([
        subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip(),
        subprocess.run([haproxy, "-v"], capture_output=True, text=True).stdout.split("\n")[0]
        .split(" - ")[0],
        "envoy " + (re.findall(r"/(\d+\.\d+\.\d+)/", subprocess.run(
            [envoy, "--version"], capture_output=True, text=True).stdout) or ["?"])[0],
        subprocess.run([args.wrk, "-v"], capture_output=True, text=True).stdout.split(" [")[0],
    ])

    args.work = Path(tempfile.mkdtemp(prefix="infergate-bench-"))
    procs = Procs(args.work)
    try:
        up = free_port()
        args.tls_up = free_port()
        load_core = args.load_cores[-1]
        procs.start("upstream", load_core,
                    [nginx, "-c", str(upstream_conf(args.work, up, args.tls_up))])
        wait_http(f"http://127.0.0.1:{up}/")
        if args.profile:
            return profile(args, procs, binary, up)
        if args.syscalls:
            return syscalls(args, procs, binary, up)
        if args.sample:
            return sample(args, procs, binary, up)
        core = args.proxy_core
        ports, pids = start_peers(
            args, procs, ("nginx-a", "nginx-b", "nginx-hmac", "haproxy", "nginx-https",
                          "nginx-tls"), up)
        ports["envoy"] = free_port()
        pids["envoy"] = procs.start("envoy", core, [
            envoy, "-c", str(envoy_conf(args.work, ports["envoy"], up)), "--concurrency", "1",
            "--disable-hot-restart", "--log-level", "error"]).pid
        wait_http(f"http://127.0.0.1:{ports['envoy']}/")
        ig = Infergate(procs, args.work, core, binary, up)

        def throttled_get(label, name, serve_args=()):
            """A signed GET on an API whose bound policy's limit is never reached, through
            its own infergate (with Redis, each window's count is taken from Redis)."""
            node = Infergate(procs, args.work, core, binary, up, name=name,
                             serve_args=serve_args).throttle(args.throttle_limit)
            url = node.base + "/predict?model=bench&stream=false"
            return Target(label, url, node.proc.pid, node.signed_headers("GET", url))

        def sse_get(label, node):
            """A signed GET of the streamed chat completion (its usage read unless the
            node's service has accounting off)."""
            url = node.base + "/chat/completions"
            return Target(label, url, node.proc.pid, node.signed_headers("GET", url))

        stream_file = args.work / "stream.json"
        stream_file.write_text(json.dumps({"model": "bench", "stream": True, "messages": [
            {"role": "user", "content": "Tell me about the gateway. " * 8}]}))

        def sse_post(label, node):
            """A signed streamed POST of a chat completion that does not ask for usage: with
            accounting on, the gateway asks for it and drops the usage chunk."""
            url = node.base + "/chat/completions"
            target = Target(label, url, node.proc.pid,
                            node.signed_headers("POST", url, stream_file), str(stream_file))
            # The chunk the gateway asked for is dropped; without accounting, the
            # upstream's usage chunk (sent whatever was asked) passes.
            return answers_the_stream(target, usage_chunk=node is not ig)

        quiet = []

        def https_get():
            """A signed GET through an infergate whose service's upstream is the HTTPS
            listener of the model server (verified against the private CA)."""
            node = Infergate(procs, args.work, core, binary, up, name="infergate-https")
            node.cli("service", "update", "bench", "--upstream",
                     f"https://localhost:{args.tls_up}", "--tls-ca-file",
                     str(args.work / "ca.pem"), "-o", "json")
            url = node.base + "/predict?model=bench&stream=false"
            return Target("infergate APP-signed GET, HTTPS upstream", url, node.proc.pid,
                          node.signed_headers("GET", url))

        tls_nodes = []

        def tls_get(close=False, full=False):
            """A signed GET through an infergate listening over TLS (the private CA's
            certificate, as nginx-tls), and the same GET through nginx-tls; with `close`,
            both get a new connection per call from wrk, which resumes its TLS session
            (TLS 1.3 tickets); with `full`, from infergate-load, which verifies the
            certificate and makes a full TLS 1.3 handshake each time."""
            if not tls_nodes:
                tls_nodes.append(Infergate(
                    procs, args.work, core, binary, up, name="infergate-tls",
                    serve_args=["--gateway-tls-cert", str(args.work / "upstream.pem"),
                                "--gateway-tls-key", str(args.work / "upstream.key")]))
            node = tls_nodes[0]
            url = node.base + "/predict?model=bench&stream=false"
            extra = ["Connection: close"] if close or full else []
            load = (["--cacert", str(args.work / "ca.pem"), "--new-connection"] if full
                    else None)
            label = "infergate APP-signed GET over TLS" + (
                ", a full handshake per call" if full else
                ", a resumed handshake per call" if close else "")
            return (Target(label, url, node.proc.pid, node.signed_headers("GET", url) + extra,
                           load_args=load),
                    Target("nginx over TLS", f"https://127.0.0.1:{ports['nginx-tls']}"
                           f"{path.rsplit('/', 1)[0]}/predict?model=bench&stream=false",
                           pids["nginx-tls"], headers=extra, load_args=load))

        def traced_get():
            """A signed GET through an infergate that traces every call (sampling 1) and
            exports the spans over OTLP/HTTP to the model server's /v1/traces."""
            node = Infergate(procs, args.work, core, binary, up, name="infergate-traced",
                             serve_args=["--otlp-endpoint", f"http://127.0.0.1:{up}"])
            url = node.base + "/predict?model=bench&stream=false"
            return Target("infergate APP-signed GET, every call traced", url, node.proc.pid,
                          node.signed_headers("GET", url))

        def quiet_node():
            """A second infergate whose service has usage_accounting off."""
            if not quiet:
                node = Infergate(procs, args.work, core, binary, up, name="infergate-quiet")
                node.cli("service", "update", "bench", "--usage-accounting", "false", "-o", "json")
                quiet.append(node)
            return quiet[0]

        path = f"/v1/infers/{ig.service_id}/predict"
        get_url = ig.base + "/predict?model=bench&stream=false"
        body_file = args.work / "body.json"
        body_file.write_text(json.dumps({"inputs": "x" * 1000})[:1024].ljust(1024))
        # Replayable signed requests (the date window is 15 minutes; a run takes less).
        ig_get = Target("infergate APP-signed GET", get_url, ig.proc.pid,
                        ig.signed_headers("GET", get_url))
        post_url = ig.base + "/echo"
        ig_post = Target("infergate APP-signed 1 KiB POST", post_url, ig.proc.pid,
                         ig.signed_headers("POST", post_url, body_file), str(body_file))
        # A large signed body: the gateway reads and hashes all of it before forwarding.
        large_file = args.work / "body-large.json"
        large_file.write_text(json.dumps({"inputs": "x" * LARGE_BODY})[:LARGE_BODY].ljust(LARGE_BODY))
        large_url = ig.base + "/predict"
        ig_post_large = Target(f"infergate APP-signed {LARGE_BODY // 1024} KiB POST", large_url,
                               ig.proc.pid, ig.signed_headers("POST", large_url, large_file),
                               str(large_file))
        peer = lambda n, suffix="/predict?model=bench&stream=false", **kw: Target(
            n, f"http://127.0.0.1:{ports[n]}{path.rsplit('/', 1)[0]}{suffix}", pids[n], **kw)
        signed = hmac_headers(path.rsplit("/", 1)[0] + "/predict")
        hap = peer("haproxy", headers=signed)
        njs = peer("nginx-hmac", headers=signed)
        for checker in (hap, njs):
            hmac_check_works(checker)
        pairs_all = {
            "control": lambda: (peer("nginx-a"), peer("nginx-b")),
            "nginx": lambda: (ig_get, peer("nginx-a")),
            "haproxy-hmac": lambda: (ig_get, hap),
            "nginx-hmac": lambda: (ig_get, njs),
            "envoy": lambda: (ig_get, peer("envoy")),
            "nginx-envoy": lambda: (peer("nginx-a"), peer("envoy")),
            "post": lambda: (ig_post, peer("nginx-a", "/echo", body_file=str(body_file))),
            "post-large": lambda: (ig_post_large,
                                   peer("nginx-a", "/predict", body_file=str(large_file))),
            "throttled": lambda: (throttled_get(
                "infergate APP-signed GET, throttled", "infergate-throttled"), peer("nginx-a")),
            "sse-accounting": lambda: (sse_get("infergate SSE, usage read", ig),
                                       sse_get("infergate SSE, accounting off", quiet_node())),
            "sse-nginx": lambda: (sse_get("infergate SSE, usage read", ig),
                                  peer("nginx-a", "/chat/completions")),
            "throttled-redis": lambda: (throttled_get(
                "infergate APP-signed GET, throttled in Redis", "infergate-redis",
                ["--redis-url", args.redis_url]), peer("nginx-a")),
            "sse-filter": lambda: (
                sse_post("infergate streamed POST, usage asked and its chunk dropped", ig),
                sse_post("infergate streamed POST, accounting off", quiet_node())),
            "https-upstream": lambda: (https_get(), peer("nginx-https")),
            "tracing": lambda: (traced_get(), ig_get),
            "tls": lambda: tls_get(),
            "tls-resumed": lambda: tls_get(close=True),
            "tls-handshake": lambda: tls_get(full=True),
        }
        labels = {
            "control": "nginx vs nginx (control)",
            "nginx": "infergate signed GET vs nginx plain proxy",
            "haproxy-hmac": "infergate signed GET vs HAProxy HMAC-SHA256 check",
            "nginx-hmac": "infergate signed GET vs nginx (njs) HMAC-SHA256 check",
            "envoy": "infergate signed GET vs Envoy plain proxy",
            "nginx-envoy": "nginx plain proxy vs Envoy plain proxy (reference)",
            "post": "infergate signed 1 KiB POST vs nginx plain proxy",
            "post-large": f"infergate signed {LARGE_BODY // 1024} KiB POST (body hashed) vs nginx "
                          "plain proxy",
            "throttled": "infergate signed GET, bound throttling policy, vs nginx plain proxy",
            "sse-accounting": f"infergate {SSE_EVENTS}-event SSE answer: usage read vs accounting off",
            "sse-nginx": f"infergate {SSE_EVENTS}-event SSE answer, usage read, vs nginx plain proxy",
            "throttled-redis": "infergate signed GET, bound policy counted in Redis, vs nginx "
                               "plain proxy",
            "sse-filter": f"infergate {SSE_EVENTS}-event streamed POST: usage asked for and its "
                          "chunk dropped vs accounting off",
            "https-upstream": "infergate signed GET vs nginx plain proxy, both to the same HTTPS "
                              "upstream",
            "tracing": "infergate signed GET: every call traced (OTLP export) vs tracing off",
            "tls": "infergate signed GET vs nginx plain proxy, clients over TLS, kept alive",
            "tls-resumed": "infergate signed GET vs nginx plain proxy, clients over TLS, a new "
                           "connection per call (wrk: session resumed)",
            "tls-handshake": "infergate signed GET vs nginx plain proxy, clients over TLS, a new "
                             "connection per call (infergate-load: TLS 1.3, full handshake)",
        }
        only = [o for o in args.only.split(",") if o]
        pairs = []
        for name, make in pairs_all.items():
            if only and name not in only:
                continue
            a, b = make()
            rounds = paired(args, a, b)
            pairs.append(summarize(labels[name], a, b, rounds))
            print(f"{labels[name]}: ratio {pairs[-1]['ratio']:.3f}", file=sys.stderr)
        large = next((p for p in pairs if p["pair"] == labels["post-large"]), None)
        if large:
            # What hashing the body alone costs, on the proxies' core, in this run.
            timed = subprocess.run(["taskset", "-c", str(args.proxy_core), args.load,
                                    "--time-sha256", "--body-bytes", str(LARGE_BODY)],
                                   capture_output=True, text=True, check=True)
            large["sha256_us"] = json.loads(timed.stdout.strip().splitlines()[-1])["sha256_us"]
        open_rounds = sse = signing = None
        if not only or "latency" in only:
            open_rounds = open_loop(args, ig, f"http://127.0.0.1:{up}/predict",
                                    f"http://127.0.0.1:{ports['nginx-a']}/predict")
            sse = first_event(args, ig, f"http://127.0.0.1:{up}/sse",
                              f"http://127.0.0.1:{ports['nginx-a']}/sse")
        if not only or "signing" in only:
            signing = fresh_vs_once(args, ig)
        first_usage = None
        if not only or "first-event-usage" in only:
            first_usage = first_event_usage(args, ig, quiet_node())
        text = report(args, pairs, open_rounds, sse, signing, versions, first_usage)
        print(text)
        if args.out:
            Path(args.out).write_text(text + "\n")
        (args.work / "raw.json").write_text(json.dumps(
            {"pairs": pairs, "open_loop": open_rounds, "sse": sse, "signing": signing},
            indent=1))
    finally:
        procs.stop()


if __name__ == "__main__":
    main()
