"""Patron's benchmark suite: every figure beside a baseline measured in the same run.

    make bench            # = python benchmarks/run.py: every scenario at the issues' sizes
    python benchmarks/run.py [--scenarios earn_pg,memory,earn_sqlite,batch_pg,batch_sqlite,
                                          expiry,tiers,report]
                             [--duration S] [--batch-purchases N] [--dbs postgresql[,sqlite]]
                             [--lots 10000000] [--tier-members 1000000]
                             [--tier-entries 10000000] [--report-entries 10000000]
                             [--json benchmarks/results/latest.json]

Each scenario prints its figure, its baseline, the ratio, issue 15's target (met or not) and
whether the run was correct, and lands under its name in the one JSON file (written again after
every scenario, so a long run that stops keeps what it measured). The run ends with the targets
table (figure, baseline, ratio, met?), also under `targets` in the JSON.

Issue 15's targets, each a ratio to a baseline measured in the same run:

- HTTP earn on PostgreSQL ≥ 0.5 × pgbench TPC-B TPS, with p99 < 50 ms at the same concurrency;
- HTTP earn on SQLite ≥ 0.5 × a raw sqlite3 loop with the same PRAGMAs;
- batch ingestion on PostgreSQL ≥ 3 × TPC-B TPS;
- expiry ≤ 2 × the plain UPDATE of the same lots (on each engine measured);
- tier evaluation ≤ 2 × the plain GROUP BY over the same entries (on each engine measured);
- RSS per worker < 250 MB; the CPU the server spends per earn is reported (no target).

`PATRON_GROUP_COMMIT=true|false` and `PATRON_GROUP_COMMIT_WAIT_MS` in the environment are passed
on to the server (decision 0017).

Scenarios (see docs/benchmarks.md):

- `earn_pg`: the real server (`patron serve --workers 2`) on a fresh PostgreSQL database, driven
  by `wrk` with a Lua script making unique purchases (falls back to an asyncio/httpx load
  generator, and says so, if wrk is missing); baseline `pgbench -b tpcb-like` on the same
  PostgreSQL in the same run. Figure: earns/s and p50/p99; ratio earn/s ÷ TPC-B TPS.
- `earn_sqlite`: the same server (one worker: SQLite has one writer) on a SQLite file; baseline a raw `sqlite3` loop writing the same
  rows (purchase, lot, entry, account update) with the same PRAGMAs, one commit per earn.
- `expiry`: `--lots` lots already past their date (generated set-based), expired by
  `patron.ledger.jobs.run_expiry` (what `patron expire` runs); baseline one plain
  `UPDATE lots SET remaining = 0` over the same rows in a copy of the database. Runs
  benchmarks/jobs.py's `expiry_run`, once per engine in `--dbs`.
- `tiers`: `--tier-members` members over `--tier-entries` earn entries placed by
  `patron.tiers.jobs.evaluate` (what `patron tiers evaluate` runs); baselines a plain
  `SELECT … sum(qualifying) … GROUP BY account_id`, then that aggregate in one plain UPDATE.
  Runs benchmarks/jobs.py's `tiers_run`, once per engine in `--dbs`.
- `report`: the year's period report over `--report-entries` entries (PostgreSQL), read from the
  roll-up; baseline the plain `SELECT local day, kind, sum(points) … GROUP BY` over the raw
  entries. Runs benchmarks/reports_year.py in this process.
- `memory`: RSS of each server worker, idle (baseline) and at its peak under the earn_pg load.
- `batch_pg` / `batch_sqlite`: `POST …/purchases/batch` (5,000 sales a request, from
  `--batch-clients` uploaders on separate members) against the server; baselines pgbench TPC-B
  TPS (issue 15's target is 3×) and the raw sqlite3 loop.

Before each earn load every member makes one sale (through the batch endpoint): a member's first
sale places them in the bakery's entry tier, once, and the load measures the steady state. Each
HTTP figure also gives the CPU the server's workers used per earn (`server_cpu_ms_per_earn`),
which depends much less than earns/s on whatever else runs on the machine, and the load average.

After every scenario but `report` `patron check` must be clean, and the earn entries in the
database must match the 201 answers the load generator counted (plus at most one request in
flight per connection when the load generator stops); `tiers` also compares every member's tier
with the one the policy gives, and `report` requires the report's totals to equal the
baseline's sums. Job scenarios on SQLite land under `expiry_sqlite` and `tiers_sqlite`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy import text

from patron.audit.service import SYSTEM
from patron.auth.service import create_key
from patron.db.engine import Database
from patron.db.migrate import upgrade
from patron.ledger import service as ledger
from patron.members import service as members
from patron.members.schemas import MemberCreate
from patron.programs import service as programs
from patron.programs.schemas import StoreCreate
from patron.setup.service import create_program

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PATRON = str(BIN / "patron") if (BIN / "patron").exists() else "patron"
RESULTS = ROOT / "benchmarks" / "results"
PG_ADMIN_URL = os.environ.get(
    "PATRON_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
ALL_SCENARIOS = (
    "earn_pg",
    "memory",
    "earn_sqlite",
    "batch_pg",
    "batch_sqlite",
    "expiry",
    "tiers",
    "report",
)

# Targets from issue 15 (the report's is issue 5's; the tiers target is applied in jobs.py).
TARGET_EARN_SHARE_OF_TPCB = 0.5
TARGET_P99_MS = 50.0
TARGET_SQLITE_SHARE_OF_RAW = 0.5
TARGET_RSS_MB = 250.0
TARGET_BATCH_TIMES_TPCB = 3.0
TARGET_EXPIRY_TIMES_UPDATE = 2.0
TARGET_REPORT_S, TARGET_REPORT_ENTRIES = 1.0, 10_000_000

# One bakery sale: two lines, 13,000 KRW, 130 points at 10 per 1,000 KRW.
BASKET_LINES = [
    {"id": "1", "sku": "baguette", "category": "bread", "quantity": "2", "amount": "9000"},
    {"id": "2", "sku": "americano", "category": "drink", "quantity": "1", "amount": "4000"},
]
BASKET_AMOUNT = "13000"

WRK_SCRIPT = r"""
-- Unique purchases: external_id = <tag>-<thread>-<counter>, a random member each time.
local lo = tonumber(os.getenv("BENCH_MEMBER_LO"))
local hi = tonumber(os.getenv("BENCH_MEMBER_HI"))
local tag = os.getenv("BENCH_TAG")
local key = os.getenv("BENCH_KEY")
local path = os.getenv("BENCH_PATH")
local lines = os.getenv("BENCH_LINES")
local amount = os.getenv("BENCH_AMOUNT")
local threads = {}
local next_id = 0
counter = 0
created = 0
other = 0
first_other = ""

function setup(thread)
  next_id = next_id + 1
  thread:set("thread_id", next_id)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + thread_id)
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. key
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"external_id":"%s-%d-%d","member":{"id":%d},"amount":"%s","store":"mapo","lines":%s}',
    tag, thread_id, counter, math.random(lo, hi), amount, lines)
  return wrk.format("POST", path, nil, body)
end

function response(status, headers, body)
  if status == 201 then
    created = created + 1
  else
    other = other + 1
    if first_other == "" then first_other = status .. " " .. string.sub(body, 1, 200) end
  end
end

function done(summary, latency, requests)
  local c, o, sent, first = 0, 0, 0, ""
  for _, t in ipairs(threads) do
    c = c + t:get("created")
    o = o + t:get("other")
    sent = sent + t:get("counter")
    if first == "" then first = t:get("first_other") end
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH created=%d other=%d sent=%d requests=%d duration_us=%d p50_us=%d p90_us=%d " ..
    "p99_us=%d max_us=%d errors=%d\n",
    c, o, sent, summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout))
  if first ~= "" then io.write("BENCH first_error=" .. first .. "\n") end
