"""Tier read commands: progress, near-miss and what-if (they change nothing).

`register(app)` adds them to a Typer app; patron.tiers.cli adds them to `patron tiers`.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from patron.cli_common import DatabaseUrl, console, open_database

ProgramOpt = Annotated[str, typer.Option("--program", help="The program's code, e.g. bakery")]


def _fail(code: str, detail: str) -> typer.Exit:
    # Plain output: details can hold brackets that Rich would read as markup.
    typer.echo(f"{code}: {detail}", err=True)
    return typer.Exit(2)


def _num(value: int | Decimal | None) -> str:
    return "" if value is None else f"{value:,}"


def progress_command(
    program: ProgramOpt,
    member: Annotated[int, typer.Option("--member", min=1, help="The member's id")],
    database_url: DatabaseUrl = None,
) -> None:
    """A member's tier, the metric so far in this window, and what it takes to move."""
    from patron import clock
    from patron.errors import PatronError
    from patron.ledger.views import get_account
    from patron.programs.service import get_program
    from patron.tiers.progress import progress

    db = open_database(database_url)
    try:
        with db.unit_of_work(readonly=True) as session:
            prog = get_program(session, program)
            out = progress(session, prog, get_account(session, prog, member), clock.now())
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None

    def amount(value: int, money: Decimal | None) -> str:
        return f"{money:,} {out.unit}" if money is not None else f"{value:,} {out.unit}"

    window = out.window
    lines = [
        f"member {out.member_id} in {out.program}: tier {out.tier_code or '(none)'}"
        + (
            " (manual" + (f" until {out.manual_until:%Y-%m-%d}" if out.manual_until else "") + ")"
            if out.manual
            else ""
        ),
        f"window {window.key}"
        + (f" (last day {window.last_day})" if window.last_day else " (lifetime)")
        + f": {amount(out.value, out.value_money)} so far",
        f"projected tier if the window ended now: "
        f"{out.projected_tier.code if out.projected_tier else '(none)'}",
        "at the top tier: nothing more to reach"
        if out.at_top or out.next_tier is None
        else f"to reach {out.next_tier.code}: {amount(out.to_next, out.to_next_money)} more",
        f"to keep {out.tier_code}: {amount(out.to_keep, out.to_keep_money)} more"
        if out.tier
        else "no current tier to keep",
    ]
    for line in lines:
        typer.echo(line)


def near_miss_command(
    program: ProgramOpt,
    window: Annotated[
        Literal["current", "last"], typer.Option(help="The current window or the last complete one")
    ] = "current",
    within: Annotated[
        int | None,
        typer.Option(
            min=0, help="At most this much below (points, minor currency units or purchases)"
        ),
    ] = None,
    within_percent: Annotated[
        float | None,
        typer.Option(
            "--within-percent", min=0, max=100, help="At most this % of the threshold below"
        ),
    ] = None,
    fmt: Annotated[Literal["table", "csv"], typer.Option("--format")] = "table",
    output: Annotated[Path | None, typer.Option(help="Write to this file instead")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Members just below the next tier (either bound suffices), closest first."""
    from patron import clock
    from patron.errors import PatronError
    from patron.programs.service import get_program
    from patron.tiers import reports

    # Typer has no Decimal option; the text of the float is the number the user typed.
    percent = Decimal(str(within_percent)) if within_percent is not None else None
    db = open_database(database_url)
    try:
        with db.unit_of_work(readonly=True) as session:
            report = reports.near_miss(
                session,
                get_program(session, program),
                window=window,
                now=clock.now(),
                within=within,
                within_percent=percent,
            )
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    if fmt == "csv":
        data = reports.near_miss_csv(report)
        if output is None:
            typer.echo(data.decode("utf-8").removeprefix("\ufeff"), nl=False)
        else:
            output.write_bytes(data)
            console.print(f"{report.count} member(s) written to {output}")
        return
    table = Table(
        *reports.NEAR_MISS_COLUMNS,
        title=f"{report.program}: near-miss in {report.window.key} ({report.unit})",
    )
    for row in reports.near_miss_table(report):
        cells = [str(row[0])] + [
            _num(v) if isinstance(v, int | Decimal) else str(v) for v in row[1:]
        ]
        table.add_row(*[Text(c) for c in cells])  # a member's name is data, never Rich markup
    if output is None:
        console.print(table)
        console.print(f"{report.count} member(s)")
        return
    with output.open("w", encoding="utf-8") as handle:
        to_file = Console(file=handle, width=200)
        to_file.print(table)
        to_file.print(f"{report.count} member(s)")
    console.print(f"{report.count} member(s) written to {output}")


def what_if_command(
    program: ProgramOpt,
    threshold: Annotated[
        list[str] | None,
        typer.Option("--threshold", help="CODE=VALUE, e.g. silver=1000; repeat for several"),
    ] = None,
    window: Annotated[
        Literal["half_year", "year", "rolling", "lifetime"] | None,
        typer.Option(help="Try another window kind"),
    ] = None,
    rolling_months: Annotated[int | None, typer.Option(min=1, max=120)] = None,
    metric: Annotated[
        Literal["points", "spend", "visits"] | None, typer.Option(help="Try another metric")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Members per tier under proposed thresholds (last complete window) against today."""
    from patron import clock
    from patron.errors import PatronError
    from patron.programs.service import get_program
    from patron.tiers import reports

    proposed: dict[str, int] = {}
    for item in threshold or []:
        code, sep, value = item.partition("=")
        if not sep or not code.strip() or not value.strip().isdigit():
            raise _fail(
                "invalid_threshold",
                f"{item!r}: use CODE=VALUE with a whole number, e.g. silver=1000",
            )
        proposed[code.strip()] = int(value)
    req = reports.WhatIfRequest(
        thresholds=proposed, window=window, rolling_months=rolling_months, metric=metric
    )
    db = open_database(database_url)
    try:
        with db.unit_of_work(readonly=True) as session:
            out = reports.what_if(session, get_program(session, program), req, now=clock.now())
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    table = Table(
        "tier",
        "threshold today",
        "proposed threshold",
        "members today",
        "proposed",
        "change",
        title=f"{out.program}: what-if on {out.window.key} ({out.metric}, {out.unit})",
    )
    for row in out.rows:
        table.add_row(
            Text(row.tier),
            _num(row.threshold_today),
            _num(row.threshold_proposed),
            _num(row.today),
            _num(row.proposed),
            f"{row.change:+,}",
        )
    console.print(table)
    console.print(
        f"{out.members} member(s): {out.moved_up} would move up, {out.moved_down} "
        f"down, {out.unchanged} unchanged"
    )


def register(app: typer.Typer) -> None:
    """Add the read commands to `app` (patron.tiers.cli: `patron tiers …`)."""
    app.command("progress")(progress_command)
    app.command("near-miss")(near_miss_command)
    app.command("what-if")(what_if_command)
