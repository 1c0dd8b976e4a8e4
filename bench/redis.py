"""Redis benchmark: the `redis-counter` endpoint (INCR per request) on Hostel vs the same
endpoint in aiohttp + uvloop with a `redis.asyncio` pool made in `on_startup` vs native hyper
with redis-rs's multiplexed connection (the ceiling).

The server under test runs on core 0 and wrk on core 1; redis-server runs on core 1 by default
(`--redis-core 0` puts it next to the server instead, as on a box where the application and its
Redis share a core). Prints requests/s, p50/p99, non-2xx answers, server CPU and RSS, and the
connections each server held to Redis.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lib import Server, add_common_args, free_port, service_env, wait_for_port  # noqa: E402

HERE = Path(__file__).resolve().parent


def redis_clients(port: int) -> int:
    out = subprocess.run(["redis-cli", "-p", str(port), "CLIENT", "LIST"],
                         capture_output=True, text=True, check=True).stdout
    return len([line for line in out.splitlines() if "cmd=client" not in line])


def main() -> None:
    ap = argparse.ArgumentParser()
    add_common_args(ap)
    ap.add_argument("--python", required=True)
    ap.add_argument("--connections", default="32,128")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--redis-core", default="1", choices=["0", "1"])
    args = ap.parse_args()
    if not shutil.which("redis-server"):
        sys.exit("redis-server is missing: apt-get install redis-server")

    work = Path(tempfile.mkdtemp(prefix="hostel-bench-redis-"))
    redis_port = free_port()
    redis = subprocess.Popen(["taskset", "-c", args.redis_core, "redis-server", "--bind", "127.0.0.1",
                              "--port", str(redis_port), "--save", "", "--appendonly", "no",
                              "--dir", str(work)], stdout=subprocess.DEVNULL)
    wait_for_port(redis_port, redis)
    url = f"redis://127.0.0.1:{redis_port}"
    config = work / "hostel.toml"
    config.write_text(
        f'[server]\ncode_cache = "{work / "cache"}"\nmax_instances = 1000\n'
        f'[defaults.limits]\nconcurrency = 1000\n'
        f'[pools.cache]\nkind = "redis"\nurl = "{url}"\n'
        f'[grants]\npools = ["cache"]\n'
        f'[apps.counter]\nroute = "/"\ncomponent = "{args.component}"\n'
    )
    servers = [
        Server("hostel", lambda p: [args.hostel, "serve", "--config", str(config), "--listen",
                                    f"127.0.0.1:{p}", "--log", "warn"]),
        Server("aiohttp+uvloop+redis.asyncio",
               lambda p: [args.python, str(HERE / "peers" / "aiohttp_redis_counter.py"), str(p), url]),
        Server("native-hyper+redis-rs", lambda p: [args.native, f"127.0.0.1:{p}", url]),
    ]
    if args.before:
        servers.insert(1, Server("hostel-before", lambda p: [args.before, "serve", "--config",
                                                             str(config), "--listen",
                                                             f"127.0.0.1:{p}", "--log", "warn"]))
    results: dict = {}
    try:
        for conns in [int(c) for c in args.connections.split(",")]:
            for round_ in range(args.rounds):
                order = servers[round_ % len(servers):] + servers[:round_ % len(servers)]
                for server in order:
                    r = server.measure(conns, args.duration, True,
                                       after=lambda _port: {"redis_conns": redis_clients(redis_port)})
                    results.setdefault((conns, server.name), []).append(r)
                    print(f"  c={conns:<4} {server.name:30} {r['rps']:>8.0f} req/s p50 {r['p50']:6.2f} ms "
                          f"p99 {r['p99']:6.2f} ms non-2xx {r['bad']} cpu {r['cores']:.2f} "
                          f"rss {r['rss']:.0f} MiB redis conns {r['redis_conns']} {r['errors']}",
                          file=sys.stderr, flush=True)
                    time.sleep(1)
    finally:
        redis.terminate()
        redis.wait()

    def best(conns, name):
        runs = results[(conns, name)]
        return max(runs, key=lambda r: r["rps"]) | {"bad": sum(r["bad"] for r in runs)}

    print(f"\nredis-server on core {args.redis_core}")
    print("\n| conns | server | req/s | p50 ms | p99 ms | non-2xx | server CPU | RSS MiB | "
          "Redis connections | hostel ÷ it |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for conns in sorted({c for c, _ in results}):
        hostel = best(conns, "hostel")
        for server in servers:
            r = best(conns, server.name)
            ratio = "—" if server.name == "hostel" else f"{hostel['rps'] / r['rps']:.2f}×"
            print(f"| {conns} | {server.name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                  f"{r['bad']} | {r['cores']:.2f} | {r['rss']:.0f} | {r['redis_conns']} | {ratio} |")


if __name__ == "__main__":
    main()
