"""Segment count at scale: the compiler's one query beside a hand-written SQL query of the same
condition, same run, same database (docs/engagement.md, decision 0025).

PostgreSQL. The bakery (demo tiers basic/silver/gold) is set up through Patron's services; then,
set-based with generate_series, N members with accounts (1/7 gold, 2/7 silver, the rest basic;
joined up to two years ago; birthdays spread over the year), about 3 purchases per member over
the last year (a fifth of members never bought) and a tier_changes row per non-basic
account. Then ANALYZE, and each query runs `--runs` times alternately (compiled, hand-written);
the median is reported, with the ratio compiled / hand-written and whether the counts agree.

    .venv/bin/python benchmarks/segment_count.py --members 1000000

Conditions: "gold members dormant 60 days" (live and as of 30 days ago, from tier history) and a
composite: (gold or silver, with at least 100,000 KRW spent in the last 90 days) or (born in
May, no purchase in the last 30 days, never-buyers included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import drop_pg_database, fresh_pg_database, pg_url, setup_bakery
from sqlalchemy import func, select, text

from patron.db.engine import Database
from patron.programs.service import get_program
from patron.segments import service
from patron.segments.definition import Definition

GOLD_DORMANT = {
    "type": "all",
    "of": [{"type": "tier", "tiers": ["gold"]}, {"type": "dormant", "days": 60}],
}
COMPOSITE = {
    "type": "any",
    "of": [
        {
            "type": "all",
            "of": [
                {"type": "tier", "tiers": ["gold", "silver"]},
                {"type": "activity", "metric": "spend", "days": 90, "min": 100000},
            ],
        },
        {
            "type": "all",
            "of": [
                {"type": "birthday", "months": [5]},
                {"type": "dormant", "days": 30, "include_never": True},
            ],
        },
    ],
}
HAND_GOLD_DORMANT = """
SELECT count(*) FROM accounts a JOIN members m ON m.id = a.member_id
WHERE a.program_id = :p AND m.status = 'active' AND a.tier = 'gold'
  AND (SELECT max(p.occurred_at) FROM purchases p
       WHERE p.account_id = a.id AND p.occurred_at <= :now) <= :now - interval '60 days'
"""
HAND_GOLD_DORMANT_AS_OF = """
SELECT count(*) FROM accounts a JOIN members m ON m.id = a.member_id
WHERE a.program_id = :p AND m.status = 'active' AND a.created_at <= :now
  AND (SELECT t.to_tier FROM tier_changes t WHERE t.account_id = a.id AND t.at <= :now
       ORDER BY t.id DESC LIMIT 1) = 'gold'
  AND (SELECT max(p.occurred_at) FROM purchases p
       WHERE p.account_id = a.id AND p.occurred_at <= :now) <= :now - interval '60 days'
"""
HAND_COMPOSITE = """
SELECT count(*) FROM accounts a JOIN members m ON m.id = a.member_id
WHERE a.program_id = :p AND m.status = 'active'
  AND ((a.tier IN ('gold', 'silver')
        AND (SELECT sum(p.amount_minor) FROM purchases p
             WHERE p.account_id = a.id AND p.occurred_at > :now - interval '90 days'
               AND p.occurred_at <= :now) >= 100000)
       OR (extract(month FROM m.birthday) = 5
           AND NOT EXISTS (SELECT 1 FROM purchases p
                           WHERE p.account_id = a.id AND p.occurred_at > :now - interval '30 days'
                             AND p.occurred_at <= :now)))
