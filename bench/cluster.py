"""Cluster mode: three hosts on one config with a `[cluster]` section, sharing their deployed
set through a 3-node NATS JetStream cluster (replicas 3), with HAProxy in front. In one run:

1. **Convergence.** Deploys through host 1's admin API, alternating two components so that
   every deploy is a swap; for each, the time from the deploy's answer until all three hosts
   serve the new version (each host's `GET /v1/tenants/acme/apps/app` polled ~1 ms apart until
   its digest is the deployed one), and the deploy call's own latency. Once for a small (Rust)
   pair and once for a Python-sized pair. Each host compiles into its own code cache, so only
   the first deploy of each component compiles: those two are also reported on their own, and
   so are a few deploys made cold on purpose (the component with a custom section carrying a
   fresh nonce: a new digest, compiled on every host).
2. **Key-value through three hosts.** wrk on `GET /counter` (an increment) through HAProxy and
   through host 1 alone, for a `kind = "nats"` store (one count for the cluster), a
   `kind = "embedded"` store (a local file per host: three separate counts) and a
   `kind = "redis"` store (one redis-server). Increments/s, p50, p99, and whether the count
   stored equals the increments acknowledged.
3. **Failures.** A client (8 threads, a bounded number of increments, through HAProxy) while one
   host is killed with SIGKILL a third of the way through, and, separately, while the NATS node
   leading the store's stream is killed a third of the way through and restarted at two thirds.
   Requests sent, failed (not 200, or a connection error), acknowledged, stored, lost and
   replayed.

Every server listens on 127.0.0.1 on a free port, is stopped by its PID at the end (also on
errors), and works in a temporary folder that is removed afterwards (`--keep` keeps it, with
each server's log). The key-value part runs every server (NATS, redis-server, the hosts,
HAProxy) on core 0 and wrk on core 1, as the other drivers do (`--unpinned` lets the kernel
place them); convergence and failures run unpinned, since each host of a real cluster has its
own machine.
"""

import argparse
import hashlib
import http.client
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lib import free_port, parse_ms, service_env, wait_for_port, wrk_command  # noqa: E402

TOKEN = "bench-operator-token"
TOKEN_SHA256 = hashlib.sha256(TOKEN.encode()).hexdigest()
TENANT = "acme"
HOSTS = 3


def tool(name: str) -> str:
    """A Debian server program: on the PATH, else in /usr/sbin (not on every PATH)."""
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").is_file() else None)
    if not found:
        sys.exit(f"{name} is missing: apt-get install {name}")
    return found


def percentile(values: list, p: float) -> float:
    """Nearest rank: of 20 values p50 is the 10th, p99 the 20th (the max)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def request(port: int, method: str, path: str, body: bytes | None = None, token: str | None = None,
            timeout: float = 120) -> tuple:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Processes:
    """Every process this driver started, so that each is stopped by its PID."""

    def __init__(self, work: Path):
        self.work = work
        self.running: list = []

    def start(self, name: str, argv: list, core: int | None = None) -> subprocess.Popen:
        """Starts `argv` (on `core`, if given), its output in `name`.log (`name` may hold the
        stack's folder: `kv-redis/host1`)."""
        if core is not None:
            argv = ["taskset", "-c", str(core)] + argv  # taskset execs: the PID is the server's
        with open(self.work / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=service_env())
        proc.name = name
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.running)):
            self.stop(proc)

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.work / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class Nats:
    """Three `nats-server`s with JetStream, clustered (routes to each other)."""

    def __init__(self, procs: Processes, work: Path, core: int | None):
        self.procs, self.work, self.core = procs, work, core
        self.binary = tool("nats-server")
        self.client = [free_port() for _ in range(3)]
        self.route = [free_port() for _ in range(3)]
        self.monitor = [free_port() for _ in range(3)]
        self.proc: list = [None] * 3

    @property
    def urls(self) -> str:
        return ",".join(f"nats://127.0.0.1:{p}" for p in self.client)

    def argv(self, i: int) -> list:
        routes = ",".join(f"nats://127.0.0.1:{p}" for p in self.route)
        store = self.work / f"nats{i + 1}"
        store.mkdir(exist_ok=True)
        return [self.binary, "-js", "-sd", str(store), "-a", "127.0.0.1", "-p", str(self.client[i]),
                "-m", str(self.monitor[i]), "--cluster", f"nats://127.0.0.1:{self.route[i]}",
                "--cluster_name", "hostel", "--routes", routes, "-n", f"n{i + 1}"]

    def start_node(self, i: int) -> None:
        self.proc[i] = self.procs.start(f"{self.work.name}/nats{i + 1}", self.argv(i), self.core)
        wait_for_port(self.client[i], self.proc[i], limit=30)

    def start(self) -> None:
        for i in range(3):
            self.start_node(i)
        # JetStream takes requests once the nodes have elected a meta leader.
        deadline = time.time() + 60
        while time.time() < deadline:
            if all(self.jsz(i).get("meta_cluster", {}).get("leader") for i in range(3)):
                return
            time.sleep(0.1)
        raise RuntimeError("NATS: no JetStream meta leader within 60 s")

    def jsz(self, i: int, query: str = "") -> dict:
        try:
            status, body = request(self.monitor[i], "GET", f"/jsz{query}", timeout=5)
            return json.loads(body) if status == 200 else {}
        except (OSError, ValueError):
            return {}

    def stream_leader(self, stream: str) -> int | None:
        """The index of the node leading `stream`, as a live node sees it."""
        for i in range(3):
            if self.proc[i] is None or self.proc[i].poll() is not None:
                continue
            for account in self.jsz(i, "?accounts=true&streams=true").get("account_details", []):
                for detail in account.get("stream_detail", []):
                    if detail.get("name") == stream:
                        leader = detail.get("cluster", {}).get("leader", "")
                        if leader.startswith("n"):
                            return int(leader[1:]) - 1
        return None

    def kill(self, i: int) -> None:
        self.procs.stop(self.proc[i], signal.SIGKILL)


