"""`patron report …`: every report on the terminal or as CSV, XLSX or JSON; the roll-up jobs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from patron.cli_common import DatabaseUrl, console, open_database
from patron.reports.rollup import DEFAULT_MAX_TAIL

# module may be imported first.
app: typer.Typer = typer.Typer(
    help="Reports: points per period, liability, journal, members, promotions, rewards and "
    "coupons; roll-ups.",
    no_args_is_help=True,
)


ProgramOpt = Annotated[str, typer.Option("--program", help="The program's code, e.g. bakery")]
DayOpt = Annotated[datetime | None, typer.Option(formats=["%Y-%m-%d"])]
FromOpt = Annotated[
    datetime | None,
    typer.Option("--from", formats=["%Y-%m-%d"], help="First local date (default: 30 days)"),
]
ToOpt = Annotated[
    datetime | None,
    typer.Option("--to", formats=["%Y-%m-%d"], help="Last local date, inclusive (default: today)"),
]
MonthOpt = Annotated[str | None, typer.Option(help="A whole month instead, e.g. 2026-02")]
BasisOpt = Annotated[
    Literal["occurred", "recorded"],
    typer.Option(help="occurred: when the points moved; recorded: when Patron wrote them"),
]
FormatOpt = Annotated[
    Literal["table", "csv", "xlsx", "json"], typer.Option("--format", help="Output format")
]
OutputOpt = Annotated[Path | None, typer.Option(help="Write to this file (needed for xlsx)")]
MaxTailOpt = Annotated[
    int,
    typer.Option(
        help="Refresh the roll-up first when more entries than this wait above its watermark",
        min=0,
    ),
]


def _fail(code: str, detail: str) -> typer.Exit:
    # Plain output: details can hold brackets that Rich would read as markup.
    typer.echo(f"{code}: {detail}", err=True)
    return typer.Exit(2)


def _day(value: datetime | None) -> date | None:
    return value.date() if value is not None else None


def _run(database_url: str | None, fn: Callable[[Any], Any], *, max_tail: int | None) -> Any:
    """Open the database, refresh the roll-up if it is far behind, run `fn` in a read unit."""
    from patron import clock
    from patron.errors import PatronError
    from patron.reports import rollup

    db = open_database(database_url)
    try:
        if max_tail is not None:
            rollup.ensure_fresh(db, now=clock.now(), max_tail=max_tail)
        with db.unit_of_work(readonly=True) as session:
            return fn(session)
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    finally:
        db.dispose()


def _emit(report: Any, fmt: str, output: Path | None, tables: Callable[[Any], Any]) -> None:
    from patron.reports import export

    if fmt == "json":
        data = report.model_dump_json(by_alias=True, indent=2) + "\n"
        if output is None:
            typer.echo(data, nl=False)
        else:
            output.write_text(data, encoding="utf-8")
            console.print(f"written to {output}")
        return
    out = tables(report)
    if fmt == "csv":
        raw = export.to_csv(out)
        if output is None:
            typer.echo(raw.decode("utf-8").removeprefix("\ufeff"), nl=False)
        else:
            output.write_bytes(raw)
            console.print(f"written to {output}")
        return
    if fmt == "xlsx":
        if output is None:
            raise _fail("output_needed", "--format xlsx writes a file: give --output FILE.xlsx")
        output.write_bytes(export.to_xlsx(out))
        console.print(f"written to {output}")
        return
    target = console if output is None else None
    handle = None
    if target is None:
        assert output is not None
        handle = output.open("w", encoding="utf-8")
        target = Console(file=handle, width=200)
    try:
        for table in out.tables:
            shown = Table(*export.terminal_columns(table), title=table.title)
            for row in export.to_terminal_rows(table):
                shown.add_row(*[Text(cell) for cell in row])  # data, never Rich markup
            target.print(shown)
    finally:
        if handle is not None:
            handle.close()
            console.print(f"written to {output}")


def _range(program: Any, first: datetime | None, last: datetime | None, month: str | None) -> Any:
    from patron import clock
    from patron.reports.common import day_range

    return day_range(program, first=_day(first), last=_day(last), month=month, now=clock.now())


@app.command("period")
def period_command(
    program: ProgramOpt,
    first: FromOpt = None,
    last: ToOpt = None,
    month: MonthOpt = None,
    granularity: Annotated[
        Literal["day", "week", "month"], typer.Option(help="Rows per day, week or month")
    ] = "day",
    group_by: Annotated[
        Literal["store", "channel", "tier"] | None, typer.Option(help="A row per store, …")
    ] = None,
    basis: BasisOpt = "occurred",
    store: Annotated[str | None, typer.Option(help="Only this store (code)")] = None,
    channel: Annotated[str | None, typer.Option(help="Only this channel")] = None,
    tier: Annotated[str | None, typer.Option(help="Only members in this tier")] = None,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    max_tail: MaxTailOpt = DEFAULT_MAX_TAIL,
    database_url: DatabaseUrl = None,
) -> None:
    """Points earned, redeemed, expired and adjusted per period, with the sales behind them."""
    from patron import clock
    from patron.programs.service import get_program
    from patron.reports import export, period

    def run(session: Any) -> Any:
        prog = get_program(session, program)
        return period.period_report(
            session,
            prog,
            _range(prog, first, last, month),
            now=clock.now(),
            granularity=granularity,
            group_by=group_by,
            basis=basis,
            store=store,
            channel=channel,
            tier=tier,
        )

    _emit(_run(database_url, run, max_tail=max_tail), fmt, output, export.period_tables)


@app.command("liability")
def liability_command(
    program: ProgramOpt,
    as_of: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Local date (default today)")
    ] = None,
    basis: BasisOpt = "occurred",
    projection_months: Annotated[int, typer.Option(help="3, 6 or 12")] = 12,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    max_tail: MaxTailOpt = DEFAULT_MAX_TAIL,
    database_url: DatabaseUrl = None,
) -> None:
    """Points outstanding and their value as of a date; breakage and redemption rates."""
    from patron import clock
    from patron.programs.service import get_program
    from patron.reports import export, finance
    from patron.reports.common import today

    def run(session: Any) -> Any:
        prog = get_program(session, program)
        return finance.liability(
            session,
            prog,
            as_of=_day(as_of) or today(prog, clock.now()),
            now=clock.now(),
            basis=basis,
            projection_months=projection_months,
        )

    _emit(_run(database_url, run, max_tail=max_tail), fmt, output, export.liability_tables)


@app.command("journal")
def journal_command(
    program: ProgramOpt,
    first: FromOpt = None,
    last: ToOpt = None,
    month: MonthOpt = None,
    basis: BasisOpt = "occurred",
    liability_account: Annotated[str, typer.Option()] = "Points liability",
    expense_account: Annotated[str, typer.Option()] = "Loyalty expense",
    redemption_account: Annotated[str, typer.Option()] = "Points redemption",
    breakage_account: Annotated[str, typer.Option()] = "Breakage income",
    adjustment_account: Annotated[str, typer.Option()] = "Loyalty expense",
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    max_tail: MaxTailOpt = DEFAULT_MAX_TAIL,
    database_url: DatabaseUrl = None,
) -> None:
    """Per day, balanced debit/credit lines for the general ledger (use --format csv)."""
    from pydantic import ValidationError

    from patron.programs.service import get_program
    from patron.reports import export, finance

    try:
        accounts = finance.JournalAccounts(
            liability=liability_account,
            expense=expense_account,
            redemption=redemption_account,
            breakage=breakage_account,
            adjustment=adjustment_account,
        )
    except ValidationError as exc:
        first_error = exc.errors()[0]
        raise _fail(
            "invalid_account", f"{first_error['loc'][0]}_account: {first_error['msg']}"
        ) from None

    def run(session: Any) -> Any:
        prog = get_program(session, program)
        rng = _range(prog, first, last, month)
        return finance.journal(session, prog, rng, basis=basis, accounts=accounts)

    _emit(_run(database_url, run, max_tail=max_tail), fmt, output, export.journal_tables)


@app.command("members")
def members_command(
    program: ProgramOpt,
    first: FromOpt = None,
    last: ToOpt = None,
    month: MonthOpt = None,
    as_of: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Activity and tiers at the end of this date"),
    ] = None,
    dormant_days: Annotated[int, typer.Option(min=1, max=3650)] = 90,
    granularity: Annotated[Literal["day", "week", "month"], typer.Option()] = "month",
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Active and dormant members, new members, tier distribution and tier moves."""
    from patron import clock
    from patron.programs.service import get_program
    from patron.reports import export, members

    def run(session: Any) -> Any:
        prog = get_program(session, program)
        return members.members_report(
            session,
            prog,
            _range(prog, first, last, month),
            now=clock.now(),
            as_of=_day(as_of),
            dormant_days=dormant_days,
            granularity=granularity,
        )

    _emit(_run(database_url, run, max_tail=None), fmt, output, export.members_tables)


