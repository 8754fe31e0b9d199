"""The milestones evaluation job at scale, beside a plain GROUP BY of the same condition, same
run, same database (docs/engagement.md, decision 0036).

PostgreSQL. The bakery is set up through Patron's services; then, set-based with
generate_series, N members with accounts and 10 purchases each (a tenth of them all in the last
10 hours, the rest spread over the year). Three goals without a reward (the job's own cost;
a reward adds one ledger adjustment per new achiever): "10 visits in a calendar month"
(repeat monthly: last and this month), "10 purchases ever" and "3 months in a row". Each is
timed as the job runs it (`jobs.run_program(..., only=code)`):

- first run: every achiever is new (INSERT … SELECT … ON CONFLICT with its outbox events);
  the achievements and events are deleted before each repetition;
- steady run: nothing new (the hourly run after the first);
- baseline: a hand-written `SELECT count(*) FROM (… GROUP BY account_id HAVING …)` of the same
  condition (both months for the month goal).

    .venv/bin/python benchmarks/milestones_job.py --members 100000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import drop_pg_database, fresh_pg_database, setup_bakery
from sqlalchemy import text

from patron.audit.service import SYSTEM
from patron.db.engine import Database
from patron.ledger.expiry import add_months
from patron.milestones import jobs, service
from patron.milestones.evaluate import month_start
from patron.milestones.schemas import MilestoneIn
from patron.programs.service import get_program

GENERATE = [
    """
    INSERT INTO members (name, language, preferences, attributes, marketing_consent, status,
                         created_at, updated_at)
    SELECT 'Bench ' || g, 'ko', '{}', '{}', false, 'active', now(), now()
    FROM generate_series(1, :n) g
    """,
    """
    INSERT INTO accounts (program_id, member_id, available, pending, debt, earned, redeemed,
                          expired, adjusted, tier_manual, tier_grace_left, created_at)
    SELECT :p, m.id, 0, 0, 0, 0, 0, 0, 0, false, 0, m.created_at
    FROM members m WHERE m.id > :lo AND NOT EXISTS (SELECT 1 FROM accounts x WHERE x.member_id = m.id)
    """,
    """
    INSERT INTO purchases (program_id, account_id, external_id, store_id, channel, occurred_at,
                           created_at, amount_minor, lines, points_earned, points_spent,
                           refunded_minor, reversed_points, restored_points, request_hash)
    SELECT :p, a.id, 'B-' || a.id || '-' || k, :store, 'pos',
           CASE WHEN a.id % 10 = 0 THEN now() - k * interval '1 hour'
                ELSE now() - ((a.id * 7 + k * 37) % 365) * interval '1 day' END,
           now(), 10000 + (a.id * 13 + k * 977) % 90000, '[]', 0, 0, 0, 0, 0, ''
    FROM accounts a CROSS JOIN generate_series(1, 10) k
    WHERE a.program_id = :p AND a.member_id > :lo
    """,
]

GOALS: list[dict[str, Any]] = [
    {"code": "ten-in-a-month", "kind": "visits", "target": 10, "window": "month", "repeat": True},
    {"code": "ten-ever", "kind": "visits", "target": 10},
    {"code": "three-in-a-row", "kind": "streak", "target": 3},
]

HAND_MONTH = """
SELECT count(*) FROM (SELECT p.account_id FROM purchases p JOIN accounts a ON a.id = p.account_id
  JOIN members m ON m.id = a.member_id
  WHERE p.program_id = :p AND p.occurred_at >= :lo AND p.occurred_at < :hi
    AND p.amount_minor - p.refunded_minor > 0 AND m.status = 'active'
  GROUP BY p.account_id HAVING count(*) >= 10) x
"""
HAND_EVER = """
SELECT count(*) FROM (SELECT p.account_id FROM purchases p JOIN accounts a ON a.id = p.account_id
  JOIN members m ON m.id = a.member_id
  WHERE p.program_id = :p AND p.amount_minor - p.refunded_minor > 0 AND m.status = 'active'
  GROUP BY p.account_id HAVING count(*) >= 10) x