class Host:
    """One `hostel serve` of the cluster, with its own config (its own code cache and, for an
    embedded store, its own file)."""

    def __init__(self, index: int, config: Path):
        self.index, self.config = index, config
        self.port, self.admin = free_port(), free_port()
        self.proc = None

    @property
    def name(self) -> str:
        return f"host{self.index + 1}"


def host_config(work: Path, index: int, nats: Nats, store: str, redis_url: str) -> Path:
    stores = {
        "nats": f'kind = "nats"\nurl = "{nats.urls}"\nreplicas = 3\n',
        "embedded": f'kind = "embedded"\npath = "{work / f"host{index + 1}-kv.redb"}"\n',
        "redis": f'kind = "redis"\nurl = "{redis_url}"\n',
    }
    path = work / f"host{index + 1}.toml"
    path.write_text(
        f'[server]\ncode_cache = "{work / f"host{index + 1}-cache"}"\n'
        f'[admin]\noperator_token_sha256 = "{TOKEN_SHA256}"\n'
        f'[cluster]\nurl = "{nats.urls}"\nreplicas = 3\nhost_id = "host{index + 1}"\n'
        f'[stores.default]\n{stores[store]}'
        f'[tenants.{TENANT}]\ngrants = {{ stores = ["default"] }}\n')
    return path


HAPROXY_CONFIG = """global
    nbthread 1
    maxconn 1000

defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 30s
    timeout check 1s

frontend hostel
    bind 127.0.0.1:{port}
    default_backend hosts

backend hosts
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 200ms fall 2 rise 2
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response junk-response 0rtt-rejected
    http-request disable-l7-retry unless METH_GET
    option http-server-close
{servers}
listen stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
"""


