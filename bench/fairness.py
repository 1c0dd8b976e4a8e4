"""Fair share between tenants: tenant B's `hello` latency while tenant A keeps busy loops
running at full concurrency, against B alone, in the same run (issue 5: B's p99 within 3× of
idle). Alone and loaded alternate over several rounds; the figure is the ratio of the medians.
A's app is the `spin` test guest (an endless loop, ended by A's 1 s deadline with a
504); B's is `hello`. Hostel runs unpinned (two worker threads, of which A's busy guests may
hold one), both wrk processes on core 1.

Each round also measures B beside plain busy processes outside Hostel, one per core, at the
priority Hostel gives CPU-bound guests (nice 10, 0.1 ms time slice): what the kernel alone
leaves B against such neighbours, the floor for the loaded figure.
"""

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lib import free_port, run_wrk, service_env, wait_for_port, wrk_command  # noqa: E402


# A busy loop at the priority of Hostel's threads for CPU-bound guests (fair_share.rs):
# sched_setattr(2) with nice 10 and a 0.1 ms slice (kernels before 6.6 ignore the slice).
HOG = """
import ctypes, sys
class Attr(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("policy", ctypes.c_uint32), ("flags", ctypes.c_uint64),
                ("nice", ctypes.c_int32), ("priority", ctypes.c_uint32), ("runtime", ctypes.c_uint64),
                ("deadline", ctypes.c_uint64), ("period", ctypes.c_uint64)]
attr = Attr(size=ctypes.sizeof(Attr), nice=10, runtime=100_000)
if ctypes.CDLL(None, use_errno=True).syscall(int(sys.argv[1]), 0, ctypes.byref(attr), 0) != 0:
    sys.exit(f"sched_setattr failed: errno {ctypes.get_errno()}")
while True:
    pass
"""
SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}


def busy_processes() -> list:
    number = SYS_SCHED_SETATTR.get(platform.machine())
    if number is None:
        sys.exit(f"no sched_setattr syscall number known for {platform.machine()}")
    return [subprocess.Popen([sys.executable, "-c", HOG, str(number)])
            for _ in range(os.cpu_count() or 1)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hostel", required=True)
    ap.add_argument("--spin", required=True)
    ap.add_argument("--hello", required=True)
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=5)
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
            time.sleep(1.5)  # A's last loops reach their deadline
            hogs = busy_processes()
            try:
                time.sleep(0.5)
                beside = run_wrk(port, args.connections, args.duration, True, "b.test")
            finally:
                for hog in hogs:
                    hog.kill()
                    hog.wait()
            rounds.append((idle, loaded, beside, spun))
            print(f"  round {round_ + 1}: B alone p99 {idle['p99']:.2f} ms, while A saturates "
                  f"p99 {loaded['p99']:.2f} ms ({loaded['p99'] / idle['p99']:.2f}×), beside busy "
                  f"processes {beside['p99']:.2f} ms ({beside['p99'] / idle['p99']:.2f}×); "
                  f"A's loops ended: {spun}", file=sys.stderr, flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    print(f"\nTenant A: {args.busy_connections} connections of endless loops, each ended by its "
          f"1 s deadline (a 504)")
    print(f"Tenant B: hello, {args.connections} connections; {args.rounds} rounds of "
          f"{args.duration} s alone, then {args.duration} s while A saturates, then "
          f"{args.duration} s beside {os.cpu_count()} busy processes at nice 10, 0.1 ms slice\n")
    print("| round | B alone req/s | p50 ms | p99 ms | B while A saturates req/s | p50 ms | p99 ms "
          "| non-2xx | p99 ratio | B beside busy processes req/s | p99 ms | p99 ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for i, (idle, loaded, beside, _) in enumerate(rounds, 1):
        print(f"| {i} | {idle['rps']:.0f} | {idle['p50']:.2f} | {idle['p99']:.2f} | "
              f"{loaded['rps']:.0f} | {loaded['p50']:.2f} | {loaded['p99']:.2f} | "
              f"{idle['bad'] + loaded['bad']} | {loaded['p99'] / idle['p99']:.2f}× | "
              f"{beside['rps']:.0f} | {beside['p99']:.2f} | {beside['p99'] / idle['p99']:.2f}× |")
    idle_p99, loaded_p99, beside_p99 = (statistics.median(r[i]["p99"] for r in rounds)
                                        for i in range(3))
    print(f"\nmedian p99: alone {idle_p99:.2f} ms, while A saturates {loaded_p99:.2f} ms: "
          f"{loaded_p99 / idle_p99:.2f}× (target ≤ 3×); beside busy processes outside Hostel "
          f"{beside_p99:.2f} ms: {beside_p99 / idle_p99:.2f}×")


if __name__ == "__main__":
    main()
