"""What observability costs: the hello and the Redis counter on one Hostel binary with requests
not counted (`metrics.enabled = false`), counted (metrics and usage on, Prometheus scraping
/metrics every second, the usage ledger flushing), and counted with traces exported over OTLP
(when the binary has them; to a sink that accepts and drops every batch). Prints server CPU µs
per request and its ratio to the "off" column, and the size and render time of /metrics with
100 tenants × 3 apps.

The server runs on core 0 and wrk (and the scraper, the sink, redis-server) on core 1. The
variants alternate within each round; the table gives medians over the rounds. CPU time per
request moves by a few per cent between runs of the same binary on this VM, so the hello is
also counted in instructions under callgrind (`--instructions`, when valgrind is installed):
the same binary, sequential requests, the difference between 500 and 2,500 requests divided by
2,000 — repeatable to the instruction, whatever else the machine does.
"""

import argparse
import hashlib
import os
import shutil
import signal
import http.client
import http.server
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lib import Server, free_port, wait_for_port  # noqa: E402

TOKEN = "bench-operator-token"
TOKEN_SHA256 = hashlib.sha256(TOKEN.encode()).hexdigest()


def get(port: int, path: str, host: str = "localhost", token: str | None = None) -> tuple:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Host": host}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


class Scraper:
    """GETs /metrics once a second from the admin listener while a run lasts."""

    def __init__(self, admin_port: int):
        self.admin_port = admin_port
        self.stop = threading.Event()
        self.scrapes = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(1.0):
            try:
                status, _ = get(self.admin_port, "/metrics", token=TOKEN)
                self.scrapes += status == 200
            except OSError:
                pass


