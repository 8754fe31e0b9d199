"""`patron campaigns …`: list, show, launch, stop, results and the run job
(docs/engagement.md)."""

from __future__ import annotations

import json
from typing import Annotated, Literal

import typer
from rich.table import Table

from patron.cli_common import DatabaseUrl, console, open_database

app: typer.Typer = typer.Typer(
    help="Campaigns with A/B tests: list, show, launch, stop, results, run.", no_args_is_help=True
)
ProgramOpt = Annotated[str, typer.Option("--program", help="The program's code, e.g. bakery")]
CodeArg = Annotated[str, typer.Argument(help="The campaign's code")]


def _fail(code: str, detail: str) -> typer.Exit:
    typer.echo(f"{code}: {detail}", err=True)
    return typer.Exit(2)


@app.command("list")
def list_campaigns(program: ProgramOpt, database_url: DatabaseUrl = None) -> None:
    """The program's campaigns, newest first."""
    from patron.campaigns import service
    from patron.errors import PatronError
    from patron.programs.service import get_program

    db = open_database(database_url)
    try:
        with db.unit_of_work(readonly=True) as session:
            table = Table("code", "name", "status", "segment", "members", "points", "coupons",
                          title=f"campaigns of {program}")  # fmt: skip
            for row in service.list_campaigns(session, get_program(session, program)):
                table.add_row(row.code, row.name, row.status, row.segment,
                              str(service.member_count(session, row)), str(row.points_given),
                              str(row.coupons_given))  # fmt: skip
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    console.print(table)


@app.command("show")
def show(program: ProgramOpt, code: CodeArg, database_url: DatabaseUrl = None) -> None:
    """A campaign as JSON."""
    from patron.campaigns import service
    from patron.errors import PatronError
    from patron.programs.service import get_program

    db = open_database(database_url)
    try:
        with db.unit_of_work(readonly=True) as session:
            row = service.get_campaign(session, get_program(session, program), code)
            doc = service.out(session, row).model_dump(mode="json")
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    typer.echo(json.dumps(doc, indent=2, ensure_ascii=False))


@app.command("launch")
def launch(program: ProgramOpt, code: CodeArg, database_url: DatabaseUrl = None) -> None:
    """Launch a draft campaign now (or schedule it for its start)."""
    from patron import clock
    from patron.audit.service import CLI
    from patron.campaigns import service
    from patron.errors import PatronError
    from patron.programs.service import get_program

    db = open_database(database_url)
    try:
        with db.unit_of_work() as session:
            row, given = service.launch(
                session, get_program(session, program), code, actor=CLI, now=clock.now()
            )
            line = (
                f"{code}: {row.status}; {given.assigned} members assigned, {given.points} points "
                f"to {given.points_members}, {given.coupons} coupons, {given.messages} "
                f"messages, {given.no_budget} over budget"
            )
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    console.print(line)


@app.command("stop")
def stop(program: ProgramOpt, code: CodeArg, database_url: DatabaseUrl = None) -> None:
    """Stop a running campaign."""
    from patron import clock
    from patron.audit.service import CLI
    from patron.campaigns import service
    from patron.errors import PatronError
    from patron.programs.service import get_program

    db = open_database(database_url)
    try:
        with db.unit_of_work() as session:
            service.stop(session, get_program(session, program), code, actor=CLI, now=clock.now())
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    console.print(f"{code}: stopped")


@app.command("results")
def results(
    program: ProgramOpt,
    code: CodeArg,
    period: Annotated[str, typer.Option("--period", help="during | after")] = "during",
    lang: Annotated[str, typer.Option("--lang", help="ko | zh | en")] = "en",
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Per arm figures and each variant's uplift over the control, with verdicts."""
    from patron import clock
    from patron.campaigns import service
    from patron.errors import PatronError
    from patron.programs.service import get_program

    if period not in ("during", "after") or lang not in ("ko", "zh", "en"):
        raise _fail("invalid_option", "--period is during or after; --lang is ko, zh or en")
    chosen: Literal["during", "after"] = "during" if period == "during" else "after"
    db = open_database(database_url)
    try:
        with db.unit_of_work(readonly=True) as session:
            prog = get_program(session, program)
            out = service.results(session, prog, service.get_campaign(session, prog, code),
                                  period=chosen, language=lang, now=clock.now())  # fmt: skip
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    if as_json:
        typer.echo(out.model_dump_json(indent=2))
        return
    table = Table("arm", "members", "reached", "points", "rule points", "messages", "coupons",
                  "redeemed", "visits/member", "visited", f"spend/member ({out.currency})",
                  "points cost/member", title=f"{code} ({period})")  # fmt: skip
    for a in out.arms:
        table.add_row(a.name, str(a.members), str(a.reached), str(a.points_given),
                      str(a.rule_points), str(a.messages), str(a.coupons_given),
                      str(a.coupons_redeemed), f"{a.visits_per_member:.2f}",
                      f"{a.visit_rate:.1%}", str(a.spend_per_member),
                      f"{a.points_cost_per_member:.1f}")  # fmt: skip
    console.print(table)
    for u in out.uplifts:
        console.print(f"  {u.verdict}")


@app.command("run")
def run(database_url: DatabaseUrl = None) -> None:
    """The campaigns job: start due ones, add live segment members, end finished ones."""
    from patron import clock
    from patron.campaigns.jobs import run_due

    db = open_database(database_url)
    for r in run_due(db, now=clock.now()):
        console.print(f"{r.program}/{r.campaign}: {r.status}, +{r.assigned} members, "
                      f"{r.points} points, {r.coupons} coupons")  # fmt: skip
