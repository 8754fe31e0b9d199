"""`patron privacy …`: consent exports and versions, data-subject exports, erasure, legal holds.

A member is named by id, card number, phone or e-mail (`42`, `BKR100000`, `010-1234-5678`,
`minji@example.com`). Refusals print `code: detail` and exit 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron import clock
from patron.audit.service import CLI
from patron.cli_common import DatabaseUrl, console, open_database
from patron.errors import Invalid, NotFound, PatronError
from patron.members.models import Card, Member
from patron.members.schemas import MemberRef
from patron.members.service import find_member, get_member
from patron.privacy import consents, erasure
from patron.privacy import export as dsr
from patron.programs.models import Program
from patron.programs.service import get_program

app = typer.Typer(
    help="Members' data: consents, exports, erasure and legal holds.", no_args_is_help=True
)

MemberArg = Annotated[str, typer.Argument(help="Member id, card number, phone or e-mail")]
ProgramOpt = Annotated[str | None, typer.Option("--program", help="Program code")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (kept in the audit log)")]


@contextmanager
def _refusals() -> Iterator[None]:
    try:
        yield
    except PatronError as exc:
        console.print(f"[red]{exc.code}[/]: {exc.detail}", markup=True)
        raise typer.Exit(2) from None


def resolve_member(session: Session, ref: str) -> Member:
    text = ref.strip()
    if not text or len(text) > 254:
        raise Invalid("name a member by id, card, phone or e-mail", code="invalid_member")
    if text.isdigit() and len(text) < 12:
        return get_member(session, int(text))
    if "@" in text:
        return find_member(session, MemberRef(email=text))
    if session.scalar(select(Card.id).where(Card.number == text)) is not None:
        member_id = session.scalar(select(Card.member_id).where(Card.number == text))
        assert member_id is not None
        return get_member(session, member_id)
    try:
        return find_member(session, MemberRef(phone=text))
    except (ValueError, PatronError):
        raise NotFound(f"no member {ref!r}", code="member_not_found") from None


def _program(session: Session, code: str | None) -> Program | None:
    return get_program(session, code) if code else None


@app.command("export")
def export(
    member: MemberArg,
    to: Annotated[Path, typer.Option("--to", help="The ZIP file to write")],
    program: ProgramOpt = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Write everything Patron holds on a member as JSON files in a ZIP (audited)."""
    db = open_database(database_url)
    now = clock.now()
    with _refusals(), db.unit_of_work() as session:
        found = resolve_member(session, member)
        data = dsr.build_zip(
            session, found, program=_program(session, program), source="cli", actor=CLI, now=now
        )
        member_id = found.id
    to.write_bytes(data)
    console.print(f"member {member_id}: {len(data):,} bytes written to {to}")


@app.command("erase")
def erase(
    member: MemberArg,
    program: Annotated[str, typer.Option("--program", help="Program the erasure is recorded in")],
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    request: Annotated[
        int | None, typer.Option("--request", min=1, help="Her erasure request this carries out")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Erase a member's personal data for good; the ledger keeps every amount."""
    db = open_database(database_url)
    with _refusals(), db.unit_of_work(readonly=True) as session:
        member_id = resolve_member(session, member).id
        get_program(session, program)
    if not yes:
        typer.confirm(
            f"Erase member {member_id}'s personal data? This cannot be undone", abort=True
        )
    with _refusals(), db.unit_of_work() as session:
        report = erasure.erase(
            session, member_id, program=get_program(session, program), reason=reason,
            source="cli", actor=CLI, now=clock.now(), request_id=request,
        )  # fmt: skip
    console.print(
        f"member {member_id} erased (erasure {report.erasure_id}): {report.cards} cards, "
        f"{report.messages} messages, {report.audit_redacted} audit records redacted"
    )


@app.command("requests")
def requests(program: ProgramOpt = None, database_url: DatabaseUrl = None) -> None:
    """List the open erasure requests members filed on their member page."""
    db = open_database(database_url)
    with _refusals(), db.unit_of_work(readonly=True) as session:
        found = _program(session, program)
        rows = erasure.open_requests(session, found.id if found else None)
        for r in rows:
            console.print(f"{r.id}\tmember {r.member_id}\t{r.requested_at:%Y-%m-%d %H:%M} UTC")
        console.print(f"{len(rows)} open erasure request(s)")


@app.command("hold")
def hold(
    member: MemberArg,
    reason: ReasonOpt,
    program: ProgramOpt = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Place a legal hold on a member: erasure is refused until it is released."""
    db = open_database(database_url)
    with _refusals(), db.unit_of_work() as session:
        found = resolve_member(session, member)
        where = _program(session, program)
        row = erasure.place_hold(
            session, found.id, reason=reason, program_id=where.id if where else None, actor=CLI,
            now=clock.now(),
        )  # fmt: skip
        console.print(f"legal hold {row.id} placed on member {found.id}")


@app.command("release")
def release(
    member: MemberArg,
    hold_id: Annotated[int, typer.Argument(min=1, help="The hold's id")],
    reason: ReasonOpt,
    database_url: DatabaseUrl = None,
) -> None:
    """Release a legal hold, with a reason."""
    db = open_database(database_url)
    with _refusals(), db.unit_of_work() as session:
        found = resolve_member(session, member)
        erasure.release_hold(session, found.id, hold_id, reason=reason, actor=CLI, now=clock.now())
        console.print(f"legal hold {hold_id} on member {found.id} released")


@app.command("consents")
def consents_csv(
    program: Annotated[str, typer.Argument(help="Program code")],
    to: Annotated[
        Path | None, typer.Option("--to", help="CSV file (default: standard output)")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Export every consent record of a program's members as CSV."""
    db = open_database(database_url)
    with _refusals(), db.unit_of_work(readonly=True) as session:
        found = get_program(session, program)
        if to is None:
            for chunk in consents.export_csv(session, found):
                typer.echo(chunk, nl=False)
            return
        with to.open("w", encoding="utf-8", newline="") as out:
            for chunk in consents.export_csv(session, found):
                out.write(chunk)
    console.print(f"consents of {program} written to {to}")


@app.command("consent-version")
def consent_version(
    program: Annotated[str, typer.Argument(help="Program code")],
    purpose: Annotated[str, typer.Argument(help="marketing_email, marketing_sms or profiling")],
    version: Annotated[str, typer.Argument(help="The consent text version, e.g. 2026-12")],
    summary: Annotated[str | None, typer.Option(help="A line about the text or its link")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Set a program's current consent text version for a purpose."""
    db = open_database(database_url)
    with _refusals(), db.unit_of_work() as session:
        consents.set_version(
            session, get_program(session, program), purpose, version, summary=summary, actor=CLI,
            now=clock.now(),
        )  # fmt: skip
    console.print(f"{program}: {purpose} consent text is now version {version}")