class Stack:
    """NATS, redis-server (for a redis store), three hosts and HAProxy in front of them: the
    config tests/support/haproxy.rs uses (round robin, /readyz on the admin listener checked
    every 200 ms, GETs retried on another host)."""

    def __init__(self, procs: Processes, hostel: str, parent: Path, name: str, store: str,
                 core: int | None):
        self.procs, self.hostel, self.store, self.core = procs, hostel, store, core
        self.work = parent / name
        self.work.mkdir()
        self.nats = Nats(procs, self.work, core)
        self.redis_port = free_port()
        self.hosts: list = []
        self.port, self.stats_port = free_port(), free_port()
        self.haproxy = None

    def start(self) -> None:
        self.nats.start()
        if self.store == "redis":
            redis = self.process("redis", ["redis-server", "--bind", "127.0.0.1", "--port",
                                           str(self.redis_port), "--save", "", "--appendonly", "no",
                                           "--dir", str(self.work)])
            wait_for_port(self.redis_port, redis)
        for i in range(HOSTS):
            redis_url = f"redis://127.0.0.1:{self.redis_port}"
            self.hosts.append(Host(i, host_config(self.work, i, self.nats, self.store, redis_url)))
        for host in self.hosts:
            self.start_host(host)
        for host in self.hosts:
            self.wait_ready(host)
        servers = "".join(f"    server s{h.index} 127.0.0.1:{h.port} check addr 127.0.0.1 port {h.admin}\n"
                          for h in self.hosts)
        config = self.work / "haproxy.cfg"
        config.write_text(HAPROXY_CONFIG.format(port=self.port, stats_port=self.stats_port,
                                                servers=servers))
        # -db: foreground, one process (killing this PID stops everything).
        self.haproxy = self.process("haproxy", [tool("haproxy"), "-db", "-f", str(config)])
        wait_for_port(self.port, self.haproxy)
        wait_for_port(self.stats_port, self.haproxy)
        self.wait_up(HOSTS)

    def process(self, name: str, argv: list) -> subprocess.Popen:
        """One of the stack's servers, its log in the stack's folder."""
        return self.procs.start(f"{self.work.name}/{name}", argv, self.core)

    def start_host(self, host: Host) -> None:
        host.proc = self.process(host.name, [self.hostel, "serve", "--config", str(host.config),
                                             "--listen", f"127.0.0.1:{host.port}", "--admin-listen",
                                             f"127.0.0.1:{host.admin}", "--log", "warn"])

    def wait_ready(self, host: Host, limit: float = 60) -> None:
        deadline = time.time() + limit
        while time.time() < deadline:
            if host.proc.poll() is not None:
                raise RuntimeError(f"{host.name} exited with {host.proc.returncode}:\n"
                                   f"{self.procs.log_tail(f'{self.work.name}/{host.name}')}")
            try:
                if request(host.admin, "GET", "/readyz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{host.name} not ready within {limit} s:\n"
                           f"{self.procs.log_tail(f'{self.work.name}/{host.name}')}")

    def stats(self) -> list:
        """HAProxy's stats CSV for the backend: one dict per row (s0, s1, s2, BACKEND)."""
        _, body = request(self.stats_port, "GET", "/stats;csv", timeout=5)
        lines = body.decode().splitlines()
        columns = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(columns, line.split(","))) for line in lines[1:] if line]
        return [r for r in rows if r.get("pxname") == "hosts"]

    def wait_up(self, n: int, limit: float = 30) -> None:
        deadline = time.time() + limit
        while time.time() < deadline:
            up = [r for r in self.stats() if r["svname"] != "BACKEND" and r["status"].startswith("UP")]
            if len(up) == n:
                return
            time.sleep(0.05)
        raise RuntimeError(f"HAProxy: not {n} servers UP within {limit} s: {self.stats()}")

    def deploy(self, name: str, route: str, component: bytes, via: int = 0) -> tuple:
        """PUT through host `via`'s admin API; (status, body, seconds the call took). Retried
        (bounded) while the cluster answers 503, e.g. before JetStream's first leader."""
        for _ in range(100):
            started = time.perf_counter()
            status, body = request(self.hosts[via].admin, "PUT",
                                   f"/v1/tenants/{TENANT}/apps/{name}?route={route}", component, TOKEN)
            took = time.perf_counter() - started
            if status != 503:
                return status, body, took
            time.sleep(0.2)
        raise RuntimeError(f"deploy of {name}: 503 for 20 s: {body[:300]!r}")

    def serve_everywhere(self, path: str, limit: float = 120) -> None:
        deadline = time.time() + limit
        for host in self.hosts:
            while request(host.port, "GET", path, timeout=10)[0] != 200:
                if time.time() > deadline:
                    raise RuntimeError(f"{path} not served by {host.name} within {limit} s")
                time.sleep(0.05)


# --- 1. Convergence ---------------------------------------------------------------------------

def with_nonce(component: bytes, nonce: str) -> bytes:
    """`component` with a custom section (id 0, allowed anywhere in a component) appended that
    holds `nonce`: the same code under a new digest, so no code cache has it."""
    def leb(n: int) -> bytes:
        out = bytearray()
        while True:
            byte, n = n & 0x7F, n >> 7
            out.append(byte | (0x80 if n else 0))
            if not n:
                return bytes(out)
    name = b"hostel-bench-nonce"
    content = leb(len(name)) + name + nonce.encode()
    return component + b"\x00" + leb(len(content)) + content


