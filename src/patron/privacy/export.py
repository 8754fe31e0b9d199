"""The data-subject export: everything Patron holds on a member, as JSON files in a ZIP.

    manifest.json          format, when, who asked, the files and the programs
    profile.json           her profile (the member row)
    cards.json             her cards
    programs/<code>.json   per program: account totals, every entry, lots, tier moves,
                           purchases, redemptions, coupons, portal sessions, messages
    consents.json          every consent record (per purpose, with text version)
    privacy_requests.json  her exports and erasure requests, with their state
    legal_holds.json       holds on her data
    audit.json             every audit record about her (who did what, when, before/after)

The per-program parts are the member page's own export builders (patron.portal.privacy); a key
limited to programs exports only those programs. The export is recorded (a privacy_requests
row of kind export and a `privacy.exported` audit record) before it is built, so it lists
itself.
"""

from __future__ import annotations

import io
import zipfile
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.models import AuditRecord
from patron.audit.service import Actor
from patron.ledger import views as ledger_views
from patron.ledger.models import Account
from patron.members.models import Member
from patron.portal import privacy as portal
from patron.portal.models import PrivacyRequest
from patron.privacy import consents
from patron.privacy.erasure import hold_out, holds
from patron.programs.models import Program

FORMAT = "patron.member-dsr-export/1"


def _programs(session: Session, member: Member, actor: Actor) -> list[Program]:
    rows = session.scalars(
        select(Program)
        .join(Account, Account.program_id == Program.id)
        .where(Account.member_id == member.id)
        .order_by(Program.id)
    )
    return [p for p in rows if actor.reaches(p.code)]


def _program_part(session: Session, program: Program, member: Member, now: datetime) -> Any:
    account = session.scalars(
        select(Account).where(Account.program_id == program.id, Account.member_id == member.id)
    ).one_or_none()
    stores = ledger_views.store_codes(session, program.id)
    return {
        "program": {"code": program.code, "name": program.name, "timezone": program.timezone},
        **portal._ledger(session, program, account, now),
        "redemptions": portal._redemptions(session, program, member, stores),
        "coupons": portal._coupons(session, program, member),
        "sessions": portal._sessions(session, program, member),
        "messages": portal._messages(session, program, member),
    }


def _audit(session: Session, member_id: int) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(AuditRecord)
        .where(AuditRecord.subject_type == "member", AuditRecord.subject_id == str(member_id))
        .order_by(AuditRecord.id)
    )
    return [
        {"id": r.id, "at": r.at, "actor": r.actor, "action": r.action,
         "program_id": r.program_id, "before": r.before, "after": r.after}
        for r in rows
    ]  # fmt: skip


def build_zip(
    session: Session,
    member: Member,
    *,
    program: Program | None,
    source: str,
    actor: Actor,
    now: datetime,
) -> bytes:
    """The ZIP's bytes. `program` is where the export is recorded (the member's first program
    when None; with no program at all it is only audited)."""
    programs = _programs(session, member, actor)
    where = program or (programs[0] if programs else None)
    request_id = None
    if where is not None:
        request = PrivacyRequest(
            program_id=where.id, member_id=member.id, kind="export", status="done",
            source=source, reason=None, requested_at=now, closed_at=now,
        )  # fmt: skip
        session.add(request)
        session.flush()
        request_id = request.id
    audit.record(
        session, actor=actor, action="privacy.exported", subject_type="member",
        subject_id=member.id, at=now, program_id=where.id if where else None,
        after={"request": request_id, "source": source, "format": FORMAT,
               "programs": [p.code for p in programs]},
    )  # fmt: skip
    session.flush()
    files: dict[str, Any] = {
        "profile.json": portal._profile(member),
        "cards.json": portal._cards(session, member),
    }
    for p in programs:
        files[f"programs/{p.code}.json"] = _program_part(session, p, member, now)
    files["consents.json"] = {
        "current": consents.current(session, member),
        "history": [consents.record_out(r) for r in reversed(consents.history(session, member.id))],
    }
    files["privacy_requests.json"] = [
        {"id": r.id, "kind": r.kind, "status": r.status, "source": r.source, "reason": r.reason,
         "requested_at": r.requested_at, "closed_at": r.closed_at}
        for r in session.scalars(
            select(PrivacyRequest).where(PrivacyRequest.member_id == member.id)
            .order_by(PrivacyRequest.id)
        )
    ]  # fmt: skip
    files["legal_holds.json"] = [hold_out(h) for h in holds(session, member.id)]
    files["audit.json"] = _audit(session, member.id)
    manifest = {
        "format": FORMAT,
        "generated_at": now,
        "member_id": member.id,
        "requested_by": str(actor),
        "source": source,
        "programs": [p.code for p in programs],
        "files": ["manifest.json", *files],
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", portal.to_json(manifest))
        for name, document in files.items():
            archive.writestr(name, portal.to_json(document))
    return buffer.getvalue()


def filename(member: Member, now: datetime) -> str:
    return f"member-{member.id}-export-{now:%Y%m%d}.zip"
