"""Migrating members in: `patron import members` over N generated rows, beside a plain COPY of
the very rows it wrote into the same tables, in the same run (issue 17, decision 0022).

    .venv/bin/python benchmarks/import_members.py --pg-url postgresql://postgres@127.0.0.1:5432/postgres
        [--rows 1000000] [--chunk-size 2000] [--keep-file] [--json FILE]

`--pg-url` names any database of the server: the run creates its own database beside it
(`patron_bench_import_<pid>`) and drops it at the end. Steps:

1. a CSV of `--rows` members (external id, name, a unique Korean mobile number, an e-mail,
   birthday, join date, marketing consent, a tier for one in five, an opening balance for four
   in five with its own expiry date for half of those), written to a temporary file;
2. the bakery program with five tiers, then `patron import members FILE --program bakery`
   run as a command (a new process, as an operator runs it: reading, checking and normalising
   every row, duplicates, the ledger's planner and applier, outbox events, tier history, job
   progress) — timed from start to exit;
3. `patron check` on the result (must be clean);
4. the baseline: every row the import wrote to members, member_import_refs, consent_records,
   accounts, lots, entries, domain_events and tier_changes exported (COPY TO), the tables
   emptied, and the same rows loaded back with COPY FROM, one statement per table in one
   transaction, indexes and constraints in place — the floor for writing those rows at all.

Prints both times, rows per second and the ratio (import ÷ COPY); `--json` keeps them.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
PATRON = str(Path(sys.executable).with_name("patron"))
TABLES = (
    "members",
    "member_import_refs",
    "consent_records",
    "accounts",
    "lots",
    "entries",
    "domain_events",
    "tier_changes",
)
HEADER = [
    "external_id",
    "name",
    "phone",
    "email",
    "birthday",
    "joined_at",
    "marketing_consent",
    "tier",
    "opening_balance",
    "opening_balance_expiry",
]
TIERS = ("bronze", "silver", "gold", "platinum", "diamond")
FAMILY = ("김", "이", "박", "최", "정", "강", "조", "윤", "장", "임")
GIVEN = ("민지", "서준", "지우", "하은", "도윤", "서연", "예준", "수아", "시우", "지호")


def generate(path: Path, rows: int, seed: int = 17) -> None:
    rng = random.Random(seed)
    today = date(2026, 12, 1)
    with path.open("w", encoding="utf-8", newline="") as stream:
        out = csv.writer(stream)
        out.writerow(HEADER)
        for n in range(rows):
            number = 10_000_000 + n  # 010-1000-0000 onwards: unique and valid
            balance = rng.randrange(1, 50_000) if n % 5 else 0
            expiry = (today + timedelta(days=rng.randrange(30, 700))).isoformat()
            out.writerow(
                [
                    f"LEGACY-{n:08d}",
                    rng.choice(FAMILY) + rng.choice(GIVEN),
                    f"010-{number // 10_000:04d}-{number % 10_000:04d}",
                    f"member{n}@example.com" if n % 3 else "",
                    (date(1960, 1, 1) + timedelta(days=rng.randrange(0, 16_000))).isoformat(),
                    (date(2015, 1, 1) + timedelta(days=rng.randrange(0, 4_000))).isoformat(),
                    "yes" if n % 2 else "no",
                    TIERS[rng.randrange(0, 5)] if n % 5 == 0 else "",
                    str(balance) if balance else "",
                    expiry if balance and n % 2 else "",
                ]
            )


def setup_program(url: str) -> None:
    from patron.audit.service import CLI
    from patron.db.engine import Database
    from patron.db.migrate import upgrade
    from patron.programs.schemas import ProgramCreate
    from patron.setup import service as setup
    from patron.tiers import service as tiers
    from patron.tiers.schemas import TierSetup

    upgrade(url)
    db = Database(url)
    now = datetime.now(UTC)
    with db.unit_of_work() as session:
        program = setup.create_program(
            session,
            ProgramCreate.model_validate(
                {
                    "code": "bakery",
                    "name": "Corner Bakery",
                    "currency": "KRW",
                    "timezone": "Asia/Seoul",
                    "point_value": "1",
                    "earning": {
                        "mode": "per_full_unit",
                        "points": 10,
                        "per_amount": "1000",
                        "rounding": "down",
                    },
                    "expiry": {"kind": "months", "months": 12},
                    "pending_days": 0,
                    "redemption": {"min_points": 1000, "step": 10, "max_share": "1"},
                    "negative_balance": "allow_debt",
                }
            ),
            actor=CLI,
            now=now,
        )
        tiers.set_tiers(
            session,
            program,
            TierSetup.model_validate(
                {
                    "policy": {
                        "metric": "points",
                        "window": "year",
                        "upgrade": "immediate",
                        "downgrade": "to_earned",
                        "manual": "keep",
                    },
                    "tiers": [
                        {
                            "code": code,
                            "names": {"en": code.title()},
                            "threshold": 1000 * rank * rank,
                        }
                        for rank, code in enumerate(TIERS)
                    ],
                }
            ),
            actor=CLI,
            now=now,
        )
    db.dispose()


def patron(url: str, *args: str) -> tuple[float, str]:
    began = time.perf_counter()
    done = subprocess.run(
        [PATRON, *args, "--database-url", url],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "120"},
        check=False,
    )
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"patron {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return took, done.stdout


def counts(conn: psycopg.Connection) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}  # type: ignore[index]


def copy_baseline(url: str) -> tuple[float, int]:
    """The rows the import wrote, exported, the tables emptied, and loaded back with COPY."""
    dumps: dict[str, bytes] = {}
    with psycopg.connect(url) as conn:
        for table in TABLES:
            buffer = io.BytesIO()
            with conn.cursor().copy(f"COPY {table} TO STDOUT (FORMAT binary)") as copy:
                for block in copy:
                    buffer.write(block)
            dumps[table] = buffer.getvalue()
        before = counts(conn)
        conn.execute(f"TRUNCATE {', '.join(TABLES)} CASCADE")
        conn.commit()
    with psycopg.connect(url) as conn:
        began = time.perf_counter()
        with conn.transaction():
            for table in TABLES:
                with conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT binary)") as copy:
                    copy.write(dumps[table])
        took = time.perf_counter() - began
        after = counts(conn)
    assert after == before, (before, after)
    return took, sum(after.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=2_000)
    parser.add_argument("--pg-url", default=os.environ.get("PATRON_BENCH_PG_URL", ""))
    parser.add_argument("--keep-file", action="store_true", help="keep the generated CSV")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not args.pg_url:
        raise SystemExit("--pg-url (a PostgreSQL server URL) is needed")
    admin = args.pg_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"patron_bench_import_{os.getpid()}"
    url = admin.rpartition("/")[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    work = Path(tempfile.mkdtemp(prefix="patron-bench-import-"))
    csv_path = work / "members.csv"
    try:
        began = time.perf_counter()
        generate(csv_path, args.rows)
        generated = time.perf_counter() - began
        setup_program(url)
        load_before = os.getloadavg()[0]
        took, out = patron(
            url,
            "import",
            "members",
            str(csv_path),
            "--program",
            "bakery",
            "--chunk-size",
            str(args.chunk_size),
        )
        # Printed at once: a later step failing must not lose the import's figure.
        print(f"patron import members: {args.rows:,} rows in {took:.1f} s", flush=True)
        _check_took, check_out = patron(url, "check")
        correct = "ledger consistent" in check_out
        with psycopg.connect(url) as conn:
            written = counts(conn)
        assert written["members"] == args.rows, (written, out)
        load_import = (load_before, os.getloadavg()[0])
        baseline, rows_copied = copy_baseline(url)
        load_copy = os.getloadavg()[0]
        result: dict[str, Any] = {
            "rows": args.rows,
            "chunk_size": args.chunk_size,
            "import_s": round(took, 2),
            "import_rows_per_s": round(args.rows / took),
            "baseline_copy_s": round(baseline, 2),
            "baseline_rows_copied": rows_copied,
            "ratio": round(took / baseline, 2) if baseline else None,
            "tables": written,
            "generate_s": round(generated, 2),
            "correct": correct,
            # The machine's 1-minute load average around each side: on a shared machine the
            # two sides can run under different loads, which moves the ratio.
            "load_average": {
                "import_start": round(load_import[0], 1),
                "import_end": round(load_import[1], 1),
                "copy_end": round(load_copy, 1),
            },
        }
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not args.keep_file:
            csv_path.unlink(missing_ok=True)
            work.rmdir()
        else:
            print(f"kept {csv_path}")
    print(
        f"patron import members: {result['rows']:,} rows in {result['import_s']} s "
        f"({result['import_rows_per_s']:,} rows/s); plain COPY of the same "
        f"{rows_copied:,} table rows: {result['baseline_copy_s']} s; ratio {result['ratio']}; "
        f"patron check {'clean' if correct else 'NOT CLEAN'}; load average "
        f"{load_import[0]:.1f} → {load_import[1]:.1f} (import), {load_copy:.1f} (COPY)"
    )
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not correct:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
