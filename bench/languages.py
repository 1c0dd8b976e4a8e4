"""Per-language benchmark: the same `hello` guest written in Rust, Python and JavaScript, each on
Hostel and on `wasmtime serve` 48 (pooling allocator) in the same run. Server on core 0, wrk on
core 1. Prints requests/s, p50/p99, RSS, Hostel's ratio, and Hostel's sandbox cost per request
(`hostel measure`: instantiate + handle + tear down, no network). Hostel keeps 4 MiB of memory
resident for the Rust guest (the default) and none for the large interpreters.
"""

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lib import Server, service_env  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hostel", required=True)
    ap.add_argument("--wasmtime", required=True)
    ap.add_argument("--guest", action="append", required=True, metavar="LANGUAGE=WASM")
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args()

    rows = []
    for spec in args.guest:
        language, wasm = spec.split("=", 1)
        work = Path(tempfile.mkdtemp(prefix=f"hostel-bench-{language}-"))
        config = work / "hostel.toml"
        config.write_text(
            f'[server]\ncode_cache = "{work / "cache"}"\n'
            f'[defaults.limits]\nconcurrency = 1000\n'
            f'memory = "256MiB"\n[apps.hello]\nroute = "/"\ncomponent = "{wasm}"\n'
        )
        servers = [
            Server("hostel", lambda p, c=config: [args.hostel, "serve", "--config", str(c), "--listen",
                                                  f"127.0.0.1:{p}", "--log", "warn"]),
            Server("wasmtime-serve", lambda p, w=wasm: [args.wasmtime, "serve", "-O", "pooling-allocator=y",
                                                        "-S", "cli=y", "--addr", f"127.0.0.1:{p}", w]),
        ]
        results = {}
        for server in servers:
            r = server.measure(args.connections, args.duration, True)
            results[server.name] = r
            print(f"  {language:6} {server.name:15} {r['rps']:>8.0f} req/s p50 {r['p50']:7.2f} ms "
                  f"p99 {r['p99']:7.2f} ms rss {r['rss']:.0f} MiB non-2xx {r['bad']} {r['errors']}",
                  file=sys.stderr, flush=True)
        cost = subprocess.run(
            ["taskset", "-c", "0", args.hostel, "measure", "--config", str(config),
             "--requests", "2000", "--log", "warn"],
            capture_output=True, text=True, check=True, env=service_env()).stdout
        mean = re.search(r"mean ([\d.]+) µs", cost).group(1)
        rows.append((language, results, mean))

    print(f"\n| guest | server | req/s | p50 ms | p99 ms | RSS MiB | hostel ÷ wasmtime serve | "
          f"Hostel sandbox µs/request |")
    print("|---|---|---|---|---|---|---|---|")
    for language, results, mean in rows:
        ratio = results["hostel"]["rps"] / results["wasmtime-serve"]["rps"]
        for name, r in results.items():
            cells = f"{ratio:.2f}× | {mean}" if name == "hostel" else "— | —"
            print(f"| {language} hello | {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                  f"{r['rss']:.0f} | {cells} |")


if __name__ == "__main__":
    main()
