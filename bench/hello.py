"""Drives the hello benchmark: starts each server, loads it with wrk, prints one table.

Servers alternate within every round so that drift on the machine (thermal, noisy neighbours)
hits all of them alike. "pinned" runs the server on core 0 and wrk on core 1 (the fair
per-core figure on a 2-core machine); "unpinned" lets both use both cores.
"""

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, limit: float = 120.0) -> None:
    deadline = time.time() + limit
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {limit}s")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def parse_ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk_command(port: int, connections: int, duration: int, pinned: bool, host: str | None = None,
                path: str = "/") -> list:
    """wrk's command line; `host` sets the Host header (which chooses the tenant)."""
    cmd = ["wrk", f"-t{1 if pinned else 2}", f"-c{connections}", f"-d{duration}s", "--latency",
           f"http://127.0.0.1:{port}{path}"]
    if host:
        cmd[1:1] = ["-H", f"Host: {host}"]
    return ["taskset", "-c", "1"] + cmd if pinned else cmd


def run_wrk(port: int, connections: int, duration: int, pinned: bool, host: str | None = None,
            path: str = "/") -> dict:
    cmd = wrk_command(port, connections, duration, pinned, host, path)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = parse_ms(re.search(r"\n\s+50%\s+(\S+)", out).group(1))
    p99 = parse_ms(re.search(r"\n\s+99%\s+(\S+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": p50, "p99": p99,
            "bad": int(non2xx.group(1)) if non2xx else 0,
            "errors": errors.group(1).strip() if errors else ""}


def service_env() -> dict:
    """The environment servers run with: as a service would, without backtrace capture on every
    error value."""
    return {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}


def add_common_args(ap: argparse.ArgumentParser) -> None:
    """The binaries and settings every benchmark driver takes (bench/run passes them)."""
    ap.add_argument("--hostel", required=True)
    ap.add_argument("--native", required=True)
    ap.add_argument("--wasmtime", required=True)
    ap.add_argument("--component", required=True)
    ap.add_argument("--duration", type=int, default=10)


class Server:
    def __init__(self, name: str, argv_for_port):
        self.name = name
        self.argv_for_port = argv_for_port

    def measure(self, connections: int, duration: int, pinned: bool, after=None,
                before=None, path: str = "/") -> dict:
        """Starts the server, warms it up, loads it with wrk and stops it. `before(port)` runs
        just before the measured run and `after(port)` just after it, while the server still
        runs; either may add figures of its own."""
        port = free_port()
        argv = self.argv_for_port(port)
        if pinned:
            argv = ["taskset", "-c", "0"] + argv
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=service_env())
        try:
            wait_for_port(port, proc)
            run_wrk(port, connections, 2, pinned, path=path)  # warm-up
            figures = before(port) if before else {}
            cpu_before = cpu_seconds(proc.pid)
            result = run_wrk(port, connections, duration, pinned, path=path) | figures
            result["cores"] = (cpu_seconds(proc.pid) - cpu_before) / duration
            result["rss"] = rss_mib(proc.pid)
            if after:
                result.update(after(port))
            return result
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


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

    servers = [
        Server("hostel", lambda p: [args.hostel, "serve", "--config", str(config),
                                    "--listen", f"127.0.0.1:{p}", "--log", "warn"]),
        Server("wasmtime-serve", lambda p: [args.wasmtime, "serve", "-O", "pooling-allocator=y", "-S", "cli=y",
                                            "--addr", f"127.0.0.1:{p}", args.component]),
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

    cost = subprocess.run(
        (["taskset", "-c", "0"] if "pinned" in modes else []) +
        [args.hostel, "measure", "--config", str(config), "--requests", "20000", "--log", "warn"],
        capture_output=True, text=True, check=True, env=service_env()).stdout.strip()
    print(f"\nHostel {cost}")


if __name__ == "__main__":
    main()
