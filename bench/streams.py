#!/usr/bin/env python3
"""Many event streams at once, infergate beside nginx: N clients each open a connection at
the same moment and ask for a `text/event-stream` answer (an event every 100 ms, 30 events,
from `infergate-load --serve-sse`); through infergate (a signed GET, a fresh signature per
stream) and through nginx (one worker, plain proxy), one proxy after the other, and straight
to the upstream for reference. For each it prints the time to the first event (p50/p99,
from the moment the request was written), the gaps between events (p50/p99: 100 ms is on
time), the proxy's CPU per event and its memory (RSS) per open stream. Events are timed as
the kernel received them (a software receive timestamp): the client, busy writing the
burst's requests on the core it shares with the upstream, reads them tens of milliseconds
later, and that delay, which is the client's and not the proxy's, is printed beside it.
Loopback only; each proxy on the proxy core, upstream and clients on the load core; stops
by itself.

The burst's first events move by tens of milliseconds from one burst to the next, for
either proxy (the clients and the upstream share one core): the run repeats it `--rounds`
times, the two proxies taking turns going first, and compares the medians. Listen-queue
overflows the kernel counted during each burst are printed beside it.

usage: python3 bench/streams.py [--streams 2000] [--events 30] [--rounds 5] [--paired] [--no-build]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the pair runner's processes and configurations)
from idle import raise_open_files, rss_kib, start_nginx  # noqa: E402


def listen_overflows():
    """The kernel's count of connections dropped because a listen queue was full (TcpExt
    ListenOverflows: a dropped SYN is sent again a second later)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines, lines[1:]):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:]))
            return int(table.get("ListenOverflows", 0))
    return 0


