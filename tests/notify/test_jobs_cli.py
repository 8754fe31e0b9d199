"""`patron notify …` through typer's CliRunner, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from patron.audit.models import AuditRecord
from patron.audit.service import CLI
from patron.cli import app, console
from patron.config import get_settings
from patron.db.engine import Database
from patron.db.job_runs import JobRun
from patron.events.models import DomainEvent
from patron.notify.models import ReminderMark
from patron.rules import publishing
from tests.factories import make_member, make_program
from tests.ledger._helpers import buy

SEOUL = ZoneInfo("Asia/Seoul")
# The frozen clock's instant: 12:00 on Monday 2 March 2026 in Seoul.
AT = "2026-03-02T03:00:00+00:00"


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    # The CLI writes --database-url into the environment; monkeypatch restores it afterwards.
    monkeypatch.setenv("PATRON_DATABASE_URL", "sqlite:///unused-by-these-tests.db")
    monkeypatch.setenv("COLUMNS", "200")  # one table row per line
    # The shared console read COLUMNS when patron.cli was first imported, maybe before this.
    monkeypatch.setattr(console, "width", 200)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def run(cli: CliRunner, db: Database, *args: str, code: int = 0) -> str:
    result = cli.invoke(app, ["notify", *args, "--database-url", db.url])
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


def row(output: str, title: str) -> list[str]:
    """The cells of the table row that starts with `title`."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("│┃").split("│")]
        if cells and cells[0] == title:
            return cells
    raise AssertionError(f"no row {title!r} in:\n{output}")


def written(db: Database) -> tuple[int, int, int]:
    with db.unit_of_work(readonly=True) as session:
        events = session.scalar(
            select(func.count()).where(
                DomainEvent.kind.in_(("points.expiring", "member.birthday", "points.statement"))
            )
        )
        marks = session.scalar(select(func.count()).select_from(ReminderMark))
        runs = session.scalar(select(func.count()).select_from(JobRun))
    return int(events or 0), int(marks or 0), int(runs or 0)


@pytest.fixture
def bakery(db: Database, frozen: datetime) -> dict[str, int]:
    with db.unit_of_work() as session:
        prog = make_program(session, now=frozen)
        publishing.add_rule(
            session,
            prog,
            {
                "id": "bday",
                "kind": "event",
                "event": "birthday",
                "points": 700,
                "limit": "per_year",
            },
            actor=CLI,
            now=frozen,
        )
        kim = make_member(session, now=frozen, program=prog, birthday=date(1991, 3, 2)).id
        lee = make_member(session, now=frozen, program=prog).id
        # Earned 10 March 2025 in Seoul: expires at 00:00 on 11 March 2026, within 30 days.
        earned = datetime(2025, 3, 10, 12, 0, tzinfo=SEOUL).astimezone(UTC)
        buy(session, prog, kim, 10_000, ext="a", now=frozen, occurred_at=earned)
        buy(session, prog, lee, 20_000, ext="b", now=frozen, occurred_at=earned)
    return {"kim": kim, "lee": lee}


def test_expiring_dry_run_then_run_then_already_done(cli, db: Database, bakery):
    out = run(cli, db, "expiring", "--program", "bakery", "--dry-run", "--at", AT)
    assert "dry run: nothing was written" in out
    cells = row(out, "expiring-points reminders")
    # job, program, for, members, would write, already reminded, points, chunks, seconds
    assert cells[1:8] == ["bakery", "2026-03-02", "2", "2", "0", "300", "1"]
    assert written(db) == (0, 0, 0)

    out = run(cli, db, "expiring", "--program", "bakery", "--at", AT, "--batch-size", "1")
    assert "dry run" not in out
    assert row(out, "expiring-points reminders")[1:8] == [
        "bakery",
        "2026-03-02",
        "2",
        "2",
        "0",
        "300",
        "2",
    ]
    assert written(db) == (2, 2, 1)
    with db.unit_of_work(readonly=True) as session:
        actors = session.scalars(
            select(AuditRecord.actor).where(AuditRecord.action == "notifications.expiring_job_done")
        ).all()
    assert actors == ["cli"]

    again = run(cli, db, "expiring", "--program", "bakery", "--at", AT)
    assert row(again, "expiring-points reminders")[-1] == "already done"
    assert written(db) == (2, 2, 1)


def test_birthdays_and_statements(cli, db: Database, bakery):
    out = run(cli, db, "birthdays", "--program", "bakery", "--at", AT)
    # members, events, already reminded, points credited
    assert row(out, "birthday greetings")[3:7] == ["1", "1", "0", "700"]
    out = run(cli, db, "statements", "--program", "bakery", "--at", AT)
    # February has no entries, but both members have a balance now.
    assert row(out, "monthly statements")[1:5] == ["bakery", "2026-02", "2", "2"]


def test_run_due_runs_what_is_due_once(cli, db: Database, bakery):
    out = run(cli, db, "run-due", "--at", "2026-03-02T00:30:00+00:00")  # 09:30 in Seoul
    assert "nothing due" in out
    out = run(cli, db, "run-due", "--at", AT)
    assert row(out, "expiring-points reminders")[4] == "2"
    assert row(out, "birthday greetings")[4] == "1"
    # statement_day is the 1st: caught up on the 2nd.
    assert row(out, "monthly statements")[2] == "2026-02"
    third = run(cli, db, "run-due", "--at", AT)
    assert "nothing due" in third, third


def test_errors_are_clear(cli, db: Database, bakery):
    result = cli.invoke(app, ["notify", "expiring", "--program", "nope", "--database-url", db.url])
    assert result.exit_code == 2 and "program_not_found" in result.output
    result = cli.invoke(
        app,
        [
            "notify",
            "birthdays",
            "--program",
            "bakery",
            "--at",
            "2026-03-05T00:00:00+00:00",
            "--database-url",
            db.url,
        ],
    )
    assert result.exit_code == 2 and "at_in_future" in result.output
    assert written(db) == (0, 0, 0)
    result = cli.invoke(app, ["notify", "statements", "--program", "bakery", "--at", "yesterday"])
    assert result.exit_code == 2 and "not an ISO date" in result.output
    # A future run may be previewed.
    out = run(
        cli, db, "expiring", "--program", "bakery", "--dry-run", "--at", "2026-03-20T03:00:00Z"
    )
    assert row(out, "expiring-points reminders")[2] == "2026-03-20"
