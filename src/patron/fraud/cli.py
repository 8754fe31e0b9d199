"""`patron fraud …`: show and set a program's fraud controls (`queue` and `decide`, the review
queue's, are patron.review.cli's: patron.cli registers them here)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from patron.cli_common import DatabaseUrl, console, open_database

app: typer.Typer = typer.Typer(
    help="Fraud controls: velocity limits, duplicates, holds and the review queue.",
    no_args_is_help=True,
)
ProgramOpt = Annotated[str, typer.Option("--program", help="The program's code, e.g. bakery")]


def _fail(code: str, detail: str) -> typer.Exit:
    typer.echo(f"{code}: {detail}", err=True)
    return typer.Exit(2)


def _print(doc: dict[str, Any]) -> None:
    from patron.fraud.rules import DIMENSIONS, LIMITS

    table = Table("limit", *DIMENSIONS, title=f"fraud controls of {doc['program']}")
    for name in LIMITS:
        table.add_row(name, *[str(doc[d][name] or "—") for d in DIMENSIONS])
    console.print(table)
    console.print(f"duplicate window: {doc['duplicate_window_minutes'] or 'off'} (minutes)")
    console.print(f"hold points above: {doc['hold_points_above'] or 'off'}")
    console.print(
        "verified contact before redemption: "
        + ("required" if doc["verified_contact_for_redemption"] else "not required")
    )


@app.command("show")
def show(
    program: ProgramOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print the settings as JSON")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """The program's fraud controls."""
    from patron.errors import PatronError
    from patron.fraud import settings
    from patron.programs.service import get_program

    db = open_database(database_url)
    try:
        with db.unit_of_work(readonly=True) as session:
            doc = settings.get(session, get_program(session, program)).model_dump(mode="json")
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
    else:
        _print(doc)


@app.command("set")
def set_controls(
    program: ProgramOpt,
    limit: Annotated[
        list[str] | None,
        typer.Option(
            "--limit",
            help="DIMENSION.LIMIT=N (e.g. member.sales_per_day=20), or =off; repeatable",
        ),
    ] = None,
    duplicate_minutes: Annotated[
        str | None, typer.Option("--duplicate-minutes", help="N minutes, or off")
    ] = None,
    hold_above: Annotated[
        str | None, typer.Option("--hold-points-above", help="N points, or off")
    ] = None,
    verified_contact: Annotated[
        bool | None,
        typer.Option("--verified-contact/--no-verified-contact", help="Before redemption"),
    ] = None,
    replace: Annotated[
        str | None, typer.Option("--json", help="The whole settings document, as JSON")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Change the program's fraud controls (what is not named stays as it is)."""
    from patron import clock
    from patron.audit.service import CLI
    from patron.errors import PatronError
    from patron.fraud import rules, settings
    from patron.programs.service import get_program

    def number(value: str) -> int | str | None:
        return None if value == "off" else int(value) if value.isdigit() else value

    db = open_database(database_url)
    try:
        with db.unit_of_work() as session:
            prog = get_program(session, program)
            if replace is not None:
                try:
                    values = json.loads(replace)
                except ValueError:
                    raise _fail("invalid_json", "--json is not valid JSON") from None
            else:
                values = settings.get(session, prog).model_dump(
                    exclude={"program", "updated_at", "updated_by"}
                )
            for item in limit or []:
                name, _, value = item.partition("=")
                dim, _, which = name.partition(".")
                if dim not in rules.DIMENSIONS or which not in rules.LIMITS or not value:
                    raise _fail("invalid_fraud_settings", f"--limit {item!r}: DIMENSION.LIMIT=N")
                values.setdefault(dim, {})[which] = number(value)
            if duplicate_minutes is not None:
                values["duplicate_window_minutes"] = number(duplicate_minutes)
            if hold_above is not None:
                values["hold_points_above"] = number(hold_above)
            if verified_contact is not None:
                values["verified_contact_for_redemption"] = verified_contact
            doc = settings.parse(values)
            out = settings.save(session, prog, doc, actor=CLI, now=clock.now())
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    _print(out.model_dump(mode="json"))
