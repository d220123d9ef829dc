#!/usr/bin/env python3
"""Idle kept-alive clients, infergate beside nginx: N client connections each make one call
(a signed GET through infergate; a plain GET through nginx, one worker, `keepalive 256` to
the upstream, as infergate's default pool), then stay open and idle. For each proxy it
prints the memory (RSS) it holds per idle client connection, the upstream connections it
keeps open meanwhile, any call that failed, and its RSS once the clients have gone.
Loopback only; each proxy on the proxy core, the clients on the load core; stops by itself.

usage: python3 bench/idle.py [--connections 10000] [--no-build]
"""

import argparse
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the pair runner's processes and configurations)


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def upstream_connections(pid, port):
    """Established TCP connections of process `pid` to the local `port`."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == "01" and int(remote.split(":")[1], 16) == port and inode in inodes:
                count += 1
    return count


def raise_open_files():
    """Raises this process's open-file limit (and its children's) to the hard limit; that."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def start_nginx(procs, work, name, core, up, nofile):
    """nginx 1 worker as a plain proxy to `up` with `keepalive 256` (infergate's default
    pool), its open-file limit `nofile`; its port and process."""
    port = run.free_port()
    conf = run.nginx_conf(work, name, f"""
  upstream up {{ server 127.0.0.1:{up}; keepalive 256; keepalive_requests 100000000; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}""", main=f"worker_rlimit_nofile {nofile};")
    return port, procs.start(name, core, [run.tool("nginx"), "-c", str(conf)])


def call(sock, request):
    """Sends one request and reads its whole answer (Content-Length framed); its status."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return 0
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split(b" ")[1])


# Seconds after the clients left when the RSS is read the second time.
AFTER_PURGE = 12.0


def measure(name, pid, address, request, up, n):
    before = rss_kib(pid)
    clients, failed = [], 0
    for _ in range(n):
        sock = socket.create_connection(address)
        status = call(sock, request)
        if status != 200:
            failed += 1
        clients.append(sock)
    # Idle for a while: past the moment after which a client connection rests.
    time.sleep(1.5)
    idle = rss_kib(pid)
    upstream = upstream_connections(pid, up)
    for sock in clients:
        sock.close()
    time.sleep(1.5)
    after = rss_kib(pid)
    # Past the server's allocator purge delay (10 s): memory free that long has gone back.
    time.sleep(AFTER_PURGE - 1.5)
    later = rss_kib(pid)
    return {
        "name": name, "before": before, "idle": idle, "upstream": upstream,
        "per_conn": (idle - before) / n, "after": after, "later": later, "failed": failed,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=10000)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--proxy-core", default="0")
    ap.add_argument("--load-core", default="1")
    ap.add_argument("--binary", default=str(run.ROOT / "target/release/infergate"))
    args = ap.parse_args()
    hard = raise_open_files()
    if args.connections + 100 > hard:
        sys.exit(f"bench: {args.connections} connections need more than the open-file limit {hard}")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "infergate"],
                       cwd=run.ROOT, check=True)
    binary = args.binary
    nginx = run.tool("nginx")
    work = Path(tempfile.mkdtemp(prefix="infergate-idle-"))
    procs = run.Procs(work)
    try:
        up = run.free_port()
        procs.start("upstream", args.load_core, [nginx, "-c", str(run.upstream_conf(work, up))])
        run.wait_http(f"http://127.0.0.1:{up}/")
        ig = run.Infergate(procs, work, args.proxy_core, binary, up)
        url = ig.base + "/predict?model=bench&stream=false"
        target = url.split("://", 1)[1]
        host, path = target.split("/", 1)
        # The signed lines include Host.
        headers = "".join(f"{h}\r\n" for h in ig.signed_headers("GET", url))
        ig_request = f"GET /{path} HTTP/1.1\r\n{headers}\r\n".encode()
        port, ngx = start_nginx(procs, work, "nginx-idle", args.proxy_core, up, hard)
        run.wait_http(f"http://127.0.0.1:{port}/")
        nginx_request = f"GET /predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
        os.sched_setaffinity(0, {int(args.load_core)})
        rows = [
            measure("infergate (signed GET)", ig.proc.pid, ("127.0.0.1", int(host.rsplit(":", 1)[1])),
                    ig_request, up, args.connections),
            measure("nginx 1 worker (plain GET)", ngx.pid, ("127.0.0.1", port), nginx_request, up,
                    args.connections),
        ]
    finally:
        procs.stop()
    print(f"{args.connections} idle kept-alive clients, one call each "
          f"(`python3 bench/idle.py --connections {args.connections}`; {run.machine()}; "
          f"commit {run.git_commit()})\n")
    print("| proxy | RSS before | RSS, clients idle | per idle client | upstream connections, "
          f"clients idle | failed calls | RSS 1.5 s / {AFTER_PURGE:.0f} s after they left |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['before'] / 1024:.1f} MiB | {r['idle'] / 1024:.1f} MiB | "
              f"{r['per_conn']:.2f} KiB | {r['upstream']} | {r['failed']} | "
              f"{r['after'] / 1024:.1f} / {r['later'] / 1024:.1f} MiB |")


if __name__ == "__main__":
    main()
