#!/usr/bin/env python3
"""Many event streams at once, infergate beside nginx: N clients each open a connection at
the same moment and ask for a `text/event-stream` answer (an event every 100 ms, 30 events,
from `infergate-load --serve-sse`); through infergate (a signed GET, a fresh signature per
stream) and through nginx (one worker, plain proxy), one proxy after the other, and straight
to the upstream for reference. For each it prints the time to the first event (p50/p99,
from the moment the request was sent), the gaps between events (p50/p99: 100 ms is on
time), the proxy's CPU per event and its memory (RSS) per open stream.
Loopback only; each proxy on the proxy core, upstream and clients on the load core; stops
by itself.

usage: python3 bench/streams.py [--streams 2000] [--events 30] [--no-build]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the pair runner's processes and configurations)
from idle import raise_open_files, rss_kib, start_nginx  # noqa: E402


def measure(args, name, pid, url, extra=()):
    """Opens the streams through `url`; what the clients saw and what the proxy spent."""
    before = rss_kib(pid) if pid else 0
    cpu0 = run.cpu_seconds(pid) if pid else 0.0
    peak = [before]
    done = threading.Event()

    def watch():
        while not done.wait(0.05):
            peak[0] = max(peak[0], rss_kib(pid))

    watcher = threading.Thread(target=watch)
    if pid:
        watcher.start()
    out = subprocess.run(["taskset", "-c", args.load_core, args.load, url, "--streams",
                          "--connections", str(args.streams), *extra],
                         capture_output=True, text=True)
    done.set()
    if pid:
        watcher.join()
    if out.returncode != 0:
        sys.exit(f"bench: infergate-load failed: {out.stderr.strip()}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    events = r["ok"] * args.events
    cpu = (run.cpu_seconds(pid) - cpu0) if pid else 0.0
    time.sleep(0.5)
    return {
        "name": name, "ok": r["ok"], "failed": r["non_2xx"] + r["errors"],
        "first_p50": r["p50_us"], "first_p99": r["p99_us"],
        "gap_p50": r["gap_p50_us"], "gap_p99": r["gap_p99_us"],
        "cpu_per_event": cpu * 1e6 / events if events else 0.0,
        "rss_per_stream": (peak[0] - before) / args.streams if pid else 0.0,
        "before": before,
        "after": rss_kib(pid) if pid else 0,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=2000)
    ap.add_argument("--events", type=int, default=30)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--proxy-core", default="0")
    ap.add_argument("--load-core", default="1")
    args = ap.parse_args()
    hard = raise_open_files()
    if 3 * args.streams + 100 > hard:
        sys.exit(f"bench: {args.streams} streams need more than the open-file limit {hard}")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "infergate",
                        "-p", "infergate-bench"], cwd=run.ROOT, check=True)
    binary = str(run.ROOT / "target/release/infergate")
    args.load = str(run.ROOT / "target/release/infergate-load")
    work = Path(tempfile.mkdtemp(prefix="infergate-streams-"))
    procs = run.Procs(work)
    try:
        sse = procs.start("upstream", args.load_core,
                          [args.load, "--serve-sse", "--events", str(args.events)],
                          stdout=subprocess.PIPE)
        up_addr = json.loads(sse.stdout.readline())["addr"]
        up = int(up_addr.rsplit(":", 1)[1])
        ig = run.Infergate(procs, work, args.proxy_core, binary, up)
        port, ngx = start_nginx(procs, work, "nginx-streams", args.proxy_core, up, hard)
        time.sleep(0.5)
        key = ["--app-key", ig.app_key, "--app-secret", ig.app_secret]
        rows = [
            measure(args, "upstream, direct (reference)", None, f"http://{up_addr}/sse"),
            measure(args, "infergate (signed GET)", ig.proc.pid, ig.base + "/sse", key),
            measure(args, "nginx 1 worker (plain proxy)", ngx.pid,
                    f"http://127.0.0.1:{port}/sse"),
        ]
    finally:
        procs.stop()
    print(f"{args.streams} event streams opened at once, {args.events} events 100 ms apart "
          f"(`python3 bench/streams.py --streams {args.streams} --events {args.events}`; "
          f"{run.machine()}; commit {run.git_commit()})\n")
    print("| through | streams ok / failed | first event p50 / p99 ms | gap p50 / p99 ms "
          "| proxy CPU µs per event | proxy RSS per stream | proxy RSS before / after |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        proxy = r["after"] > 0
        rss = f"{r['rss_per_stream']:.1f} KiB" if proxy else "–"
        after = f"{r['before'] / 1024:.1f} / {r['after'] / 1024:.1f} MiB" if proxy else "–"
        cpu = f"{r['cpu_per_event']:.1f}" if proxy else "–"
        print(f"| {r['name']} | {r['ok']} / {r['failed']} | {r['first_p50'] / 1000:.1f} / "
              f"{r['first_p99'] / 1000:.1f} | {r['gap_p50'] / 1000:.1f} / "
              f"{r['gap_p99'] / 1000:.1f} | {cpu} | {rss} | {after} |")


if __name__ == "__main__":
    main()
