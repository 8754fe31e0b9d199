"""Earn throughput with a program's fraud controls off and on (docs/fraud.md, decision 0023).

In-process, as `sale_path.py`: the same bakery and members, sales recorded one at a time (the
till) and as a batch upload, alternately with the controls off and on (rounds of `--sales`
each, so load on a shared machine falls on both alike). "On" is every kind of control at once,
set high enough that no sale is held (the cost of checking, not of holding): sales per minute
and per day, points per day and redemptions per day for member, card, store and API key, the
duplicate check and the hold threshold.

    .venv/bin/python benchmarks/fraud_controls.py --dbs sqlite,postgresql --sales 400
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import drop_pg_database, fresh_pg_database, setup_bakery

from patron.audit.service import Actor
from patron.db.engine import Database
from patron.fraud import settings
from patron.programs.service import get_program
from patron.sales import batch, purchases
from patron.sales.schemas import PurchaseRequest

KEY = Actor("api_key", id="bench", scopes=frozenset({"pos"}))
HIGH = {x: 10**6 for x in settings.LIMITS}
ON = {
    "member": HIGH,
    "card": HIGH,
    "store": HIGH,
    "key": HIGH,
    "duplicate_window_minutes": 10,
    "hold_points_above": 10**9,
}


def _body(n: int, member: int) -> PurchaseRequest:
    return PurchaseRequest.model_validate(
        {
            "external_id": f"F-{n}",
            "member": {"id": member},
            "amount": str(25800 + n),  # never a duplicate of another sale
            "store": "mapo",
        }
    )


def _controls(db: Database, doc: dict[str, Any], now: datetime) -> None:
    with db.unit_of_work() as session:
        program = get_program(session, "bakery")
        settings.save(session, program, settings.parse(doc), actor=KEY, now=now)


def measure(url: str, sales: int, rounds: int) -> dict[str, float]:
    info = setup_bakery(url, 200)
    lo, hi = info["member_lo"], info["member_hi"]
    members = hi - lo + 1
    db = Database(url)
    timings: dict[str, list[float]] = {"off": [], "on": []}
    batches: dict[str, list[float]] = {"off": [], "on": []}
    n = 0
    try:
        now = datetime.now(UTC)
        for _ in range(rounds):
            for mode in ("off", "on"):
                _controls(db, ON if mode == "on" else {}, now)
                for _ in range(sales):
                    req = _body(n, lo + n % members)
                    n += 1
                    start = time.perf_counter()
                    with db.unit_of_work() as session:
                        answer = purchases.purchase_by_code(
                            session, "bakery", req, actor=KEY, now=now
                        )
                    timings[mode].append(time.perf_counter() - start)
                    assert "review" not in answer, answer
                reqs = [_body(n + k, lo + (n + k) % members) for k in range(sales)]
                n += sales
                start = time.perf_counter()
                report = batch.ingest(db, "bakery", reqs, actor=KEY, now=now, chunk_size=500)
                batches[mode].append((time.perf_counter() - start) / sales)
                assert report.errors == 0, report.items[:3]
    finally:
        db.dispose()
    out = {f"earn_{k}": statistics.median(v) * 1e6 for k, v in timings.items()}
    out.update({f"batch_{k}": statistics.median(v) * 1e6 for k, v in batches.items()})
    out["earn_on_vs_off"] = out["earn_on"] / out["earn_off"]
    out["batch_on_vs_off"] = out["batch_on"] / out["batch_off"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dbs", default="sqlite,postgresql")
    parser.add_argument("--sales", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for engine in args.dbs.split(","):
        if engine == "postgresql":
            url = fresh_pg_database("patron_bench_fraud")
            try:
                results[engine] = measure(url, args.sales, args.rounds)
            finally:
                drop_pg_database("patron_bench_fraud")
        else:
            with tempfile.TemporaryDirectory() as tmp:
                results[engine] = measure(f"sqlite:///{tmp}/bench.db", args.sales, args.rounds)
        r = results[engine]
        print(
            f"{engine:10s} earn off {r['earn_off']:6.0f} µs  on {r['earn_on']:6.0f} µs  "
            f"(×{r['earn_on_vs_off']:.2f})   batch off {r['batch_off']:5.0f} µs/sale  "
            f"on {r['batch_on']:5.0f} µs/sale (×{r['batch_on_vs_off']:.2f})"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
