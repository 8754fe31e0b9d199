"""The tamper-evident audit log: sealing and verifying N audit records (decision 0018).

    .venv/bin/python benchmarks/audit_chain.py [--records 100000] [--block-size 1000]
        [--dbs sqlite,postgresql] --pg-url postgresql://postgres@127.0.0.1:5432/<an empty database>
        [--json FILE]

Each engine gets an empty database (a temporary SQLite file; on PostgreSQL the empty database
`--pg-url` names, whose audit tables are emptied afterwards), migrated, then filled with `--records` audit
records shaped like the earn path's `points.adjusted` (a few keys before and after). Measured:
`seal_pending` sealing all of them from nothing (what the first run after the upgrade does),
then `verify` over the whole chain, then the admin page's check of the newest seals (about
2,000 records). Also a
same-run baseline: reading every record once (`SELECT *` streamed), the floor for either.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select

from patron.admin.audit_log import PAGE_RECORDS
from patron.audit import chain
from patron.audit.models import AuditRecord
from patron.db.engine import Database
from patron.db.migrate import upgrade


def fill(db: Database, records: int) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        {
            "at": start + timedelta(seconds=n),
            "actor": "api_key:1" if n % 3 else "user:2",
            "action": "points.adjusted",
            "subject_type": "member",
            "subject_id": str(n % 5000 + 1),
            "program_id": 1 + n % 2,
            "before": {"balance": n, "tier": "silver"},
            "after": {"balance": n + 120, "tier": "silver", "reason": f"매장 조정 #{n}"},
        }
        for n in range(records)
    ]
    for offset in range(0, records, 10_000):
        with db.unit_of_work() as session:
            session.execute(insert(AuditRecord), rows[offset : offset + 10_000])


def baseline_read(db: Database) -> float:
    began = time.perf_counter()
    with db.unit_of_work(readonly=True) as session:
        for _ in session.execute(select(*AuditRecord.__table__.c)).yield_per(5000):
            pass
    return time.perf_counter() - began


def measure(db: Database, records: int, block_size: int) -> dict[str, Any]:
    fill(db, records)
    read_s = baseline_read(db)
    now = datetime.now(UTC)
    began = time.perf_counter()
    sealed = chain.seal_pending(db, now=now, block_size=block_size, settle_timeout=5)
    seal_s = time.perf_counter() - began
    assert sealed.records == records, sealed
    began = time.perf_counter()
    with db.unit_of_work(readonly=True) as session:
        report = chain.verify(session)
    verify_s = time.perf_counter() - began
    assert report.ok and report.sealed_records == records, report.findings[:5]
    began = time.perf_counter()
    with db.unit_of_work(readonly=True) as session:
        tail = chain.verify(session, last_records=PAGE_RECORDS)
    page_s = time.perf_counter() - began
    assert tail.ok
    return {
        "records": records,
        "block_size": block_size,
        "seals": sealed.seals,
        "seal_s": round(seal_s, 2),
        "verify_s": round(verify_s, 2),
        "admin_page_check_s": round(page_s, 3),
        "baseline_read_s": round(read_s, 2),
        "seal_records_per_s": round(records / seal_s),
        "verify_records_per_s": round(records / verify_s),
    }


def run_sqlite(records: int, block_size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        upgrade(url)
        db = Database(url)
        try:
            return measure(db, records, block_size)
        finally:
            db.dispose()


def run_postgresql(pg_url: str, records: int, block_size: int) -> dict[str, Any]:
    """On an empty database of your own (--pg-url); its audit tables are emptied afterwards."""
    upgrade(pg_url)
    db = Database(pg_url)
    try:
        return measure(db, records, block_size)
    finally:
        with db.engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE audit_seals, audit_log RESTART IDENTITY")
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--block-size", type=int, default=chain.DEFAULT_BLOCK_SIZE)
    parser.add_argument("--dbs", default="sqlite,postgresql")
    parser.add_argument("--pg-url", help="an empty PostgreSQL database of your own")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for engine in args.dbs.split(","):
        if engine == "sqlite":
            results[engine] = run_sqlite(args.records, args.block_size)
        else:
            results[engine] = run_postgresql(args.pg_url, args.records, args.block_size)
        print(engine, json.dumps(results[engine]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