def timed_deploy(stack: Stack, component: bytes) -> tuple:
    """One swap of app `app` through host 1, with every host polled (its own thread, one
    keep-alive connection, ~1 ms apart) from before the call until it shows the new digest.
    Returns (the call's seconds, seconds from its answer until the last host served it)."""
    digest = "sha256:" + hashlib.sha256(component).hexdigest()
    seen = [None] * HOSTS
    stop = threading.Event()
    deadline = time.perf_counter() + 300

    def poll(i: int) -> None:
        conn = None
        while not stop.is_set() and time.perf_counter() < deadline:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", stack.hosts[i].admin, timeout=10)
                conn.request("GET", f"/v1/tenants/{TENANT}/apps/app",
                             headers={"Authorization": f"Bearer {TOKEN}"})
                response = conn.getresponse()
                body = response.read()
                if response.status == 200 and json.loads(body).get("digest") == digest:
                    seen[i] = time.perf_counter()
                    break
            except (OSError, http.client.HTTPException, ValueError):
                if conn:
                    conn.close()
                conn = None
            time.sleep(0.001)
        if conn:
            conn.close()

    pollers = [threading.Thread(target=poll, args=(i,), daemon=True) for i in range(HOSTS)]
    for t in pollers:
        t.start()
    try:
        status, body, took = stack.deploy("app", "/app", component)
        answered = time.perf_counter()
        if status not in (200, 201):
            raise RuntimeError(f"deploy answered {status}: {body[:500]!r}")
        for t in pollers:
            t.join(timeout=max(0.0, deadline - time.perf_counter()))
    finally:
        stop.set()
    if None in seen:
        missing = [stack.hosts[i].name for i in range(HOSTS) if seen[i] is None]
        raise RuntimeError(f"{', '.join(missing)} did not serve {digest} within 300 s")
    return status, took, max(0.0, max(seen) - answered)


def convergence(args, procs: Processes, work: Path) -> str:
    pairs = [("small (Rust hello / echo)", args.small)]
    notes = []
    if all(Path(p).is_file() for p in args.python):
        pairs.append(("Python (hello / counter)", args.python))
    else:
        missing = ", ".join(p for p in args.python if not Path(p).is_file())
        notes.append(f"Python row skipped: {missing} not built. Build them with "
                     f"`target/release/hostel build components/python/hello` and "
                     f"`target/release/hostel build components/python/counter` (bench/run languages "
                     f"and scripts/common.sh's build_other_guests run `hostel build` the same way).")
        print(f"note: {notes[-1]}", file=sys.stderr, flush=True)

    stack = Stack(procs, args.hostel, work, "convergence", "embedded", None)
    rows = []
    try:
        stack.start()
        # Something else first, so that the first timed deploy is a swap as well.
        first = Path(args.counter).read_bytes()
        status, body, _ = stack.deploy("app", "/app", first)
        assert status == 201, (status, body[:300])
        stack.serve_everywhere("/app?peek")
        for label, paths in pairs:
            components = [Path(p).read_bytes() for p in paths]
            sizes = " / ".join(f"{len(c) / 2**20:.2f} MiB" if len(c) > 2**20 else f"{len(c) / 1024:.0f} KiB"
                               for c in components)
            calls, lags = [], []
            for n in range(args.deploys):
                status, took, lag = timed_deploy(stack, components[n % 2])
                assert status == 200, f"deploy {n + 1} of {label} was not a swap ({status})"
                calls.append(took * 1e3)
                lags.append(lag * 1e3)
                print(f"  {label:28} deploy {n + 1:2}: call {took * 1e3:8.1f} ms, all hosts "
                      f"{lag * 1e3:8.1f} ms after", file=sys.stderr, flush=True)
            cold_calls, cold_lags = [], []
            for n in range(args.cold):
                component = with_nonce(components[n % 2], f"{label}-{n}-{time.time_ns()}")
                status, took, lag = timed_deploy(stack, component)
                assert status == 200, f"cold deploy {n + 1} of {label} was not a swap ({status})"
                cold_calls.append(took * 1e3)
                cold_lags.append(lag * 1e3)
                print(f"  {label:28} cold deploy {n + 1}: call {took * 1e3:8.1f} ms, all hosts "
                      f"{lag * 1e3:8.1f} ms after", file=sys.stderr, flush=True)
            rows.append((label, sizes, f"all {len(calls)}", calls, lags))
            rows.append((label, sizes, "1st + 2nd (cold: compiled on each host)", calls[:2], lags[:2]))
            rows.append((label, sizes, f"deploys 3–{len(calls)} (warm: each host's code cache)",
                         calls[2:], lags[2:]))
            if cold_calls:
                rows.append((label, sizes, f"{len(cold_calls)} with a fresh digest (cold)", cold_calls,
                             cold_lags))
    finally:
        procs.stop_all()

    out = ["\n### Convergence: deploy through host 1 until all 3 hosts serve it\n",
           "| components | sizes | deploys | deploy call p50 ms | p99 ms | converged p50 ms | p99 ms | "
           "max ms |",
           "|---|---|---|---|---|---|---|---|"]
    for label, sizes, which, calls, lags in rows:
        if not calls:
            continue
        out.append(f"| {label} | {sizes} | {which} | {percentile(calls, 50):.1f} | "
                   f"{percentile(calls, 99):.1f} | {percentile(lags, 50):.1f} | "
                   f"{percentile(lags, 99):.1f} | {max(lags):.1f} |")
    out.append(
        f"\n*Converged*: from the deploy's answer until the last of the 3 hosts showed the new digest "
        f"(`GET /v1/tenants/{TENANT}/apps/app` on each host polled ~1 ms apart; host 1, which took the "
        f"deploy, serves it before answering). Deploys alternate the two components, so each is a swap; "
        f"each host compiles into its own code cache, so only the first deploy of each component "
        f"compiles (the cold row), later ones load the compiled code. *Fresh digest*: the component with "
        f"a custom section holding a nonce — new bytes, compiled again on every host. Percentiles are "
        f"nearest-rank (p99 of fewer than 100 is the max). Hosts, NATS and the poller unpinned on "
        f"2 cores.")
    out.extend(f"\n{n}" for n in notes)
    return "\n".join(out)


