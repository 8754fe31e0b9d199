"""`patron milestones …`: list a program's goals, run the evaluation now."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from patron.cli_common import DatabaseUrl, console, open_database

app: typer.Typer = typer.Typer(
    help="Milestones: list the goals, evaluate them now.", no_args_is_help=True
)
ProgramOpt = Annotated[str, typer.Option("--program", help="The program's code, e.g. bakery")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print as JSON")]


def _fail(code: str, detail: str) -> typer.Exit:
    typer.echo(f"{code}: {detail}", err=True)
    return typer.Exit(2)


@app.command("list")
def list_milestones(
    program: ProgramOpt, as_json: JsonOpt = False, database_url: DatabaseUrl = None
) -> None:
    """The goals: code, kind, target, window, reward, achievers."""
    from patron.errors import PatronError
    from patron.milestones import service
    from patron.programs.service import get_program

    db = open_database(database_url)
    try:
        with db.unit_of_work(readonly=True) as session:
            prog = get_program(session, program)
            counts = service.achievers(session, prog)
            rows = [service.out(r, counts.get(r.id, 0)) for r in service.list_milestones(session, prog)]  # fmt: skip
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in rows], indent=2, ensure_ascii=False))  # fmt: skip
        return
    table = Table("code", "status", "kind", "target", "window", "points", "reward", "achievers",
                  title=f"milestones of {program}")  # fmt: skip
    for r in rows:
        window = f"rolling {r.window_days} d" if r.window == "rolling" else r.window
        table.add_row(r.code, r.status, r.kind, str(r.target), window + (" ×" if r.repeat else ""),
                      str(r.points), r.reward or "", str(r.achievers))  # fmt: skip
    console.print(table)


@app.command("run")
def run(
    program: ProgramOpt,
    milestone: Annotated[str | None, typer.Option("--milestone", help="Only this goal")] = None,
    at: Annotated[str | None, typer.Option("--at", help="Evaluate as of (ISO, with zone)")] = None,
    as_json: JsonOpt = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Evaluate the goals now and award what is new (once: safe to run again, and beside the
    worker, which runs it hourly)."""
    from patron import clock
    from patron.audit.service import CLI
    from patron.errors import PatronError
    from patron.milestones import jobs

    now = clock.now()
    if at is not None:
        try:
            now = datetime.fromisoformat(at)
        except ValueError:
            raise _fail("invalid_at", "--at must be an ISO date-time") from None
        if now.tzinfo is None:
            raise _fail("invalid_at", "--at needs a time zone, e.g. 2027-01-31T23:00+09:00")
    db = open_database(database_url)
    try:
        report = jobs.run_program(db, program, now=now.astimezone(UTC), actor=CLI, only=milestone)
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    for item in report.items:
        typer.echo(
            f"{item.milestone} [{item.period}]: {item.achieved} achieved, {item.points} points, "
            f"{item.coupons} coupons, {item.seconds:.2f} s"
        )