@app.command("promotions")
def promotions_command(
    program: ProgramOpt,
    first: FromOpt = None,
    last: ToOpt = None,
    month: MonthOpt = None,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Points issued per rule and promotion; promotion budgets used and left."""
    from patron import clock
    from patron.programs.service import get_program
    from patron.reports import export, promotions

    def run(session: Any) -> Any:
        prog = get_program(session, program)
        return promotions.promotions_report(
            session, prog, _range(prog, first, last, month), now=clock.now()
        )

    _emit(_run(database_url, run, max_tail=None), fmt, output, export.promotions_tables)


@app.command("rewards")
def rewards_command(
    program: ProgramOpt,
    first: FromOpt = None,
    last: ToOpt = None,
    month: MonthOpt = None,
    granularity: Annotated[
        Literal["day", "week", "month"], typer.Option(help="Rows per day, week or month")
    ] = "day",
    group_by: Annotated[
        Literal["store", "channel", "tier"] | None, typer.Option(help="A row per store, …")
    ] = None,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Rewards redeemed per period and reward: units, points, cost; cancellations netted out."""
    from patron import clock
    from patron.programs.service import get_program
    from patron.reports import export, rewards

    def run(session: Any) -> Any:
        prog = get_program(session, program)
        return rewards.redemptions_report(
            session,
            prog,
            _range(prog, first, last, month),
            now=clock.now(),
            granularity=granularity,
            group_by=group_by,
        )

    _emit(_run(database_url, run, max_tail=None), fmt, output, export.redemptions_tables)


@app.command("rewards-stock")
def rewards_stock_command(
    program: ProgramOpt,
    first: Annotated[
        datetime | None,
        typer.Option("--from", formats=["%Y-%m-%d"], help="First local date (default: all time)"),
    ] = None,
    last: ToOpt = None,
    month: MonthOpt = None,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Every reward's stock: left, restocked, redeemed, cancelled back, corrected."""
    from patron import clock
    from patron.programs.service import get_program
    from patron.reports import export, rewards

    def run(session: Any) -> Any:
        prog = get_program(session, program)
        ranged = first is not None or last is not None or month is not None
        rng = _range(prog, first, last, month) if ranged else None
        return rewards.stock_report(session, prog, rng, now=clock.now())

    _emit(_run(database_url, run, max_tail=None), fmt, output, export.stock_tables)


@app.command("coupons")
def coupons_command(
    program: ProgramOpt,
    as_of: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Local date (default today)")
    ] = None,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Coupons outstanding at the end of a date, per reward, and their value (a liability)."""
    from patron import clock
    from patron.programs.service import get_program
    from patron.reports import export, rewards
    from patron.reports.common import today

    def run(session: Any) -> Any:
        prog = get_program(session, program)
        day = _day(as_of) or today(prog, clock.now())
        return rewards.coupons_report(session, prog, as_of=day, now=clock.now())

    _emit(_run(database_url, run, max_tail=None), fmt, output, export.coupons_tables)


@app.command("coupons-breakage")
def coupons_breakage_command(
    program: ProgramOpt,
    first: FromOpt = None,
    last: ToOpt = None,
    month: MonthOpt = None,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Coupons that expired unused against those used, per reward, and the breakage rate."""
    from patron import clock
    from patron.programs.service import get_program
    from patron.reports import export, rewards

    def run(session: Any) -> Any:
        prog = get_program(session, program)
        return rewards.breakage_report(
            session, prog, _range(prog, first, last, month), now=clock.now()
        )

    _emit(_run(database_url, run, max_tail=None), fmt, output, export.coupon_breakage_tables)


@app.command("balance")
def balance_command(
    program: ProgramOpt,
    member: Annotated[int, typer.Option("--member", min=1, help="The member's id")],
    as_of: Annotated[
        str | None,
        typer.Option(help="2026-03-01 (end of that local day) or 2026-03-01T18:00 (local)"),
    ] = None,
    fmt: FormatOpt = "table",
    output: OutputOpt = None,
    database_url: DatabaseUrl = None,
) -> None:
    """A member's balance as of a date or an instant."""
    from patron import clock
    from patron.ledger.views import get_account
    from patron.programs.service import get_program
    from patron.reports import export, finance

    def run(session: Any) -> Any:
        prog = get_program(session, program)
        account = get_account(session, prog, member)
        at = finance.parse_as_of(prog, as_of, clock.now())
        return finance.member_balance(session, prog, account, at=at, now=clock.now())

    _emit(_run(database_url, run, max_tail=None), fmt, output, export.balance_tables)


@app.command("dashboard")
def dashboard_command(
    program: ProgramOpt,
    days: Annotated[int, typer.Option(min=1, max=366)] = 30,
    database_url: DatabaseUrl = None,
) -> None:
    """The dashboard's numbers as JSON."""
    from patron import clock
    from patron.programs.service import get_program
    from patron.reports.dashboard import dashboard

    out = _run(
        database_url,
        lambda s: dashboard(s, get_program(s, program), now=clock.now(), days=days),
        max_tail=DEFAULT_MAX_TAIL,
    )
    typer.echo(out.model_dump_json(by_alias=True, indent=2))


@app.command("refresh")
def refresh_command(
    limit: Annotated[
        int | None, typer.Option(min=1, help="At most this many entry ids this run")
    ] = None,
    chunk: Annotated[
        int | None,
        typer.Option(min=1, help="Entry ids per transaction (default 1,000,000; SQLite 100,000)"),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Roll the entries written since the last run into the report roll-up (safe any time)."""
    from patron import clock
    from patron.reports import rollup

    db = open_database(database_url)
    try:
        done = rollup.refresh(db, now=clock.now(), chunk=chunk, limit=limit)
    finally:
        db.dispose()
    console.print(
        f"roll-up covers entries up to id {done.to_entry_id:,} (was {done.from_entry_id:,}; "
        f"{done.chunks} chunk(s), {done.seconds:.2f} s)"
    )


@app.command("rebuild")
def rebuild_command(database_url: DatabaseUrl = None) -> None:
    """Build the roll-up again from the whole ledger (after a program's timezone changed)."""
    from patron import clock
    from patron.reports import rollup

    db = open_database(database_url)
    try:
        done = rollup.rebuild(db, now=clock.now())
    finally:
        db.dispose()
    console.print(f"roll-up rebuilt up to entry id {done.to_entry_id:,} ({done.seconds:.2f} s)")


@app.command("check")
def check_command(database_url: DatabaseUrl = None) -> None:
    """Prove the roll-up equals the raw sums of the ledger; exits 1 on any difference."""
    from patron.reports import rollup

    db = open_database(database_url)
    try:
        with db.unit_of_work(readonly=True) as session:
            result = rollup.check(session)
    finally:
        db.dispose()
    if result.ok:
        console.print(
            f"[green]report roll-up consistent[/]: {result.groups} groups up to entry id "
            f"{result.watermark:,}"
        )
        return
    typer.echo(f"{len(result.violations)} violation(s):")
    for line in result.violations:
        typer.echo(f"  {line}")
    raise typer.Exit(1)
