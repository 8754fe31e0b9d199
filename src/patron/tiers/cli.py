"""`patron tiers …`: show the setup, set a member's tier, run the period evaluation.

The read commands (progress, near-miss, what-if) come from patron.tiers.read_cli.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from patron.cli_common import DatabaseUrl, console, open_database

# module may be imported first.
app: typer.Typer = typer.Typer(
    help="Tiers: setup, manual changes, the period evaluation, progress and reports.",
    no_args_is_help=True,
)


ProgramOpt = Annotated[str, typer.Option("--program", help="The program's code, e.g. bakery")]


def _fail(code: str, detail: str) -> typer.Exit:
    # Plain output: details can hold brackets that Rich would read as markup.
    typer.echo(f"{code}: {detail}", err=True)
    return typer.Exit(2)


def _parse_as_of(value: str | None) -> datetime | date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO date or datetime") from None


@app.command("show")
def show(program: ProgramOpt, database_url: DatabaseUrl = None) -> None:
    """The program's tier policy and tiers."""
    from patron.errors import PatronError
    from patron.programs.service import get_program
    from patron.tiers import service

    db = open_database(database_url)
    try:
        with db.unit_of_work(readonly=True) as session:
            setup = service.tier_setup(session, get_program(session, program))
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    if setup.policy is None:
        console.print(f"program {program} has no tiers")
        return
    p = setup.policy
    window = f"rolling {p.rolling_months} months" if p.window == "rolling" else p.window
    console.print(
        f"metric {p.metric}, window {window}, upgrade {p.upgrade}, downgrade "
        f"{p.downgrade}"
        + (f" ({p.grace_periods} periods)" if p.downgrade == "grace" else "")
        + f", manual tiers: {p.manual}"
    )
    table = Table("rank", "code", "name", "threshold", "multiplier", "extra expiry", "benefits")
    for tier in setup.tiers:
        table.add_row(
            str(tier.rank),
            tier.code,
            " / ".join(tier.names.values()),
            f"{tier.threshold:,}",
            format(tier.multiplier.normalize(), "f"),
            f"{tier.extra_expiry_months} months" if tier.extra_expiry_months else "",
            "; ".join(tier.benefits),
        )
    console.print(table)


@app.command("set")
def set_tier(
    program: ProgramOpt,
    member: Annotated[int, typer.Option("--member", min=1, help="The member's id")],
    tier: Annotated[str, typer.Option("--tier", help="The tier code")],
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit trail)")],
    until: Annotated[
        str | None, typer.Option("--until", help="Last local day (YYYY-MM-DD)")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Set a member's tier by hand (an appeal), with a mandatory reason."""
    from pydantic import ValidationError

    from patron import clock
    from patron.audit.service import CLI
    from patron.errors import PatronError
    from patron.programs.service import get_program
    from patron.tiers import service
    from patron.tiers.schemas import ManualTierRequest

    try:
        req = ManualTierRequest(
            tier=tier, reason=reason, until=date.fromisoformat(until) if until else None
        )
    except ValueError as exc:
        detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise _fail("invalid", detail) from None
    db = open_database(database_url)
    try:
        with db.unit_of_work() as session:
            out = service.set_manual(
                session, get_program(session, program), member, req, actor=CLI, now=clock.now()
            )
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    assert out.change is not None
    kept = f" until {until}" if until else ""
    console.print(
        f"member {member}: {out.change.from_tier or 'none'} → {out.tier}{kept} (manual: {reason})",
        markup=False,
    )


@app.command("evaluate")
def evaluate_command(
    program: ProgramOpt,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Evaluate the window that ended at or before this date (local "
            "midnight) or datetime; default now",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Compute the moves, change nothing")
    ] = False,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size", min=1, max=1_000_000, help="Accounts per transaction (default 20,000)"
        ),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Re-place every member by the last ended window: idempotent and resumable."""
    from patron import clock
    from patron.audit.service import CLI
    from patron.errors import PatronError
    from patron.programs.service import get_program
    from patron.tiers import jobs

    db = open_database(database_url)
    now = clock.now()
    try:
        with db.unit_of_work(readonly=True) as session:
            timezone = get_program(session, program).timezone
        instant = jobs.as_of_instant(_parse_as_of(as_of), timezone, now)
        with Progress(
            TextColumn("evaluating"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("accounts", total=None)

            def advance(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            summary = jobs.evaluate(
                db,
                program,
                instant,
                dry_run=dry_run,
                batch_size=batch_size or jobs.DEFAULT_BATCH,
                progress=advance,
                actor=CLI,
                now=now,
            )
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    head = "dry run: " if summary.dry_run else ""
    if summary.already_done:
        head += "already evaluated, nothing changed; "
    console.print(
        f"{head}period {summary.period}: {summary.accounts:,} accounts, "
        f"{sum(summary.moves.values()):,} moved, {summary.kept_in_grace:,} kept in "
        f"grace, {summary.kept_manual:,} manual kept, {summary.manual_ended:,} manual "
        "ended",
        markup=False,
    )
    if summary.moves:
        table = Table("from", "to", "members")
        for pair, count in summary.moves.items():
            before, _, after = pair.partition("→")
            table.add_row(before, after, f"{count:,}")
        console.print(table)


def _register_reads() -> None:
    from patron.tiers.read_cli import register

    register(app)


_register_reads()