"""

GENERATE = [
    # Members and accounts: ids after the few the services made.
    """
    INSERT INTO members (name, language, preferences, attributes, marketing_consent, status,
                         birthday, created_at, updated_at)
    SELECT 'Bench ' || g, 'ko', '{}', '{}', g % 3 = 0, 'active',
           date '1960-01-01' + (g::bigint * 7919 % 15000)::int, now() - (g % 730) * interval '1 day', now()
    FROM generate_series(1, :n) g
    """,
    """
    INSERT INTO accounts (program_id, member_id, available, pending, debt, earned, redeemed,
                          expired, adjusted, tier, tier_since, tier_manual, tier_grace_left,
                          created_at)
    SELECT :p, m.id, (m.id * 31) % 20000, 0, 0, (m.id * 31) % 20000, 0, 0, 0,
           CASE WHEN m.id % 7 = 0 THEN 'gold' WHEN m.id % 7 < 3 THEN 'silver'
                ELSE 'basic' END,
           m.created_at, false, 0, m.created_at
    FROM members m WHERE m.id > :lo AND NOT EXISTS (SELECT 1 FROM accounts x WHERE x.member_id = m.id)
    """,
    """
    INSERT INTO tier_changes (account_id, program_id, from_tier, to_tier, at, reason, actor)
    SELECT a.id, :p, 'basic', a.tier, a.created_at + interval '1 day', 'upgrade', 'bench'
    FROM accounts a WHERE a.program_id = :p AND a.tier <> 'basic' AND a.member_id > :lo
    """,
    # About 3 purchases per buying member over the last 365 days; member_id % 5 = 0 never buys.
    """
    INSERT INTO purchases (program_id, account_id, external_id, store_id, channel, occurred_at,
                           created_at, amount_minor, lines, points_earned, points_spent,
                           refunded_minor, reversed_points, restored_points, request_hash)
    SELECT :p, a.id, 'B-' || a.id || '-' || k, :store, 'pos',
           now() - ((a.id * 7 + k * 131) % 365) * interval '1 day',
           now(), 10000 + (a.id * 13 + k * 977) % 90000, '[]', 0, 0, 0, 0, 0, ''
    FROM accounts a CROSS JOIN generate_series(1, 5) k
    WHERE a.program_id = :p AND a.member_id > :lo AND a.member_id % 5 <> 0
      AND k <= 1 + (a.id * 3 % 5)
    """,
]


def generate(url: str, members: int) -> dict[str, Any]:
    info = setup_bakery(url, 10)
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
    counts = {}
    with db.engine.connect() as conn:
        for table in ("members", "accounts", "purchases", "tier_changes"):
            counts[table] = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    db.dispose()
    return {**info, "program_id": p, "rows": counts, "generate_seconds": round(
        time.perf_counter() - started, 1)}  # fmt: skip


def existing(url: str) -> dict[str, Any]:
    db = Database(url)
    with db.engine.connect() as conn:
        p = conn.execute(text("SELECT id FROM programs WHERE code = 'bakery'")).scalar_one()
        counts = {
            t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("members", "accounts", "purchases", "tier_changes")
        }
    db.dispose()
    return {"program_id": p, "rows": counts, "generate_seconds": None}


def _median_run(fn, runs: int) -> tuple[float, int]:
    times, value = [], -1
    for _ in range(runs):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), value


def measure(url: str, runs: int, program_id: int) -> list[dict[str, Any]]:
    db = Database(url)
    now = datetime.now(UTC)
    month_ago = now - timedelta(days=30)
    cases = [
        ("gold dormant 60 days", GOLD_DORMANT, None, HAND_GOLD_DORMANT, now),
        ("gold dormant 60 days, as of 30 days ago", GOLD_DORMANT, month_ago,
         HAND_GOLD_DORMANT_AS_OF, month_ago),
        ("composite (tier+spend 90d) or (birthday May+dormant 30d)", COMPOSITE, None,
         HAND_COMPOSITE, now),
    ]  # fmt: skip
    results = []
    try:
        for name, cond, as_of, hand, hand_now in cases:
            definition = Definition.model_validate({"condition": cond})

            def compiled(definition=definition, as_of=as_of) -> int:
                with db.unit_of_work(readonly=True) as s:
                    program = get_program(s, "bakery")
                    return service.count(s, program, definition, as_of=as_of, now=now)

            def handwritten(hand=hand, hand_now=hand_now) -> int:
                with db.engine.connect() as conn:
                    return int(
                        conn.execute(text(hand), {"p": program_id, "now": hand_now}).scalar_one()
                    )

            compiled()  # warm the caches for both alike
            handwritten()
            c_times, h_times = [], []
            c_count = h_count = -1
            for _ in range(runs):
                t, c_count = _median_run(compiled, 1)
                c_times.append(t)
                t, h_count = _median_run(handwritten, 1)
                h_times.append(t)
            c, h = statistics.median(c_times), statistics.median(h_times)
            results.append(
                {
                    "scenario": name,
                    "figure": round(c, 3),
                    "unit": "s",
                    "baseline": round(h, 3),
                    "baseline_name": "hand-written SQL",
                    "ratio": round(c / h, 2) if h else None,
                    "target": "< 2 s",
                    "target_met": c < 2.0,
                    "count": c_count,
                    "correct": c_count == h_count,
                    "hand_count": h_count,
                }
            )
            print(json.dumps(results[-1]), flush=True)
        with db.unit_of_work(readonly=True) as s:
            program = get_program(s, "bakery")
            q = service.query(
                s, program, Definition.model_validate({"condition": GOLD_DORMANT}),
                as_of=None, now=now,
            )  # fmt: skip
            plan = s.execute(
                text("EXPLAIN " + str(select(func.count()).select_from(q.subquery()).compile(
                    db.engine, compile_kwargs={"literal_binds": True})))
            ).scalars().all()  # fmt: skip
            results.append({"scenario": "plan of the compiled gold-dormant count", "plan": plan})
    finally:
        db.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--reuse", action="store_true", help="measure on the database a --keep run left"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    name = "patron_bench_segments"
    url = pg_url(name) if args.reuse else fresh_pg_database(name)
    try:
        info = existing(url) if args.reuse else generate(url, args.members)
        print(json.dumps({"members": args.members, **{k: info[k] for k in
                          ("rows", "generate_seconds")}}), flush=True)  # fmt: skip
        results = measure(url, args.runs, info["program_id"])
    finally:
        if not args.keep:
            drop_pg_database(name)
    doc = {"members": args.members, "runs": args.runs, "data": info["rows"], "results": results}
    if args.out:
        args.out.write_text(json.dumps(doc, indent=2, default=str))
    print(json.dumps(doc["results"][-1], indent=1, default=str))


if __name__ == "__main__":
    main()