"""
HAND_STREAK = """
SELECT count(*) FROM (SELECT account_id FROM (
  SELECT account_id FROM (
    SELECT account_id, mi - row_number() OVER (PARTITION BY account_id ORDER BY mi) AS island
    FROM (SELECT DISTINCT p.account_id,
                 extract(year FROM p.occurred_at AT TIME ZONE 'Asia/Seoul')::int * 12
                 + extract(month FROM p.occurred_at AT TIME ZONE 'Asia/Seoul')::int - 1 AS mi
          FROM purchases p JOIN accounts a ON a.id = p.account_id JOIN members m ON m.id = a.member_id
          WHERE p.program_id = :p AND p.amount_minor - p.refunded_minor > 0 AND m.status = 'active') d
  ) r GROUP BY account_id, island HAVING count(*) >= 3
) runs GROUP BY account_id) achievers
"""


def generate(url: str, members: int) -> dict[str, Any]:
    setup_bakery(url, 10)
    db = Database(url)
    started = time.perf_counter()
    with db.engine.begin() as conn:
        p = conn.execute(text("SELECT id FROM programs WHERE code = 'bakery'")).scalar_one()
        store = conn.execute(text("SELECT id FROM stores WHERE program_id = :p"), {"p": p}).scalar()
        lo = conn.execute(text("SELECT max(id) FROM members")).scalar_one()
        for sql in GENERATE:
            conn.execute(text(sql), {"n": members, "p": p, "lo": lo, "store": store})
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))
    with db.engine.connect() as conn:
        rows = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("members", "purchases")}  # fmt: skip
    db.dispose()
    return {"program_id": p, "rows": rows, "generate_seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


def measure(url: str, runs: int, program_id: int) -> list[dict[str, Any]]:
    db = Database(url)
    now = datetime.now(UTC)
    tz = "Asia/Seoul"
    this = now.astimezone(ZoneInfo(tz)).date().replace(day=1)
    last, after = add_months(this, -1), add_months(this, 1)
    with db.unit_of_work() as s:
        program = get_program(s, "bakery")
        for body in GOALS:
            service.create(s, program, MilestoneIn.model_validate({"names": {"en": body["code"]}, **body}),
                           actor=SYSTEM, now=now)  # fmt: skip

    def baseline(code: str) -> int:
        with db.engine.connect() as conn:
            if code == "ten-in-a-month":
                return sum(
                    int(conn.execute(text(HAND_MONTH), {"p": program_id, "lo": month_start(a, tz),
                                                        "hi": month_start(b, tz)}).scalar_one())
                    for a, b in ((last, this), (this, after))
                )  # fmt: skip
            sql = HAND_EVER if code == "ten-ever" else HAND_STREAK
            return int(conn.execute(text(sql), {"p": program_id}).scalar_one())

    def reset() -> None:
        with db.engine.begin() as conn:
            conn.execute(text("DELETE FROM milestone_achievements"))
            conn.execute(text("DELETE FROM domain_events WHERE kind = 'milestone.achieved'"))

    results = []
    try:
        for body in GOALS:
            code = body["code"]
            baseline(code)  # warm the caches alike
            firsts, steadies, bases = [], [], []
            achieved = hand = -1
            for _ in range(runs):
                reset()
                t = time.perf_counter()
                report = jobs.run_program(db, "bakery", now=now, only=code)
                firsts.append(time.perf_counter() - t)
                achieved = sum(i.achieved for i in report.items)
                t = time.perf_counter()
                again = jobs.run_program(db, "bakery", now=now, only=code)
                steadies.append(time.perf_counter() - t)
                assert sum(i.achieved for i in again.items) == 0
                t = time.perf_counter()
                hand = baseline(code)
                bases.append(time.perf_counter() - t)
            f, s_, b = (statistics.median(x) for x in (firsts, steadies, bases))
            results.append({
                "scenario": f"milestone job: {code}", "first_run_s": round(f, 3),
                "steady_run_s": round(s_, 3), "baseline_group_by_s": round(b, 3),
                "ratio_first": round(f / b, 2), "ratio_steady": round(s_ / b, 2),
                "achieved": achieved, "group_by_count": hand, "correct": achieved == hand,
            })  # fmt: skip
            print(json.dumps(results[-1]), flush=True)
    finally:
        db.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    name = "patron_bench_milestones"
    url = fresh_pg_database(name)
    try:
        info = generate(url, args.members)
        print(json.dumps({"members": args.members, **info}), flush=True)
        results = measure(url, args.runs, info["program_id"])
    finally:
        if not args.keep:
            drop_pg_database(name)
    if args.out:
        args.out.write_text(json.dumps({"data": info, "results": results}, indent=2))


if __name__ == "__main__":
    main()
