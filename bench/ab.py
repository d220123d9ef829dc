#!/usr/bin/env python3
"""Two infergate binaries side by side: the same setup as bench/run.py (upstream nginx on the
load core, both gateways pinned to the proxy core, each with an APP API and an authorized
app), both loaded at once with replayed signed GETs for several rounds. Prints the ratio
A/B per round and its median, and each one's CPU µs per request. For judging one change:
build the old binary, copy it aside, build the new one, then

    python3 bench/ab.py target/release/infergate /tmp/infergate-old
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--proxy-core", default="0")
    ap.add_argument("--load-cores", default="1")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=4)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()
    args.load_cores = args.load_cores.split(",")
    args.wrk = run.tool("wrk")
    args.work = Path(tempfile.mkdtemp(prefix="infergate-ab-"))
    procs = run.Procs(args.work)
    try:
        up = run.free_port()
        nginx = run.tool("nginx")
        procs.start("upstream", args.load_cores[-1], [nginx, "-c", str(run.upstream_conf(args.work, up))])
        run.wait_http(f"http://127.0.0.1:{up}/")
        targets = []
        for name, binary in (("a", args.a), ("b", args.b)):
            work = args.work / name
            work.mkdir()
            gateway = run.Infergate(run.Procs(work), work, args.proxy_core, str(Path(binary).resolve()), up)
            procs.procs.append(gateway.proc)
            url = gateway.base + "/predict?model=bench"
            targets.append(run.Target(f"{name}: {binary}", url, gateway.proc.pid,
                                      gateway.signed_headers("GET", url)))
        rounds = run.paired(args, *targets)
        ratios = [r["ratio"] for r in rounds]
        print(f"A = {args.a}\nB = {args.b}")
        print("ratio A/B per round: " + ", ".join(f"{x:.3f}" for x in ratios)
              + f"; median {statistics.median(ratios):.3f}")
        for key, label in (("a", "A"), ("b", "B")):
            cpu = [r[key]["cpu_us"] for r in rounds]
            print(f"{label} CPU µs/req: " + ", ".join(f"{x:.1f}" for x in cpu)
                  + f"; median {statistics.median(cpu):.1f}")
            user = [r[key]["cpu_us"] * (1 - r[key]["kernel_share"]) for r in rounds]
            print(f"{label} of it in user space: " + ", ".join(f"{x:.1f}" for x in user)
                  + f"; median {statistics.median(user):.1f}")
    finally:
        procs.stop()


if __name__ == "__main__":
    main()
