"""`patron surveys …`: list a program's surveys, show a survey's results, export them."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from patron.cli_common import DatabaseUrl, console, open_database

app: typer.Typer = typer.Typer(
    help="Surveys: list them, read their results, export them (CSV, XLSX).", no_args_is_help=True
)
ProgramOpt = Annotated[str, typer.Option("--program", help="The program's code, e.g. bakery")]
SurveyArg = Annotated[str, typer.Argument(help="The survey's code, e.g. after-visit")]
FromOpt = Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD")]
ToOpt = Annotated[str | None, typer.Option("--to", help="Last day, YYYY-MM-DD")]
StoreOpt = Annotated[str | None, typer.Option("--store", help="Only this store's answers")]
LangOpt = Annotated[str, typer.Option("--lang", help="ko, zh or en (labels, XLSX headers)")]


def _fail(code: str, detail: str) -> typer.Exit:
    typer.echo(f"{code}: {detail}", err=True)
    return typer.Exit(2)


def _day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise _fail("invalid_date", f"{name} must be a date like 2026-03-31") from None


def _lang(value: str) -> str:
    if value not in ("ko", "zh", "en"):
        raise _fail("invalid_language", "--lang is ko, zh or en")
    return value


@app.command("list")
def list_surveys(
    program: ProgramOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """The program's surveys: code, status, window, stores, points."""
    from patron.errors import PatronError
    from patron.programs.service import get_program
    from patron.surveys import service

    db = open_database(database_url)
    try:
        with db.unit_of_work(readonly=True) as session:
            rows = [
                service.out(r) for r in service.list_surveys(session, get_program(session, program))
            ]
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    if as_json:
        typer.echo(
            json.dumps([r.model_dump(mode="json") for r in rows], indent=2, ensure_ascii=False)
        )
        return
    table = Table(
        "code",
        "status",
        "title",
        "from",
        "until",
        "stores",
        "points",
        title=f"surveys of {program}",
    )
    for r in rows:
        table.add_row(
            r.code, r.status, r.title.get(r.fallback_language, ""),
            r.starts_at.isoformat() if r.starts_at else "—",
            r.ends_at.isoformat() if r.ends_at else "—",
            ", ".join(r.stores) or "all", str(r.points),
        )  # fmt: skip
    console.print(table)


@app.command("results")
def results(
    program: ProgramOpt,
    survey: SurveyArg,
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    store: StoreOpt = None,
    lang: LangOpt = "en",
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Invitations, responses, average rating and each question's distribution."""
    from patron.errors import PatronError
    from patron.programs.service import get_program
    from patron.surveys import service

    first, last, language = _day(date_from, "--from"), _day(date_to, "--to"), _lang(lang)
    db = open_database(database_url)
    try:
        with db.unit_of_work(readonly=True) as session:
            prog = get_program(session, program)
            report = service.results(
                session, prog, service.get_survey(session, prog, survey), store=store,
                date_from=first, date_to=last, language=language,
            )  # fmt: skip
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    if as_json:
        typer.echo(report.model_dump_json(indent=2, by_alias=True))
        return
    console.print(
        f"{report.survey}: {report.responses} responses of {report.invitations} invitations; "
        f"average rating {report.average_rating if report.average_rating is not None else '—'}; "
        f"{report.points_given} points given"
    )
    table = Table("question", "answer", "count", "average", title="answers")
    for q in report.questions:
        table.add_row(q.label, "", str(q.answers), "" if q.average is None else f"{q.average:.2f}")
        for d in q.distribution:
            table.add_row("", d.label, str(d.count), "")
    console.print(table)


@app.command("export")
def export(
    program: ProgramOpt,
    survey: SurveyArg,
    out: Annotated[Path, typer.Option("--out", help="File to write; .csv or .xlsx")],
    date_from: FromOpt = None,
    date_to: ToOpt = None,
    store: StoreOpt = None,
    lang: LangOpt = "en",
    database_url: DatabaseUrl = None,
) -> None:
    """Write the results (summary, by store, free text) as CSV or XLSX, by the file's suffix."""
    from patron.errors import PatronError
    from patron.surveys.api import export_file

    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("csv", "xlsx"):
        raise _fail("invalid_format", "--out must end in .csv or .xlsx")
    first, last, language = _day(date_from, "--from"), _day(date_to, "--to"), _lang(lang)
    db = open_database(database_url)
    try:
        data, _media, _name = export_file(
            db, program, survey, fmt=fmt, lang=language, store=store, date_from=first, date_to=last
        )
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    out.write_bytes(data)
    console.print(f"wrote {out} ({len(data)} bytes)")