end
"""


# ---------------------------------------------------------------------------------------------
# Small helpers


def ratio_of(figure: float, baseline: float) -> float | None:
    """figure ÷ baseline to four significant digits: a small-sized run's ratio (0.000484) stays
    above zero instead of rounding to 0.0."""
    return float(f"{figure / baseline:.4g}") if baseline else None


def log(message: str) -> None:
    print(message, flush=True)


def utcnow() -> datetime:
    return datetime.now(UTC)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pg_url(name: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


def pg_admin(*statements: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def fresh_pg_database(name: str, template: str | None = None) -> str:
    clause = f' TEMPLATE "{template}"' if template else ""
    pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"{clause}')
    return pg_url(name)


def drop_pg_database(name: str) -> None:
    pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def patron_cli(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATRON_LOG_LEVEL": "warning", "COLUMNS": "200"}
    return subprocess.run(
        [PATRON, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def patron_check(url: str) -> dict[str, Any]:
    """`patron check` as a user runs it: clean means exit code 0."""
    started = time.perf_counter()
    done = patron_cli("check", "--database-url", url)
    output = " ".join((done.stdout + done.stderr).split())
    return {
        "clean": done.returncode == 0,
        "output": output[:2000],
        "seconds": round(time.perf_counter() - started, 2),
    }


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return info


def scalar(db: Database, sql: str) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar() or 0)


# ---------------------------------------------------------------------------------------------
# The bakery program through patron's own services


def setup_bakery(url: str, members_count: int) -> dict[str, Any]:
    """Migrate, then the demo's bakery program (rules, tiers), N members with accounts, a key."""
    from patron.demo import BAKERY, BAKERY_RULES, BAKERY_TIERS
    from patron.rules import publishing
    from patron.tiers import service as tiers

    upgrade(url)
    db = Database(url)
    now = utcnow()
    try:
        with db.unit_of_work() as session:
            program = create_program(session, BAKERY, actor=SYSTEM, now=now)
            programs.create_store(
                session, program, StoreCreate(code="mapo", name="Mapo"), actor=SYSTEM, now=now
            )
            publishing.publish(session, program, BAKERY_RULES, actor=SYSTEM, now=now, note="bench")
            tiers.set_tiers(session, program, BAKERY_TIERS, actor=SYSTEM, now=now)
            ids: list[int] = []
            for i in range(members_count):
                member = members.create_member(
                    session,
                    MemberCreate(name=f"Bench {i}", program="bakery"),
                    program=program,
                    actor=SYSTEM,
                    now=now,
                )
                ledger.open_account(session, program_id=program.id, member_id=member.id, now=now)
                ids.append(member.id)
            _row, key = create_key(
                session, name="bench till", scopes=["pos"], actor=SYSTEM, now=now
            )
            program_id = program.id
    finally:
        db.dispose()
    if ids != list(range(ids[0], ids[0] + len(ids))):
        raise RuntimeError("member ids are not contiguous; the load script needs a range")
    return {"key": key, "member_lo": ids[0], "member_hi": ids[-1], "program_id": program_id}


# ---------------------------------------------------------------------------------------------
# The server and its workers


def _children(pid: int) -> list[int]:
    try:
        raw = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in raw.split()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (/proc/<pid>/stat, clock ticks)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def database_backends(url: str) -> list[int]:
    """The PostgreSQL backends connected to `url`'s database (the server's pooled connections),
    when they run on this machine: their CPU is the database's share of an earn."""
    if not url.startswith("postgresql"):
        return []
    db = Database(url)
    try:
        with db.engine.connect() as conn:
            pids = conn.execute(
                text(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalars()
            return [int(pid) for pid in pids if Path(f"/proc/{pid}").exists()]
    finally:
        db.dispose()


def loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return None


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Server:
    """`patron serve` as a subprocess in its own process group, on a free loopback port."""

    def __init__(self, url: str, workers: int) -> None:
        self.url, self.workers = url, workers
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix="patron-serve-", suffix=".log")[1])

    def start(self, timeout: float = 180) -> None:  # a loaded machine starts slowly
        env = {**os.environ, "PATRON_LOG_LEVEL": "warning"}
        self.proc = subprocess.Popen(
            [
                PATRON,
                "serve",
                "--database-url",
                self.url,
                "--workers",
                str(self.workers),
                "--port",
                str(self.port),
                "--host",
                "127.0.0.1",
            ],
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"patron serve exited: {self.log.read_text()}")
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=1) as answer:
                    if answer.status == 200 and len(self.worker_pids()) >= min(self.workers, 2):
                        # Every worker answers: warm each one up a little.
                        for _ in range(4 * self.workers):
                            urllib.request.urlopen(self.base + "/health", timeout=5).read()
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("patron serve did not come up")

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes (the server itself when it runs one worker)."""
        assert self.proc is not None
        if self.workers == 1:
            return [self.proc.pid]
        return [
            pid
            for pid in _children(self.proc.pid)
            if "spawn_main" in _cmdline(pid) and "resource_tracker" not in _cmdline(pid)
        ]

    def rss(self) -> dict[int, float]:
        return {pid: mb for pid in self.worker_pids() if (mb := rss_mb(pid)) is not None}

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # uvicorn finishes in-flight requests first
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


class RssSampler(threading.Thread):
    """Peak RSS per worker while the load runs."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.peak: dict[int, float] = {}
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            for pid, mb in self.server.rss().items():
                self.peak[pid] = max(mb, self.peak.get(pid, 0.0))


# ---------------------------------------------------------------------------------------------
# Load generators


def run_wrk(
    server: Server, setup: dict[str, Any], duration: float, connections: int, tag: str
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    env = {
        **os.environ,
        "BENCH_MEMBER_LO": str(setup["member_lo"]),
        "BENCH_MEMBER_HI": str(setup["member_hi"]),
        "BENCH_TAG": tag,
        "BENCH_KEY": setup["key"],
        "BENCH_PATH": "/api/v1/programs/bakery/purchases",
        "BENCH_LINES": json.dumps(BASKET_LINES, separators=(",", ":")),
        "BENCH_AMOUNT": BASKET_AMOUNT,
    }
    threads = max(1, min(2, connections))
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{int(duration)}s"]
    cmd += ["--timeout", "10s", "--latency", "-s", script.name, server.base]
    done = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=duration + 60, check=False
    )
    os.unlink(script.name)
    figures = dict(
        re.findall(r"(\w+)=(\d+)", "".join(re.findall(r"BENCH created=.*", done.stdout)))
    )
    if done.returncode != 0 or "created" not in figures:
        raise RuntimeError(f"wrk failed: {done.stdout}\n{done.stderr}")
    first_error = re.search(r"BENCH first_error=(.*)", done.stdout)
    seconds = int(figures["duration_us"]) / 1e6
    return {
        "load_generator": "wrk",
        "connections": connections,
        "threads": threads,
        "seconds": seconds,
        "created": int(figures["created"]),
        "other_status": int(figures["other"]),
        "sent": int(figures["sent"]),
        "socket_errors": int(figures["errors"]),
        "p50_ms": int(figures["p50_us"]) / 1000,
        "p90_ms": int(figures["p90_us"]) / 1000,
        "p99_ms": int(figures["p99_us"]) / 1000,
        "max_ms": int(figures["max_us"]) / 1000,
        "first_error": first_error.group(1) if first_error else None,
        "wrk_output": done.stdout,
    }


def run_httpx(
    server: Server, setup: dict[str, Any], duration: float, connections: int, tag: str
) -> dict[str, Any]:
    """The fallback load generator: asyncio + httpx, one task per connection."""
    import random

    import httpx

    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    first_error: list[str] = []
    headers = {"Authorization": f"Bearer {setup['key']}"}

    async def worker(n: int, client: httpx.AsyncClient, until: float) -> None:
        rng = random.Random(n)
        count = 0
        while time.monotonic() < until:
            count += 1
            body = {
                "external_id": f"{tag}-{n}-{count}",
                "member": {"id": rng.randint(setup["member_lo"], setup["member_hi"])},
                "amount": BASKET_AMOUNT,
                "store": "mapo",
                "lines": BASKET_LINES,
            }
            started = time.perf_counter()
            answer = await client.post("/api/v1/programs/bakery/purchases", json=body)
            latencies.append(time.perf_counter() - started)
            statuses[answer.status_code] += 1
            if answer.status_code != 201 and not first_error:
                first_error.append(f"{answer.status_code} {answer.text[:200]}")

    async def main() -> float:
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(
            base_url=server.base, headers=headers, limits=limits, timeout=10
        ) as client:
            started = time.monotonic()
            until = started + duration
            await asyncio.gather(*(worker(n, client, until) for n in range(connections)))
            return time.monotonic() - started

    seconds = asyncio.run(main())
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000

    return {
        "load_generator": "httpx (wrk not installed; this generator costs much more CPU)",
        "connections": connections,
        "threads": 1,
        "seconds": seconds,
        "created": statuses[201],
        "other_status": sum(v for k, v in statuses.items() if k != 201),
        "sent": sum(statuses.values()),
        "socket_errors": 0,
        "p50_ms": pct(0.5),
        "p90_ms": pct(0.9),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] * 1000,
        "first_error": first_error[0] if first_error else None,
    }


def drive(
    server: Server, setup: dict[str, Any], duration: float, connections: int, tag: str
) -> dict[str, Any]:
    if shutil.which("wrk"):
        return run_wrk(server, setup, duration, connections, tag)
    log("  wrk not found: falling back to the asyncio/httpx load generator (costs more CPU)")
    return run_httpx(server, setup, duration, connections, tag)


