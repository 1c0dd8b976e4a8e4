"""The hello benchmark: starts each server, loads it with wrk, prints one table.

The hello component as WASI 0.2 (`wasi:http/proxy`) on Hostel and `wasmtime serve`, and, when
given (`--component-p3`), as WASI 0.3 (`wasi:http/service`) on both (`hostel-0.3`,
`wasmtime-serve-0.3`, a fresh instance per request); aiohttp + uvloop and native hyper answer the
same. Hostel's rows are ratio columns: `hostel ÷ it` and `hostel-0.3 ÷ it`.

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
from lib import (HERE, Server, add_common_args, hostel_serve, p3_component,  # noqa: E402
                 ratio_cells, ratio_header, sandbox_cost, wasmtime_serve)


def main() -> None:
    ap = argparse.ArgumentParser()
    add_common_args(ap)
    ap.add_argument("--python", required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--connections", default="32,256")
    ap.add_argument("--modes", default="pinned,unpinned")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hostel-bench-"))

    def hostel_config(name: str, component: str) -> Path:
        config = work / name
        config.write_text(
            f'[server]\ncode_cache = "{work / "cache"}"\nmax_instances = 1000\n'
            f'[defaults.limits]\nconcurrency = 1000\n'
            f'[apps.hello]\nroute = "/"\ncomponent = "{component}"\n'
        )
        return config

    config = hostel_config("hostel.toml", args.component)
    servers = [Server("hostel", hostel_serve(args.hostel, config))]
    if args.before:
        servers.append(Server("hostel-before", hostel_serve(args.before, config)))
    servers.append(Server("wasmtime-serve", wasmtime_serve(args.wasmtime, args.component)))
    if args.wasmtime_before:
        servers.append(Server("wasmtime-serve-before",
                              wasmtime_serve(args.wasmtime_before, args.component)))
    # The same hello as a WASI 0.3 service: Hostel on the same config with the component
    # swapped, `wasmtime serve` with a fresh instance per request.
    component_p3 = p3_component(args.component_p3)
    config_p3 = None
    if component_p3:
        config_p3 = hostel_config("hostel-p3.toml", component_p3)
        servers += [Server("hostel-0.3", hostel_serve(args.hostel, config_p3)),
                    Server("wasmtime-serve-0.3", wasmtime_serve(args.wasmtime, component_p3, p3=True))]
    servers += [
        Server("aiohttp+uvloop", lambda p: [args.python, str(HERE / "peers" / "aiohttp_hello.py"),
                                            str(p)]),
        Server("native-hyper", lambda p: [args.native, f"127.0.0.1:{p}"]),
    ]
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
                    print(f"  {mode:8} c={conns:<4} {server.name:18} {r['rps']:>9.0f} req/s "
                          f"p50 {r['p50']:6.2f} ms p99 {r['p99']:6.2f} ms "
                          f"cpu {r['cores']:.2f} rss {r['rss']:.0f} MiB {r['errors']}",
                          file=sys.stderr, flush=True)

    def summary(mode, conns, name):
        runs = results[(mode, conns, name)]
        return {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99", "cores", "rss", "bad")}

    # A ratio column for each Hostel, its requests/s over each row's: hostel (WASI 0.2) and,
    # when measured, hostel-0.3.
    bases = ["hostel"] + (["hostel-0.3"] if component_p3 else [])
    print(f"\n| mode | conns | server | req/s | p50 ms | p99 ms | server CPU (cores) | RSS MiB | "
          f"{ratio_header(bases)} |")
    print("|---|---|---|---|---|---|---|---|" + "---|" * len(bases))
    for mode in modes:
        for conns in connections:
            rps = {server.name: summary(mode, conns, server.name)["rps"] for server in servers}
            for server in servers:
                s = summary(mode, conns, server.name)
                bad = f" ({s['bad']:.0f} non-2xx)" if s["bad"] else ""
                print(f"| {mode} | {conns} | {server.name} | {s['rps']:.0f}{bad} | {s['p50']:.2f} | "
                      f"{s['p99']:.2f} | {s['cores']:.2f} | {s['rss']:.0f} | "
                      f"{ratio_cells(rps, server.name, bases)} |")

    cost = sandbox_cost(args.hostel, config, pinned="pinned" in modes)
    print(f"\nHostel {cost} (hostel measure on this run's config)")
    if config_p3:
        cost = sandbox_cost(args.hostel, config_p3, pinned="pinned" in modes)
        print(f"Hostel, WASI 0.3 hello: {cost} (hostel measure, the same config with the 0.3 component)")


if __name__ == "__main__":
    main()
