"""`patron segments …`: list, show, count (live or as of a date) and snapshot a program's
segments (docs/engagement.md)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from patron.cli_common import DatabaseUrl, console, open_database, parse_as_of

app: typer.Typer = typer.Typer(
    help="Dynamic segments: list, show, count and snapshot.", no_args_is_help=True
)
ProgramOpt = Annotated[str, typer.Option("--program", help="The program's code, e.g. bakery")]
CodeArg = Annotated[str, typer.Argument(help="The segment's code")]
AsOfOpt = Annotated[
    str | None, typer.Option("--as-of", help="Evaluate as of this date/time (ISO); default now")
]


def _fail(code: str, detail: str) -> typer.Exit:
    typer.echo(f"{code}: {detail}", err=True)
    return typer.Exit(2)


@app.command("list")
def list_segments(program: ProgramOpt, database_url: DatabaseUrl = None) -> None:
    """The program's segments."""
    from patron.errors import PatronError
    from patron.programs.service import get_program
    from patron.segments import service

    db = open_database(database_url)
    try:
        with db.unit_of_work(readonly=True) as session:
            rows = service.list_segments(session, get_program(session, program))
            table = Table("code", "name", "version", "updated", title=f"segments of {program}")
            for row in rows:
                table.add_row(row.code, row.name, str(row.version), row.updated_at.isoformat())
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    console.print(table)


@app.command("show")
def show(program: ProgramOpt, code: CodeArg, database_url: DatabaseUrl = None) -> None:
    """A segment with its definition, as JSON."""
    from patron.errors import PatronError
    from patron.programs.service import get_program
    from patron.segments import service

    db = open_database(database_url)
    try:
        with db.unit_of_work(readonly=True) as session:
            doc = service.doc(service.get_segment(session, get_program(session, program), code))
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))


@app.command("count")
def count(
    program: ProgramOpt,
    code: CodeArg,
    as_of: AsOfOpt = None,
    sample: Annotated[int, typer.Option("--sample", min=0, max=100)] = 0,
    database_url: DatabaseUrl = None,
) -> None:
    """How many members the segment holds now (or as of a date), with a sample."""
    from patron import clock
    from patron.errors import PatronError
    from patron.programs.service import get_program
    from patron.segments import service
    from patron.segments.definition import Definition

    db = open_database(database_url)
    now = clock.now()
    when = parse_as_of(as_of) if as_of else None
    try:
        with db.unit_of_work(readonly=True) as session:
            prog = get_program(session, program)
            row = service.get_segment(session, prog, code)
            definition = Definition.model_validate(row.definition)
            total = service.count(session, prog, definition, as_of=when, now=now, own_code=code)
            picked = service.sample(
                session, prog, definition, limit=sample, as_of=when, now=now, own_code=code
            )
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    console.print(f"{code}: {total} members as of {(when or now).isoformat()}")
    for m in picked:
        console.print(f"  {m.member_id}  {m.name}  {m.tier or '—'}  {m.balance}")


@app.command("snapshot")
def snapshot(
    program: ProgramOpt, code: CodeArg, as_of: AsOfOpt = None, database_url: DatabaseUrl = None
) -> None:
    """Materialise the segment's members (for a campaign); prints the snapshot id and size."""
    from patron import clock
    from patron.audit.service import CLI
    from patron.errors import PatronError
    from patron.programs.service import get_program
    from patron.segments import service

    db = open_database(database_url)
    when = parse_as_of(as_of) if as_of else None
    try:
        with db.unit_of_work() as session:
            snap = service.take_snapshot(
                session, get_program(session, program), code, as_of=when, actor=CLI,
                now=clock.now(),
            )  # fmt: skip
            line = f"snapshot {snap.id} of {code}: {snap.members} members as of {snap.as_of}"
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    console.print(line)
