"""The expiring-points reminder job at a million members, beside a same-run baseline.

    python benchmarks/notify_jobs.py [--members 1000000] [--dbs postgresql[,sqlite]]
                                     [--batch-size N] [--json FILE] [--keep]

Data (set-based, `generate_series` on PostgreSQL, a recursive CTE on SQLite; the helpers of
benchmarks/jobs.py): the demo's bakery program (Asia/Seoul, 12-month expiry), `--members`
members with one account each, and
- a lot per member expiring 60 to 259 days from now (outside the reminder window);
- for a third of the members, a lot expiring at a local midnight 1 to 30 days from now (inside
  the default 30-day window), and for a third of those a second lot on the same day;
- one earn entry per lot and account totals equal to the lots (a consistent ledger).
Members own rows scattered over the tables (see benchmarks/jobs.py SCATTER), as when they earn at
random moments. Indexes are rebuilt and the database analysed before anything is timed.

Measured, in this order, on the same database:
- `baseline`: one plain INSERT … SELECT of the same (member, local expiry day, sum) rows into a
  scratch table — the least work that yields the reminders' content;
- `dry_run`: run_expiring(dry_run=True), which reads the same chunks and writes nothing;
- `run`: run_expiring — one transaction per `--batch-size` accounts, each writing its reminder
  marks and points.expiring events with one statement — what `patron notify expiring` and the
  worker run;
- `rerun`: the same day again (the finished run: a no-op) and `next_day`: the next day's run,
  which finds every reminder already made.
Correct means: one event and one mark per baseline row, the same points in total, and nothing
new on either rerun. The JSON result is printed and, with --json, written to a file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, text

from patron.config import get_settings
from patron.db.engine import Database
from patron.ledger.models import Lot
from patron.notify import jobs as notify_jobs


def _load_jobs_bench() -> ModuleType:
    """benchmarks/jobs.py, whose data helpers (scratch databases, bulk load, series) fit."""
    name = "patron_bench_jobs"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("jobs.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


jobs_bench = _load_jobs_bench()
bench = jobs_bench.bench
log = bench.log
TIMEZONE = "Asia/Seoul"  # the demo bakery's
WINDOW_DAYS = 30  # NotifySettings().expiring_days_before


def _local_midnight(now: datetime, days_ahead: int) -> datetime:
    tz = ZoneInfo(TIMEZONE)
    day = now.astimezone(tz).date() + timedelta(days=days_ahead)
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def generate(db: Database, members: int) -> dict[str, Any]:
    """Members, accounts, lots (a third of the members with points in the window), entries."""
    now = datetime.now(UTC)
    program_id = jobs_bench._program(db, now, with_tiers=False)
    dialect = db.dialect
    false = "false" if dialect == "postgresql" else "0"
    ts = Lot.earned_at.type
    in_window = members // 3
    started = time.perf_counter()
    with (
        db.engine.begin() as conn,
        jobs_bench.bulk_load(conn, ["members", "accounts", "lots", "entries"]),
    ):
        first = jobs_bench._members_and_accounts(conn, dialect, program_id, members)
        owner = jobs_bench._owner(first, members)
        # Every member: points expiring well after the window (60..259 days, at local midnights).
        conn.execute(
            text(
                "INSERT INTO lots (account_id, points, remaining, earned_at, pending, expires_at)"
                f" SELECT {owner}, 100, 100, :earned, {false},"
                f" {jobs_bench._timestamp(dialect, ':far', '(x % 200) * 86400')}"
                f" FROM {jobs_bench._series(dialect, str(members))}"
            ).bindparams(
                bindparam("earned", now - timedelta(days=200), type_=ts),
                bindparam("far", _local_midnight(now, 60), type_=ts),
            )
        )
        # A third: points expiring on one local day 1..30 days ahead; a third of those, a second
        # lot on that same day (one reminder for both).
        day = "((x - 1) % 30) * 86400"
        for share, points in (("1", 200), ("3", 50)):
            conn.execute(
                text(
                    "INSERT INTO lots (account_id, points, remaining, earned_at, pending,"
                    f" expires_at) SELECT {owner}, {points}, {points}, :earned, {false},"
                    f" {jobs_bench._timestamp(dialect, ':soon', day)}"
                    f" FROM {jobs_bench._series(dialect, str(in_window))}"
                    f" WHERE x % {share} = 0"
                ).bindparams(
                    bindparam("earned", now - timedelta(days=330), type_=ts),
                    bindparam("soon", _local_midnight(now, 1), type_=ts),
                )
            )
        jobs_bench._earn_entries_and_totals(conn, program_id)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    jobs_bench.analyze(db)
    return {
        "generate_s": round(generated, 2),
        "analyze_s": round(time.perf_counter() - started, 2),
        "members_in_window": in_window,
        "expected_points": in_window * 200 + (in_window // 3) * 50,
        "lots": bench.scalar(db, "SELECT count(*) FROM lots"),
        "now": now,
    }


def _local_day_sql(dialect: str) -> str:
    if dialect == "postgresql":
        return "to_char(timezone('Asia/Seoul', l.expires_at), 'YYYY-MM-DD')"
    # Seoul keeps UTC+9 all year: a fixed shift gives the local date on SQLite.
    return "date(l.expires_at, '+9 hours')"


def baseline(db: Database, now: datetime) -> dict[str, Any]:
    """One plain INSERT … SELECT of the same (member, day, points) rows into a scratch table."""
    until = _local_midnight(now, WINDOW_DAYS + 1)
    false = "false" if db.dialect == "postgresql" else "0"
    ts = Lot.expires_at.type
    with db.engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS bench_reminders"))
        conn.execute(
            text("CREATE TABLE bench_reminders (member_id BIGINT, day TEXT, points BIGINT)")
        )
    with db.engine.connect() as conn:  # connect outside the timed part
        conn.execute(text("SELECT 1"))
    started = time.perf_counter()
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO bench_reminders (member_id, day, points)"
                f" SELECT a.member_id, {_local_day_sql(db.dialect)}, sum(l.remaining)"
                " FROM lots l JOIN accounts a ON a.id = l.account_id"
                " JOIN members m ON m.id = a.member_id"
                f" WHERE l.remaining > 0 AND l.pending = {false} AND l.expires_at > :now"
                " AND l.expires_at < :until AND m.status = 'active'"
                " GROUP BY 1, 2"
            ).bindparams(bindparam("now", now, type_=ts), bindparam("until", until, type_=ts))
        )
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "rows": bench.scalar(db, "SELECT count(*) FROM bench_reminders"),
        "points": bench.scalar(db, "SELECT coalesce(sum(points), 0) FROM bench_reminders"),
    }


def _event_points(db: Database) -> int:
    if db.dialect == "postgresql":
        sql = "SELECT coalesce(sum((payload->>'points')::bigint), 0) FROM domain_events"
    else:
        sql = "SELECT coalesce(sum(json_extract(payload, '$.points')), 0) FROM domain_events"
    return bench.scalar(db, f"{sql} WHERE kind = 'points.expiring'")


def reminder_run(
    dialect: str, members: int, *, batch_size: int | None = None, keep: bool = False
) -> dict[str, Any]:
    batch_size = batch_size or get_settings().job_batch_size
    with jobs_bench.scratch_database(dialect, "patron_notify_jobs", keep) as (url, _copy):
        db = Database(url)
        try:
            data = generate(db, members)
            now: datetime = data.pop("now")
            log(
                f"   generated {members:,} members, {data['lots']:,} lots in "
                f"{data['generate_s']:.1f} s (+ {data['analyze_s']} s analyze)"
            )
            # Warm the caches the same way for both sides: read every table once.
            for table in ("members", "accounts", "lots"):
                bench.scalar(db, f"SELECT count(*) FROM {table}")
            base = baseline(db, now)
            log(f"   baseline {base['seconds']:.2f} s for {base['rows']:,} rows")
            dry = notify_jobs.run_expiring(
                db, "bakery", now=now, dry_run=True, batch_size=batch_size
            )
            log(f"   dry run {dry.seconds:.2f} s: {dry.events:,} reminders would be written")
            started = time.perf_counter()
            report = notify_jobs.run_expiring(db, "bakery", now=now, batch_size=batch_size)
            run_s = time.perf_counter() - started
            log(f"   run {run_s:.2f} s: {report.events:,} reminders in {report.chunks} chunks")
            rerun = notify_jobs.run_expiring(db, "bakery", now=now, batch_size=batch_size)
            next_day = notify_jobs.run_expiring(
                db, "bakery", now=now + timedelta(days=1), batch_size=batch_size
            )
            log(f"   next day {next_day.seconds:.2f} s: {next_day.events:,} new")
            events = bench.scalar(
                db, "SELECT count(*) FROM domain_events WHERE kind = 'points.expiring'"
            )
            marks = bench.scalar(db, "SELECT count(*) FROM reminder_marks")
            # By the next day the lots of the window's first day have expired: the rest must
            # all be found already reminded.
            first_day = (now.astimezone(ZoneInfo(TIMEZONE)).date() + timedelta(days=1)).isoformat()
            still_due = bench.scalar(
                db, f"SELECT count(*) FROM bench_reminders WHERE day > '{first_day}'"
            )
            event_points = _event_points(db)
        finally:
            db.dispose()
    per_s = members / run_s if run_s else 0.0
    baseline_per_s = members / base["seconds"] if base["seconds"] else 0.0
    return {
        "dialect": dialect,
        "members": members,
        "batch_size": batch_size,
        **data,
        "baseline_s": round(base["seconds"], 3),
        "baseline_rows": base["rows"],
        "dry_run_s": dry.seconds,
        "dry_run_events": dry.events,
        "run_s": round(run_s, 3),
        "events": report.events,
        "members_reminded": report.considered,
        "chunks": report.chunks,
        "marks": marks,
        "rerun_s": rerun.seconds,
        "rerun_already_done": rerun.already_done,
        "next_day_s": next_day.seconds,
        "next_day_events": next_day.events,
        "next_day_skipped": next_day.skipped,
        "next_day_expected_skipped": still_due,
        "figure": round(per_s, 1),
        "unit": "members/s",
        "baseline": round(baseline_per_s, 1),
        "baseline_name": "one plain INSERT … SELECT of the same (member, local day, sum) rows"
        " into a scratch table",
        "ratio": bench.ratio_of(per_s, baseline_per_s),
        "run_over_baseline": round(run_s / base["seconds"], 2) if base["seconds"] else None,
        "target": "none set by the issue (measure at 1 M members)",
        "target_met": None,
        "correct": report.events == events == marks == base["rows"] == dry.events
        and report.considered == data["members_in_window"]
        and event_points == base["points"] == data["expected_points"]
        and rerun.already_done
        and next_day.events == 0
        and next_day.skipped == still_due,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--dbs", default="postgresql", help="postgresql and/or sqlite")
    parser.add_argument("--batch-size", type=int, help="accounts per transaction")
    parser.add_argument("--keep", action="store_true", help="keep the generated database")
    parser.add_argument("--json", type=Path, help="also write the result to this file")
    args = parser.parse_args(argv)
    args.dbs = [d.strip() for d in args.dbs.split(",") if d.strip()]
    if set(args.dbs) - {"postgresql", "sqlite"}:
        parser.error("--dbs takes postgresql and/or sqlite")
    if args.members < 3:
        parser.error("--members must be at least 3")
    if args.members % jobs_bench.SCATTER == 0:
        parser.error("--members must not be a multiple of the scatter prime")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", message="Skipped unsupported reflection")
    out: dict[str, Any] = {
        "benchmark": "patron-notify-jobs",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": bench.machine(),
        "settings": {"members": args.members, "batch_size": args.batch_size},
        "expiring": {},
    }
    for dialect in args.dbs:
        with bench.timer(f"expiring reminders on {dialect}: {args.members:,} members"):
            result = reminder_run(dialect, args.members, batch_size=args.batch_size, keep=args.keep)
        out["expiring"][dialect] = result
        bench.print_figure(f"expiring {dialect}", result)
    out["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    print(json.dumps(out, indent=2, default=str), flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")
        log(f"wrote {args.json}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