def profile_worker(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy record (collapsed stacks) on one worker, if py-spy is installed."""
    spy = shutil.which("py-spy") or (str(BIN / "py-spy") if (BIN / "py-spy").exists() else None)
    if spy is None:
        log("  py-spy not installed: no profile (pip install py-spy)")
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [spy, "record", "-d", str(int(seconds)), "-p", str(pid), "-f", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


PROFILE_GROUPS = (  # (label, substrings of a py-spy frame), matched from the leaf upwards
    ("database driver: waiting on / talking to the database", ("psycopg", "sqlite3", "pysqlite")),
    ("sqlalchemy: ORM, unit-of-work flush, SQL compile, rows", ("sqlalchemy/",)),
    ("pydantic: validation and serialisation", ("pydantic",)),
    ("json encode/decode", ("json/", "jsonable_encoder")),
    ("patron rules engine", ("patron/rules/",)),
    ("patron tiers", ("patron/tiers/",)),
    ("patron auth / api keys", ("patron/auth/", "patron/http.py")),
    ("patron ledger (purchases, views, service)", ("patron/",)),
    ("fastapi/starlette: routing, dependencies", ("fastapi/", "starlette/")),
    ("uvicorn/httptools/h11: HTTP parsing, event loop", ("uvicorn/", "h11", "httptools")),
    # uvloop runs in C: py-spy sees its loop as this frame, idle or parsing HTTP alike.
    ("event loop in C (uvloop: waiting for I/O or running C callbacks)", ("runners.py",)),
    ("anyio threadpool hand-off / asyncio", ("anyio/", "asyncio/", "concurrent/")),
)


def summarise_profile(path: Path, top: int = 12) -> dict[str, Any]:
    """Where a worker's samples go, from py-spy's collapsed ("raw") output.

    Each sample is charged to one group: the first group matching a frame, walking from the
    innermost frame outwards (so a psycopg wait under an ORM flush counts as database time).
    Idle samples (threads parked in a queue or in the event loop's select) are left out.
    """
    groups: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        leaf = frames[-1]
        # py-spy 0.4 names frames Class.method: match on the substring.
        if any(
            mark in leaf
            for mark in (
                "select (selectors.py",
                "wait (threading.py",
                "_worker (concurrent",
                "get (queue.py",
                "_recv (multiprocessing/connection.py",  # uvicorn's supervisor ping thread
            )
        ):
            idle += n
            continue
        total += n
        for name in set(frames):
            inclusive[name] += n
        for frame in reversed(frames):
            label = next((g for g, keys in PROFILE_GROUPS if any(k in frame for k in keys)), None)
            if label is not None:
                groups[label] += n
                break
        else:
            groups["other"] += n
    if not total:
        return {"samples": 0, "idle_samples": idle}
    return {
        "samples": total,
        "idle_samples": idle,
        "groups_pct": {g: round(100 * c / total, 1) for g, c in groups.most_common()},
        "top_inclusive_pct": [
            [name, round(100 * c / total, 1)] for name, c in inclusive.most_common(top)
        ],
    }


def statements_per_earn(url: str, setup: dict[str, Any], earns: int = 30) -> dict[str, Any]:
    """One worker's cost of an earn without the network: SQL statements and serial ms.

    Runs the real app in-process (Starlette's TestClient) on the benchmark database, counts the
    statements SQLAlchemy sends per earn (each one a round trip to the database, plus BEGIN and
    COMMIT) and times earns one after another. Members have earned before (steady state).
    """
    from fastapi.testclient import TestClient
    from sqlalchemy import event

    from patron.app import create_app

    db = Database(url)
    seen: list[str] = []
    spent: Counter[str] = Counter()
    clock = time.perf_counter

    @event.listens_for(db.engine, "before_cursor_execute")
    def _before(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(" ".join(statement.split()[:3]))
        _conn.info["bench_t0"] = clock()

    @event.listens_for(db.engine, "after_cursor_execute")
    def _after(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        spent[" ".join(statement.split()[:3])] += clock() - _conn.info.pop("bench_t0", clock())

    # The hot path sends its first two statements on the driver, in one psycopg pipeline (one
    # round trip, with BEGIN): count what psycopg is asked to run, not only what SQLAlchemy
    # sees, and the round trips (a pipeline's statements travel together).
    driver_seen: list[str] = []
    pipelines = [0]
    in_pipeline = [0]  # statements sent inside a pipeline
    restore: list[Any] = []
    if db.dialect == "postgresql":
        import psycopg

        cursor_execute = psycopg.Cursor.execute
        pipeline = psycopg.Connection.pipeline

        def counted_execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            driver_seen.append(" ".join(str(query).split()[:3]))
            if getattr(self.connection, "_pipeline", None) is not None:
                in_pipeline[0] += 1
            return cursor_execute(self, query, *args, **kwargs)

        def counted_pipeline(self: Any) -> Any:
            pipelines[0] += 1
            return pipeline(self)

        psycopg.Cursor.execute = counted_execute  # type: ignore[method-assign]
        psycopg.Connection.pipeline = counted_pipeline  # type: ignore[method-assign]
        restore = [
            lambda: setattr(psycopg.Cursor, "execute", cursor_execute),
            lambda: setattr(psycopg.Connection, "pipeline", pipeline),
        ]
    headers = {"Authorization": f"Bearer {setup['key']}"}
    span = setup["member_hi"] - setup["member_lo"] + 1
    try:
        with TestClient(create_app(db=db)) as client:

            def earn(i: int) -> None:
                body = {
                    "external_id": f"serial-{time.time_ns()}-{i}",
                    "member": {"id": setup["member_lo"] + i % span},
                    "amount": BASKET_AMOUNT,
                    "store": "mapo",
                    "lines": BASKET_LINES,
                }
                answer = client.post(
                    "/api/v1/programs/bakery/purchases", json=body, headers=headers
                )
                if answer.status_code != 201:
                    raise RuntimeError(f"serial earn failed: {answer.status_code} {answer.text}")

            for i in range(5):
                earn(i)
            seen.clear()
            spent.clear()
            driver_seen.clear()
            pipelines[0] = in_pipeline[0] = 0
            started = time.perf_counter()
            for i in range(earns):
                earn(i)
            seconds = time.perf_counter() - started
            statements = list(driver_seen) if restore else list(seen)
            piped, piped_statements = pipelines[0], in_pipeline[0]
            in_sql = dict(spent)
            seen.clear()
            driver_seen.clear()
            earn(0)
            one = list(driver_seen) if restore else list(seen)
    finally:
        for undo in restore:
            undo()
        db.dispose()
    return {
        "earns": earns,
        # SQL statements per earn, BEGIN/COMMIT not included (on SQLite BEGIN IMMEDIATE is).
        "statements_per_earn": round(len(statements) / earns, 2),
        # Round trips to PostgreSQL per earn, BEGIN and COMMIT included: a pipeline's
        # statements and the BEGIN before them travel together; every other statement is one.
        "round_trips_per_earn": round(
            (len(statements) - piped_statements + piped + max(earns - piped, 0)) / earns + 1, 2
        )
        if restore
        else None,
        "serial_ms_per_earn": round(1000 * seconds / earns, 2),
        # Time inside cursor.execute (round trip + the database's own work), per earn, for the
        # statements SQLAlchemy sends (the pipelined pair is not timed here).
        "sql_ms_per_earn": round(1000 * sum(in_sql.values()) / earns, 2),
        "slowest_statements_ms_per_earn": {
            k: round(1000 * v / earns, 3)
            for k, v in sorted(in_sql.items(), key=lambda kv: -kv[1])[:6]
        },
        "one_earn_statements": one,
    }


# ---------------------------------------------------------------------------------------------
# earn via HTTP


def warm_members(server: Server, setup: dict[str, Any], tag: str) -> dict[str, Any]:
    """One sale per member before the measured load, through the batch endpoint: a member's
    first sale places them in the entry tier (an immediate upgrade: history row, event, audit
    record), which happens once per member, not per earn. Steady state is what is measured."""
    lo, hi = setup["member_lo"], setup["member_hi"]
    sales = [
        {
            "external_id": f"{tag}-warm-{m}",
            "member": {"id": m},
            "amount": BASKET_AMOUNT,
            "store": "mapo",
            "lines": BASKET_LINES,
        }
        for m in range(lo, hi + 1)
    ]
    started = time.perf_counter()
    created = 0
    endpoint = server.base + "/api/v1/programs/bakery/purchases/batch"
    for k in range(0, len(sales), BATCH_SIZE):
        status, answer = _post_json(
            endpoint, {"purchases": sales[k : k + BATCH_SIZE]}, setup["key"]
        )
        if status != 200:
            raise RuntimeError(f"warm-up batch failed: {status} {answer!r}"[:500])
        created += answer["created"]
    return {"sales": created, "seconds": round(time.perf_counter() - started, 2)}


def drain_outbox(db: Database, timeout: float = 300) -> float:
    """Seconds until every event in the outbox has been dispatched (or `timeout`)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if not scalar(db, "SELECT count(*) FROM domain_events WHERE dispatched = false"):
            break
        time.sleep(0.5)
    return round(time.perf_counter() - started, 1)


def earn_over_http(
    url: str,
    setup: dict[str, Any],
    *,
    duration: float,
    connections: int,
    workers: int,
    tag: str,
    profile: Path | None,
) -> dict[str, Any]:
    server = Server(url, workers)
    server.start()
    try:
        idle = server.rss()
        warm = warm_members(server, setup, tag)
        db = Database(url)
        try:
            # The warm-up's events (a sale and a tier move per member) are dispatched by the
            # server's delivery loop; measured with that backlog, the load would measure it too.
            warm["outbox_drained_s"] = drain_outbox(db)
            entries_before = scalar(db, "SELECT count(*) FROM entries WHERE kind = 'earn'")
            bought_before = scalar(db, "SELECT count(*) FROM purchases")
        finally:
            db.dispose()
        sampler = RssSampler(server)
        sampler.start()
        spy = None
        if profile is not None and server.worker_pids():
            seconds = max(2, min(10, int(duration) - 2))
            spy = profile_worker(server.worker_pids()[0], seconds, profile)
        pids = server.worker_pids()
        backends = database_backends(url)
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        db_cpu_before = {pid: cpu_seconds(pid) for pid in backends}
        load_before = loadavg()
        load = drive(server, setup, duration, connections, tag)
        cpu_used = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        # A backend that ended meanwhile reads 0: left out rather than counted negative.
        db_cpu_used = sum(
            max(cpu_seconds(pid) - before, 0.0) for pid, before in db_cpu_before.items()
        )
        load_after = loadavg()
        sampler.stopped.set()
        sampler.join()
        after = server.rss()
        if spy is not None:
            spy.wait(timeout=60)
    finally:
        server.stop()
    db = Database(url)
    try:
        entries = scalar(db, "SELECT count(*) FROM entries WHERE kind = 'earn'") - entries_before
        bought = scalar(db, "SELECT count(*) FROM purchases") - bought_before
    finally:
        db.dispose()
    in_flight = entries - load["created"]
    out = {
        **{k: v for k, v in load.items() if k != "wrk_output"},
        "workers": workers,
        "warm_up": warm,
        "earn_per_s": load["created"] / load["seconds"],
        # CPU the server's workers used per acknowledged earn (the profile, if any, adds some):
        # what the load-independent cost of an earn is, whatever else runs on the machine.
        "server_cpu_ms_per_earn": round(1000 * cpu_used / max(load["created"], 1), 3),
        # The same for the database's backends serving the server (PostgreSQL on this
        # machine; connections opened during the load are not counted).
        "database_cpu_ms_per_earn": round(1000 * db_cpu_used / max(load["created"], 1), 3)
        if backends
        else None,
        "database_backends": len(backends),
        "loadavg_before_after": [load_before, load_after],
        # Counted from after the warm-up.
        "earn_entries_in_db": entries,
        "purchases_in_db": bought,
        # Requests wrk sent but had no answer for when it stopped still commit on the server.
        "entries_minus_acknowledged": in_flight,
        "entries_match": 0 <= in_flight <= connections and bought == entries,
        "rss_idle_mb": {str(k): round(v, 1) for k, v in idle.items()},
        "rss_peak_mb": {str(k): round(v, 1) for k, v in sampler.peak.items()},
        "rss_after_mb": {str(k): round(v, 1) for k, v in after.items()},
    }
    if profile is not None and profile.exists():
        out["profile"] = {"file": str(profile), **summarise_profile(profile)}
    out["serial"] = statements_per_earn(url, setup)
    out["check"] = patron_check(url)  # after every write of the scenario
    return out


PGBENCH_CONN = ["-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]


def run_pgbench(
    workload: list[str], database: str, *, duration: float, clients: int
) -> dict[str, Any]:
    """pgbench running `workload` (its -b or -f options) against `database` with `clients`
    clients (at most two threads) for `duration` seconds: its TPS, latency and failures."""
    pgbench = shutil.which("pgbench") or "/usr/bin/pgbench"
    threads = max(1, min(2, clients))
    ran = subprocess.run(
        [
            pgbench,
            *workload,
            "-c",
            str(clients),
            "-j",
            str(threads),
            "-T",
            str(int(duration)),
            *PGBENCH_CONN,
            database,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 120,
        check=False,
    )
    found = re.search(r"tps = ([\d.]+) \(without initial connection time\)", ran.stdout)
    if ran.returncode != 0 or found is None:
        raise RuntimeError(f"pgbench {' '.join(workload)} failed: {ran.stdout}\n{ran.stderr}")
    latency = re.search(r"latency average = ([\d.]+) ms", ran.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", ran.stdout)
    return {
        "tps": float(found.group(1)),
        "clients": clients,
        "threads": threads,
        "seconds": int(duration),
        "failed": int(failed.group(1)) if failed else 0,
        "latency_avg_ms": float(latency.group(1)) if latency else None,
    }


def pgbench_tps(duration: float, clients: int, scale: int) -> dict[str, Any]:
    pgbench = shutil.which("pgbench") or "/usr/bin/pgbench"
    name = "patron_pgbench"
    fresh_pg_database(name)
    try:
        init = subprocess.run(
            [pgbench, "-i", "-q", "-s", str(scale), *PGBENCH_CONN, name],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if init.returncode != 0:
            raise RuntimeError(f"pgbench -i failed: {init.stderr}")
        result = run_pgbench(["-b", "tpcb-like"], name, duration=duration, clients=clients)
    finally:
        drop_pg_database(name)
    return {**result, "scale": scale}


# `k` sales' rows as the pipeline writes them, in one statement: the ids drawn first, then per
# sale a purchase, its lot, its earn entry and its points.earned event, for members spread over
# the range from `offset` on, and each account's totals moved once (its row locked). The values
# are those of a sale the server recorded (bench_earn_row), so rows, indexes, foreign keys and
# JSON sizes are the same. The earn floor runs it with k = 1 under pgbench, the batch floor
# with k = 5,000.
SALE_ROWS_SQL = """
WITH s AS (
  SELECT nextval('purchases_id_seq') AS purchase_id, nextval('lots_id_seq') AS lot_id,
    nextval('entries_id_seq') AS entry_id, a.id AS account_id, a.member_id
  FROM generate_series(1, :k) AS g
  JOIN accounts a ON a.program_id = :program
    AND a.member_id = :lo + (CAST(g AS BIGINT) * 7919 + :offset) % :span),
t AS (SELECT * FROM bench_earn_row),
p AS (INSERT INTO purchases (id, program_id, account_id, external_id, store_id, channel,
  payment_method, occurred_at, created_at, amount_minor, lines, points_earned, points_spent,
  refunded_minor, reversed_points, restored_points, request_hash, response, earn_entry_id)
  SELECT s.purchase_id, :program, s.account_id, :tag || '-' || s.purchase_id, t.store_id, t.channel,
  t.payment_method, now(), now(), t.amount_minor, t.lines, t.points_earned, 0, 0, 0, 0,
  t.request_hash, t.response, s.entry_id FROM s, t),
l AS (INSERT INTO lots (id, account_id, points, remaining, earned_at, pending, expires_at)
  SELECT s.lot_id, s.account_id, t.points_earned, t.points_earned, now(), false,
  now() + interval '1 year' FROM s, t),
e AS (INSERT INTO entries (id, program_id, account_id, kind, points, qualifying, lot_id,
  purchase_id, occurred_at, created_at, reason, store_id, channel, actor, rule_version,
  breakdown, details)
  SELECT s.entry_id, :program, s.account_id, 'earn', t.points_earned, t.qualifying, s.lot_id,
  s.purchase_id, now(), now(), t.reason, t.store_id, t.channel, t.actor, t.rule_version,
  t.breakdown, t.details FROM s, t),
v AS (INSERT INTO domain_events (program_id, member_id, entry_id, kind, payload, at,
  dispatched) SELECT :program, s.member_id, s.entry_id, t.kind, t.payload, now(), false
  FROM s, t ORDER BY s.entry_id)
UPDATE accounts SET available = available + c.n * t.points_earned,
  earned = earned + c.n * t.points_earned
FROM (SELECT account_id, count(*) AS n FROM s GROUP BY account_id) AS c, t
WHERE accounts.id = c.account_id
"""


def earn_row_template(url: str) -> None:
    """`bench_earn_row`: the values of the last sale the server recorded (its purchase, earn
    entry and event), which the floors below write again for other members."""
    db = Database(url)
    try:
        with db.engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS bench_earn_row"))
            conn.execute(
                text(
                    "CREATE TABLE bench_earn_row AS SELECT p.store_id, p.channel,"
                    " p.payment_method, p.amount_minor, p.lines, p.points_earned,"
                    " p.request_hash, p.response, e.qualifying, e.reason, e.actor,"
                    " e.rule_version, e.breakdown, e.details, v.kind, v.payload"
                    " FROM purchases p JOIN entries e ON e.purchase_id = p.id"
                    " AND e.kind = 'earn' JOIN domain_events v ON v.entry_id = e.id"
                    " ORDER BY p.id DESC LIMIT 1"
                )
            )
            # One row: without statistics the planner guesses 60, costs the cross joins in
            # millions of rows and compiles the statement with JIT (0.3 s a transaction).
            conn.execute(text("ANALYZE bench_earn_row"))
    finally:
        db.dispose()


def earn_rows_tps(url: str, setup: dict[str, Any], duration: float, clients: int) -> dict[str, Any]:
    """What limits earn_pg from below: pgbench writing one sale's rows a transaction
    (SALE_ROWS_SQL, k = 1) for a random member, at the same concurrency on the benchmark's
    database, with no application in between."""
    earn_row_template(url)
    span = setup["member_hi"] - setup["member_lo"] + 1
    folder = Path(tempfile.mkdtemp(prefix="patron-earn-rows-"))
    script = folder / "earn_rows.sql"
    variables = {"k": 1, "program": setup["program_id"], "lo": setup["member_lo"], "span": span}
    script.write_text(
        "".join(f"\\set {name} {value}\n" for name, value in variables.items())
        + f"\\set offset random(0, {span - 1})\n"
        # pgbench's variables hold numbers: the external ids' prefix goes in as text.
        + SALE_ROWS_SQL.strip().replace(":tag", "'earn-floor'")
        + ";\n"
    )
    try:
        return run_pgbench(
            ["-n", "-f", str(script)], url.rsplit("/", 1)[-1], duration=duration, clients=clients
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def scenario_earn_pg(args: argparse.Namespace) -> dict[str, Any]:
    name = "patron_bench"
    url = fresh_pg_database(name)
    done = patron_cli("db", "upgrade", "--database-url", url)
    if done.returncode != 0:
        raise RuntimeError(f"patron db upgrade failed: {done.stdout}{done.stderr}")
    setup = setup_bakery(url, args.members)
    profile = args.profile_dir / "earn_pg.raw.txt" if args.profile_dir else None
    http = earn_over_http(
        url,
        setup,
        duration=args.duration,
        connections=args.connections,
        workers=args.workers,
        tag=f"pg{int(time.time())}",
        profile=profile,
    )
    rows = earn_rows_tps(url, setup, args.duration, args.pgbench_clients)
    if not args.keep:
        drop_pg_database(name)
    tpcb = pgbench_tps(args.duration, args.pgbench_clients, args.pgbench_scale)
    ratio = http["earn_per_s"] / tpcb["tps"]
    return {
        "figure": round(http["earn_per_s"], 1),
        "unit": "earns/s",
        "baseline": tpcb["tps"],
        "baseline_name": "pgbench tpcb-like TPS",
        "ratio": round(ratio, 3),
        "p50_ms": http["p50_ms"],
        "p99_ms": http["p99_ms"],
        "target": f"≥ {TARGET_EARN_SHARE_OF_TPCB:.0%} of TPC-B TPS with p99 < {TARGET_P99_MS:g} ms",
        "target_met": ratio >= TARGET_EARN_SHARE_OF_TPCB and http["p99_ms"] < TARGET_P99_MS,
        "correct": http["check"]["clean"] and http["entries_match"],
        "http": http,
        "pgbench": tpcb,
        # What limits it from below: the database writing an earn's rows, no application.
        "earn_rows": rows,
        "earn_rows_share_of_tpcb": round(rows["tps"] / tpcb["tps"], 3),
        "share_of_earn_rows": round(http["earn_per_s"] / rows["tps"], 3),
    }


# ---------------------------------------------------------------------------------------------
# batch ingestion via HTTP


BATCH_SIZE = 5_000  # purchases per request: the endpoint's maximum


def _post_json(url: str, body: Any, key: str, timeout: float = 600) -> tuple[int, Any]:
    data = json.dumps(body, separators=(",", ":")).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()[:500]


def batch_over_http(
    url: str, setup: dict[str, Any], *, purchases: int, clients: int, workers: int, tag: str
) -> dict[str, Any]:
    """`purchases` sales in requests of BATCH_SIZE, from `clients` uploaders at once (each on
    its own members, as separate tills or stores would be), against `patron serve`."""
    import random

    lo, hi = setup["member_lo"], setup["member_hi"]
    span = (hi - lo + 1) // clients
    per_client = -(-purchases // clients)
    bodies: list[list[dict[str, Any]]] = []
    for c in range(clients):
        rng = random.Random(c)
        sales = [
            {
                "external_id": f"{tag}-{c}-{i}",
                "member": {"id": lo + c * span + rng.randrange(span)},
                "amount": BASKET_AMOUNT,
                "store": "mapo",
                "lines": BASKET_LINES,
            }
            for i in range(per_client)
        ]
        bodies.append(
            [{"purchases": sales[k : k + BATCH_SIZE]} for k in range(0, len(sales), BATCH_SIZE)]
        )
    server = Server(url, workers)
    server.start()
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    endpoint = server.base + "/api/v1/programs/bakery/purchases/batch"
    try:
        pids = server.worker_pids()
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        load_before = loadavg()

        def upload(requests: list[dict[str, Any]]) -> None:
            for body in requests:
                status, answer = _post_json(endpoint, body, setup["key"])
                if status != 200:
                    errors.append(f"{status} {answer!r}"[:300])
                else:
                    results.append(answer)

        started = time.perf_counter()
        threads = [threading.Thread(target=upload, args=(b,)) for b in bodies]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - started
        cpu_used = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        load_after = loadavg()
    finally:
        server.stop()
    created = sum(r["created"] for r in results)
    item_errors = sum(r["errors"] for r in results)
    db = Database(url)
    try:
        entries = scalar(db, "SELECT count(*) FROM entries WHERE kind = 'earn'")
        bought = scalar(db, "SELECT count(*) FROM purchases")
    finally:
        db.dispose()
    return {
        "purchases": purchases,
        "clients": clients,
        "batch_size": BATCH_SIZE,
        "workers": workers,
        "seconds": round(seconds, 3),
        "created": created,
        "item_errors": item_errors,
        "request_errors": errors[:3],
        "purchases_per_s": created / seconds if seconds else 0.0,
        "server_cpu_ms_per_purchase": round(1000 * cpu_used / max(created, 1), 3),
        "loadavg_before_after": [load_before, load_after],
        "earn_entries_in_db": entries,
        "purchases_in_db": bought,
        "entries_match": entries == created == bought and not errors and not item_errors,
        "check": patron_check(url),
    }


def batch_rows_floor(
    url: str, setup: dict[str, Any], purchases: int, chunk: int = BATCH_SIZE
) -> dict[str, Any]:
    """What limits batch_pg from below: `purchases` sales' rows (SALE_ROWS_SQL) in chunks of
    the endpoint's size, one statement and one transaction a chunk, with no application in
    between."""
    earn_row_template(url)
    span = setup["member_hi"] - setup["member_lo"] + 1
    db = Database(url)
    try:
        scalar(db, "SELECT 1")
        started = time.perf_counter()
        done = 0
        while done < purchases:
            k = min(chunk, purchases - done)
            with db.engine.begin() as conn:
                conn.execute(
                    text(SALE_ROWS_SQL),
                    {
                        "k": k,
                        "program": setup["program_id"],
                        "lo": setup["member_lo"],
                        "span": span,
                        "offset": done,
                        "tag": f"batch-floor-{done}",
                    },
                )
            done += k
        seconds = time.perf_counter() - started
        written = scalar(
            db, "SELECT count(*) FROM purchases WHERE external_id LIKE 'batch-floor-%'"
        )
    finally:
        db.dispose()
    return {
        "purchases": purchases,
        "written": written,
        "chunk": chunk,
        "seconds": round(seconds, 3),
        "purchases_per_s": round(purchases / seconds, 1) if seconds else None,
    }


def scenario_batch_pg(args: argparse.Namespace, tpcb: dict[str, Any] | None) -> dict[str, Any]:
    name = "patron_bench_batch"
    url = fresh_pg_database(name)
    try:
        done = patron_cli("db", "upgrade", "--database-url", url)
        if done.returncode != 0:
            raise RuntimeError(f"patron db upgrade failed: {done.stdout}{done.stderr}")
        setup = setup_bakery(url, args.members)
        run = batch_over_http(
            url,
            setup,
            purchases=args.batch_purchases,
            clients=args.batch_clients,
            workers=args.workers,
            tag=f"bpg{int(time.time())}",
        )
        floor = batch_rows_floor(url, setup, args.batch_purchases)
    finally:
        if not args.keep:
            drop_pg_database(name)
    if tpcb is None:
        tpcb = pgbench_tps(args.duration, args.pgbench_clients, args.pgbench_scale)
    ratio = run["purchases_per_s"] / tpcb["tps"]
    return {
        "figure": round(run["purchases_per_s"], 1),
        "unit": "purchases/s",
        "baseline": tpcb["tps"],
        "baseline_name": "pgbench tpcb-like TPS",
        "ratio": round(ratio, 3),
        "target": f"≥ {TARGET_BATCH_TIMES_TPCB:g} × TPC-B TPS",
        "target_met": ratio >= TARGET_BATCH_TIMES_TPCB,
        "correct": run["check"]["clean"]
        and run["entries_match"]
        and floor["written"] == args.batch_purchases,
        "batch": run,
        "pgbench": tpcb,
        # What limits it from below: the database writing the same sales' rows set-based.
        "batch_rows": floor,
        "batch_rows_times_tpcb": round(floor["purchases_per_s"] / tpcb["tps"], 3),
        "share_of_batch_rows": round(run["purchases_per_s"] / floor["purchases_per_s"], 3),
    }


def scenario_batch_sqlite(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="patron-bench-batch-"))
    try:
        served, raw = workdir / "served.db", workdir / "raw.db"
        url = f"sqlite:///{served}"
        setup = setup_bakery(url, args.members)
        _checkpoint(served)
        shutil.copy(served, raw)
        run = batch_over_http(
            url,
            setup,
            purchases=args.batch_purchases,
            clients=1,  # one writer at a time: a second uploader only waits
            workers=1,
            tag=f"bsq{int(time.time())}",
        )
        loop = raw_sqlite_loop(raw, duration=args.duration)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ratio = run["purchases_per_s"] / loop["earn_per_s"]
    return {
        "figure": round(run["purchases_per_s"], 1),
        "unit": "purchases/s",
        "baseline": round(loop["earn_per_s"], 1),
        "baseline_name": "raw sqlite3 loop, same rows and PRAGMAs, one commit per earn",
        "ratio": round(ratio, 3),
        "target": "none for SQLite (the issue's batch target is for PostgreSQL)",
        "target_met": None,
        "correct": run["check"]["clean"] and run["entries_match"],
        "batch": run,
        "raw_loop": loop,
    }


# ---------------------------------------------------------------------------------------------
# earn via HTTP on SQLite, against a raw sqlite3 loop


def _sqlite_time(value: datetime) -> str:
    """How SQLAlchemy stores a UTCDateTime in SQLite (naive UTC, ISO with a space)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


def sqlite_connect(path: Path) -> sqlite3.Connection:
    """A connection with patron's PRAGMAs (src/patron/db/engine.py)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def raw_sqlite_loop(
    path: Path, *, duration: float | None = None, iterations: int | None = None
) -> dict[str, Any]:
    """The rows one earn writes, by hand: one transaction per earn, as patron does.

    BEGIN IMMEDIATE; INSERT purchase; INSERT lot; INSERT entry; INSERT outbox event; UPDATE
    purchase (earn entry, stored answer); UPDATE account (available, earned); COMMIT.
    """
    import random

    conn = sqlite_connect(path)
    program_id, store_id = conn.execute(
        "SELECT p.id, s.id FROM programs p JOIN stores s ON s.program_id = p.id "
        "WHERE p.code = 'bakery'"
    ).fetchone()
    members = dict(conn.execute("SELECT id, member_id FROM accounts ORDER BY id").fetchall())
    accounts = list(members)
    rng = random.Random(7)
    points = 130
    lines = json.dumps(
        [
            {**line, "amount_minor": int(line["amount"]), "points_earned": p, "points_spent": 0}
            for line, p in zip(BASKET_LINES, (90, 40), strict=True)
        ]
    )
    answer_template = {
        "amount": BASKET_AMOUNT,
        "points_earned": points,
        "points_spent": 0,
        "entries": [{"kind": "earn", "points": points, "breakdown": [{"rule": "base"}]}],
        "totals": {"available": 0, "pending": 0, "debt": 0, "balance": 0},
    }
    count = 0
    started = time.perf_counter()
    deadline = started + duration if duration is not None else None
    while True:
        if iterations is not None and count >= iterations:
            break
        if deadline is not None and time.perf_counter() >= deadline:
            break
        count += 1
        now = utcnow()
        stamp = _sqlite_time(now)
        expires = _sqlite_time(now + timedelta(days=365))
        account = rng.choice(accounts)
        external = f"raw-{count}"
        conn.execute("BEGIN IMMEDIATE")
        purchase_id = conn.execute(
            "INSERT INTO purchases (program_id, account_id, external_id, store_id, channel, "
            "occurred_at, created_at, amount_minor, lines, points_earned, points_spent, "
            "refunded_minor, reversed_points, restored_points, request_hash) "
            "VALUES (?, ?, ?, ?, 'pos', ?, ?, 13000, ?, ?, 0, 0, 0, 0, ?)",
            (program_id, account, external, store_id, stamp, stamp, lines, points, "0" * 64),
        ).lastrowid
        lot_id = conn.execute(
            "INSERT INTO lots (account_id, points, remaining, earned_at, pending, expires_at) "
            "VALUES (?, ?, ?, ?, 0, ?)",
            (account, points, points, stamp, expires),
        ).lastrowid
        entry_id = conn.execute(
            "INSERT INTO entries (program_id, account_id, kind, points, qualifying, lot_id, "
            "purchase_id, occurred_at, created_at, reason, store_id, channel, actor, "
            "external_ref, rule_version, breakdown) "
            "VALUES (?, ?, 'earn', ?, ?, ?, ?, ?, ?, ?, ?, 'pos', 'key:1', ?, 1, ?)",
            (
                program_id,
                account,
                points,
                points,
                lot_id,
                purchase_id,
                stamp,
                stamp,
                f"purchase {external}",
                store_id,
                external,
                '[{"rule": "base"}]',
            ),
        ).lastrowid
        conn.execute(
            "INSERT INTO domain_events (program_id, member_id, kind, entry_id, payload, at, "
            "dispatched) VALUES (?, ?, 'points.earned', ?, ?, ?, 0)",
            (
                program_id,
                members[account],
                entry_id,
                json.dumps({"entry_id": entry_id, "points": points, "order": external}),
                stamp,
            ),
        )
        answer = json.dumps({**answer_template, "external_id": external})
        conn.execute(
            "UPDATE purchases SET earn_entry_id = ?, response = ? WHERE id = ?",
            (entry_id, answer, purchase_id),
        )
        conn.execute(
            "UPDATE accounts SET available = available + ?, earned = earned + ? WHERE id = ?",
            (points, points, account),
        )
        conn.execute("COMMIT")
    seconds = time.perf_counter() - started
    conn.close()
    return {"earns": count, "seconds": seconds, "earn_per_s": count / seconds if seconds else 0.0}


def scenario_earn_sqlite(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="patron-bench-sqlite-"))
    try:
        served, raw = workdir / "served.db", workdir / "raw.db"
        url = f"sqlite:///{served}"
        setup = setup_bakery(url, args.members)
        _checkpoint(served)
        shutil.copy(served, raw)
        profile = args.profile_dir / "earn_sqlite.raw.txt" if args.profile_dir else None
        http = earn_over_http(
            url,
            setup,
            duration=args.duration,
            connections=args.connections,
            workers=args.sqlite_workers,
            tag=f"sq{int(time.time())}",
            profile=profile,
        )
        loop = raw_sqlite_loop(raw, duration=args.duration)
        raw_check = patron_check(f"sqlite:///{raw}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    ratio = http["earn_per_s"] / loop["earn_per_s"]
    return {
        "figure": round(http["earn_per_s"], 1),
        "unit": "earns/s",
        "baseline": round(loop["earn_per_s"], 1),
        "baseline_name": "raw sqlite3 loop, same rows and PRAGMAs, one commit per earn",
        "ratio": round(ratio, 3),
        "p50_ms": http["p50_ms"],
        "p99_ms": http["p99_ms"],
        "target": f"≥ {TARGET_SQLITE_SHARE_OF_RAW:.0%} of the raw loop",
        "target_met": ratio >= TARGET_SQLITE_SHARE_OF_RAW,
        "correct": http["check"]["clean"] and http["entries_match"] and raw_check["clean"],
        "http": http,
        "raw_loop": {**loop, "check": raw_check},
    }


def _checkpoint(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


# ---------------------------------------------------------------------------------------------
# expiry, tiers and report: the nightly jobs (benchmarks/jobs.py) and the year report
# (benchmarks/reports_year.py), run in this process at --lots / --tier-* / --report-* sizes


def sibling(stem: str) -> ModuleType:
    """benchmarks/<stem>.py as a module. jobs.py imports run.py back as its `bench`: it gets
    this very module (not a second copy), so its databases follow this module's PG_ADMIN_URL."""
    me = sys.modules[__name__]
    name = f"patron_bench_{stem}"
    module = sys.modules.get(name)
    if module is not None and getattr(module, "bench", me) is me:
        return module
    sys.modules["patron_bench_run"] = me
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{stem}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def scenario_key(name: str, dialect: str) -> str:
    """`expiry` on PostgreSQL (where the issue's target applies), `expiry_sqlite` on SQLite."""
    return name if dialect == "postgresql" else f"{name}_{dialect}"


def scenario_expiry(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """`patron.ledger.jobs.run_expiry` over --lots due lots vs one plain UPDATE (jobs.py)."""
    jobs_bench = sibling("jobs")
    out = {}
    for dialect in args.dbs:
        log(f"  expiry on {dialect}: {args.lots:,} lots, {args.lots_per_account} per account …")
        run = jobs_bench.expiry_run(
            dialect,
            args.lots,
            per_account=args.lots_per_account,
            batch_size=args.expiry_batch_size,
            keep=args.keep,
            profile_dir=args.profile_dir,
        )
        run.update(expiry_target(run))
        out[scenario_key("expiry", dialect)] = run
        print_figure(scenario_key("expiry", dialect), run)
    return out


def expiry_target(run: dict[str, Any]) -> dict[str, Any]:
    """Issue 15's expiry target: the job within 2 × the plain UPDATE of the same lots (the
    lots/s ratio at least 0.5), at the size measured."""
    times = run["expiry_s"] / run["baseline_s"] if run.get("baseline_s") else None
    return {
        "times_update": round(times, 2) if times is not None else None,
        "target": f"≤ {TARGET_EXPIRY_TIMES_UPDATE:g} × the plain UPDATE of the same lots",
        "target_met": times is not None and times <= TARGET_EXPIRY_TIMES_UPDATE,
        "target_basis": "measured"
        if run["lots"] >= 10_000_000
        else f"ratio measured at {run['lots']:,} lots",
    }


def scenario_tiers(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """`patron.tiers.jobs.evaluate` over --tier-members / --tier-entries vs a plain GROUP BY and
    UPDATE (jobs.py)."""
    jobs_bench = sibling("jobs")
    out = {}
    for dialect in args.dbs:
        log(f"  tiers on {dialect}: {args.tier_members:,} members, {args.tier_entries:,} entries …")
        run = jobs_bench.tiers_run(
            dialect,
            args.tier_members,
            args.tier_entries,
            moved_share=args.moved_share,
            batch_size=args.tier_batch_size,
            keep=args.keep,
            profile_dir=args.profile_dir,
        )
        out[scenario_key("tiers", dialect)] = run
        print_figure(scenario_key("tiers", dialect), run)
    return out


def scenario_report(args: argparse.Namespace) -> dict[str, Any]:
    """The year's period report over --report-entries vs the plain GROUP BY (reports_year.py).

    PostgreSQL only: reports_year.py generates its data with PostgreSQL's functions."""
    reports_year = sibling("reports_year")
    entries, accounts = args.report_entries, args.report_accounts
    tail = max(1, entries // 200)  # 50,000 at 10 M, as reports_year.py's default
    log(f"  report on postgresql: {entries:,} entries, {accounts:,} accounts …")
    options = reports_year.parse_args(
        [
            "--entries",
            str(entries),
            "--accounts",
            str(accounts),
            "--runs",
            str(args.report_runs),
            "--tail",
            str(tail),
            "--pg-url",
            PG_ADMIN_URL,
            "--db-name",
            f"patron_bench_reports_{os.getpid()}",
            *(["--keep"] if args.keep else []),
        ]
    )
    result = reports_year.run(options)
    figure, base = result["figure"], result["baseline"]["seconds"]
    at_target = entries >= TARGET_REPORT_ENTRIES
    run = {
        "dialect": "postgresql",
        "entries": entries,
        "accounts": accounts,
        "figure": figure,
        "unit": "s (year report by day, median)",
        "baseline": base,
        "baseline_name": "plain SELECT local day, kind, sum(points) … GROUP BY over the raw"
        " entries of the year (median of 3)",
        "ratio": result["ratio"],
        "ratio_meaning": "report seconds ÷ baseline seconds: lower is better",
        "target": f"year report over {TARGET_REPORT_ENTRIES / 1e6:g} M entries"
        f" < {TARGET_REPORT_S:g} s",
        "target_met": figure < TARGET_REPORT_S,
        "target_basis": "measured"
        if at_target
        else f"measured at {entries:,} entries only: the report reads the roll-up, run at 10 M",
        "correct": result["correct"],
        "reports": result["reports"],
        "refresh": result["refresh"],
        "tail": result["tail"],
        "generated": result["generated"],
    }
    print_figure("report", run)
    return {"report": run}


# ---------------------------------------------------------------------------------------------
# memory (taken from the earn_pg server)


def scenario_memory(earn: dict[str, Any]) -> dict[str, Any]:
    http = earn["http"]
    peak = max(http["rss_peak_mb"].values(), default=0.0)
    idle = max(http["rss_idle_mb"].values(), default=0.0)
    return {
        "figure": round(peak, 1),
        "unit": "MB RSS per worker (peak under load)",
        "baseline": round(idle, 1),
        "baseline_name": "the same worker idle, right after start",
        "ratio": round(peak / idle, 3) if idle else None,
        "per_worker_peak_mb": http["rss_peak_mb"],
        "per_worker_idle_mb": http["rss_idle_mb"],
        "per_worker_after_mb": http["rss_after_mb"],
        "target": f"< {TARGET_RSS_MB:g} MB per worker",
        "target_met": 0 < peak < TARGET_RSS_MB,
    }


# ---------------------------------------------------------------------------------------------


def _number(value: float | None) -> str:
    """1,234.5 for large figures, three significant digits for small ones (0.0712 s)."""
    if value is None:
        return "-"
    return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"


def print_figure(name: str, result: dict[str, Any]) -> None:
    """Figure, baseline, ratio, the issue's target (met / not met, and on what basis) and
    whether the run was correct, in the same three lines for every scenario."""
    extra = ""
    if "p50_ms" in result:
        extra = f"  p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms"
    target_met = result.get("target_met")
    met = "-" if target_met is None else "met" if target_met else "NOT met"
    if target_met is not None and result.get("target_basis"):
        met += f" ({result['target_basis']})"
    log(
        f"{name:<24} {_number(result['figure']):>10} {result['unit']}{extra}\n"
        f"{'':<24} baseline {_number(result['baseline']):>10}  ({result['baseline_name']})\n"
        f"{'':<24} ratio {_number(result.get('ratio'))}   target {result['target']}: {met}"
        f"   correct: {result.get('correct', '-')}"
    )


def targets_table(scenarios: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure measured: figure, baseline, ratio, issue 15's target and whether it
    was met (None: reported, no target), in the order of the issue's list."""
    rows: list[dict[str, Any]] = []

    def row(name: str, figure: str, baseline: str, ratio: Any, target: str, met: Any) -> None:
        rows.append(
            {
                "scenario": name,
                "figure": figure,
                "baseline": baseline,
                "ratio": ratio,
                "target": target,
                "met": met,
            }
        )

    for name in ("earn_pg", "earn_sqlite"):
        result = scenarios.get(name)
        if result is None:
            continue
        http = result["http"]
        row(
            name,
            f"{_number(result['figure'])} earns/s, p50 {result['p50_ms']:.1f} ms,"
            f" p99 {result['p99_ms']:.1f} ms",
            f"{_number(result['baseline'])} ({'TPC-B TPS' if name == 'earn_pg' else 'raw loop'})",
            result["ratio"],
            result["target"],
            result["target_met"],
        )
        row(
            f"{name} CPU",
            f"{http['server_cpu_ms_per_earn']:.2f} ms server CPU per earn"
            + (
                f" (+ {http['database_cpu_ms_per_earn']:.2f} ms database)"
                if http.get("database_cpu_ms_per_earn") is not None
                else ""
            ),
            "load average {} → {}".format(*http["loadavg_before_after"]),
            None,
            "report it",
            None,
        )
        if "earn_rows" in result:  # what limits it from below (earn_rows_tps)
            row(
                f"{name} floor",
                f"{_number(result['earn_rows']['tps'])} TPS: an earn's rows by pgbench, no"
                f" application (earn = {result['share_of_earn_rows']:.2f} × it)",
                f"{_number(result['baseline'])} (TPC-B TPS)",
                result["earn_rows_share_of_tpcb"],
                "what limits it",
                None,
            )
    for name in ("batch_pg", "batch_sqlite", "expiry", "expiry_sqlite", "tiers", "tiers_sqlite"):
        result = scenarios.get(name)
        if result is None:
            continue
        if name.startswith("expiry"):
            ratio = result.get("times_update")
        elif name.startswith("tiers"):
            ratio = result.get("times_group_by")
        else:
            ratio = result.get("ratio")
        row(
            name,
            f"{_number(result['figure'])} {result['unit']}",
            f"{_number(result['baseline'])} ({result['baseline_name'][:40]})",
            ratio,
            result["target"],
            result.get("target_met"),
        )
        if "batch_rows" in result:  # what limits it from below (batch_rows_floor)
            row(
                f"{name} floor",
                f"{_number(result['batch_rows']['purchases_per_s'])} purchases/s: the same"
                f" sales' rows set-based, no application (batch = {result['share_of_batch_rows']:.2f}"
                " × it)",
                f"{_number(result['baseline'])} (TPC-B TPS)",
                result["batch_rows_times_tpcb"],
                "what limits it",
                None,
            )
        if "floor_s" in result:  # what limits it: the same rows by plain SQL (jobs.py)
            baseline_s = result["baseline_s"]
            row(
                f"{name} floor",
                f"{result['floor_s']:.2f} s: the same rows by plain SQL (job ="
                f" {result['times_floor']:.2f} × it)",
                f"{baseline_s:.2f} s ({result['baseline_name'][:40]})",
                round(result["floor_s"] / baseline_s, 2) if baseline_s else None,
                "what limits it",
                None,
            )
    if "memory" in scenarios:
        result = scenarios["memory"]
        row(
            "memory",
            f"{_number(result['figure'])} MB peak RSS per worker",
            f"{_number(result['baseline'])} MB idle",
            result["ratio"],
            result["target"],
            result["target_met"],
        )
    if "report" in scenarios:
        result = scenarios["report"]
        row(
            "report",
            f"{_number(result['figure'])} s",
            f"{_number(result['baseline'])} s (plain GROUP BY)",
            result["ratio"],
            result["target"],
            result["target_met"],
        )
    return rows


def print_targets(rows: list[dict[str, Any]]) -> None:
    """The targets table: figure, baseline, ratio, met? (ratios: × the baseline for expiry and
    tiers, lower is better; a share of it for the others, higher is better)."""
    if not rows:
        return
    log("== targets (issue 15)")
    head = ("scenario", "figure", "baseline", "ratio", "met?", "target")
    table = [
        (
            r["scenario"],
            r["figure"],
            r["baseline"],
            _number(r["ratio"]),
            "-" if r["met"] is None else "yes" if r["met"] else "NO",
            r["target"],
        )
        for r in rows
    ]
    widths = [max(len(str(line[k])) for line in [head, *table]) for k in range(len(head))]
    for line in [head, *table]:
        log("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)))


@contextmanager
def timer(name: str) -> Iterator[None]:
    started = time.perf_counter()
    log(f"== {name}")
    yield
    log(f"   ({time.perf_counter() - started:.0f} s)")


def _count(value: str) -> int:
    """A row count: 10000000 or 10_000_000; one value (run once per size for several)."""
    if "," in value:
        raise argparse.ArgumentTypeError("one size per run (the default is the issue's size)")
    number = int(value.replace("_", ""))
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--scenarios", default=",".join(ALL_SCENARIOS), help="comma-separated; default all"
    )
    parser.add_argument("--duration", type=float, default=20, help="seconds of load per figure")
    parser.add_argument("--members", type=int, default=1000, help="members for the earn runs")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="server workers on PostgreSQL")
    parser.add_argument(
        "--sqlite-workers",
        type=int,
        default=1,
        help="server workers on SQLite (one writer at a time: one worker groups every sale; "
        "decision 0032)",
    )
    parser.add_argument("--pgbench-clients", type=int, default=8)
    parser.add_argument("--pgbench-scale", type=int, default=10)
    parser.add_argument(
        "--batch-purchases", type=int, default=40_000, help="purchases per batch scenario"
    )
    parser.add_argument(
        "--batch-clients", type=int, default=2, help="concurrent uploaders (batch_pg)"
    )
    jobs = parser.add_argument_group("expiry, tiers and report (defaults: the issue's sizes)")
    jobs.add_argument(
        "--dbs",
        "--expiry-dbs",
        dest="dbs",
        default="postgresql",
        help="engines for expiry and tiers: postgresql and/or sqlite (report: PostgreSQL only)",
    )
    jobs.add_argument(
        "--lots",
        "--sizes",
        dest="lots",
        type=_count,
        default=10_000_000,
        help="expiry: lots past their date (target: 10 M in < 60 s)",
    )
    jobs.add_argument("--lots-per-account", type=int, default=10, help="expiry: lots per member")
    jobs.add_argument("--expiry-batch-size", type=int, help="expiry: lots per transaction")
    jobs.add_argument(
        "--tier-members",
        type=_count,
        default=1_000_000,
        help="tiers: members (target: 1 M over 10 M entries in < 10 s)",
    )
    jobs.add_argument("--tier-entries", type=_count, default=10_000_000, help="tiers: earn entries")
    jobs.add_argument("--tier-batch-size", type=int, help="tiers: accounts per transaction")
    jobs.add_argument(
        "--moved-share",
        type=float,
        default=0.1,
        help="tiers: share of members holding a tier other than the one they earned",
    )
    jobs.add_argument(
        "--report-entries",
        type=_count,
        default=10_000_000,
        help="report: entries in the year (target: the year report over 10 M in < 1 s)",
    )
    jobs.add_argument(
        "--report-accounts", type=_count, help="report: accounts (default entries / 50)"
    )
    jobs.add_argument("--report-runs", type=int, default=5, help="report: runs per median")
    parser.add_argument(
        "--profile-dir",
        type=Path,
        help="py-spy each server's first worker (and the job scenarios' process) here",
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated databases")
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.scenarios) - set(ALL_SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    args.dbs = [d.strip() for d in args.dbs.split(",") if d.strip()]
    if not args.dbs or set(args.dbs) - {"postgresql", "sqlite"}:
        parser.error("--dbs takes postgresql and/or sqlite")
    if args.duration < 1:
        parser.error("--duration must be at least 1 second")
    if not 0 <= args.moved_share <= 1:
        parser.error("--moved-share is a share between 0 and 1")
    if args.report_entries < 100:
        parser.error("--report-entries must be at least 100")
    # reports_year.py's proportions at 10 M entries: 200,000 accounts.
    args.report_accounts = args.report_accounts or max(10, args.report_entries // 50)
    return args


def write_result(out: dict[str, Any], path: Path | None) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    # Alembic's SQLite reflection warns about the expression index on members; harmless here.
    warnings.filterwarnings("ignore", message="Skipped unsupported reflection")
    out: dict[str, Any] = {
        "benchmark": "patron",
        "started_at": utcnow().isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            "scenarios": args.scenarios,
            "duration_s": args.duration,
            "connections": args.connections,
            "workers": args.workers,
            "sqlite_workers": args.sqlite_workers,
            "group_commit": os.environ.get("PATRON_GROUP_COMMIT", "default"),
            "group_commit_wait_ms": os.environ.get("PATRON_GROUP_COMMIT_WAIT_MS", "default"),
            "members": args.members,
            "batch_purchases": args.batch_purchases,
            "batch_clients": args.batch_clients,
            "dbs": args.dbs,
            "lots": args.lots,
            "lots_per_account": args.lots_per_account,
            "expiry_batch_size": args.expiry_batch_size,
            "tier_members": args.tier_members,
            "tier_entries": args.tier_entries,
            "tier_batch_size": args.tier_batch_size,
            "moved_share": args.moved_share,
            "report_entries": args.report_entries,
            "report_accounts": args.report_accounts,
            "report_runs": args.report_runs,
        },
        "scenarios": {},
    }
    scenarios = out["scenarios"]
    wanted = args.scenarios
    if "earn_pg" in wanted or "memory" in wanted:
        with timer("earn_pg: HTTP earn on PostgreSQL vs pgbench TPC-B"):
            scenarios["earn_pg"] = scenario_earn_pg(args)
            print_figure("earn_pg", scenarios["earn_pg"])
    if "memory" in wanted:
        scenarios["memory"] = scenario_memory(scenarios["earn_pg"])
        print_figure("memory", scenarios["memory"])
        if "earn_pg" not in wanted:
            scenarios.pop("earn_pg")
    write_result(out, args.json)
    if "earn_sqlite" in wanted:
        with timer("earn_sqlite: HTTP earn on SQLite vs a raw sqlite3 loop"):
            scenarios["earn_sqlite"] = scenario_earn_sqlite(args)
            print_figure("earn_sqlite", scenarios["earn_sqlite"])
        write_result(out, args.json)
    if "batch_pg" in wanted:
        with timer("batch_pg: batch ingestion on PostgreSQL vs pgbench TPC-B"):
            tpcb = scenarios.get("earn_pg", {}).get("pgbench")
            scenarios["batch_pg"] = scenario_batch_pg(args, tpcb)
            print_figure("batch_pg", scenarios["batch_pg"])
        write_result(out, args.json)
    if "batch_sqlite" in wanted:
        with timer("batch_sqlite: batch ingestion on SQLite vs a raw sqlite3 loop"):
            scenarios["batch_sqlite"] = scenario_batch_sqlite(args)
            print_figure("batch_sqlite", scenarios["batch_sqlite"])
        write_result(out, args.json)
    if "expiry" in wanted:
        with timer(f"expiry: run_expiry over {args.lots:,} lots vs one plain UPDATE"):
            scenarios.update(scenario_expiry(args))
        write_result(out, args.json)
    if "tiers" in wanted:
        with timer(
            f"tiers: evaluate {args.tier_members:,} members over {args.tier_entries:,} entries"
            " vs a plain GROUP BY + UPDATE"
        ):
            scenarios.update(scenario_tiers(args))
        write_result(out, args.json)
    if "report" in wanted:
        with timer(
            f"report: the year report over {args.report_entries:,} entries vs a plain GROUP BY"
        ):
            scenarios.update(scenario_report(args))
    out["targets"] = targets_table(scenarios)
    print_targets(out["targets"])
    out["finished_at"] = utcnow().isoformat(timespec="seconds")
    write_result(out, args.json)
    if args.json is not None:
        log(f"wrote {args.json}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
