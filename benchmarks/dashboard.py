"""The admin dashboard's outstanding-points series on the bakery demo, beside the liability report
called once per month end (how the series was computed before), on SQLite and PostgreSQL.

    python benchmarks/dashboard.py [--dbs sqlite,postgresql] [--members 150] [--days 365]
                                   [--runs 5] [--json FILE] [--keep]

Steps, per engine, in a fresh database (a temporary SQLite file; `patron_bench_dashboard` on
PostgreSQL, dropped at the end unless --keep):

1. load the demo (`patron.demo.load`, as `patron demo` does) and, on PostgreSQL, ANALYZE (what
   autovacuum does after a load; a server with autovacuum off plans the reports blind);
2. time, median of `--runs`: `finance.outstanding_series` over the twelve month ends the charts
   show (the figure), the same twelve `finance.liability` calls (the baseline), and the whole
   `dashboard()` service;
3. correct: every point of the series equals the liability report's outstanding points and value.

The target is the issue's: the series under 300 ms on the 150-member demo. Results go to
benchmarks/results/dashboard.json (or --json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from patron import clock, demo
from patron.db.engine import Database
from patron.db.migrate import upgrade
from patron.programs.service import get_program
from patron.reports import dashboard, finance
from patron.reports.common import today

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PG_ADMIN_URL = os.environ.get(
    "PATRON_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DB_NAME = "patron_bench_dashboard"
TARGET_MS = 300.0
MONTHS = 12


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dbs", default="sqlite,postgresql", help="sqlite, postgresql or both")
    parser.add_argument("--members", type=int, default=150)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pg-url", default=PG_ADMIN_URL, help="An admin URL of the server")
    parser.add_argument("--db-name", default=DB_NAME)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="Keep the databases afterwards")
    return parser.parse_args(argv)


def _pg_url(admin: str, name: str) -> str:
    return admin.rsplit("/", 1)[0] + f"/{name}"


def _median_ms(fn: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 1)


def measure(url: str, args: argparse.Namespace, now: datetime) -> dict[str, Any]:
    db = Database(url)
    started = time.perf_counter()
    loaded = demo.load(db, now=now, members_count=args.members, days=args.days)
    load_s = round(time.perf_counter() - started, 1)
    if db.dialect == "postgresql":
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            conn.execute("ANALYZE")
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, "bakery")
        days = finance.month_ends(today(program, now), MONTHS)

        def series() -> list[finance.OutstandingPoint]:
            return finance.outstanding_series(session, program, days, now=now)

        def baseline() -> list[finance.LiabilityOut]:
            return [finance.liability(session, program, as_of=d, now=now) for d in days]

        got, want = series(), baseline()
        correct = [(p.outstanding_points, p.outstanding_value) for p in got] == [
            (o.outstanding_points, o.outstanding_value) for o in want
        ]
        figure = _median_ms(series, args.runs)
        base = _median_ms(baseline, args.runs)
        whole = _median_ms(lambda: dashboard.dashboard(session, program, now=now), args.runs)
    db.engine.dispose()
    return {
        "purchases": loaded.purchases,
        "load_seconds": load_s,
        "series_ms": figure,
        "baseline_liability_per_month_ms": base,
        "ratio": round(figure / base, 4) if base else None,
        "dashboard_ms": whole,
        "target_ms": TARGET_MS,
        "target_met": figure < TARGET_MS,
        "correct": correct,
        "points": [[p.as_of.isoformat(), p.outstanding_points] for p in got],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    now = clock.now()
    clock.freeze(now)
    out: dict[str, Any] = {
        "scenario": "dashboard",
        "members": args.members,
        "days": args.days,
        "runs": args.runs,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "engines": {},
    }
    for engine in [e.strip() for e in args.dbs.split(",") if e.strip()]:
        if engine == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite:///{tmp}/patron.db"
                upgrade(url)
                out["engines"]["sqlite"] = measure(url, args, now)
        elif engine == "postgresql":
            with psycopg.connect(args.pg_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{args.db_name}"')
            url = _pg_url(args.pg_url, args.db_name)
            try:
                upgrade(url)
                out["engines"]["postgresql"] = measure(url, args, now)
            finally:
                if not args.keep:
                    with psycopg.connect(args.pg_url, autocommit=True) as conn:
                        conn.execute(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
        else:
            raise SystemExit(f"--dbs: unknown engine {engine!r}")
    out["correct"] = all(e["correct"] for e in out["engines"].values())
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    result = run(args)
    path = args.json or RESULTS / "dashboard.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    for engine, figures in result["engines"].items():
        print(
            f"{engine}: series {figures['series_ms']} ms, baseline (liability × {MONTHS}) "
            f"{figures['baseline_liability_per_month_ms']} ms, ratio {figures['ratio']}, "
            f"dashboard() {figures['dashboard_ms']} ms, target < {TARGET_MS:.0f} ms "
            f"{'met' if figures['target_met'] else 'NOT met'}, "
            f"correct {figures['correct']}"
        )
    print(f"written to {path}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
