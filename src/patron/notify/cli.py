"""`patron notify …`: run the scheduled notification jobs by hand, or whatever is due."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from patron.cli_common import DatabaseUrl, console, open_database, parse_as_of

if TYPE_CHECKING:
    from patron.notify.jobs import JobReport

notify_app: typer.Typer = typer.Typer(
    help="Notification jobs: expiring-points reminders, birthdays, statements.",
    no_args_is_help=True,
)


ProgramOpt = Annotated[str, typer.Option("--program", help="The program's code, e.g. bakery")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Count what the run would write; write nothing")
]
AtOpt = Annotated[
    str | None,
    typer.Option(
        "--at", help="Run as of this ISO datetime (default now; UTC when it has no offset)"
    ),
]
BatchOpt = Annotated[
    int | None,
    typer.Option(
        "--batch-size", min=1, max=1_000_000, help="Accounts per transaction (default 5,000)"
    ),
]

_TITLES = {
    "expiring": "expiring-points reminders",
    "birthday": "birthday greetings",
    "statement": "monthly statements",
}


def _fail(code: str, detail: str) -> typer.Exit:
    # Plain output: details can hold brackets that Rich would read as markup.
    typer.echo(f"{code}: {detail}", err=True)
    return typer.Exit(2)


def _when(at: str | None, dry_run: bool) -> datetime:
    from patron import clock

    now = parse_as_of(at)
    if now > clock.now() and not dry_run:
        # Marks written for a day that has not come would silence that day's real run.
        raise _fail("at_in_future", "--at is in the future; use --dry-run to preview a later run")
    return now


def _print(reports: list[JobReport], *, dry_run: bool) -> None:
    events = "would write" if dry_run else "events"
    table = Table(
        "job",
        "program",
        "for",
        "members",
        events,
        "already reminded",
        "points",
        "chunks",
        "seconds",
        "",
    )
    for r in reports:
        note = "already done" if r.already_done else "busy elsewhere" if r.busy else ""
        table.add_row(
            _TITLES[r.job],
            r.program,
            r.key,
            f"{r.considered:,}",
            f"{r.events:,}",
            f"{r.skipped:,}",
            f"{r.points:,}",
            f"{r.chunks:,}",
            f"{r.seconds:.2f}",
            note,
        )
    if dry_run:
        console.print("dry run: nothing was written", markup=False)
    console.print(table)


def _run_one(
    job: str,
    program: str,
    dry_run: bool,
    at: str | None,
    batch_size: int | None,
    database_url: str | None,
) -> None:
    from patron.audit.service import CLI
    from patron.errors import PatronError
    from patron.notify import jobs

    runner = {
        "expiring": jobs.run_expiring,
        "birthday": jobs.run_birthdays,
        "statement": jobs.run_statements,
    }[job]
    now = _when(at, dry_run)
    db = open_database(database_url)
    try:
        report = runner(db, program, now=now, dry_run=dry_run, batch_size=batch_size, actor=CLI)
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    finally:
        db.dispose()
    _print([report], dry_run=dry_run)


@notify_app.command("expiring")
def expiring(
    program: ProgramOpt,
    dry_run: DryRunOpt = False,
    at: AtOpt = None,
    batch_size: BatchOpt = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Remind members of points expiring within the program's reminder window (once per
    expiry day)."""
    _run_one("expiring", program, dry_run, at, batch_size, database_url)


@notify_app.command("birthdays")
def birthdays(
    program: ProgramOpt,
    dry_run: DryRunOpt = False,
    at: AtOpt = None,
    batch_size: BatchOpt = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Greet today's birthdays (program timezone) and credit the birthday rule's points, once a
    year."""
    _run_one("birthday", program, dry_run, at, batch_size, database_url)


@notify_app.command("statements")
def statements(
    program: ProgramOpt,
    dry_run: DryRunOpt = False,
    at: AtOpt = None,
    batch_size: BatchOpt = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Write last month's balance statement for every member with a balance or activity."""
    _run_one("statement", program, dry_run, at, batch_size, database_url)


@notify_app.command("run-due")
def run_due(at: AtOpt = None, database_url: DatabaseUrl = None) -> None:
    """Run every job that is due now in every program (what the worker does each minute)."""
    from patron.notify import jobs

    now = _when(at, dry_run=False)
    db = open_database(database_url)
    try:
        reports = jobs.run_due(db, now=now)
    finally:
        db.dispose()
    if not reports:
        console.print("nothing due", markup=False)
        return
    _print(reports, dry_run=False)
