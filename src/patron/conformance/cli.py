"""`patron conformance --url URL --admin-key KEY [--junit FILE]`.

Exit codes: 0 every check passed, 1 a check failed, 2 the suite could not run (server
unreachable, a key without the admin scope or limited to programs, an unknown check name)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from patron.cli_common import console


def conformance(
    url: Annotated[
        str, typer.Option(help="The deployment's base URL, e.g. https://patron.example")
    ],
    admin_key: Annotated[
        str,
        typer.Option(
            envvar="PATRON_CONFORMANCE_KEY",
            help="An API key with the admin scope and no program limit "
            "(or set PATRON_CONFORMANCE_KEY)",
        ),
    ],
    junit: Annotated[
        Path | None, typer.Option(help="Also write the results as JUnit XML to this file")
    ] = None,
    only: Annotated[
        list[str] | None, typer.Option(help="Run only this check; repeat for several")
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=2, max=90, help="Concurrent requests in the race checks")
    ] = 20,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for each answer")] = 30.0,
) -> None:
    """Check a running deployment's ledger promises over its HTTP API, in scratch programs
    (docs/conformance.md). Exits 1 when any check fails."""
    from patron.conformance.report import render, write_junit
    from patron.conformance.suite import SetupError, run_suite

    console.print(f"running the conformance checks against {url} …")
    try:
        report = run_suite(
            url,
            admin_key,
            only=only or None,
            concurrency=concurrency,
            timeout=timeout,
            on_result=lambda r: console.print(
                f"  {'[green]pass[/]' if r.passed else '[red]FAIL[/]'} {r.name} ({r.seconds:.1f} s)"
            ),
        )
    except SetupError as exc:
        console.print(f"[red]cannot run[/]: {exc}")
        raise typer.Exit(2) from None
    render(report, console)
    if junit is not None:
        write_junit(report, junit)
        console.print(f"JUnit XML written to {junit}")
    if not report.passed:
        raise typer.Exit(1)