# --- 2. Key-value through three hosts -------------------------------------------------------

def run_wrk_counted(port: int, args, path: str) -> dict:
    cmd = wrk_command(port, args.connections, args.duration, not args.unpinned, path=path)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=args.duration + 60).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    bad = int(non2xx.group(1)) if non2xx else 0
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": parse_ms(re.search(r"\n\s+50%\s+(\S+)", out).group(1)),
            "p99": parse_ms(re.search(r"\n\s+99%\s+(\S+)", out).group(1)),
            "requests": requests, "bad": bad,
            "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
            "acked": requests - bad}


def peek(port: int) -> int:
    """The count, read until two reads 200 ms apart agree (a NATS replica may lag a moment)."""
    last = None
    for _ in range(50):
        status, body = request(port, "GET", "/counter?peek", timeout=10)
        if status != 200:
            raise RuntimeError(f"peek answered {status}: {body[:300]!r}")
        value = int(body.strip() or 0)
        if value == last:
            return value
        last = value
        time.sleep(0.2)
    return last


def answered_2xx(stack: Stack) -> int:
    """The counter's 2xx answers, summed over the hosts' /metrics."""
    total = 0
    for host in stack.hosts:
        _, body = request(host.admin, "GET", "/metrics", token=TOKEN, timeout=10)
        for line in body.decode().splitlines():
            if (line.startswith("hostel_requests_total{") and f'tenant="{TENANT}"' in line
                    and 'app="counter"' in line and 'class="2xx"' in line):
                total += int(float(line.rsplit(" ", 1)[1]))
    return total


def counts(stack: Stack) -> list:
    """The count each host sees (one value for a shared store)."""
    if stack.store == "embedded":
        return [peek(h.port) for h in stack.hosts]
    return [peek(stack.hosts[0].port)]


