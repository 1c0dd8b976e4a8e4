"""Fair share between tenants: tenant B's `hello` latency while tenant A keeps busy loops
running at full concurrency, against B alone, in the same run (issue 5: B's p99 within 3× of
idle). A's app is the `spin` test guest (an endless loop, ended by A's 1 s deadline with a
504); B's is `hello`. Hostel runs unpinned (two worker threads, of which A's busy guests may
hold one), both wrk processes on core 1.
"""

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hello import free_port, run_wrk, service_env, wait_for_port, wrk_command  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hostel", required=True)
    ap.add_argument("--spin", required=True)
    ap.add_argument("--hello", required=True)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--busy-connections", type=int, default=64)
    ap.add_argument("--connections", type=int, default=4)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hostel-bench-fair-"))
    config = work / "hostel.toml"
    config.write_text(
        f'[server]\ncode_cache = "{work / "cache"}"\n'
        f'[tenants.a]\nhosts = ["a.test"]\nlimits = {{ timeout = "1s", concurrency = 1000 }}\n'
        f'apps.spin = {{ route = "/", component = "{args.spin}" }}\n'
        f'[tenants.b]\nhosts = ["b.test"]\n'
        f'apps.hello = {{ route = "/", component = "{args.hello}" }}\n'
    )
    port = free_port()
    proc = subprocess.Popen(
        [args.hostel, "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}",
         "--log", "error"],
        stdout=subprocess.DEVNULL, env=service_env())
    try:
        wait_for_port(port, proc)
        run_wrk(port, args.connections, 2, True, "b.test")  # warm-up
        idle = run_wrk(port, args.connections, args.duration, True, "b.test")
        busy = subprocess.Popen(
            wrk_command(port, args.busy_connections, args.duration + 4, True, "a.test"),
            stdout=subprocess.PIPE, text=True)
        time.sleep(2)  # A at full concurrency first
        loaded = run_wrk(port, args.connections, args.duration, True, "b.test")
        busy_out = busy.communicate()[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    spun = busy_out.split("requests in")[0].strip().splitlines()[-1].strip()
    print(f"\nTenant A: {args.busy_connections} connections of endless loops "
          f"(each ended by its 1 s deadline: {spun})")
    print(f"Tenant B: hello, {args.connections} connections, {args.duration} s\n")
    print("| tenant B | req/s | p50 ms | p99 ms | non-2xx |")
    print("|---|---|---|---|---|")
    for name, r in (("alone", idle), ("while A saturates", loaded)):
        print(f"| {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['bad']} |")
    print(f"\np99 while A saturates ÷ p99 alone: {loaded['p99'] / idle['p99']:.2f}× (target ≤ 3×)")


if __name__ == "__main__":
    main()
