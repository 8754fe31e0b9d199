"""A year's period report over millions of entries on PostgreSQL, beside the plain GROUP BY.

The main entry is `benchmarks/run.py` (`make bench`), whose `report` scenario runs `run()` below
at `--report-entries` (default 10,000,000) and writes it into its one result file. This script
runs the same measurement on its own, with every option:

    python benchmarks/reports_year.py [--entries 10000000] [--accounts 200000] [--stores 20]
                                      [--runs 5] [--tail 50000] [--json FILE] [--keep]

Steps, in a fresh database (`patron_bench_reports`, dropped at the end unless --keep):

1. generate: one Seoul bakery program with `--stores` stores and basic/silver/gold tiers through
   Patron's services; then, set-based (generate_series, foreign-key triggers off, secondary
   indexes built afterwards), `--accounts` members and accounts, their tier history, and a year
   of entries: 70 % earns (each with its purchase), 15 % redemptions, 8 % expiries, 2 % refund
   reversals (give-backs and clawbacks), 5 % manual adjustments, over 3 channels.
2. refresh: `patron.reports.rollup.refresh` from an empty roll-up (what the first
   `patron report refresh` does), timed.
3. reports: the year's period report per day (what the admin chart reads), per month by store,
   per month by tier, and the liability as of the year's last day — median of `--runs` runs each.
4. baseline: the plain `SELECT local day, kind, sum(points) … GROUP BY` over the raw entries
   of the same year, in the same run (median of 3). Ratio = report ÷ baseline.
5. tail: `--tail` more entries written after the refresh (above the watermark), and the day
   report again: exact without a refresh, read partly live.

Every report's totals must equal the baseline's sums (`correct`). Results go to
benchmarks/results/reports_year-<entries>.json (or --json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import func, select

from patron.audit.service import SYSTEM
from patron.db.engine import Database
from patron.db.migrate import upgrade
from patron.programs import service as programs
from patron.programs.schemas import ProgramCreate, StoreCreate
from patron.reports import finance, period, rollup
from patron.reports.common import day_range
from patron.reports.models import ReportDaily
from patron.setup import service as setup
from patron.tiers import service as tiers
from patron.tiers.schemas import TierSetup

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PG_ADMIN_URL = os.environ.get(
    "PATRON_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DB_NAME = "patron_bench_reports"
TARGET_SECONDS = 1.0
YEAR = 2025
TZ = "Asia/Seoul"

PROGRAM = ProgramCreate.model_validate(
    {
        "code": "bench",
        "name": "Benchmark bakery",
        "currency": "KRW",
        "timezone": TZ,
        "point_value": "1",
        "earning": {"mode": "per_full_unit", "points": 10, "per_amount": "1000"},
        "expiry": {"kind": "months", "months": 12},
        "redemption": {"min_points": 1000, "step": 10, "max_share": "1"},
        "negative_balance": "allow_debt",
    }
)
TIERS = TierSetup.model_validate(
    {
        "policy": {
            "metric": "points",
            "window": "year",
            "upgrade": "immediate",
            "downgrade": "one_level",
            "manual": "keep",
        },
        "tiers": [
            {"code": "basic", "names": {"en": "Basic"}, "threshold": 0},
            {"code": "silver", "names": {"en": "Silver"}, "threshold": 5000},
            {"code": "gold", "names": {"en": "Gold"}, "threshold": 12000},
        ],
    }
)

# Secondary indexes are dropped for the bulk load and built afterwards (much faster).
INDEXES = {
    "entries": [
        "ix_entries_account_time ON entries (account_id, occurred_at, id)",
        "ix_entries_lot_id ON entries (lot_id)",
        "ix_entries_program_time ON entries (program_id, occurred_at)",
        "ix_entries_purchase_id ON entries (purchase_id)",
        "ix_entries_reverses_entry_id ON entries (reverses_entry_id)",
    ],
    "purchases": ["ix_purchases_account_id ON purchases (account_id)"],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=10_000_000)
    parser.add_argument("--accounts", type=int, default=200_000)
    parser.add_argument("--stores", type=int, default=20)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tail", type=int, default=50_000)
    parser.add_argument("--pg-url", default=PG_ADMIN_URL, help="An admin URL of the server")
    parser.add_argument("--db-name", default=DB_NAME)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards")
    parser.add_argument("--check", action="store_true", help="Also time rollup.check")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="Reuse the database a --keep run left (same --entries): skip generating",
    )
    args = parser.parse_args(argv)
    if args.entries < 100 or args.accounts < 10 or args.stores < 1:
        parser.error("--entries ≥ 100, --accounts ≥ 10, --stores ≥ 1")
    return args


def _db_url(admin: str, name: str) -> str:
    base, _, _ = admin.rpartition("/")
    return f"{base}/{name}"


def fresh_database(admin: str, name: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _db_url(admin, name)
    upgrade(url)
    return url


def drop_database(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def reset_for_reuse(url: str, entries: int) -> int:
    """Back to the state right after generating: no tail, an empty roll-up."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        count = conn.execute("SELECT count(*) FROM entries WHERE id <= %s", (entries,)).fetchone()
        if count is None or count[0] != entries:
            raise SystemExit(f"--reuse: the database does not hold the {entries:,} entries")
        conn.execute("DELETE FROM entries WHERE id > %s", (entries,))
        conn.execute("TRUNCATE report_daily")
        conn.execute("UPDATE report_watermarks SET last_entry_id = 0, refreshed_at = NULL")
        program = conn.execute("SELECT id FROM programs WHERE code = 'bench'").fetchone()
        conn.commit()
    assert program is not None
    return int(program[0])


