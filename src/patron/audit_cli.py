"""`patron audit seal` and `patron audit verify`: the tamper-evident audit log."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer

from patron import clock
from patron.cli_common import DatabaseUrl, console, open_database

app = typer.Typer(help="The tamper-evident audit log: seal and verify.", no_args_is_help=True)


@app.command("seal")
def seal(
    database_url: DatabaseUrl = None,
    grace_seconds: Annotated[
        float, typer.Option(min=0, help="Leave records younger than this unsealed")
    ] = 5.0,
    block_size: Annotated[int, typer.Option(min=1, max=100_000)] = 1000,
) -> None:
    """Seal every audit record older than a few seconds into the hash chain; print the head."""
    from patron.audit.chain import seal_pending

    db = open_database(database_url)
    report = seal_pending(
        db, now=clock.now(), grace=timedelta(seconds=grace_seconds), block_size=block_size
    )
    console.print(f"sealed {report.records} records in {report.seals} blocks")
    if report.held_back:
        console.print(
            "[yellow]a database transaction open for a while holds newer records back[/]; "
            "they are sealed once it ends"
        )
    console.print(f"head: seal #{report.head_seq} {report.head_hash}")
    console.print("  keep the head outside the database; check it with --expect-head")


@app.command("verify")
def verify(
    database_url: DatabaseUrl = None,
    program: Annotated[
        str | None, typer.Option(help="Report only this program's records (by code)")
    ] = None,
    expect_head: Annotated[
        str | None,
        typer.Option(help="A head hash recorded earlier: fail if the chain no longer has it"),
    ] = None,
) -> None:
    """Recompute the audit chain; exits 1 if any record or seal was changed."""
    from sqlalchemy import select

    from patron.audit.chain import verify as verify_chain
    from patron.programs.models import Program

    db = open_database(database_url)
    with db.unit_of_work(readonly=True) as session:
        program_id = None
        if program is not None:
            program_id = session.scalar(select(Program.id).where(Program.code == program))
            if program_id is None:
                console.print(f"[red]not_found[/]: no program {program!r}")
                raise typer.Exit(2)
        report = verify_chain(session, program_id=program_id, expect_head=expect_head)
    up_to = f"{report.verified_up_to:%Y-%m-%d %H:%M:%S} UTC" if report.verified_up_to else "-"
    if report.ok:
        console.print(
            f"[green]audit chain intact[/]: {report.seals} seals, "
            f"{report.sealed_records} records sealed and unchanged (up to {up_to})"
        )
    else:
        console.print(
            f"[red]audit chain TAMPERED[/]: {len(report.findings)} finding(s) in "
            f"{report.seals} seals"
        )
        for finding in report.findings:
            console.print(f"  {finding}", markup=False)
    if report.redacted_records:
        console.print(
            f"{report.redacted_records} sealed records redacted by erasures (accepted: their "
            "digests before and after are on record)"
        )
    if report.unsealed_records:
        console.print(
            f"{report.unsealed_records} newer records not yet sealed "
            f"(from id {report.first_unsealed_id})"
        )
    console.print(f"head: seal #{report.head_seq} {report.head_hash}")
    if report.expected_head_seq is not None:
        console.print(f"expected head found at seal #{report.expected_head_seq}")
    if not report.ok:
        raise typer.Exit(1)
