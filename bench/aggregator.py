"""Outbound benchmark: the `aggregator` component (5 concurrent upstream calls per request) on
Hostel (pooled keep-alive client per tenant) vs `wasmtime serve` (a new connection per call) vs
the same endpoint in native hyper with one pooled hyper-util client (the ceiling: no sandbox).
With `--component-p3`, its WASI 0.3 twin (`aggregator-p3`) joins on Hostel as `hostel-0.3`, with
the same upstreams and grants, and a `hostel-0.3 ÷ it` column.

The upstream is `native-hello` on core 1 next to wrk; the server under test is on core 0.
Prints requests/s, outbound calls/s, p50/p99, server CPU (cores, and µs per request) and RSS,
connect errors seen by the guest, the TCP connections each server opened (every one closed
later sits in TIME_WAIT for a minute) and the TIME_WAIT sockets towards the upstream. Rounds
alternate the servers' order; the table keeps each server's best round.
"""

import argparse
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lib import (Server, add_common_args, free_port, hostel_serve, p3_component,  # noqa: E402
                 ratio_cells, ratio_header, service_env, wait_for_port, wasmtime_serve)

FANOUT = 5


def tcp_connects() -> int:
    """Connections this machine has opened so far (`ActiveOpens` in /proc/net/snmp)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
             if line.startswith("Tcp:")]
    return int(lines[1][lines[0].index("ActiveOpens")])


def time_wait_to(port: int) -> int:
    out = subprocess.run(["ss", "-tanH", "state", "time-wait", f"( dport = :{port} )"],
                         capture_output=True, text=True).stdout
    return len([line for line in out.splitlines() if line.strip()])


def main() -> None:
    ap = argparse.ArgumentParser()
    add_common_args(ap)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    up_port = free_port()
    upstream = subprocess.Popen(["taskset", "-c", "1", args.native, f"127.0.0.1:{up_port}"],
                                stdout=subprocess.DEVNULL, env=service_env())
    wait_for_port(up_port, upstream)
    urls = ",".join(f"http://127.0.0.1:{up_port}/item/{i}" for i in range(FANOUT))
    work = Path(tempfile.mkdtemp(prefix="hostel-bench-agg-"))

    def hostel_config(name: str, component: str) -> Path:
        config = work / name
        config.write_text(
            f'[server]\ncode_cache = "{work / "cache"}"\n[defaults.limits]\nconcurrency = 1000\n'
            f'[grants]\noutbound = ["http://127.0.0.1:{up_port}"]\nenv = {{ UPSTREAMS = "{urls}" }}\n'
            f'[apps.aggregator]\nroute = "/"\ncomponent = "{component}"\n'
        )
        return config

    servers = [Server("hostel", hostel_serve(args.hostel, hostel_config("hostel.toml", args.component)))]
    # Its WASI 0.3 twin on the same config, the same upstreams.
    component_p3 = p3_component(args.component_p3)
    if component_p3:
        servers.append(Server("hostel-0.3", hostel_serve(args.hostel,
                                                         hostel_config("hostel-p3.toml", component_p3))))
    servers += [
        Server("wasmtime-serve", wasmtime_serve(args.wasmtime, args.component, env={"UPSTREAMS": urls})),
        Server("native-hyper", lambda p: [args.native, f"127.0.0.1:{p}", "--fan-out", urls]),
    ]

    def sample(port: int) -> dict:
        connects = tcp_connects()
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
        return {"time_wait": time_wait_to(up_port), "guest_errors": body.count('"error"'),
                "connects_after": connects}

    results: dict = {}
    try:
        for round_ in range(args.rounds):
            for server in servers[round_ % len(servers):] + servers[:round_ % len(servers)]:
                time.sleep(2)
                r = server.measure(args.connections, args.duration, True, after=sample,
                                   before=lambda _port: {"connects_before": tcp_connects()})
                # Opened by the server during the measured run (wrk's own connections aside).
                r["connects"] = r["connects_after"] - r["connects_before"] - args.connections
                results.setdefault(server.name, []).append(r)
                print(f"  {server.name:18} {r['rps']:>8.0f} req/s ({r['rps'] * FANOUT:>8.0f} outbound/s) "
                      f"p50 {r['p50']:6.2f} ms p99 {r['p99']:6.2f} ms cpu {r['cores']:.2f} "
                      f"connections opened {r['connects']} TIME_WAIT {r['time_wait']} {r['errors']}",
                      file=sys.stderr, flush=True)
    finally:
        upstream.kill()

    best = {name: max(runs, key=lambda r: r["rps"]) for name, runs in results.items()}
    rps = {name: r["rps"] for name, r in best.items()}
    bases = ["hostel"] + (["hostel-0.3"] if component_p3 else [])
    print("\n| server | req/s | outbound calls/s | p50 ms | p99 ms | server CPU | CPU µs/request | "
          "RSS MiB | connections opened | TIME_WAIT to upstream | errors in a sample answer | "
          f"{ratio_header(bases)} |")
    print("|---|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(bases))
    for server in servers:
        r = best[server.name]
        bad = sum(run["bad"] for run in results[server.name])
        bad = f" ({bad} non-2xx)" if bad else ""
        print(f"| {server.name} | {r['rps']:.0f}{bad} | {r['rps'] * FANOUT:.0f} | {r['p50']:.2f} | "
              f"{r['p99']:.2f} | {r['cores']:.2f} | {r['cores'] * 1e6 / r['rps']:.0f} | "
              f"{r['rss']:.0f} | {r['connects']} | {r['time_wait']} | {r['guest_errors']} | "
              f"{ratio_cells(rps, server.name, bases)} |")


if __name__ == "__main__":
    main()