def setup_program(db: Database, stores: int) -> int:
    start = datetime(YEAR - 1, 12, 1, tzinfo=UTC)
    with db.unit_of_work() as session:
        program = setup.create_program(session, PROGRAM, actor=SYSTEM, now=start)
        for n in range(1, stores + 1):
            programs.create_store(
                session,
                program,
                StoreCreate(code=f"s{n:02d}", name=f"Store {n}"),
                actor=SYSTEM,
                now=start,
            )
        tiers.set_tiers(session, program, TIERS, actor=SYSTEM, now=start)
        return program.id


def generate(url: str, program_id: int, *, entries: int, accounts: int) -> dict[str, Any]:
    """Members, accounts, tier history, purchases and a year of entries, set-based."""
    earns = entries * 70 // 100
    redeems = entries * 15 // 100
    expiries = entries * 8 // 100
    reversals = entries * 2 // 100
    adjusts = entries - earns - redeems - expiries - reversals
    year_start = f"'{YEAR}-01-01 00:00+09'::timestamptz"
    seconds = 365 * 86400
    timings: dict[str, float] = {}
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("SET session_replication_role = replica")  # no FK triggers in the load
        conn.execute("SET maintenance_work_mem = '512MB'")
        for indexes in INDEXES.values():
            for index in indexes:
                conn.execute(f"DROP INDEX IF EXISTS {index.split(' ')[0]}")
        store_ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM stores WHERE program_id = %s ORDER BY id", (program_id,)
            )
        ]
        lo_store, n_stores = store_ids[0], len(store_ids)

        def step(name: str, sql: str, *params: Any) -> None:
            started = time.perf_counter()
            # "%" is SQL's modulo here: escape it for psycopg, keep the %s placeholders.
            conn.execute(sql.replace("%", "%%").replace("%%s", "%s"), params or None)
            conn.commit()
            timings[name] = round(time.perf_counter() - started, 2)
            print(f"  {name}: {timings[name]} s", file=sys.stderr)

        step(
            "members",
            f"""INSERT INTO members (name, language, preferences, attributes, marketing_consent,
                                     status, created_at, updated_at)
                SELECT 'member ' || g, 'ko', '{{}}', '{{}}', false, 'active',
                       {year_start} - interval '30 days', {year_start} - interval '30 days'
                FROM generate_series(1, %s) g""",
            accounts,
        )
        step(
            "accounts",
            """INSERT INTO accounts (program_id, member_id, available, pending, debt, earned,
                                     redeemed, expired, adjusted, created_at)
               SELECT %s, id, 0, 0, 0, 0, 0, 0, 0, created_at FROM members""",
            program_id,
        )
        # Everyone becomes basic in January; ~40 % reach silver, ~10 % gold later in the year.
        step(
            "tier_changes",
            f"""INSERT INTO tier_changes (account_id, program_id, from_tier, to_tier, at, reason,
                                          actor)
                SELECT id, %s, NULL, 'basic',
                       {year_start} + (hashint4(id::int) & 2147483647) % (30 * 86400)
                       * interval '1 second', 'upgrade', 'system' FROM accounts
                UNION ALL
                SELECT id, %s, 'basic', 'silver',
                       {year_start} + (40 + (hashint4(id::int + 7) & 2147483647) % 200)
                       * interval '1 day', 'upgrade', 'system'
                FROM accounts WHERE (hashint4(id::int + 1) & 2147483647) % 10 < 4
                UNION ALL
                SELECT id, %s, 'silver', 'gold',
                       {year_start} + (250 + (hashint4(id::int + 9) & 2147483647) % 100)
                       * interval '1 day', 'upgrade', 'system'
                FROM accounts WHERE (hashint4(id::int + 1) & 2147483647) % 10 = 0""",
            program_id,
            program_id,
            program_id,
        )
        lo_account = conn.execute("SELECT min(id) FROM accounts").fetchone()[0]  # type: ignore[index]
        # Purchase g and its earn entry share the id g (so earn_entry_id needs no update).
        step(
            "purchases",
            f"""INSERT INTO purchases (id, program_id, account_id, external_id, store_id, channel,
                        occurred_at, created_at, amount_minor, lines, points_earned, points_spent,
                        earn_entry_id, refunded_minor, reversed_points, restored_points,
                        request_hash)
                SELECT g, %s, %s + (hashint4(g) & 2147483647) % %s, 'p' || g,
                       %s + (hashint4(g + 1) & 2147483647) % %s,
                       (ARRAY['pos', 'online', 'app'])[1 + (hashint4(g + 2) & 2147483647) % 3],
                       {year_start} + ((hashint4(g + 3) & 2147483647) % {seconds})
                       * interval '1 second',
                       {year_start} + ((hashint4(g + 3) & 2147483647) % {seconds})
                       * interval '1 second',
                       1000 * (1 + (hashint4(g + 4) & 2147483647) % 60), '[]',
                       10 * (1 + (hashint4(g + 4) & 2147483647) % 60), 0, g, 0, 0, 0, 'bench'
                FROM generate_series(1, %s) g""",
            program_id,
            lo_account,
            accounts,
            lo_store,
            n_stores,
            earns,
        )
        step(
            "earn entries",
            """INSERT INTO entries (id, program_id, account_id, kind, points, qualifying,
                                    purchase_id, occurred_at, created_at, store_id, channel,
                                    actor, external_ref, rule_version)
               SELECT id, program_id, account_id, 'earn', points_earned, points_earned, id,
                      occurred_at, created_at, store_id, channel, 'api_key:1', external_id, 1
               FROM purchases""",
        )
        # The other kinds, ids after the earns: redemptions on a purchase, expiries at a local
        # midnight, refund reversals (a third give back spent points), manual adjustments.
        step(
            "other entries",
            f"""INSERT INTO entries (id, program_id, account_id, kind, points, qualifying,
                                    purchase_id, occurred_at, created_at, store_id, channel,
                                    actor)
               SELECT {earns} + g, %s, p.account_id, k.kind,
                      CASE k.kind
                        WHEN 'redeem' THEN -1000 * (1 + (hashint4(g + 5) & 2147483647) % 3)
                        WHEN 'expire' THEN -(1 + (hashint4(g + 5) & 2147483647) % 500)
                        WHEN 'reverse' THEN CASE WHEN g % 3 = 0 THEN 1000
                                                 ELSE -p.points_earned END
                        ELSE CASE WHEN g % 4 = 0 THEN -100 ELSE 300 END
                      END,
                      0,
                      CASE WHEN k.kind IN ('redeem', 'reverse') THEN p.id END,
                      CASE WHEN k.kind = 'expire'
                           THEN date_trunc('day', p.occurred_at AT TIME ZONE '{TZ}')
                                AT TIME ZONE '{TZ}'
                           ELSE p.occurred_at + interval '7 minutes' END,
                      CASE WHEN k.kind = 'expire'
                           THEN date_trunc('day', p.occurred_at AT TIME ZONE '{TZ}')
                                AT TIME ZONE '{TZ}' + interval '10 minutes'
                           ELSE p.occurred_at + interval '7 minutes' END,
                      CASE WHEN k.kind IN ('redeem', 'reverse') THEN p.store_id END,
                      CASE WHEN k.kind IN ('redeem', 'reverse') THEN p.channel END,
                      'system'
               FROM generate_series(1, %s) g
               CROSS JOIN LATERAL (SELECT CASE
                   WHEN g <= %s THEN 'redeem'
                   WHEN g <= %s THEN 'expire'
                   WHEN g <= %s THEN 'reverse'
                   ELSE 'adjust' END AS kind) k
               JOIN purchases p ON p.id = 1 + (hashint4(g + 6) & 2147483647) % {earns}""",
            program_id,
            entries - earns,
            redeems,
            redeems + expiries,
            redeems + expiries + reversals,
        )
        step(
            "sequences",
            """SELECT setval('entries_id_seq', (SELECT max(id) FROM entries)),
                      setval('purchases_id_seq', (SELECT max(id) FROM purchases))""",
        )
        for indexes in INDEXES.values():
            for index in indexes:
                step(f"index {index.split(' ')[0]}", f"CREATE INDEX {index}")
        conn.execute("SET session_replication_role = origin")
        conn.commit()
    with psycopg.connect(
        url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as c:
        started = time.perf_counter()
        c.execute("VACUUM ANALYZE")
        timings["vacuum analyze"] = round(time.perf_counter() - started, 2)
    return {
        "entries": entries,
        "earns": earns,
        "redeems": redeems,
        "expiries": expiries,
        "reversals": reversals,
        "adjustments": adjusts,
        "accounts": accounts,
        "seconds": timings,
    }


def add_tail(url: str, program_id: int, count: int) -> None:
    """`count` more adjustments written after the refresh: above the watermark."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute(
            f"""INSERT INTO entries (program_id, account_id, kind, points, qualifying, occurred_at,
                                     created_at, actor, channel)
                SELECT %s, a.id, 'adjust', 50, 0,
                       '{YEAR}-12-31 12:00+09'::timestamptz, '{YEAR}-12-31 12:00+09'::timestamptz,
                       'system', 'pos'
                FROM generate_series(1, %s) g
                JOIN accounts a ON a.id = (SELECT min(id) FROM accounts) + g %% 1000""",
            (program_id, count),
        )
        conn.commit()


def baseline(url: str, program_id: int, runs: int) -> tuple[float, dict[str, int]]:
    """The plain GROUP BY over the raw entries of the year; (median seconds, sums by kind)."""
    sql = f"""SELECT (occurred_at AT TIME ZONE '{TZ}')::date AS day, kind, sum(points)
              FROM entries
              WHERE program_id = %s AND occurred_at >= '{YEAR}-01-01 00:00+09'
                AND occurred_at < '{YEAR + 1}-01-01 00:00+09'
              GROUP BY 1, 2"""
    times = []
    sums: dict[str, int] = {}
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        for _ in range(runs):
            started = time.perf_counter()
            rows = conn.execute(sql, (program_id,)).fetchall()
            times.append(time.perf_counter() - started)
        for _day, kind, points in rows:
            sums[kind] = sums.get(kind, 0) + int(points)
    return statistics.median(times), sums


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    fn()  # warm-up
    times, out = [], None
    for _ in range(runs):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), out


def report_runs(db: Database, runs: int) -> dict[str, Any]:
    now = datetime(YEAR + 1, 1, 15, tzinfo=UTC)
    out: dict[str, Any] = {}

    def year_report(**kwargs: Any) -> Any:
        with db.unit_of_work(readonly=True) as session:
            program = programs.get_program(session, "bench")
            rng = day_range(program, first=date(YEAR, 1, 1), last=date(YEAR, 12, 31), now=now)
            return period.period_report(session, program, rng, now=now, **kwargs)

    def owed() -> Any:
        with db.unit_of_work(readonly=True) as session:
            program = programs.get_program(session, "bench")
            return finance.liability(session, program, as_of=date(YEAR, 12, 31), now=now)

    for name, fn in (
        ("year_by_day", lambda: year_report()),
        ("year_by_month_and_store", lambda: year_report(granularity="month", group_by="store")),
        ("year_by_month_and_tier", lambda: year_report(granularity="month", group_by="tier")),
        ("liability_year_end", owed),
    ):
        seconds, result = timed(fn, runs)
        out[name] = {"seconds": round(seconds, 4), "result": result}
        print(f"  {name}: {seconds:.3f} s", file=sys.stderr)
    return out


def _sums_of(report: Any) -> dict[str, int]:
    t = report.totals
    return {
        "earn": t.earned,
        "redeem": -t.redeemed,
        "expire": -t.expired,
        "reverse": t.restored - t.reversed,
        "adjust": t.adjusted_in - t.adjusted_out,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.reuse:
        url = _db_url(args.pg_url, args.db_name)
        program_id = reset_for_reuse(url, args.entries)
        generated: dict[str, Any] = {"entries": args.entries, "reused": True}
    else:
        print(f"generating {args.entries:,} entries…", file=sys.stderr)
        url = fresh_database(args.pg_url, args.db_name)
    db = Database(url)
    try:
        if not args.reuse:
            program_id = setup_program(db, args.stores)
            started = time.perf_counter()
            generated = generate(url, program_id, entries=args.entries, accounts=args.accounts)
            generated["total_seconds"] = round(time.perf_counter() - started, 1)

        print("refreshing the roll-up…", file=sys.stderr)
        refreshed = rollup.refresh(db, now=datetime.now(UTC))
        with db.unit_of_work(readonly=True) as session:
            rows = session.execute(select(func.count()).select_from(ReportDaily)).scalar_one()
        print(f"  refresh: {refreshed.seconds:.1f} s, {rows:,} roll-up rows", file=sys.stderr)
        check_seconds = None
        if args.check:
            started = time.perf_counter()
            with db.unit_of_work(readonly=True) as session:
                assert rollup.check(session).ok
            check_seconds = round(time.perf_counter() - started, 1)

        print("timing reports…", file=sys.stderr)
        reports = report_runs(db, args.runs)
        base_seconds, base_sums = baseline(url, program_id, 3)
        print(f"  baseline GROUP BY: {base_seconds:.3f} s", file=sys.stderr)
        correct = all(
            _sums_of(reports[name]["result"]) == base_sums
            for name in ("year_by_day", "year_by_month_and_store", "year_by_month_and_tier")
        )
        owed = reports["liability_year_end"]["result"]
        correct = correct and owed.ledger_points == sum(base_sums.values())

        tail: dict[str, Any] = {"entries": args.tail}
        if args.tail:
            add_tail(url, program_id, args.tail)
            seconds, report = timed(lambda: report_runs_day(db), args.runs)
            _tail_seconds, tail_sums = baseline(url, program_id, 1)
            tail.update(
                seconds=round(seconds, 4),
                correct=_sums_of(report) == tail_sums,
            )
            correct = correct and tail["correct"]
            print(
                f"  year_by_day with a {args.tail:,}-entry tail: {seconds:.3f} s", file=sys.stderr
            )

        day = reports["year_by_day"]["seconds"]
        result = {
            "benchmark": "reports_year",
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "generated": generated,
            "refresh": {
                "seconds": round(refreshed.seconds, 2),
                "chunks": refreshed.chunks,
                "rollup_rows": rows,
                "entries_per_s": round(args.entries / refreshed.seconds)
                if refreshed.seconds
                else None,
            },
            "check_seconds": check_seconds,
            "reports": {name: {"seconds": r["seconds"]} for name, r in reports.items()},
            "baseline": {
                "name": "plain SELECT day, kind, sum(points) … GROUP BY",
                "seconds": round(base_seconds, 4),
            },
            "figure": day,
            "unit": "s (year report per day, median)",
            "ratio": round(day / base_seconds, 4) if base_seconds else None,
            "target": TARGET_SECONDS,
            "meets_target": day < TARGET_SECONDS,
            "tail": tail,
            "correct": correct,
        }
        return result
    finally:
        db.dispose()
        if not args.keep:
            drop_database(args.pg_url, args.db_name)


def report_runs_day(db: Database) -> Any:
    now = datetime(YEAR + 1, 1, 15, tzinfo=UTC)
    with db.unit_of_work(readonly=True) as session:
        program = programs.get_program(session, "bench")
        rng = day_range(program, first=date(YEAR, 1, 1), last=date(YEAR, 12, 31), now=now)
        return period.period_report(session, program, rng, now=now)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    result = run(args)
    path = args.json or RESULTS / f"reports_year-{args.entries}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("figure", "ratio", "correct", "refresh")}, indent=2))
    print(f"written to {path}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
