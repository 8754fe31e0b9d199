"""`patron rules test`: run a program's rule examples (or a file of them) against the rules in
force or a proposed rule set; exit status 1 if one fails, JUnit XML for a CI on request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from patron.cli_common import DatabaseUrl, console, open_database


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        typer.echo(f"invalid_file: {what} {path}: {exc}", err=True)
        raise typer.Exit(2) from None


def test(
    program: Annotated[str, typer.Option("--program", help="The program's code, e.g. bakery")],
    rules_file: Annotated[
        Path | None,
        typer.Option("--rules", help="A rule set document (JSON) to test instead of the current"),
    ] = None,
    examples_file: Annotated[
        Path | None,
        typer.Option(
            "--examples",
            help='Examples to run instead of the stored ones: {"name": {"sale": …, '
            '"member": …, "expected_points": N}, …}',
        ),
    ] = None,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Also write the results as JUnit XML here")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Price every rule example and compare with the points it must earn."""
    from patron import clock
    from patron.earning import examples
    from patron.errors import PatronError
    from patron.programs.service import get_program
    from patron.rules import service as rules

    proposal = None
    given = None
    try:
        if rules_file is not None:
            proposal = rules.validate_doc(_read_json(rules_file, "rules"))
        if examples_file is not None:
            raw = _read_json(examples_file, "examples")
            if not isinstance(raw, dict):
                typer.echo("invalid_file: examples: a JSON object of name → example", err=True)
                raise typer.Exit(2)
            given = {str(k): examples.ExampleIn.model_validate(v) for k, v in raw.items()}
        db = open_database(database_url)
        with db.unit_of_work(readonly=True) as session:
            report = examples.run(
                session,
                get_program(session, program),
                proposal=proposal,
                given=given,
                now=clock.now(),
            )
    except PatronError as exc:
        typer.echo(f"{exc.code}: {exc.detail}", err=True)
        raise typer.Exit(2) from None
    except ValidationError as exc:
        typer.echo(f"invalid_example: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(2) from None
    table = Table("example", "expected", "points", "now", "result", title=f"{program} rule tests")
    for r in report.results:
        verdict = "[green]pass[/]" if r.passed else f"[red]{r.error or 'FAIL'}[/]"
        table.add_row(
            r.name,
            str(r.expected_points),
            "-" if r.points is None else str(r.points),
            "-" if r.current_points is None else str(r.current_points),
            verdict,
        )
    console.print(table)
    console.print(f"{report.passed} passed, {report.failed} failed, {report.changed} changed")
    if junit is not None:
        junit.write_text(examples.junit(report), encoding="utf-8")
    if report.failed:
        raise typer.Exit(1)
