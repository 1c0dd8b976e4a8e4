"""Connection hygiene: what it costs that every borrowed connection comes back as a new one.

Runs two hostel binaries in one run, rounds alternating — `--before` (a build from before the
hygiene) and `--after` — on two workloads:

- `todo`: `GET /todo` on the `todo` component (one SELECT per request on a PostgreSQL pool);
  after, each statement is followed by the session reset, pipelined;
- `redis-tx`: the `redis-probe` component's `/hold?n=1` (a leased Redis connection and a WATCH
  per request); after, the pool sends RESET (and logs in again) before each reuse.

Hostel on core 0, wrk and the database on core 1. Prints requests/s, p50/p99, non-2xx
answers, and CPU µs per request of Hostel and of the database server, and the after ÷ before
ratios. With `--pg-reset BINARY` it also prices each way of resetting a PostgreSQL session
(`bench/pg-reset`: server CPU per statement on one connection, each way in one round trip).
"""

import argparse
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lib import Server, free_port, run_wrk, wait_for_port  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int) -> float:
    """CPU time of a process and all its children now alive (PostgreSQL's backends)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        pid, ppid = int(entry.name), int(fields[1])
        if pid == root or ppid == root:
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def postgres_bin() -> Path:
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
    candidates = [Path(out.stdout.strip())] if out.returncode == 0 else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for d in candidates:
        if (d / "initdb").exists() and (d / "postgres").exists():
            return d
    sys.exit("PostgreSQL server programs not found: apt-get install postgresql")


def as_postgres():
    """preexec_fn: drop to the postgres user when root (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    user = pwd.getpwnam("postgres")

    def drop():
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)
    return drop


