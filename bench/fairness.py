"""Fair share between tenants: tenant B's `hello` latency while tenant A keeps busy loops
running at full concurrency, against B alone, in the same run (issue 5: B's p99 within 3× of
idle). Alone and loaded alternate over several rounds; the figure is the ratio of the medians.
A's app is the `spin` test guest (an endless loop, ended by A's 1 s deadline with a
504); B's is `hello`. Hostel runs unpinned (two worker threads, of which A's busy guests may
hold one), both wrk processes on core 1.
"""

import argparse
import signal
import statistics
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
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
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
    rounds = []
    try:
        wait_for_port(port, proc)
        run_wrk(port, args.connections, 2, True, "b.test")  # warm-up
        # Alone and loaded alternate, so that the machine's drift hits both alike.
        for round_ in range(args.rounds):
            idle = run_wrk(port, args.connections, args.duration, True, "b.test")
            busy = subprocess.Popen(
                wrk_command(port, args.busy_connections, args.duration + 3, True, "a.test"),
                stdout=subprocess.PIPE, text=True)
            time.sleep(2)  # A at full concurrency first
            loaded = run_wrk(port, args.connections, args.duration, True, "b.test")
            busy_out = busy.communicate()[0]
            spun = int(busy_out.split("requests in")[0].strip().splitlines()[-1].split()[0])
            rounds.append((idle, loaded, spun))
            print(f"  round {round_ + 1}: B alone p99 {idle['p99']:.2f} ms, while A saturates "
                  f"p99 {loaded['p99']:.2f} ms ({loaded['p99'] / idle['p99']:.2f}×); "
                  f"A's loops ended: {spun}", file=sys.stderr, flush=True)
            time.sleep(1.5)  # A's last loops reach their deadline
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    print(f"\nTenant A: {args.busy_connections} connections of endless loops, each ended by its "
          f"1 s deadline (a 504)")
    print(f"Tenant B: hello, {args.connections} connections; {args.rounds} rounds of "
          f"{args.duration} s alone, then {args.duration} s while A saturates\n")
    print("| round | B alone req/s | p50 ms | p99 ms | B while A saturates req/s | p50 ms | p99 ms "
          "| non-2xx | p99 ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for i, (idle, loaded, _) in enumerate(rounds, 1):
        print(f"| {i} | {idle['rps']:.0f} | {idle['p50']:.2f} | {idle['p99']:.2f} | "
              f"{loaded['rps']:.0f} | {loaded['p50']:.2f} | {loaded['p99']:.2f} | "
              f"{idle['bad'] + loaded['bad']} | {loaded['p99'] / idle['p99']:.2f}× |")
    idle_p99 = statistics.median(r[0]["p99"] for r in rounds)
    loaded_p99 = statistics.median(r[1]["p99"] for r in rounds)
    print(f"\nmedian p99: alone {idle_p99:.2f} ms, while A saturates {loaded_p99:.2f} ms: "
          f"{loaded_p99 / idle_p99:.2f}× (target ≤ 3×)")


if __name__ == "__main__":
    main()
