"""The hello benchmark: starts each server, loads it with wrk, prints one table.

Servers alternate within every round so that drift on the machine (thermal, noisy neighbours)
hits all of them alike. "pinned" runs the server on core 0 and wrk on core 1 (the fair
per-core figure on a 2-core machine); "unpinned" lets both use both cores.
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lib import HERE, Server, add_common_args, sandbox_cost  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    add_common_args(ap)
    ap.add_argument("--python", required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--connections", default="32,256")
    ap.add_argument("--modes", default="pinned,unpinned")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hostel-bench-"))
    config = work / "hostel.toml"
    config.write_text(
        f'[server]\ncode_cache = "{work / "cache"}"\nmax_instances = 1000\n'
        f'[defaults.limits]\nconcurrency = 1000\n'
        f'[apps.hello]\nroute = "/"\ncomponent = "{args.component}"\n'
    )

    def wasmtime_serve(binary):
        return lambda p: [binary, "serve", "-O", "pooling-allocator=y", "-S", "cli=y",
                          "--addr", f"127.0.0.1:{p}", args.component]

    servers = [
        Server("hostel", lambda p: [args.hostel, "serve", "--config", str(config),
                                    "--listen", f"127.0.0.1:{p}", "--log", "warn"]),
        Server("wasmtime-serve", wasmtime_serve(args.wasmtime)),
        Server("aiohttp+uvloop", lambda p: [args.python, str(HERE / "peers" / "aiohttp_hello.py"),
                                            str(p)]),
        Server("native-hyper", lambda p: [args.native, f"127.0.0.1:{p}"]),
    ]
    if args.before:
        servers.insert(1, Server("hostel-before", lambda p: [args.before, "serve", "--config",
                                                             str(config), "--listen", f"127.0.0.1:{p}",
                                                             "--log", "warn"]))
    if args.wasmtime_before:
        servers.insert(3, Server("wasmtime-serve-before", wasmtime_serve(args.wasmtime_before)))
    connections = [int(c) for c in args.connections.split(",")]
    modes = args.modes.split(",")

    results: dict = {}
    for mode in modes:
        for conns in connections:
            for round_ in range(args.rounds):
                order = servers[round_ % len(servers):] + servers[:round_ % len(servers)]
                for server in order:
                    r = server.measure(conns, args.duration, mode == "pinned")
                    results.setdefault((mode, conns, server.name), []).append(r)
                    print(f"  {mode:8} c={conns:<4} {server.name:15} {r['rps']:>9.0f} req/s "
                          f"p50 {r['p50']:6.2f} ms p99 {r['p99']:6.2f} ms "
                          f"cpu {r['cores']:.2f} rss {r['rss']:.0f} MiB {r['errors']}",
                          file=sys.stderr, flush=True)

    def summary(mode, conns, name):
        runs = results[(mode, conns, name)]
        return {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99", "cores", "rss", "bad")}

    print("\n| mode | conns | server | req/s | p50 ms | p99 ms | server CPU (cores) | RSS MiB | hostel ÷ it |")
    print("|---|---|---|---|---|---|---|---|---|")
    for mode in modes:
        for conns in connections:
            hostel = summary(mode, conns, "hostel")
            for server in servers:
                s = summary(mode, conns, server.name)
                ratio = "—" if server.name == "hostel" else f"{hostel['rps'] / s['rps']:.2f}×"
                bad = f" ({s['bad']:.0f} non-2xx)" if s["bad"] else ""
                print(f"| {mode} | {conns} | {server.name} | {s['rps']:.0f}{bad} | {s['p50']:.2f} | "
                      f"{s['p99']:.2f} | {s['cores']:.2f} | {s['rss']:.0f} | {ratio} |")

    cost = sandbox_cost(args.hostel, config, pinned="pinned" in modes)
    print(f"\nHostel {cost} (hostel measure on this run's config)")


if __name__ == "__main__":
    main()