class Burst:
    """One burst of streams through `url`, started at once; `result` waits for its end and
    gives what the clients saw and what the proxy spent. Two bursts started one after the
    other run together (the paired mode)."""

    def __init__(self, args, name, pid, url, extra=(), start_at_ms=None):
        self.args, self.name, self.pid = args, name, pid
        self.before = rss_kib(pid) if pid else 0
        self.cpu0 = run.cpu_seconds(pid) if pid else 0.0
        self.overflows0 = listen_overflows()
        self.peak = self.before
        self.done = threading.Event()
        self.watcher = threading.Thread(target=self.watch)
        if pid:
            self.watcher.start()
        start = ["--start-at-ms", str(start_at_ms)] if start_at_ms else []
        self.proc = subprocess.Popen(
            ["taskset", "-c", args.load_core, args.load, url, "--streams",
             "--connections", str(args.streams), *start, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def watch(self):
        while not self.done.wait(0.05):
            self.peak = max(self.peak, rss_kib(self.pid))

    def result(self):
        stdout, stderr = self.proc.communicate()
        self.done.set()
        if self.pid:
            self.watcher.join()
        if self.proc.returncode != 0:
            sys.exit(f"bench: infergate-load failed: {stderr.strip()}")
        r = json.loads(stdout.strip().splitlines()[-1])
        if r["ok"] and r["stamped"] < r["ok"] * 0.9:
            sys.exit(f"bench: {self.name}: the kernel stamped the first event of only {r['stamped']} of "
                     f"{r['ok']} streams (SO_TIMESTAMPING)")
        events = r["ok"] * self.args.events
        cpu = (run.cpu_seconds(self.pid) - self.cpu0) if self.pid else 0.0
        return {
            "name": self.name, "ok": r["ok"], "failed": r["non_2xx"] + r["errors"],
            # As the kernel received them (what the proxy did), and as the client read them
            # (later by however long the client itself was busy with the burst).
            "first_p50": r["kernel_p50_us"], "first_p99": r["kernel_p99_us"],
            "gap_p50": r["kernel_gap_p50_us"], "gap_p99": r["kernel_gap_p99_us"],
            "read_p50": r["p50_us"], "read_p99": r["p99_us"],
            "read_gap_p99": r["gap_p99_us"], "stamped": r["stamped"],
            # When the requests were written, from the client's start (it connects every
            # stream, then writes each request as its connection opens).
            "sent_p50": r["sent_at_p50_us"], "sent_p99": r["sent_at_p99_us"],
            "cpu_per_event": cpu * 1e6 / events if events else 0.0,
            "rss_per_stream": (self.peak - self.before) / self.args.streams if self.pid else 0.0,
            "before": self.before,
            "after": rss_kib(self.pid) if self.pid else 0,
            "overflows": listen_overflows() - self.overflows0,
        }


def measure(args, name, pid, url, extra=()):
    """Opens the streams through `url`; what the clients saw and what the proxy spent."""
    result = Burst(args, name, pid, url, extra).result()
    time.sleep(0.5)
    return result


def measure_paired(args, targets, order):
    """The bursts of `order` started together, each proxy on the proxy core beside the
    other, as the pair runs of `run.py` load them: each client makes (and signs) its
    requests, then both open their streams at the same moment."""
    start_at_ms = int((time.time() + 1.0) * 1000)
    bursts = [Burst(args, name, *targets[name], start_at_ms=start_at_ms) for name in order]
    results = {b.name: b.result() for b in bursts}
    time.sleep(0.5)
    return results


def median(values):
    return statistics.median(values) if values else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=2000)
    ap.add_argument("--events", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=5,
                    help="bursts through each proxy; the two proxies take turns going first")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--paired", action="store_true",
                    help="each round, the two proxies' bursts at the same moment, both proxies "
                    "on the proxy core (after the direct burst alone), instead of one after "
                    "the other")
    ap.add_argument("--binary", default=str(run.ROOT / "target/release/infergate"),
                    help="the infergate binary to run (the load client is always this tree's)")
    ap.add_argument("--proxy-core", default="0")
    ap.add_argument("--load-core", default="1")
    args = ap.parse_args()
    if args.rounds < 1 or args.streams < 1 or args.events < 2:
        sys.exit("bench: --rounds and --streams must be at least 1, --events at least 2 "
                 "(a gap needs two events)")
    hard = raise_open_files()
    if 3 * args.streams + 100 > hard:
        sys.exit(f"bench: {args.streams} streams need more than the open-file limit {hard}")
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "-p", "infergate",
                        "-p", "infergate-bench"], cwd=run.ROOT, check=True)
    binary = args.binary
    args.load = str(run.ROOT / "target/release/infergate-load")
    work = Path(tempfile.mkdtemp(prefix="infergate-streams-"))
    procs = run.Procs(work)
    names = ["upstream, direct (reference)", "infergate (signed GET)",
             "nginx 1 worker (plain proxy)"]
    rounds = []
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
        targets = {
            names[0]: (None, f"http://{up_addr}/sse", ()),
            names[1]: (ig.proc.pid, ig.base + "/sse", key),
            names[2]: (ngx.pid, f"http://127.0.0.1:{port}/sse", ()),
        }
        for i in range(args.rounds):
            # The proxies take turns going first: whatever the one before leaves behind
            # (sockets closing, memory the kernel reclaims) falls on each alike.
            order = [names[0], *(names[1:] if i % 2 == 0 else names[:0:-1])]
            if args.paired:
                round_ = {names[0]: measure(args, names[0], *targets[names[0]])}
                round_.update(measure_paired(args, targets, order[1:]))
            else:
                round_ = {name: measure(args, name, *targets[name]) for name in order}
            rounds.append(round_)
            rounds[-1]["order"] = order
    finally:
        procs.stop()
    paired = " --paired" if args.paired else ""
    print(f"{args.streams} event streams opened at once, {args.events} events 100 ms apart, "
          f"{args.rounds} rounds (`python3 bench/streams.py --streams {args.streams} "
          f"--events {args.events} --rounds {args.rounds}{paired}`; {run.machine()}; "
          f"commit {run.git_commit()})\n")
    if args.paired:
        print("Each round, one burst straight to the upstream, then one through each proxy at "
              "the same moment, both proxies on the proxy core (the one started first takes "
              "turns); first events in ms from the moment each request was sent:\n")
    else:
        print("Each round, one burst straight to the upstream, then one through each proxy "
              "(they take turns going first); first events in ms from the moment each request "
              "was sent:\n")
    print("| round | first | infergate p50 / p99 | nginx p50 / p99 | direct p50 / p99 "
          "| as read: infergate / nginx p50 | gap p99 infergate / nginx "
          "| requests written p50 infergate / nginx "
          "| listen overflows direct / infergate / nginx |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(rounds, 1):
        ig, ngx, direct = r[names[1]], r[names[2]], r[names[0]]
        first = "infergate" if r["order"][1] == names[1] else "nginx"
        print(f"| {i} | {first} | {ig['first_p50'] / 1000:.1f} / {ig['first_p99'] / 1000:.1f} "
              f"| {ngx['first_p50'] / 1000:.1f} / {ngx['first_p99'] / 1000:.1f} "
              f"| {direct['first_p50'] / 1000:.1f} / {direct['first_p99'] / 1000:.1f} "
              f"| {ig['read_p50'] / 1000:.1f} / {ngx['read_p50'] / 1000:.1f} "
              f"| {ig['gap_p99'] / 1000:.1f} / {ngx['gap_p99'] / 1000:.1f} "
              f"| {ig['sent_p50'] / 1000:.1f} / {ngx['sent_p50'] / 1000:.1f} "
              f"| {direct['overflows']} / {ig['overflows']} / {ngx['overflows']} |")
    print("\nMedians over the rounds (RSS per stream: the first round's, before the process "
          "could reuse memory of an earlier burst):\n")
    print("| through | streams ok / failed | first event p50 / p99 ms | as read p50 / p99 ms "
          "| gap p50 / p99 ms | proxy CPU µs per event | proxy RSS per stream "
          "| proxy RSS before / after |")
    print("|---|---|---|---|---|---|---|---|")
    summary = {}
    for name in names:
        rs = [r[name] for r in rounds]
        m = {k: median([x[k] for x in rs])
             for k in ("first_p50", "first_p99", "gap_p50", "gap_p99", "cpu_per_event",
                       "read_p50", "read_p99")}
        summary[name] = m
        proxy = rs[0]["before"] > 0
        rss = f"{rs[0]['rss_per_stream']:.1f} KiB" if proxy else "–"
        after = (f"{rs[0]['before'] / 1024:.1f} / {rs[-1]['after'] / 1024:.1f} MiB"
                 if proxy else "–")
        cpu = f"{m['cpu_per_event']:.1f}" if proxy else "–"
        print(f"| {name} | {sum(x['ok'] for x in rs)} / {sum(x['failed'] for x in rs)} "
              f"| {m['first_p50'] / 1000:.1f} / {m['first_p99'] / 1000:.1f} "
              f"| {m['read_p50'] / 1000:.1f} / {m['read_p99'] / 1000:.1f} "
              f"| {m['gap_p50'] / 1000:.1f} / {m['gap_p99'] / 1000:.1f} "
              f"| {cpu} | {rss} | {after} |")
    ig, ngx = summary[names[1]], summary[names[2]]
    ahead50 = sum(r[names[1]]["first_p50"] <= r[names[2]]["first_p50"] for r in rounds)
    ahead99 = sum(r[names[1]]["first_p99"] <= r[names[2]]["first_p99"] for r in rounds)
    print(f"\ninfergate / nginx, medians over {args.rounds} rounds (≤ 1.00: no later, no "
          f"worse): first event p50 {ig['first_p50'] / ngx['first_p50']:.2f}, "
          f"p99 {ig['first_p99'] / ngx['first_p99']:.2f}; gap p99 "
          f"{ig['gap_p99'] / ngx['gap_p99']:.2f}. infergate no later in p50 in {ahead50} of "
          f"{args.rounds} rounds, in p99 in {ahead99}.")


if __name__ == "__main__":
    main()