def key_value(args, procs: Processes, work: Path, stores: list) -> str:
    core = None if args.unpinned else 0
    rows = []
    for store in stores:
        stack = Stack(procs, args.hostel, work, f"kv-{store}", store, core)
        try:
            stack.start()
            status, body, _ = stack.deploy("counter", "/counter", Path(args.counter).read_bytes())
            assert status == 201, (status, body[:300])
            stack.serve_everywhere("/counter?peek")
            run_wrk_counted(stack.port, argparse.Namespace(**{**vars(args), "duration": 2}), "/counter")
            for target, port in [("HAProxy → 3 hosts", stack.port), ("host 1 alone", stack.hosts[0].port)]:
                before, answered_before = counts(stack), answered_2xx(stack)
                r = run_wrk_counted(port, args, "/counter")
                time.sleep(0.5)
                answered_after = answered_2xx(stack)  # before the peeks, which are answers too
                after = counts(stack)
                r["stored"] = sum(a - b for a, b in zip(after, before))
                r["per_host"] = [a - b for a, b in zip(after, before)]
                r["answered"] = answered_after - answered_before
                rows.append((store, target, r))
                print(f"  {store:9} {target:18} {r['rps']:>8.0f} incr/s p50 {r['p50']:6.2f} ms "
                      f"p99 {r['p99']:6.2f} ms acked {r['acked']} stored {r['stored']} "
                      f"(hosts answered {r['answered']}) non-2xx {r['bad']} socket errors "
                      f"{r['socket_errors']}", file=sys.stderr, flush=True)
        finally:
            procs.stop_all()

    def verdict(store: str, r: dict) -> str:
        if store == "embedded":
            return "— (no single count: per host " + " + ".join(map(str, r["per_host"])) + ")"
        extra = r["stored"] - r["acked"]
        if extra == 0:
            return "yes"
        if extra < 0:
            return f"**no: {-extra} acknowledged increments lost**"
        if extra <= args.connections and r["stored"] == r["answered"]:
            return f"yes (+{extra} answered after wrk stopped)"
        return f"**no: {extra} more stored than acknowledged**"

    pin = ("every server (3 NATS nodes, redis-server, 3 hosts, HAProxy) on core 0, wrk on core 1 "
           "(one thread)" if not args.unpinned else "unpinned, wrk with 2 threads")
    out = ["\n### Key-value through three hosts: GET /counter (an increment)\n",
           "| store | through | increments/s | p50 ms | p99 ms | non-2xx | socket errors | acknowledged | "
           "stored | count = acknowledged |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for store, target, r in rows:
        out.append(f"| {store} | {target} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['bad']} | "
                   f"{r['socket_errors']} | {r['acked']} | {r['stored']} | {verdict(store, r)} |")
    out.append(
        f"\nwrk, {args.connections} connections, {args.duration} s after a 2 s warm-up; {pin}. A 2-core "
        f"box cannot show three hosts scaling: the rows give the cost of the store and of the balancer "
        f"hop, not a cluster's capacity. Every increment is of one key. *nats*: `kind = \"nats\"`, a "
        f"KV bucket with replicas 3 on the 3-node JetStream cluster; an increment is a read and a "
        f"compare-and-set on the entry's revision — a host takes one key's increments in turn, but "
        f"increments from different hosts conflict and are tried again (an increment that loses "
        f"too often answers 500), so the balanced row pays for three writers. *embedded*: "
        f"`kind = \"embedded\"`, each host its own redb file — it does not count once across hosts: "
        f"each host keeps its own count, and a client through the balancer sees three different ones "
        f"(the stored column is their sum). *redis*: `kind = \"redis\"`, one "
        f"redis-server shared by the hosts. *Acknowledged*: wrk's responses minus its non-2xx ones; "
        f"*stored*: the count read afterwards (`?peek`) minus before. wrk stops with up to "
        f"{args.connections} requests in flight, which the hosts may still answer and count: such a "
        f"surplus is shown when it equals the 2xx answers in the hosts' /metrics.")
    return "\n".join(out)


# --- 3. Failures ------------------------------------------------------------------------------

def load(port: int, total: int, concurrency: int, rate: float, actions: dict) -> dict:
    """`total` increments through `port` from `concurrency` threads, each on a keep-alive
    connection (a new one after an error), request i issued no earlier than i / `rate` seconds
    after the start. `actions` maps a request's index to a function run, on a thread of its own,
    when that request is issued. No request is retried here."""
    lock = threading.Lock()
    state = {"next": 0, "acked": 0, "failed": 0, "slowest": 0.0, "statuses": {}}
    side = []

    def worker() -> None:
        conn = None
        while True:
            with lock:
                i = state["next"]
                state["next"] += 1
            if i >= total:
                break
            delay = begun + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if i in actions:
                t = threading.Thread(target=actions[i])
                t.start()
                side.append(t)
            started = time.perf_counter()
            ok = False
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", "/counter")
                response = conn.getresponse()
                body = response.read()
                ok = response.status == 200 and body.strip().isdigit()
                key = str(response.status)
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                key = type(e).__name__
                if conn:
                    conn.close()
                conn = None
            took = time.perf_counter() - started
            with lock:
                state["acked" if ok else "failed"] += 1
                state["slowest"] = max(state["slowest"], took)
                if not ok:
                    state["statuses"][key] = state["statuses"].get(key, 0) + 1
        if conn:
            conn.close()

    begun = time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    for t in side:
        t.join()
    state["seconds"] = time.perf_counter() - begun
    state["sent"] = total
    return state


def failures(args, procs: Processes, work: Path, store: str) -> str:
    rows = []
    stream = "KV_hostel-kv" if store == "nats" else "KV_hostel-deployments"
    for case in ("host", "nats"):
        stack = Stack(procs, args.hostel, work, f"failures-{case}-{store}", store, None)
        events = []
        try:
            stack.start()
            status, body, _ = stack.deploy("counter", "/counter", Path(args.counter).read_bytes())
            assert status == 201, (status, body[:300])
            stack.serve_everywhere("/counter?peek")
            for host in stack.hosts:  # each host has opened its store before the run
                assert request(host.port, "GET", "/counter")[0] == 200
            survivor = stack.hosts[0]
            before = peek(survivor.port)
            retries_before = backend_retries(stack)
            total, third = args.increments, args.increments // 3
            if case == "host":
                victim = stack.hosts[-1]

                def kill_host() -> None:
                    procs.stop(victim.proc, signal.SIGKILL)
                    events.append(f"SIGKILL {victim.name} at request {third}")
                actions = {third: kill_host}
            else:
                node = stack.nats.stream_leader(stream)
                node = 1 if node is None else node

                def kill_node() -> None:
                    stack.nats.kill(node)
                    events.append(f"SIGKILL n{node + 1} (leader of {stream}) at request {third}")

                def restart_node() -> None:
                    stack.nats.start_node(node)
                    events.append(f"restart n{node + 1} at request {2 * third}")
                actions = {third: kill_node, 2 * third: restart_node}
            r = load(stack.port, total, args.kill_concurrency, args.rate, actions)
            time.sleep(1)
            r["stored"] = peek(survivor.port) - before
            r["retries"] = [a - b for a, b in zip(backend_retries(stack), retries_before)]
            r["events"] = events
            rows.append((case, r))
            print(f"  {case:5} sent {r['sent']} failed {r['failed']} {r['statuses'] or ''} "
                  f"acked {r['acked']} "
                  f"stored {r['stored']} in {r['seconds']:.1f} s, slowest {r['slowest'] * 1e3:.0f} ms, "
                  f"HAProxy retries / redispatches {r['retries'][0]} / {r['retries'][1]}; "
                  f"{'; '.join(events)}", file=sys.stderr, flush=True)
        finally:
            procs.stop_all()

    names = {"host": "one host SIGKILLed at 1/3", "nats": "one NATS node SIGKILLed at 1/3, restarted at 2/3"}
    out = ["\n### Failures during kills: increments through HAProxy\n",
           "| during | store | sent | failed | acknowledged | stored | lost | replays | retried elsewhere | "
           "slowest ms | seconds |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for case, r in rows:
        lost = max(0, r["acked"] - r["stored"])
        replays = max(0, r["stored"] - r["acked"])
        out.append(f"| {names[case]} | {store} | {r['sent']} | {r['failed']} | {r['acked']} | "
                   f"{r['stored']} | {lost} | {replays} | {r['retries'][1]} | "
                   f"{r['slowest'] * 1e3:.0f} | {r['seconds']:.1f} |")
    out.append(
        f"\nA Python client, {args.kill_concurrency} threads on keep-alive connections, {args.increments} "
        f"increments at most {args.rate:.0f}/s, none retried by the client (HAProxy retries a GET that "
        f"found its host dead on another host: *retried elsewhere*, HAProxy's redispatches). "
        f"*Failed*: not 200, or a connection error. *Lost*: acknowledged but not stored; "
        f"*replays*: stored but not acknowledged — an increment the dying host made whose answer "
        f"was lost, made again on another host by HAProxy's retry. The NATS node killed is the "
        f"leader of `{stream}` ({'the store' if store == 'nats' else 'the deployed set'}), so that "
        f"stream elects a new leader while the hosts connected to the node reconnect to another. "
        f"All unpinned.")
    if store != "nats":
        out.append(f"\nThe store is `kind = \"{store}\"`: this build has no `kind = \"nats\"` store, so the "
                   f"NATS node's loss touches only the cluster's deployed set, not the counts.")
    return "\n".join(out)


def backend_retries(stack: Stack) -> tuple:
    """HAProxy's retries and redispatches so far, over the backend."""
    row = next(r for r in stack.stats() if r["svname"] == "BACKEND")
    return int(row.get("wretr") or 0), int(row.get("wredis") or 0)


def nats_store_supported(hostel: str, work: Path) -> bool:
    """Whether this build accepts `kind = "nats"` stores (`hostel check`; nothing listens on the
    URL, and the check does not need it to)."""
    config = work / "nats-check.toml"
    config.write_text(f'[server]\ncode_cache = "{work / "check-cache"}"\n'
                      f'[stores.default]\nkind = "nats"\nurl = "nats://127.0.0.1:{free_port()}"\n')
    result = subprocess.run([hostel, "check", "--config", str(config), "--log", "error"],
                            capture_output=True, text=True, timeout=60)
    text = result.stdout + result.stderr
    if "unknown variant `nats`" in text:
        return False
    if result.returncode != 0:
        print(f"note: `hostel check` on a nats store config failed: {text.strip()[:300]}",
              file=sys.stderr, flush=True)
    return result.returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hostel", required=True)
    ap.add_argument("--small", nargs=2, required=True, metavar=("A", "B"),
                    help="two small components, deployed alternately")
    ap.add_argument("--python", nargs=2, required=True, metavar=("A", "B"),
                    help="two Python components (skipped with a note when not built)")
    ap.add_argument("--counter", required=True, help="the counter component (store `default`)")
    ap.add_argument("--deploys", type=int, default=20)
    ap.add_argument("--cold", type=int, default=4, help="deploys with a fresh digest, per pair")
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--stores", default="nats,embedded,redis")
    ap.add_argument("--increments", type=int, default=2000)
    ap.add_argument("--kill-concurrency", type=int, default=8)
    ap.add_argument("--rate", type=float, default=500, help="failures part: increments/s at most")
    ap.add_argument("--parts", default="convergence,kv,failures")
    ap.add_argument("--unpinned", action="store_true", help="key-value part: let the kernel place everything")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (configs, logs)")
    args = ap.parse_args()
    parts = args.parts.split(",")
    for name in ("nats-server", "haproxy", "redis-server"):
        tool(name)

    work = Path(tempfile.mkdtemp(prefix="hostel-bench-cluster-"))
    procs = Processes(work)
    tables = []
    try:
        nats_store = nats_store_supported(args.hostel, work)
        stores = [s for s in args.stores.split(",") if s]
        if not nats_store and "nats" in stores:
            stores.remove("nats")
            print("note: this hostel has no `kind = \"nats\"` store (`hostel check` refuses it): "
                  "the nats rows are left out", file=sys.stderr, flush=True)
        if "convergence" in parts:
            tables.append(convergence(args, procs, work))
        if "kv" in parts:
            tables.append(key_value(args, procs, work, stores))
            if not nats_store and "nats" in args.stores.split(","):
                tables.append("\nNo nats rows: this build has no `kind = \"nats\"` store.")
        if "failures" in parts:
            tables.append(failures(args, procs, work, "nats" if nats_store else "redis"))
    finally:
        procs.stop_all()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n*{os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}; {HOSTS} hosts, a 3-node NATS cluster "
          f"(nats-server {nats_version()}), HAProxy {haproxy_version()}.*")
    for table in tables:
        print(table)


def nats_version() -> str:
    out = subprocess.run([tool("nats-server"), "--version"], capture_output=True, text=True).stdout
    return out.strip().split()[-1].lstrip("v") if out.strip() else "?"


def haproxy_version() -> str:
    out = subprocess.run([tool("haproxy"), "-v"], capture_output=True, text=True).stdout
    match = re.search(r"version (\S+)", out)
    return match.group(1) if match else "?"


if __name__ == "__main__":
    main()
