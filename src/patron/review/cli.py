"""`patron fraud queue` and `patron fraud decide`: list and decide the review queue. The
commands are registered on the `patron fraud` group by patron.cli, after `show` and `set`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from patron.cli_common import DatabaseUrl, console, open_database

ProgramOpt = Annotated[str, typer.Option("--program", help="The program's code, e.g. bakery")]


def _fail(code: str, detail: str) -> typer.Exit:
    typer.echo(f"{code}: {detail}", err=True)
    return typer.Exit(2)


def queue(
    program: ProgramOpt,
    status: Annotated[str, typer.Option(help="open, confirmed, reversed or all")] = "open",
    database_url: DatabaseUrl = None,
) -> None:
    """The review queue, newest first (at most 200)."""
    from patron.programs.service import get_program
    from patron.review import queue as review

    if status not in (*review.STATUSES, "all"):
        raise _fail("invalid_status", "--status: open, confirmed, reversed or all")
    db = open_database(database_url)
    with db.unit_of_work(readonly=True) as session:
        rows, _more = review.list_reviews(
            session,
            get_program(session, program),
            status=None if status == "all" else status,
            limit=200,
        )
        table = Table("id", "opened", "member", "order", "code", "points", "status")
        for r in rows:
            table.add_row(
                str(r.id),
                r.opened_at.isoformat(timespec="seconds"),
                str(r.member_id),
                r.external_id,
                r.code,
                str(r.points),
                r.status,
            )
    console.print(table)


def decide(
    program: ProgramOpt,
    review_id: Annotated[int, typer.Argument(help="The review item's id")],
    decision: Annotated[str, typer.Argument(help="confirm or reverse")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit log)")],
    database_url: DatabaseUrl = None,
) -> None:
    """Confirm (release the held points) or reverse (take them back) a review item."""
    from patron import clock
    from patron.audit.service import CLI
    from patron.errors import PatronError
    from patron.programs.service import get_program
    from patron.review import queue as review

    if decision not in ("confirm", "reverse"):
        raise _fail("invalid_decision", "confirm or reverse")
    if len(reason.strip()) < 3:
        raise _fail("invalid_reason", "--reason needs at least 3 characters")
    db = open_database(database_url)
    try:
        with db.unit_of_work() as session:
            prog = get_program(session, program)
            row = review.decide(
                session, prog, review_id, decision, reason=reason, actor=CLI, now=clock.now()
            )
            status, released, reversed_ = row.status, row.released_points, row.reversed_points
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    console.print(f"review {review_id}: {status} (released {released}, reversed {reversed_})")