class Postgres:
    def __init__(self, work: Path, core: str):
        self.dir = work / "pg"
        self.dir.mkdir()
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
        self.port = free_port()
        bin_dir = postgres_bin()
        self.bin = bin_dir
        subprocess.run([bin_dir / "initdb", "-D", self.dir / "data", "-U", "postgres", "-A", "trust",
                        "--no-sync"], check=True, stdout=subprocess.DEVNULL, preexec_fn=as_postgres())
        self.proc = subprocess.Popen(
            ["taskset", "-c", core, bin_dir / "postgres", "-D", self.dir / "data", "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-k", self.dir, "-c", "fsync=off",
             "-c", "synchronous_commit=off", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=as_postgres())
        wait_for_port(self.port, self.proc)
        time.sleep(0.5)
        self.psql("CREATE DATABASE bench")

    def psql(self, sql: str, db: str = "postgres") -> None:
        for _ in range(50):
            r = subprocess.run([self.bin / "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U",
                                "postgres", "-d", db, "-Xq", "-c", sql], capture_output=True, text=True)
            if r.returncode == 0:
                return
            time.sleep(0.2)
        sys.exit(f"psql failed: {r.stderr}")

    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/bench"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def reset_ways(pg: Postgres, pg_reset: str) -> None:
    """Each way of resetting a session, priced by `bench/pg-reset` on one connection: server
    CPU µs per statement plus its reset, sent in one round trip as Hostel sends them."""
    out = subprocess.run(["taskset", "-c", "0", pg_reset,
                          f"host=127.0.0.1 port={pg.port} user=postgres dbname=bench",
                          "SELECT id, title, done, created_at FROM todos ORDER BY id", "20000"],
                         capture_output=True, text=True, check=True).stdout
    print("\n" + out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="hostel built before the hygiene")
    ap.add_argument("--after", required=True, help="hostel with it")
    ap.add_argument("--todo", required=True, help="the todo component")
    ap.add_argument("--redis-probe", required=True, help="the redis-probe test component")
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--pg-reset", help="bench/pg-reset, to price each way of resetting a session")
    args = ap.parse_args()
    if not shutil.which("redis-server"):
        sys.exit("redis-server is missing: apt-get install redis-server")

    work = Path(tempfile.mkdtemp(prefix="hostel-bench-hygiene-"))
    os.chmod(work, 0o755)  # the postgres user works below it
    pg = Postgres(work, "1")
    pg.psql("CREATE TABLE todos (id bigserial PRIMARY KEY, title text NOT NULL, done boolean NOT NULL "
            "DEFAULT false, created_at timestamptz NOT NULL DEFAULT now()); "
            "INSERT INTO todos (title) SELECT 'item ' || n FROM generate_series(1, 10) n", db="bench")
    redis_port = free_port()
    redis = subprocess.Popen(["taskset", "-c", "1", "redis-server", "--bind", "127.0.0.1", "--port",
                              str(redis_port), "--save", "", "--appendonly", "no", "--dir", str(work)],
                             stdout=subprocess.DEVNULL)
    wait_for_port(redis_port, redis)
    config = work / "hostel.toml"
    config.write_text(
        f'[server]\ncode_cache = "{work / "cache"}"\n'
        f'[defaults.limits]\nconcurrency = 1000\n'
        f'[pools.db]\nkind = "postgres"\nurl = "{pg.url()}"\nmax_connections = 16\n'
        f'[pools.cache]\nkind = "redis"\nurl = "redis://127.0.0.1:{redis_port}"\nmax_connections = 64\n'
        f'[grants]\npools = ["db", "cache"]\n'
        f'[apps.todo]\nroute = "/todo"\ncomponent = "{args.todo}"\n'
        f'[apps.tx]\nroute = "/tx"\ncomponent = "{args.redis_probe}"\n'
    )
    workloads = {"todo": ("/todo", pg.proc.pid), "redis-tx": ("/tx/hold?n=1", redis.pid)}
    builds = {"before": args.before, "after": args.after}
    results: dict = {}
    try:
        for workload, (path, db_pid) in workloads.items():
            for round_ in range(args.rounds):
                order = list(builds.items()) if round_ % 2 == 0 else list(reversed(builds.items()))
                for name, binary in order:
                    server = Server(name, lambda p, b=binary: [b, "serve", "--config", str(config), "--listen",
                                                               f"127.0.0.1:{p}", "--log", "warn"])
                    marks = {}
                    r = server.measure(args.connections, args.duration, True, path=path,
                                       before=lambda _p: marks.update(db=tree_cpu_seconds(db_pid)) or {},
                                       after=lambda _p: {"db": tree_cpu_seconds(db_pid) - marks["db"]})
                    r["host_us"] = r["cores"] * 1e6 / r["rps"]
                    r["db_us"] = r["db"] * 1e6 / (r["rps"] * args.duration)
                    results.setdefault((workload, name), []).append(r)
                    print(f"  {workload:9} {name:6} {r['rps']:>8.0f} req/s p99 {r['p99']:6.2f} ms "
                          f"non-2xx {r['bad']} hostel {r['host_us']:.0f} µs/req db {r['db_us']:.0f} µs/req "
                          f"{r['errors']}", file=sys.stderr, flush=True)
                    time.sleep(1)
        if args.pg_reset:
            reset_ways(pg, args.pg_reset)
    finally:
        redis.terminate()
        redis.wait()
        pg.stop()

    def median(workload, name, key):
        return statistics.median(r[key] for r in results[(workload, name)])

    print(f"\n{args.connections} connections, {args.rounds} rounds of {args.duration} s, medians")
    print("\n| workload | build | req/s | p50 ms | p99 ms | non-2xx | hostel CPU µs/req | database CPU µs/req |")
    print("|---|---|---|---|---|---|---|---|")
    for workload in workloads:
        for name in builds:
            bad = sum(r["bad"] for r in results[(workload, name)])
            print(f"| {workload} | {name} | {median(workload, name, 'rps'):.0f} | {median(workload, name, 'p50'):.2f} | "
                  f"{median(workload, name, 'p99'):.2f} | {bad} | {median(workload, name, 'host_us'):.0f} | "
                  f"{median(workload, name, 'db_us'):.0f} |")
        rps = median(workload, "after", "rps") / median(workload, "before", "rps")
        cpu = median(workload, "after", "host_us") / median(workload, "before", "host_us")
        db = median(workload, "after", "db_us") / median(workload, "before", "db_us")
        print(f"| {workload} | after ÷ before | {rps:.2f}× | | | | {cpu:.2f}× | {db:.2f}× |")


if __name__ == "__main__":
    main()
