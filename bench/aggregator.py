"""Outbound benchmark: the `aggregator` component (5 concurrent upstream calls per request) on
Hostel (pooled keep-alive client per tenant) vs `wasmtime serve` (a new connection per call).

The upstream is `native-hello` on core 1 next to wrk; the server under test is on core 0.
Prints requests/s, outbound calls/s, p50/p99, server CPU and RSS, connect errors seen by the
guest, and the TIME_WAIT sockets left towards the upstream.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hello import cpu_seconds, free_port, rss_mib, run_wrk, wait_for_port  # noqa: E402

FANOUT = 5


def time_wait_to(port: int) -> int:
    out = subprocess.run(["ss", "-tanH", "state", "time-wait", f"( dport = :{port} )"],
                         capture_output=True, text=True).stdout
    return len([line for line in out.splitlines() if line.strip()])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hostel", required=True)
    ap.add_argument("--native", required=True)
    ap.add_argument("--wasmtime", required=True)
    ap.add_argument("--component", required=True)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    args = ap.parse_args()

    env = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}
    up_port = free_port()
    upstream = subprocess.Popen(["taskset", "-c", "1", args.native, f"127.0.0.1:{up_port}"],
                                stdout=subprocess.DEVNULL, env=env)
    wait_for_port(up_port, upstream)
    urls = ",".join(f"http://127.0.0.1:{up_port}/item/{i}" for i in range(FANOUT))
    work = Path(tempfile.mkdtemp(prefix="hostel-bench-agg-"))
    config = work / "hostel.toml"
    config.write_text(
        f'[server]\ncode_cache = "{work / "cache"}"\n[defaults.limits]\nconcurrency = 1000\n'
        f'[grants]\noutbound = ["http://127.0.0.1:{up_port}"]\nenv = {{ UPSTREAMS = "{urls}" }}\n'
        f'[apps.aggregator]\nroute = "/"\ncomponent = "{args.component}"\n'
    )
    servers = {
        "hostel": lambda p: [args.hostel, "serve", "--config", str(config), "--listen",
                             f"127.0.0.1:{p}", "--log", "warn"],
        "wasmtime-serve": lambda p: [args.wasmtime, "serve", "-O", "pooling-allocator=y", "-S", "cli=y",
                                     "--env", f"UPSTREAMS={urls}", "--addr", f"127.0.0.1:{p}",
                                     args.component],
    }
    rows = []
    try:
        for name, argv_for in servers.items():
            time.sleep(2)  # let earlier TIME_WAIT sockets age a little; counted per run below
            port = free_port()
            proc = subprocess.Popen(["taskset", "-c", "0"] + argv_for(port), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, env=env)
            try:
                wait_for_port(port, proc)
                run_wrk(port, args.connections, 2, True)
                before_tw = time_wait_to(up_port)
                cpu0 = cpu_seconds(proc.pid)
                r = run_wrk(port, args.connections, args.duration, True)
                cores = (cpu_seconds(proc.pid) - cpu0) / args.duration
                tw = time_wait_to(up_port) - before_tw
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
                errors = body.count('"error"')
                rows.append((name, r, cores, rss_mib(proc.pid), tw, errors))
                print(f"  {name:15} {r['rps']:>8.0f} req/s ({r['rps'] * FANOUT:>8.0f} outbound/s) "
                      f"p50 {r['p50']:6.2f} ms p99 {r['p99']:6.2f} ms cpu {cores:.2f} "
                      f"TIME_WAIT +{tw} {r['errors']}", file=sys.stderr, flush=True)
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    finally:
        upstream.kill()

    hostel_rps = rows[0][1]["rps"]
    print(f"\n| server | req/s | outbound calls/s | p50 ms | p99 ms | server CPU | RSS MiB | "
          f"new TIME_WAIT to upstream | errors in a sample answer | hostel ÷ it |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r, cores, rss, tw, errors in rows:
        ratio = "—" if name == "hostel" else f"{hostel_rps / r['rps']:.2f}×"
        bad = f" ({r['bad']} non-2xx)" if r["bad"] else ""
        print(f"| {name} | {r['rps']:.0f}{bad} | {r['rps'] * FANOUT:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
              f"{cores:.2f} | {rss:.0f} | {tw} | {errors} | {ratio} |")


if __name__ == "__main__":
    main()
