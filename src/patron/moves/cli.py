"""`patron members merge` and `patron points transfer` (docs/moves.md)."""

from __future__ import annotations

import json
import uuid
from typing import Annotated

import typer

from patron.cli_common import DatabaseUrl, console, open_database

members_app: typer.Typer = typer.Typer(help="Members: merge duplicates.", no_args_is_help=True)
points_app: typer.Typer = typer.Typer(
    help="Points: transfers between members.", no_args_is_help=True
)


def _fail(code: str, detail: str) -> typer.Exit:
    # Plain output: details can hold brackets that Rich would read as markup.
    typer.echo(f"{code}: {detail}", err=True)
    return typer.Exit(2)


@members_app.command("merge")
def merge(
    source: Annotated[int, typer.Argument(help="The duplicate member's id (merged away)")],
    into: Annotated[int, typer.Argument(help="The surviving member's id")],
    reason: Annotated[str, typer.Option("--reason", help="Why: kept in both histories")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Merge member SOURCE into member INTO: points with their expiry, debt, tier history,
    purchases, cards and coupons move; the higher tier stays. Running it again prints the
    first result (and moves whatever reached SOURCE since)."""
    from patron import clock
    from patron.audit.service import CLI
    from patron.errors import PatronError
    from patron.moves import merge as merges

    db = open_database(database_url)
    try:
        with db.unit_of_work() as session:
            result = merges.merge(session, source, into, reason=reason, actor=CLI, now=clock.now())
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    console.print(
        f"member {source} merged into member {into}: {result['cards_moved']} cards, "
        f"{result['coupons_moved']} coupons"
    )
    for p in result["programs"]:
        console.print(
            f"  {p['program']}: {p['points']:,} points, {p['pending']:,} pending, "
            f"{p['debt']:,} debt in {p['lots']} lots; {p['purchases']} purchases; "
            f"tier {p['tier'] or '-'}"
        )


@points_app.command("transfer")
def transfer(
    sender: Annotated[int, typer.Argument(help="The giving member's id")],
    receiver: Annotated[int, typer.Argument(help="The receiving member's id")],
    points: Annotated[int, typer.Argument(help="Points to give")],
    program: Annotated[str, typer.Option("--program", help="The program's code, e.g. bakery")],
    note: Annotated[str | None, typer.Option("--note", help="Shown in both histories")] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", help="Idempotency key: running again with it answers the first"),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Give POINTS of SENDER to RECEIVER in a program that allows transfers."""
    from patron import clock
    from patron.audit.service import CLI
    from patron.errors import PatronError
    from patron.moves import transfer as transfers
    from patron.programs.service import get_program

    db = open_database(database_url)
    try:
        with db.unit_of_work() as session:
            result = transfers.transfer(
                session,
                get_program(session, program),
                sender,
                receiver_id=receiver,
                points=points,
                key=key or f"cli-{uuid.uuid4()}",
                note=note,
                actor=CLI,
                now=clock.now(),
            )
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    replayed = " (replayed)" if result["replayed"] else ""
    console.print(
        f"{points:,} points from member {sender} to member {receiver}{replayed}: balances "
        f"{result['sender_balance']:,} and {result['receiver_balance']:,}"
    )
