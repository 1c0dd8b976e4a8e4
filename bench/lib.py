"""What every benchmark driver shares: ports, wrk runs and their figures, a server's CPU and
memory, and running a server through warm-up, measured load and shutdown."""

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
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
    ap.add_argument("--component-p3", help="the benchmark's component as a WASI 0.3 service "
                                           "(`wasi:http/service`), measured as the `-0.3` rows; "
                                           "skipped with a note when the file is not built")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--before", help="a hostel binary built from an earlier commit, measured "
                                     "beside this one as `hostel-before`")
    ap.add_argument("--wasmtime-before", help="`wasmtime serve` at the version that commit ran "
                                              "on, when it differs: measured as `wasmtime-serve-before`")


def p3_component(path: str | None) -> str | None:
    """The WASI 0.3 twin of a benchmark's component, or None (with a note saying so) when it is
    not built: the `-0.3` rows are then left out."""
    if path and Path(path).is_file():
        print(f"WASI 0.3 rows: {path}", file=sys.stderr, flush=True)
        return path
    print(f"note: no WASI 0.3 component at {path}: the -0.3 rows are left out", file=sys.stderr,
          flush=True)
    return None


def hostel_serve(binary: str, config: Path):
    """`hostel serve` on `config`, as a Server's command line for a port."""
    return lambda port: [binary, "serve", "--config", str(config), "--listen",
                         f"127.0.0.1:{port}", "--log", "warn"]


def wasmtime_serve(binary: str, component: str, p3: bool = False, env: dict | None = None):
    """`wasmtime serve` on `component` (pooling allocator, the WASI CLI interfaces linked), as a
    Server's command line for a port. A WASI 0.2 component gets a fresh instance per request by
    default; for a WASI 0.3 one (`p3`) wasmtime reuses an instance for up to 128 requests, 16 at
    a time, so its reuse count is set to 1: a fresh instance per request, as Hostel does. WASI
    0.3 and component-model-async are on by default in wasmtime 50; they are asked for anyway,
    so that a `wasmtime` built without them fails instead of serving something else."""
    flags = ["-O", "pooling-allocator=y", "-S", "cli=y"]
    if p3:
        flags += ["-S", "p3=y", "-W", "component-model-async=y", "--max-instance-reuse-count", "1"]
    for key, value in (env or {}).items():
        flags += ["--env", f"{key}={value}"]
    return lambda port: [binary, "serve", *flags, "--addr", f"127.0.0.1:{port}", component]


def ratio_header(bases: list) -> str:
    """The header cells of the "BASE ÷ it" columns, one per server in `bases`."""
    return " | ".join(f"{base} ÷ it" for base in bases)


def ratio_cells(rps: dict, name: str, bases: list) -> str:
    """The "BASE ÷ it" cells of row `name` for each server in `bases`: BASE's requests/s over
    the row's, "—" on BASE's own row. `rps` maps server names to requests/s."""
    return " | ".join("—" if name == base else f"{rps[base] / rps[name]:.2f}×" for base in bases)


class Server:
    def __init__(self, name: str, argv_for_port, env: dict | None = None):
        self.name = name
        self.argv_for_port = argv_for_port
        self.env = env or {}

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
                                env=service_env() | self.env)
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


def sandbox_cost(hostel: str, config: Path, pinned: bool, requests: int = 20000) -> str:
    """`hostel measure` on `config`: the sandbox's own cost per request (instantiate, handle,
    tear down), no network in the way; pinned to core 0 like the pinned server runs."""
    argv = [hostel, "measure", "--config", str(config), "--requests", str(requests), "--log", "warn"]
    if pinned:
        argv = ["taskset", "-c", "0"] + argv
    return subprocess.run(argv, capture_output=True, text=True, check=True,
                          env=service_env()).stdout.strip()
