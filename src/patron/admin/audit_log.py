"""The audit log page's query: newest first, filtered by who and what, paged by id."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.admin.models import StaffUser
from patron.audit.chain import VerifyReport, verify
from patron.audit.models import AuditRecord


@dataclass(frozen=True)
class AuditFilter:
    actor: str = ""  # a staff e-mail, or an actor as stored (user:3, api_key:1, system, cli)
    action: str = ""  # an action or its start: "points." finds points.adjusted, ...
    member_id: int | None = None


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def resolve_actor(session: Session, actor: str) -> str:
    actor = actor.strip()
    if "@" in actor:
        user_id = session.scalar(select(StaffUser.id).where(StaffUser.email == actor.lower()))
        return f"user:{user_id}" if user_id is not None else actor
    return actor


def entries(
    session: Session,
    flt: AuditFilter,
    *,
    before_id: int | None = None,
    limit: int = 50,
    program_ids: list[int] | None = None,
) -> tuple[list[AuditRecord], int | None]:
    """A page of records and the id to pass as before_id for the next page (None: last page).
    `program_ids` keeps only records of those programs (a staff user limited to programs sees
    neither other programs' records nor the deployment-wide ones)."""
    stmt = select(AuditRecord)
    if program_ids is not None:
        stmt = stmt.where(AuditRecord.program_id.in_(program_ids))
    if flt.actor.strip():
        stmt = stmt.where(AuditRecord.actor == resolve_actor(session, flt.actor)[:80])
    if flt.action.strip():
        stmt = stmt.where(AuditRecord.action.like(_like_prefix(flt.action.strip()[:60]), "\\"))
    if flt.member_id is not None:
        stmt = stmt.where(
            AuditRecord.subject_type == "member", AuditRecord.subject_id == str(flt.member_id)
        )
    if before_id is not None:
        stmt = stmt.where(AuditRecord.id < before_id)
    rows = list(session.scalars(stmt.order_by(AuditRecord.id.desc()).limit(limit + 1)))
    more = rows[limit - 1].id if len(rows) > limit else None
    return rows[:limit], more


# The page checks the newest seals only (about this many records), so it stays fast on a long
# log; `patron audit verify` and GET /api/v1/audit/verify check the whole chain.
PAGE_RECORDS = 2000


def chain_status(session: Session) -> VerifyReport:
    """The hash chain's state for the page's indicator (patron.audit.chain)."""
    return verify(session, last_records=PAGE_RECORDS)
