"""Redeeming rewards over HTTP: redemptions/s and latency beside a baseline from the same run.

    python benchmarks/rewards.py [--dbs postgresql[,sqlite]] [--duration 20] [--members 1000]
                                 [--connections 8] [--workers 2] [--sqlite-workers 2]
                                 [--rewards 1] [--stock 10000000 | --untracked-stock]
                                 [--points-cost 100]
                                 [--pgbench-clients 8] [--pgbench-scale 10] [--serial 30]
                                 [--no-idempotency-key] [--keep]
                                 [--json benchmarks/results/rewards.json]

Setup, through patron's own services: the demo's bakery program, store and tiers with
`--members` members (benchmarks/run.py's `setup_bakery`), each given enough points for the whole
run by one adjustment, and `--rewards` goods rewards of `--points-cost` points with `--stock`
units each (large: the load never runs out; `--untracked-stock`: unlimited, so no stock row).
Every redemption of a reward with stock updates that reward's row and holds its lock until it
commits; `lock_waits` samples how many statements wait for a row lock meanwhile.

Load: `POST /api/v1/programs/bakery/rewards/{reward}/redeem` (one unit, store mapo, a random
member, a random reward of the `--rewards`, a unique Idempotency-Key as a till sends) against
`patron serve` on a fresh database, from `--connections` connections for `--duration` seconds,
driven by wrk with a Lua script (an asyncio/httpx generator if wrk is missing, which says so).
Figure: redemptions/s (201 answers ÷ seconds), p50/p99 latency, the server workers' CPU per
redemption, and (before the load, in-process) the SQL statements and serial milliseconds of one
redemption.

Baseline, measured in the same run the same way as benchmarks/run.py's `earn_pg` (its
`pgbench_tps`): `pgbench -i -s <scale>` then `pgbench -b tpcb-like -c <clients> -j 2 -T
<duration>` on the same PostgreSQL, after the load. On SQLite: run.py's raw sqlite3 loop, the
rows of one earn written by hand with patron's PRAGMAs, one commit per earn, on a copy of the
database taken before the load.

Correct means, after the load: `patron check` clean (it proves stock = Σ stock moves, every
redemption's entry, coupons and stock move); per reward stock_left = initial − redemptions;
coupons = redemptions = redeem entries (= stored idempotency keys when keys are sent); and the
redemptions committed minus the 201 answers counted lie in [0, connections] (wrk stops with up
to one request in flight per connection, which the server still commits). Every answer should be
201 (`all_201`); a refusal is reported with its first body.

The JSON result (`{"benchmark": "patron-rewards", "machine", "settings", "scenarios":
{"redeem_pg", "redeem_sqlite"}}`, each scenario with figure, unit, baseline, baseline_name,
ratio, p50_ms, p99_ms, target, target_met, correct) is written to --json, as the other
benchmarks do. tests/test_rewards_bench_smoke.py runs it for a second or two.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy import event, func, select

from patron.audit.models import IdempotencyKey
from patron.audit.service import SYSTEM
from patron.coupons.models import Coupon, Redemption, Reward
from patron.db.engine import Database
from patron.ledger.models import Entry
from patron.members.schemas import MemberRef
from patron.programs.service import get_program
from patron.rewards import catalog
from patron.rewards.schemas import RewardCreate
from patron.sales import purchases
from patron.sales.schemas import AdjustRequest


def _load_run() -> ModuleType:
    """benchmarks/run.py, whose helpers (databases, server, pgbench, `patron check`, output)
    are shared."""
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
log: Callable[[str], None] = bench.log
ALL_DBS = ("postgresql", "sqlite")
# Per process, so a smoke test never drops a database another run is using.
PG_DATABASE = f"patron_bench_rewards_{os.getpid()}"

WRK_SCRIPT = r"""
-- One redemption a request: a random member, a random reward, a unique Idempotency-Key.
local lo = tonumber(os.getenv("BENCH_MEMBER_LO"))
local hi = tonumber(os.getenv("BENCH_MEMBER_HI"))
local tag = os.getenv("BENCH_TAG")
local key = os.getenv("BENCH_KEY")
local send_keys = os.getenv("BENCH_IDEMPOTENCY") == "1"
local rewards = {}
for code in string.gmatch(os.getenv("BENCH_REWARDS"), "[^,]+") do table.insert(rewards, code) end
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
  if send_keys then
    wrk.headers["Idempotency-Key"] = string.format("%s-%d-%d", tag, thread_id, counter)
  end
  local reward = rewards[math.random(1, #rewards)]
  local body = string.format('{"member":{"id":%d},"store":"mapo"}', math.random(lo, hi))
  return wrk.format("POST", "/api/v1/programs/bakery/rewards/" .. reward .. "/redeem", nil, body)
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


@contextmanager
def step(name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    log(f"  {name}: {time.perf_counter() - started:.1f} s")


def reward_codes(count: int) -> list[str]:
    return [f"bench-tumbler-{n}" for n in range(1, count + 1)]


# ---------------------------------------------------------------------------------------------
# Setup


def stock_up(url: str, setup: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Every member gets points for the whole run (one adjustment each); the rewards."""
    now = bench.utcnow()
    db = Database(url)
    started = time.perf_counter()
    try:
        members = range(setup["member_lo"], setup["member_hi"] + 1)
        for chunk in range(0, len(members), 500):
            with db.unit_of_work() as session:
                program = get_program(session, "bakery")
                for member in members[chunk : chunk + 500]:
                    purchases.adjust(
                        session,
                        program,
                        AdjustRequest(
                            member=MemberRef(id=member),
                            points=args.points_per_member,
                            reason="benchmark opening balance",
                        ),
                        actor=SYSTEM,
                        now=now,
                    )
        with db.unit_of_work() as session:
            program = get_program(session, "bakery")
            for code in reward_codes(args.rewards):
                body = {
                    "code": code,
                    "kind": "goods",
                    "names": {"en": "Bakery tumbler", "ko": "베이커리 텀블러"},
                    "points_cost": args.points_cost,
                    "value": "1500",
                    "stock": None if args.untracked_stock else args.stock,
                    "valid_days": 30,
                }
                catalog.create_reward(
                    session, program, RewardCreate.model_validate(body), actor=SYSTEM, now=now
                )
    finally:
        db.dispose()
    return {
        "members": len(members),
        "points_per_member": args.points_per_member,
        "rewards": reward_codes(args.rewards),
        "stock_per_reward": None if args.untracked_stock else args.stock,
        "points_cost": args.points_cost,
        "seconds": round(time.perf_counter() - started, 2),
    }


def counts(url: str) -> dict[str, Any]:
    """Per reward: stock left, redemptions, coupons; redeem entries and stored keys in all."""
    db = Database(url)
    try:
        with db.unit_of_work(readonly=True) as session:

            def per_reward(column: Any, model: Any) -> dict[str, int]:
                rows = session.execute(
                    select(Reward.code, func.count(column))
                    .join(model, column == Reward.id)
                    .group_by(Reward.code)
                ).all()
                return {code: int(n) for code, n in rows}

            return {
                "stock_left": dict(session.execute(select(Reward.code, Reward.stock_left)).all()),
                "redemptions": per_reward(Redemption.reward_id, Redemption),
                "coupons": per_reward(Coupon.reward_id, Coupon),
                "redeem_entries": int(
                    session.scalar(
                        select(func.count()).select_from(Entry).where(Entry.kind == "redeem")
                    )
                    or 0
                ),
                "idempotency_keys": int(
                    session.scalar(select(func.count()).select_from(IdempotencyKey)) or 0
                ),
            }
    finally:
        db.dispose()


# ---------------------------------------------------------------------------------------------
# Load


def run_wrk(
    server: Any, setup: dict[str, Any], args: argparse.Namespace, tag: str
) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT)
    env = {
        **os.environ,
        "BENCH_MEMBER_LO": str(setup["member_lo"]),
        "BENCH_MEMBER_HI": str(setup["member_hi"]),
        "BENCH_TAG": tag,
        "BENCH_KEY": setup["key"],
        "BENCH_REWARDS": ",".join(reward_codes(args.rewards)),
        "BENCH_IDEMPOTENCY": "1" if args.idempotency_key else "0",
    }
    threads = max(1, min(2, args.connections))
    cmd = ["wrk", "-t", str(threads), "-c", str(args.connections), "-d", f"{int(args.duration)}s"]
    cmd += ["--timeout", "10s", "--latency", "-s", script.name, server.base]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=args.duration + 60, check=False
        )
    finally:
        os.unlink(script.name)
    figures = dict(
        re.findall(r"(\w+)=(\d+)", "".join(re.findall(r"BENCH created=.*", done.stdout)))
    )
    if done.returncode != 0 or "created" not in figures:
        raise RuntimeError(f"wrk failed: {done.stdout}\n{done.stderr}")
    first_error = re.search(r"BENCH first_error=(.*)", done.stdout)
    return {
        "load_generator": "wrk",
        "connections": args.connections,
        "threads": threads,
        "seconds": int(figures["duration_us"]) / 1e6,
        "created": int(figures["created"]),
        "other_status": int(figures["other"]),
        "sent": int(figures["sent"]),
        "socket_errors": int(figures["errors"]),
        "p50_ms": int(figures["p50_us"]) / 1000,
        "p90_ms": int(figures["p90_us"]) / 1000,
        "p99_ms": int(figures["p99_us"]) / 1000,
        "max_ms": int(figures["max_us"]) / 1000,
        "first_error": first_error.group(1) if first_error else None,
    }


def run_httpx(
    server: Any, setup: dict[str, Any], args: argparse.Namespace, tag: str
) -> dict[str, Any]:
    """The fallback load generator: asyncio + httpx, one task per connection."""
    import httpx

    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    first_error: list[str] = []
    rewards = reward_codes(args.rewards)

    async def worker(n: int, client: httpx.AsyncClient, until: float) -> None:
        rng = random.Random(n)
        sent = 0
        while time.monotonic() < until:
            sent += 1
            headers = {"Idempotency-Key": f"{tag}-{n}-{sent}"} if args.idempotency_key else {}
            member = rng.randint(setup["member_lo"], setup["member_hi"])
            started = time.perf_counter()
            answer = await client.post(
                f"/api/v1/programs/bakery/rewards/{rng.choice(rewards)}/redeem",
                json={"member": {"id": member}, "store": "mapo"},
                headers=headers,
            )
            latencies.append(time.perf_counter() - started)
            statuses[answer.status_code] += 1
            if answer.status_code != 201 and not first_error:
                first_error.append(f"{answer.status_code} {answer.text[:200]}")

    async def main() -> float:
        async with httpx.AsyncClient(
            base_url=server.base,
            headers={"Authorization": f"Bearer {setup['key']}"},
            limits=httpx.Limits(max_connections=args.connections),
            timeout=10,
        ) as client:
            started = time.monotonic()
            until = started + args.duration
            await asyncio.gather(*(worker(n, client, until) for n in range(args.connections)))
            return time.monotonic() - started

    seconds = asyncio.run(main())
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000

    return {
        "load_generator": "httpx (wrk not installed; this generator costs much more CPU)",
        "connections": args.connections,
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


class LockWaits(threading.Thread):
    """PostgreSQL: every 50 ms, how many of the benchmark database's backends are running a
    statement and how many of those wait for a row lock (a redemption queued behind another on
    the reward's row or the member's account). Says whether a hot row, not CPU, sets the pace."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url.replace("postgresql+psycopg://", "postgresql://")
        self.database = self.url.rpartition("/")[2]
        self.samples = self.active = self.waiting = 0
        self.by_event: Counter[str] = Counter()
        self.stopped = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stopped.wait(0.05):
                rows = conn.execute(
                    "SELECT wait_event_type, wait_event FROM pg_stat_activity "
                    "WHERE datname = %s AND state = 'active' AND pid <> pg_backend_pid()",
                    (self.database,),
                ).fetchall()
                self.samples += 1
                self.active += len(rows)
                for kind, name in rows:
                    if kind == "Lock":
                        self.waiting += 1
                        self.by_event[str(name)] += 1

    def result(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "mean_active_statements": round(self.active / max(self.samples, 1), 2),
            "mean_waiting_for_a_lock": round(self.waiting / max(self.samples, 1), 2),
            "lock_wait_share_of_active": round(self.waiting / max(self.active, 1), 3),
            "lock_waits_by_event": dict(self.by_event.most_common()),
        }


def serial_redemptions(url: str, setup: dict[str, Any], n: int) -> dict[str, Any]:
    """One redemption's cost without the network or concurrency: the real app in-process
    (Starlette's TestClient), `n` redemptions one after another (before the load, so `patron
    check` covers them too), SQL statements counted."""
    warm_up = 5 if n > 0 else 0
    if n < 1:
        return {"redemptions": 0, "warm_up": 0}
    from fastapi.testclient import TestClient

    from patron.app import create_app

    db = Database(url)
    seen: list[str] = []

    @event.listens_for(db.engine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(" ".join(statement.split()[:3]))

    headers = {"Authorization": f"Bearer {setup['key']}"}
    span = setup["member_hi"] - setup["member_lo"] + 1
    path = f"/api/v1/programs/bakery/rewards/{reward_codes(1)[0]}/redeem"
    try:
        with TestClient(create_app(db=db)) as client:

            def redeem(i: int) -> None:
                body = {"member": {"id": setup["member_lo"] + i % span}, "store": "mapo"}
                key = {"Idempotency-Key": f"serial-{time.time_ns()}-{i}"}
                answer = client.post(path, json=body, headers={**headers, **key})
                if answer.status_code != 201:
                    raise RuntimeError(f"serial redemption: {answer.status_code} {answer.text}")

            for i in range(warm_up):
                redeem(i)
            seen.clear()
            started = time.perf_counter()
            for i in range(n):
                redeem(i)
            seconds = time.perf_counter() - started
            statements = Counter(seen)
    finally:
        db.dispose()
    return {
        "redemptions": n,
        "warm_up": warm_up,
        # Statements SQLAlchemy sends per redemption (BEGIN/COMMIT not included; with an
        # Idempotency-Key, the key's insert and answer included).
        "statements_per_redemption": round(sum(statements.values()) / n, 2),
        "serial_ms_per_redemption": round(1000 * seconds / n, 2),
        "statements_by_kind": {k: round(v / n, 2) for k, v in statements.most_common(12)},
    }


def redeem_over_http(
    url: str, setup: dict[str, Any], args: argparse.Namespace, *, workers: int, tag: str
) -> dict[str, Any]:
    before = counts(url)
    server = bench.Server(url, workers)
    server.start()
    try:
        pids = server.worker_pids()
        cpu_before = sum(bench.cpu_seconds(pid) for pid in pids)
        load_before = bench.loadavg()
        waits = LockWaits(url) if url.startswith("postgresql") else None
        if waits is not None:
            waits.start()
        try:
            if shutil.which("wrk"):
                load = run_wrk(server, setup, args, tag)
            else:
                log("  wrk not found: falling back to the asyncio/httpx load generator")
                load = run_httpx(server, setup, args, tag)
        finally:
            if waits is not None:
                waits.stopped.set()
                waits.join()
        cpu_used = sum(bench.cpu_seconds(pid) for pid in pids) - cpu_before
        load_after = bench.loadavg()
    finally:
        server.stop()
    after = counts(url)
    check = bench.patron_check(url)  # after every write of the run
    committed = sum(after["redemptions"].values()) - sum(before["redemptions"].values())
    in_flight = committed - load["created"]
    initial = None if args.untracked_stock else args.stock
    stock_ok = all(
        after["stock_left"][code]
        == (None if initial is None else initial - after["redemptions"].get(code, 0))
        for code in reward_codes(args.rewards)
    )
    coupons_ok = after["coupons"] == after["redemptions"]
    entries = after["redeem_entries"] - before["redeem_entries"]
    keys = after["idempotency_keys"] - before["idempotency_keys"]
    correctness = {
        "acknowledged": load["created"],
        "redemptions_in_db": committed,
        "coupons_in_db": sum(after["coupons"].values()),
        "redeem_entries_in_db": entries,
        "idempotency_keys_stored": keys,
        "stock_left": after["stock_left"],
        "initial_stock": initial,
        # Requests wrk sent but had no answer for when it stopped still commit on the server.
        "redemptions_minus_acknowledged": in_flight,
        "stock_is_initial_minus_redemptions": stock_ok,
        "coupons_equal_redemptions": coupons_ok,
        "entries_equal_redemptions": entries == committed,
        "keys_equal_redemptions": keys == (committed if args.idempotency_key else 0),
        "in_flight_within_connections": 0 <= in_flight <= args.connections,
        "all_201": load["other_status"] == 0 and load["socket_errors"] == 0,
        "check": check,
    }
    correctness["correct"] = bool(
        check["clean"]
        and stock_ok
        and coupons_ok
        and correctness["entries_equal_redemptions"]
        and correctness["keys_equal_redemptions"]
        and correctness["in_flight_within_connections"]
        and committed > 0
    )
    return {
        **load,
        "workers": workers,
        "redemptions_per_s": load["created"] / load["seconds"] if load["seconds"] else 0.0,
        # CPU the server's workers used per acknowledged redemption: what one costs, whatever
        # else runs on the machine.
        "server_cpu_ms_per_redemption": round(1000 * cpu_used / max(load["created"], 1), 3),
        "loadavg_before_after": [load_before, load_after],
        "lock_waits": waits.result() if waits is not None else None,
        "correctness": correctness,
    }


# ---------------------------------------------------------------------------------------------
# Scenarios


def _result(
    http: dict[str, Any], baseline: float, baseline_name: str, serial: dict[str, Any]
) -> dict[str, Any]:
    return {
        "figure": round(http["redemptions_per_s"], 1),
        "unit": "redemptions/s",
        "baseline": round(baseline, 1),
        "baseline_name": baseline_name,
        "ratio": bench.ratio_of(http["redemptions_per_s"], baseline),
        "p50_ms": http["p50_ms"],
        "p99_ms": http["p99_ms"],
        "target": "none set (issue 13: the figure beside its baseline)",
        "target_met": None,
        "correct": http["correctness"]["correct"],
        "http": http,
        "serial": serial,
    }


def scenario_pg(args: argparse.Namespace) -> dict[str, Any]:
    url = bench.fresh_pg_database(PG_DATABASE)
    try:
        with step(f"setup ({args.members} members with points, {args.rewards} reward(s))"):
            setup = bench.setup_bakery(url, args.members)
            stocked = stock_up(url, setup, args)
        with step(f"{args.serial} serial redemptions in-process"):
            serial = serial_redemptions(url, setup, args.serial)
        with step("load through patron serve, then the counts and patron check"):
            http = redeem_over_http(
                url, setup, args, workers=args.workers, tag=f"rpg{int(time.time())}"
            )
    finally:
        if not args.keep:
            bench.drop_pg_database(PG_DATABASE)
    with step("pgbench TPC-B (init and run)"):
        tpcb = bench.pgbench_tps(args.duration, args.pgbench_clients, args.pgbench_scale)
    result = _result(http, tpcb["tps"], "pgbench tpcb-like TPS", serial)
    return {**result, "setup": stocked, "pgbench": tpcb}


def scenario_sqlite(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="patron-bench-rewards-"))
    try:
        served, raw = workdir / "served.db", workdir / "raw.db"
        url = f"sqlite:///{served}"
        with step(f"setup ({args.members} members with points, {args.rewards} reward(s))"):
            setup = bench.setup_bakery(url, args.members)
            stocked = stock_up(url, setup, args)
            bench._checkpoint(served)
            shutil.copy(served, raw)
        with step(f"{args.serial} serial redemptions in-process"):
            serial = serial_redemptions(url, setup, args.serial)
        with step("load through patron serve, then the counts and patron check"):
            http = redeem_over_http(
                url, setup, args, workers=args.sqlite_workers, tag=f"rsq{int(time.time())}"
            )
        with step("raw sqlite3 loop"):
            loop = bench.raw_sqlite_loop(raw, duration=args.duration)
    finally:
        if args.keep:
            log(f"  kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result = _result(
        http,
        loop["earn_per_s"],
        "raw sqlite3 loop writing one earn's rows, patron's PRAGMAs, one commit per earn",
        serial,
    )
    return {**result, "setup": stocked, "raw_loop": loop}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dbs", default="postgresql", help="postgresql and/or sqlite")
    parser.add_argument("--duration", type=float, default=20, help="seconds of load per engine")
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="server workers on PostgreSQL")
    parser.add_argument("--sqlite-workers", type=int, default=2, help="server workers on SQLite")
    parser.add_argument("--rewards", type=int, default=1, help="rewards the load spreads over")
    parser.add_argument("--stock", type=int, default=10_000_000, help="units of each reward")
    parser.add_argument(
        "--untracked-stock",
        action="store_true",
        help="rewards without stock (no row every redemption of a reward updates)",
    )
    parser.add_argument("--points-cost", type=int, default=100, help="points per unit")
    parser.add_argument(
        "--points-per-member",
        type=int,
        default=10_000_000,
        help="each member's opening balance (enough for the whole run)",
    )
    parser.add_argument(
        "--idempotency-key",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="send a unique Idempotency-Key with every redemption, as a till does",
    )
    parser.add_argument("--pgbench-clients", type=int, default=8)
    parser.add_argument("--pgbench-scale", type=int, default=10)
    parser.add_argument(
        "--serial", type=int, default=30, help="in-process redemptions timed one by one (0: none)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated databases")
    parser.add_argument("--json", type=Path, default=bench.RESULTS / "rewards.json")
    args = parser.parse_args(argv)
    args.dbs = [d.strip() for d in args.dbs.split(",") if d.strip()]
    if not args.dbs or set(args.dbs) - set(ALL_DBS):
        parser.error("--dbs takes postgresql and/or sqlite")
    if args.duration < 1:
        parser.error("--duration must be at least 1 second")
    for name in ("members", "connections", "workers", "sqlite_workers", "rewards", "stock"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.points_cost < 0 or args.points_per_member < 1:
        parser.error("--points-cost must be ≥ 0 and --points-per-member ≥ 1")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    # Alembic's SQLite reflection warns about the expression index on members; harmless here.
    warnings.filterwarnings("ignore", message="Skipped unsupported reflection")
    out: dict[str, Any] = {
        "benchmark": "patron-rewards",
        "started_at": bench.utcnow().isoformat(timespec="seconds"),
        "machine": bench.machine(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "keep")},
        "scenarios": {},
    }
    if "postgresql" in args.dbs:
        with bench.timer("redeem_pg: HTTP redemptions on PostgreSQL vs pgbench TPC-B"):
            out["scenarios"]["redeem_pg"] = scenario_pg(args)
            bench.print_figure("redeem_pg", out["scenarios"]["redeem_pg"])
        bench.write_result(out, args.json)
    if "sqlite" in args.dbs:
        with bench.timer("redeem_sqlite: HTTP redemptions on SQLite vs a raw sqlite3 loop"):
            out["scenarios"]["redeem_sqlite"] = scenario_sqlite(args)
            bench.print_figure("redeem_sqlite", out["scenarios"]["redeem_sqlite"])
    out["finished_at"] = bench.utcnow().isoformat(timespec="seconds")
    bench.write_result(out, args.json)
    if args.json is not None:
        log(f"wrote {args.json}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