class Sink(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that takes every export and keeps nothing."""

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_args) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hostel", required=True)
    ap.add_argument("--hello", required=True)
    ap.add_argument("--redis-counter", required=True)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--traces", action="store_true", help="also measure with traces exported")
    ap.add_argument("--no-instructions", action="store_true",
                    help="skip the instruction counts under callgrind")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hostel-bench-observability-"))
    redis_port = free_port()
    redis = subprocess.Popen(["taskset", "-c", "1", "redis-server", "--bind", "127.0.0.1",
                              "--port", str(redis_port), "--save", "", "--appendonly", "no",
                              "--dir", str(work)], stdout=subprocess.DEVNULL)
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    try:
        wait_for_port(redis_port, redis)
        cost_table(args, work, redis_port, sink.server_address[1])
        if not args.no_instructions and shutil.which("valgrind"):
            instructions(args, work, sink.server_address[1])
        metrics_size(args, work)
    finally:
        sink.shutdown()
        redis.terminate()
        redis.wait()


def cost_table(args, work: Path, redis_port: int, sink_port: int) -> None:
    def config(name: str, component: str, counted: bool) -> tuple:
        admin_port = free_port()
        text = (f'[server]\ncode_cache = "{work / "cache"}"\nmax_instances = 1000\n'
                f'[defaults.limits]\nconcurrency = 1000\n'
                f'[pools.cache]\nkind = "redis"\nurl = "redis://127.0.0.1:{redis_port}"\n'
                f'[grants]\npools = ["cache"]\n'
                f'[apps.app]\nroute = "/"\ncomponent = "{component}"\n')
        if counted:
            text += (f'[admin]\nlisten = "127.0.0.1:{admin_port}"\n'
                     f'operator_token_sha256 = "{TOKEN_SHA256}"\nstate = "{work / name}-state"\n')
        else:
            text += '[metrics]\nenabled = false\n'
        path = work / f"{name}.toml"
        path.write_text(text)
        return path, admin_port

    variants = [("off", False, {}), ("metrics+usage", True, {})]
    if args.traces:
        variants.append(("metrics+usage+traces", True, {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        }))

    results: dict = {}
    for workload, component in [("hello", args.hello), ("redis", args.redis_counter)]:
        servers = []
        for name, counted, env in variants:
            path, admin_port = config(f"{workload}-{name}", component, counted)
            server = Server(name, lambda p, path=path: [args.hostel, "serve", "--config", str(path),
                                                        "--listen", f"127.0.0.1:{p}", "--log", "warn"],
                            env=env)
            servers.append((server, counted, admin_port))
        for round_ in range(args.rounds):
            order = servers[round_ % len(servers):] + servers[:round_ % len(servers)]
            for server, counted, admin_port in order:
                scraper = Scraper(admin_port) if counted else None

                def start(_port, scraper=scraper):
                    if scraper:
                        scraper.thread.start()
                    return {}

                def stop(_port, scraper=scraper):
                    if scraper:
                        scraper.stop.set()
                        return {"scrapes": scraper.scrapes}
                    return {"scrapes": 0}

                r = server.measure(args.connections, args.duration, True, before=start, after=stop)
                r["cpu_us"] = r["cores"] * 1e6 / r["rps"] if r["rps"] else float("nan")
                results.setdefault((workload, server.name), []).append(r)
                print(f"  {workload:6} {server.name:22} {r['rps']:>8.0f} req/s "
                      f"cpu {r['cpu_us']:7.2f} µs/req scrapes {r['scrapes']} {r['errors']}",
                      file=sys.stderr, flush=True)

    print(f"\n| workload | host | req/s | server CPU µs/request | ÷ off |")
    print("|---|---|---|---|---|")
    for workload in ("hello", "redis"):
        off = statistics.median(r["cpu_us"] for r in results[(workload, "off")])
        for name, _, _ in variants:
            runs = results[(workload, name)]
            rps = statistics.median(r["rps"] for r in runs)
            cpu = statistics.median(r["cpu_us"] for r in runs)
            print(f"| {workload} | {name} | {rps:.0f} | {cpu:.2f} | {cpu / off:.3f}× |")


def instructions(args, work: Path, sink_port: int) -> None:
    """Instructions per hello request under callgrind: off, counted, counted with traces."""
    def run(name: str, counted: bool, env: dict, requests: int) -> int:
        port, admin_port = free_port(), free_port()
        text = (f'[server]\ncode_cache = "{work / "cache"}"\nmax_instances = 4\n'
                f'[apps.app]\nroute = "/"\ncomponent = "{args.hello}"\n')
        if counted:
            text += (f'[admin]\nlisten = "127.0.0.1:{admin_port}"\n'
                     f'operator_token_sha256 = "{TOKEN_SHA256}"\nstate = "{work / name}-cg-state"\n')
        else:
            text += '[metrics]\nenabled = false\n'
        config = work / f"cg-{name}.toml"
        config.write_text(text)
        out = work / f"callgrind.{name}.{requests}"
        proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                                 args.hostel, "serve", "--config", str(config), "--listen",
                                 f"127.0.0.1:{port}", "--log", "warn"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, **env})
        try:
            wait_for_port(port, proc, limit=300)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for _ in range(requests):
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                assert response.status == 200, response.status
            conn.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
        raise RuntimeError(f"no totals in {out}")

    variants = [("off", False, {}), ("metrics+usage", True, {})]
    if args.traces:
        variants.append(("metrics+usage+traces", True,
                         {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink_port}"}))
    # Once first, so that the code cache holds the component for every counted run.
    run("warm-up", False, {}, 1)
    per_request = {}
    for name, counted, env in variants:
        few, many = run(name, counted, env, 500), run(name, counted, env, 2500)
        per_request[name] = (many - few) / 2000
        print(f"  callgrind {name:22} {per_request[name]:,.0f} instructions/request",
              file=sys.stderr, flush=True)
    print("\n| hello under callgrind | instructions/request | ÷ off |")
    print("|---|---|---|")
    for name, _, _ in variants:
        print(f"| {name} | {per_request[name]:,.0f} | {per_request[name] / per_request['off']:.4f}× |")


def metrics_size(args, work: Path) -> None:
    """100 tenants × 3 apps, each app asked once (so its series exist), then /metrics."""
    admin_port, port = free_port(), free_port()
    text = (f'[server]\ncode_cache = "{work / "cache"}"\n'
            f'[admin]\nlisten = "127.0.0.1:{admin_port}"\noperator_token_sha256 = "{TOKEN_SHA256}"\n'
            f'state = "{work / "size-state"}"\n')
    for t in range(100):
        text += f'[tenants.t{t}]\nhosts = ["t{t}.test"]\n'
        for app in ("a", "b", "c"):
            text += f'[tenants.t{t}.apps.{app}]\nroute = "/{app}"\ncomponent = "{args.hello}"\n'
    config = work / "size.toml"
    config.write_text(text)
    proc = subprocess.Popen(["taskset", "-c", "0", args.hostel, "serve", "--config", str(config),
                             "--listen", f"127.0.0.1:{port}", "--log", "warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        wait_for_port(admin_port, proc)
        for t in range(100):
            for app in ("a", "b", "c"):
                status, _ = get(port, f"/{app}", host=f"t{t}.test")
                assert status == 200, (t, app, status)
        times, size, series = [], 0, 0
        for _ in range(20):
            started = time.perf_counter()
            status, body = get(admin_port, "/metrics", token=TOKEN)
            times.append((time.perf_counter() - started) * 1e3)
            assert status == 200
            size = len(body)
            series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        print(f"\n/metrics with 100 tenants × 3 apps: {size / 1024:.0f} KiB, {series} series, "
              f"scrape (render + HTTP) p50 {statistics.median(times):.1f} ms, "
              f"max {max(times):.1f} ms over 20 scrapes")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
