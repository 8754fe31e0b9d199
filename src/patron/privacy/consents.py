"""Consent per purpose: marketing_email, marketing_sms and profiling, each record with its
time, source, the consent text version agreed to, and withdrawal.

The records live in consent_records (patron.members.consent), whose `channel` names the
purpose, so the message readers (notify jobs, delivery, the member page) keep calling
`consent.current(member, "email")` unchanged. Each program keeps its current consent text
version per purpose (consent_texts); a record made in a program stores the version current
there unless the caller names one.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.errors import Conflict, Invalid
from patron.events.outbox import iso_utc
from patron.ledger.models import Account
from patron.members import consent
from patron.members.models import ConsentRecord, Member
from patron.privacy.models import ConsentText
from patron.programs.models import Program

BY_CHANNEL = {channel: purpose for purpose, channel in consent.PURPOSES.items()}
SOURCES = ("till", "api", "portal", "admin", "import", "enrollment")
VERSION_MAX = 40
NOTE_MAX = 500


def check_purpose(purpose: str) -> str:
    if purpose not in consent.PURPOSES:
        raise Invalid(
            f"purpose must be one of {', '.join(consent.PURPOSES)}; got {purpose!r}",
            code="invalid_purpose",
        )
    return consent.PURPOSES[purpose]


def check_version(version: str | None) -> str | None:
    text = (version or "").strip()
    if not text:
        return None
    if len(text) > VERSION_MAX or not text.isprintable():
        raise Invalid(
            f"a consent text version is up to {VERSION_MAX} printable characters",
            code="invalid_version",
        )
    return text


def current_versions(session: Session, program_id: int) -> dict[str, ConsentText | None]:
    """The current consent text of each purpose in the program (None: none set yet)."""
    out: dict[str, ConsentText | None] = dict.fromkeys(consent.PURPOSES)
    rows = session.scalars(
        select(ConsentText).where(ConsentText.program_id == program_id).order_by(ConsentText.id)
    )
    for row in rows:
        out[row.purpose] = row
    return out


def set_version(
    session: Session,
    program: Program,
    purpose: str,
    version: str,
    *,
    summary: str | None,
    actor: Actor,
    now: datetime,
) -> ConsentText:
    """Make `version` the program's current consent text for `purpose` (audited)."""
    check_purpose(purpose)
    text = check_version(version)
    if text is None:
        raise Invalid("name the consent text version", code="invalid_version")
    summary = (summary or "").strip()[:NOTE_MAX] or None
    before = current_versions(session, program.id)[purpose]
    row = ConsentText(
        program_id=program.id, purpose=purpose, version=text, summary=summary, set_at=now,
        set_by=str(actor),
    )  # fmt: skip
    session.add(row)
    session.flush()
    audit.record(
        session, actor=actor, action="privacy.consent_version_set", subject_type="program",
        subject_id=program.id, program_id=program.id, at=now,
        before={"purpose": purpose, "version": before.version if before else None},
        after={"purpose": purpose, "version": text, "summary": summary},
    )  # fmt: skip
    return row


def current(session: Session, member: Member) -> dict[str, dict[str, Any]]:
    """Per purpose: granted or not, and the record in force (its time, source, version)."""
    out: dict[str, dict[str, Any]] = {}
    for purpose, channel in consent.PURPOSES.items():
        latest = session.scalars(
            select(ConsentRecord)
            .where(ConsentRecord.member_id == member.id, ConsentRecord.channel == channel)
            .order_by(ConsentRecord.id.desc())
            .limit(1)
        ).one_or_none()
        out[purpose] = {
            "granted": consent.current(session, member, channel),
            "at": latest.at if latest else None,
            "source": latest.source if latest else None,
            "version": latest.version if latest else None,
        }
    return out


def history(session: Session, member_id: int, *, limit: int = 500) -> list[ConsentRecord]:
    return consent.history(session, member_id, limit=limit, channels=consent.KINDS)


def record_out(row: ConsentRecord) -> dict[str, Any]:
    return {
        "purpose": BY_CHANNEL.get(row.channel, row.channel),
        "granted": row.granted,
        "at": row.at,
        "source": row.source,
        "version": row.version,
        "actor": row.actor,
        "note": row.note,
    }


def record(
    session: Session,
    program: Program,
    member: Member,
    purposes: list[str],
    *,
    granted: bool,
    source: str,
    version: str | None,
    note: str | None,
    actor: Actor,
    now: datetime,
) -> list[ConsentRecord]:
    """Record a grant or a withdrawal of each purpose, with the program's current text version
    unless `version` names the one the member saw."""
    if not purposes:
        raise Invalid("name at least one purpose", code="invalid_purpose")
    if member.status == "erased":
        raise Conflict(f"member {member.id} is erased", code="member_erased")
    if source not in SOURCES:
        raise Invalid(f"source must be one of {', '.join(SOURCES)}", code="invalid_source")
    channels = [check_purpose(p) for p in dict.fromkeys(purposes)]
    chosen = check_version(version)
    texts = current_versions(session, program.id)
    rows: list[ConsentRecord] = []
    for purpose, channel in zip(dict.fromkeys(purposes), channels, strict=True):
        text = texts[purpose]
        rows += consent.change(
            session, member, [channel], granted=granted, source=source, actor=actor, now=now,
            note=(note or "").strip()[:NOTE_MAX] or None,
            version=chosen or (text.version if text else None), program_id=program.id,
        )  # fmt: skip
    return rows


CSV_HEADER = ("member_id", "purpose", "granted", "at", "source", "version", "actor")


def export_csv(session: Session, program: Program) -> Iterator[str]:
    """Every consent record of the program's members, oldest first, as CSV lines (the note is
    left out: it is free text)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_HEADER)
    yield buffer.getvalue()
    members = select(Account.member_id).where(Account.program_id == program.id)
    last = 0
    while True:
        rows = list(
            session.scalars(
                select(ConsentRecord)
                .where(ConsentRecord.member_id.in_(members), ConsentRecord.id > last)
                .order_by(ConsentRecord.id)
                .limit(5000)
            )
        )
        if not rows:
            return
        buffer.seek(0)
        buffer.truncate()
        for r in rows:
            writer.writerow(
                (r.member_id, BY_CHANNEL.get(r.channel, r.channel), "true" if r.granted else
                 "false", iso_utc(r.at), r.source, r.version or "", r.actor)
            )  # fmt: skip
        yield buffer.getvalue()
        last = rows[-1].id
        session.expunge_all()
