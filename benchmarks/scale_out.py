"""Scale-out: HTTP earn against 1, 2 and 4 server workers on one PostgreSQL, beside pgbench.

    python benchmarks/scale_out.py [--workers 1,2,4] [--duration 10] [--connections 8]
                                   [--members 400] [--pool-size 5]
                                   [--pgbouncer] [--pgbouncer-pool 8]
                                   [--pgbench-clients 8] [--pgbench-scale 10]
                                   [--json benchmarks/results/scale_out.json]

Issue 20, item 5: "stateless workers scale out", measured. One fresh PostgreSQL database gets
the bakery program (benchmarks/run.py's `setup_bakery`) and `--members` members, each of whom
makes one sale first (their entry-tier placement happens once, not per earn). Then for every
worker count `patron serve --workers N` is started on it and driven by wrk (run.py's Lua script:
unique purchases, a random member each; an asyncio/httpx generator if wrk is missing) for
`--duration` seconds at `--connections` connections. pgbench TPC-B (`-c --pgbench-clients`) is
measured on the same PostgreSQL in the same run, before and after the HTTP points; the ratio
is earns/s ÷ the mean of the two.

`--pgbouncer` adds the same points through PgBouncer in transaction mode (the Debian package's
`pgbouncer` binary, started here as a user process on a free port with a generated config and
`--pgbouncer-pool` server connections). psycopg's automatic prepared statements do not survive
transaction pooling on PgBouncer < 1.21, so the server's URL carries `prepare_threshold=none`
(see docs/operations.md, "Connection pooling").

Each point prints earns/s, p50/p99, the ratio to TPC-B and to one worker, the server's CPU per
earn and the load average (the machine is shared: read the ratios, not the absolute figures).
Every point is checked: the earn entries written equal the 201 answers (plus at most one
request in flight per connection when wrk stops), and `patron check` is clean at the end.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any


def _load_run() -> ModuleType:
    """benchmarks/run.py, whose helpers (databases, server, wrk, pgbench, check) are shared."""
    name = "patron_bench_run"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("run.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bench = _load_run()
log = bench.log
# Per process, so a smoke test never drops a database another run is using.
DATABASE = f"patron_scale_out_{os.getpid()}"


class PgBouncer:
    """PgBouncer in transaction mode in front of one database, as a user process."""

    def __init__(self, database: str, pool_size: int) -> None:
        self.database, self.pool_size = database, pool_size
        self.port = bench.free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="patron-pgbouncer-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        # prepare_threshold=none: psycopg must not prepare statements on a pooled connection
        # that the next transaction may not get (PgBouncer < 1.21 does not track them).
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}" + os.environ.get(
            "BENCH_PGB_QUERY", "?prepare_threshold=none"
        )

    def start(self, timeout: float = 20) -> None:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            raise RuntimeError("pgbouncer not installed (apt-get install -y pgbouncer)")
        base, _, _ = bench.PG_ADMIN_URL.rpartition("/")
        host_port = base.rsplit("@", 1)[-1]
        host, _, port = host_port.partition(":")
        (self.dir / "users.txt").write_text('"postgres" ""\n')
        (self.dir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{self.database} = host={host} port={port or 5432} dbname={self.database}"
            " user=postgres\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.dir / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 500\n"
            "ignore_startup_parameters = extra_float_digits\n"
            "log_connections = 0\n"
            "log_disconnections = 0\n"
        )
        os.chmod(self.dir, 0o755)
        for child in self.dir.iterdir():
            os.chmod(child, 0o644)
        cmd = [binary]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            cmd += ["-u", "nobody"]
        self.proc = subprocess.Popen(
            [*cmd, str(self.dir / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=(self.dir / "stderr.txt").open("wb"),
            start_new_session=True,
        )
        import psycopg

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited: {self.log_text()}")
            try:
                direct = self.url.split("?", 1)[0]
                with psycopg.connect(direct, prepare_threshold=None, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                time.sleep(0.2)
        raise RuntimeError(f"pgbouncer did not come up: {self.log_text()}")

    def log_text(self) -> str:
        parts = []
        for name in ("stderr.txt",):
            path = self.dir / name
            if path.exists():
                parts.append(path.read_text()[-2000:])
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "safe shutdown": waits for clients to leave
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def pgbench(args: argparse.Namespace) -> dict[str, Any]:
    return dict(bench.pgbench_tps(args.duration, args.pgbench_clients, args.pgbench_scale))


def earn_point(
    server_url: str,
    check_url: str,
    setup: dict[str, Any],
    *,
    workers: int,
    args: argparse.Namespace,
    tag: str,
) -> dict[str, Any]:
    """One worker count: start the server, drive it, count what it wrote."""
    server = bench.Server(server_url, workers)
    try:
        # Workers start slowly on a busy machine: each imports the app and opens its pool.
        server.start(timeout=240)
        db = bench.Database(check_url)
        try:
            entries_before = bench.scalar(db, "SELECT count(*) FROM entries WHERE kind = 'earn'")
        finally:
            db.dispose()
        pids = server.worker_pids()
        cpu_before = sum(bench.cpu_seconds(pid) for pid in pids)
        load_before = bench.loadavg()
        load = bench.drive(server, setup, args.duration, args.connections, tag)
        cpu_used = sum(bench.cpu_seconds(pid) for pid in pids) - cpu_before
        load_after = bench.loadavg()
    finally:
        server.stop()
    db = bench.Database(check_url)
    try:
        entries = bench.scalar(db, "SELECT count(*) FROM entries WHERE kind = 'earn'")
    finally:
        db.dispose()
    in_flight = entries - entries_before - load["created"]
    return {
        "workers": workers,
        "earn_per_s": round(load["created"] / load["seconds"], 1),
        "p50_ms": round(load["p50_ms"], 2),
        "p99_ms": round(load["p99_ms"], 2),
        "created": load["created"],
        "other_status": load["other_status"],
        "socket_errors": load["socket_errors"],
        "first_error": load["first_error"],
        "load_generator": load["load_generator"],
        "server_cpu_ms_per_earn": round(1000 * cpu_used / max(load["created"], 1), 3),
        "loadavg_before_after": [load_before, load_after],
        "entries_minus_acknowledged": in_flight,
        "entries_match": 0 <= in_flight <= args.connections and load["other_status"] == 0,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    os.environ["PATRON_POOL_SIZE"] = str(args.pool_size)  # inherited by `patron serve`
    started = time.perf_counter()
    result: dict[str, Any] = {
        "machine": bench.machine(),
        "settings": {
            "duration_s": args.duration,
            "connections": args.connections,
            "members": args.members,
            "pool_size_per_worker": args.pool_size,
            "pgbouncer_pool": args.pgbouncer_pool if args.pgbouncer else None,
            "pgbench_clients": args.pgbench_clients,
            "pgbench_scale": args.pgbench_scale,
        },
        "loadavg_start": bench.loadavg(),
    }
    log("pgbench TPC-B (before) …")
    before = pgbench(args)
    log(f"  {before['tps']:.0f} TPS")
    url = bench.fresh_pg_database(DATABASE)
    bouncer: PgBouncer | None = None
    points: list[dict[str, Any]] = []
    try:
        bench.upgrade(url)
        setup = bench.setup_bakery(url, args.members)
        tag = f"so{int(time.time())}"
        server = bench.Server(url, 1)
        try:
            server.start(timeout=240)
            result["warm_up"] = bench.warm_members(server, setup, tag)
        finally:
            server.stop()
        routes: list[tuple[str, str]] = [("direct", url)]
        if args.pgbouncer:
            bouncer = PgBouncer(DATABASE, args.pgbouncer_pool)
            bouncer.start()
            routes.append(("pgbouncer", bouncer.url))
        for via, server_url in routes:
            for workers in args.workers:
                log(f"HTTP earn, {workers} worker(s), {via} …")
                point = earn_point(
                    server_url, url, setup, workers=workers, args=args, tag=f"{tag}-{via}{workers}"
                )
                point["via"] = via
                points.append(point)
                log(
                    f"  {point['earn_per_s']:.0f} earns/s  p50 {point['p50_ms']:.1f} ms  "
                    f"p99 {point['p99_ms']:.1f} ms  cpu {point['server_cpu_ms_per_earn']:.2f} "
                    f"ms/earn  load {point['loadavg_before_after']}"
                    + ("" if point["entries_match"] else f"  MISMATCH {point['first_error']}")
                )
        result["check"] = bench.patron_check(url)
    finally:
        if bouncer is not None:
            bouncer.stop()
        if not args.keep:
            bench.drop_pg_database(DATABASE)
    log("pgbench TPC-B (after) …")
    after = pgbench(args)
    log(f"  {after['tps']:.0f} TPS")
    tpcb = (before["tps"] + after["tps"]) / 2
    for point in points:
        one = (
            next(p["earn_per_s"] for p in points if p["via"] == point["via"] and p["workers"] == 1)
            if any(p["via"] == point["via"] and p["workers"] == 1 for p in points)
            else None
        )
        point["ratio_to_tpcb"] = round(point["earn_per_s"] / tpcb, 3)
        point["ratio_to_one_worker"] = round(point["earn_per_s"] / one, 2) if one else None
    result.update(
        points=points,
        pgbench_before=before,
        pgbench_after=after,
        tpcb_tps=round(tpcb, 1),
        loadavg_end=bench.loadavg(),
        correct=result["check"]["clean"] and all(p["entries_match"] for p in points),
        seconds=round(time.perf_counter() - started, 1),
    )
    return result


def table(result: dict[str, Any]) -> str:
    """The Markdown table docs/benchmarks.md keeps."""
    rows = [
        "| workers | via | earns/s | p50 ms | p99 ms | ÷ TPC-B | ÷ 1 worker | server CPU ms/earn "
        "| load avg (before → after) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in result["points"]:
        before, after = p["loadavg_before_after"]
        rows.append(
            f"| {p['workers']} | {p['via']} | {p['earn_per_s']:.0f} | {p['p50_ms']:.1f} "
            f"| {p['p99_ms']:.1f} | {p['ratio_to_tpcb']:.2f} | "
            f"{p['ratio_to_one_worker'] if p['ratio_to_one_worker'] is not None else '–'} "
            f"| {p['server_cpu_ms_per_earn']:.2f} | {before} → {after} |"
        )
    rows.append(
        f"\npgbench TPC-B (`-c {result['settings']['pgbench_clients']}`, scale "
        f"{result['settings']['pgbench_scale']}): {result['pgbench_before']['tps']:.0f} TPS "
        f"before, {result['pgbench_after']['tps']:.0f} after (ratio base "
        f"{result['tpcb_tps']:.0f}); correct: {result['correct']}"
    )
    return "\n".join(rows)


def _workers(value: str) -> list[int]:
    counts = [int(v) for v in value.split(",") if v.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("comma-separated worker counts, each at least 1")
    return counts


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workers", type=_workers, default=[1, 2, 4])
    parser.add_argument("--duration", type=float, default=10, help="seconds of load per point")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections")
    parser.add_argument("--members", type=int, default=400)
    parser.add_argument(
        "--pool-size", type=int, default=5, help="PATRON_POOL_SIZE for each server worker"
    )
    parser.add_argument("--pgbouncer", action="store_true", help="also run through PgBouncer")
    parser.add_argument(
        "--pgbouncer-pool", type=int, default=8, help="PgBouncer server connections"
    )
    parser.add_argument("--pgbench-clients", type=int, default=8)
    parser.add_argument("--pgbench-scale", type=int, default=10)
    parser.add_argument("--keep", action="store_true", help="keep the generated database")
    parser.add_argument("--json", type=Path, default=bench.RESULTS / "scale_out.json")
    return parser.parse_args(argv)


def _stop(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # run the finally blocks: server, PgBouncer, database


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    result = run(args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str))
    log("")
    log(table(result))
    log(f"\n{args.json} written in {result['seconds']} s")
    return 0 if result["correct"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
