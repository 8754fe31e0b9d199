"""The audit trail: who changed what, when, before and after — in the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.audit.models import AuditRecord


@dataclass(frozen=True)
class Actor:
    """Who is acting: an API key, a staff user, a CLI command or a job."""

    kind: str  # api_key | user | cli | system
    id: str | None = None
    scopes: frozenset[str] = frozenset()
    # An API key limited to these programs (codes) and stores (codes); None: all of them.
    programs: frozenset[str] | None = None
    stores: frozenset[str] | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}" if self.id is not None else self.kind

    def has_scope(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def reaches(self, program: str) -> bool:
        return self.programs is None or program in self.programs

    def reaches_store(self, store: str | None) -> bool:
        return self.stores is None or (store is not None and store in self.stores)


CLI = Actor("cli", scopes=frozenset({"admin"}))
SYSTEM = Actor("system", scopes=frozenset({"admin"}))


def record(
    session: Session,
    *,
    actor: Actor,
    action: str,
    subject_type: str,
    subject_id: object,
    at: datetime,
    program_id: int | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditRecord:
    row = AuditRecord(
        at=at,
        actor=str(actor),
        action=action,
        subject_type=subject_type,
        subject_id=str(subject_id),
        program_id=program_id,
        before=before,
        after=after,
    )
    session.add(row)
    return row


def changes(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the fields that differ, as (before, after)."""
    keys = [k for k in after if before.get(k) != after.get(k)]
    return {k: before.get(k) for k in keys}, {k: after[k] for k in keys}


def history(
    session: Session, *, subject_type: str, subject_id: object, limit: int = 200
) -> list[AuditRecord]:
    stmt = (
        select(AuditRecord)
        .where(AuditRecord.subject_type == subject_type, AuditRecord.subject_id == str(subject_id))
        .order_by(AuditRecord.id.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))
