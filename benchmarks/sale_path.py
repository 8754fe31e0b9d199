"""In-process cost of recording a sale: one at a time (the till) and in batches (an upload).

No HTTP, no other process: the figure is the sale path's own cost on this machine — Python
CPU plus the database round trips — so two versions of the code can be compared in one run
(`PYTHONPATH=<other checkout>/src python benchmarks/sale_path.py`). The baseline measured in
the same run is the plain INSERT of one entry row per sale in its own transaction (SQLAlchemy
Core, same connection pool): what a sale would cost if it wrote one row and read nothing.

    .venv/bin/python benchmarks/sale_path.py --dbs sqlite,postgresql --sales 2000
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
from sqlalchemy import text

from patron.audit.service import CLI
from patron.db.engine import Database
from patron.sales import batch, purchases
from patron.sales.schemas import PurchaseRequest


def _body(n: int, member: int, spend: bool, big: bool = False) -> PurchaseRequest:
    data: dict[str, Any] = {
        "external_id": f"S-{n}",
        "member": {"id": member},
        "amount": "25800",
        "store": "mapo",
        "lines": [
            {"id": "1", "sku": "latte", "category": "drink", "quantity": "2", "amount": "9600"},
            {"id": "2", "sku": "cake", "category": "cake", "quantity": "1", "amount": "16200"},
        ],
    }
    if big:  # a large sale: enough points for every later redemption
        data["amount"] = "2580000"
        del data["lines"]
    if spend:
        data["points_to_spend"] = 1000
    return PurchaseRequest.model_validate(data)


def measure(url: str, sales: int, chunk: int) -> dict[str, float]:
    info = setup_bakery(url, 200)
    lo, hi = info["member_lo"], info["member_hi"]
    members = hi - lo + 1
    db = Database(url)
    try:
        with db.unit_of_work() as session:  # a baseline table outside the ledger
            session.execute(text("CREATE TABLE bench_rows (id integer primary key, v integer)"))
        now = datetime.now(UTC)
        for n in range(200):  # warm up: every member has points to spend later
            with db.unit_of_work() as session:
                purchases.purchase_by_code(
                    session,
                    "bakery",
                    _body(10**8 + n, lo + n % members, False, big=True),
                    actor=CLI,
                    now=now,
                )
        timings: dict[str, list[float]] = {"earn": [], "spend": [], "baseline": []}
        for n in range(sales):
            kind = "spend" if n % 5 == 4 else "earn"
            req = _body(n, lo + n % members, kind == "spend")
            start = time.perf_counter()
            with db.unit_of_work() as session:
                purchases.purchase_by_code(session, "bakery", req, actor=CLI, now=now)
            timings[kind].append(time.perf_counter() - start)
            start = time.perf_counter()
            with db.unit_of_work() as session:
                session.execute(text("INSERT INTO bench_rows (id, v) VALUES (:i, 1)"), {"i": n})
            timings["baseline"].append(time.perf_counter() - start)
        reqs = [_body(10**7 + n, lo + n % members, n % 5 == 4) for n in range(sales)]
        start = time.perf_counter()
        report = batch.ingest(db, "bakery", reqs, actor=CLI, now=now, chunk_size=chunk)
        batch_s = time.perf_counter() - start
        assert report.errors == 0, report.items[:3]
    finally:
        db.dispose()
    out = {k: statistics.median(v) * 1e6 for k, v in timings.items()}
    out["batch_per_sale"] = batch_s / sales * 1e6
    out["earn_vs_baseline"] = out["earn"] / out["baseline"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dbs", default="sqlite,postgresql")
    parser.add_argument("--sales", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for engine in args.dbs.split(","):
        if engine == "postgresql":
            url = fresh_pg_database("patron_bench_sale_path")
            try:
                results[engine] = measure(url, args.sales, args.chunk)
            finally:
                drop_pg_database("patron_bench_sale_path")
        else:
            with tempfile.TemporaryDirectory() as tmp:
                results[engine] = measure(f"sqlite:///{tmp}/bench.db", args.sales, args.chunk)
        r = results[engine]
        print(
            f"{engine:10s} earn {r['earn']:7.0f} µs  spend {r['spend']:7.0f} µs  "
            f"batch {r['batch_per_sale']:6.0f} µs/sale  baseline {r['baseline']:6.0f} µs  "
            f"earn/baseline {r['earn_vs_baseline']:.1f}×"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
