"""Writing events: always in the caller's transaction, next to the change they report.

Three ways in, one row shape:
- `emit` for one event from service code (ORM session);
- `entry_event` for a ledger entry written through the ORM (`ledger.service._entry`);
- `entry_event_columns` for set-based writers (the hot earn path, batches, expiry), which insert
  the same columns with their own statements.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, literal
from sqlalchemy.orm import Session

from patron.events.kinds import ENTRY_EVENTS, EVENT_TYPES
from patron.events.models import DomainEvent

EVENT_COLUMNS = ["program_id", "member_id", "entry_id", "kind", "payload", "at", "dispatched"]


def emit(
    session: Session,
    *,
    kind: str,
    program_id: int | None,
    member_id: int | None,
    payload: dict[str, Any],
    at: datetime,
    entry_id: int | None = None,
) -> DomainEvent:
    if kind not in EVENT_TYPES:
        raise ValueError(f"unknown event type {kind!r}")
    event = DomainEvent(
        program_id=program_id,
        member_id=member_id,
        entry_id=entry_id,
        kind=kind,
        payload=payload,
        at=at,
        dispatched=False,
    )
    session.add(event)
    return event


def entry_payload(
    *,
    program: str,
    member_id: int,
    entry_id: int,
    entry_kind: str,
    points: int,
    occurred_at: datetime,
    reason: str | None,
    order: str | None = None,
    store: str | None = None,
    channel: str | None = None,
    expires_at: datetime | None = None,
) -> dict[str, Any]:
    """The payload of a points.* event: the entry as an integrator needs it."""
    return {
        "program": program,
        "member_id": member_id,
        "entry_id": entry_id,
        "entry_kind": entry_kind,
        "points": points,
        "occurred_at": occurred_at.isoformat(),
        "reason": reason,
        "order": order,
        "store": store,
        "channel": channel,
        "expires_at": expires_at.isoformat() if expires_at is not None else None,
    }


def entry_event(
    session: Session,
    *,
    program_id: int,
    program: str,
    member_id: int,
    entry_id: int,
    entry_kind: str,
    points: int,
    occurred_at: datetime,
    at: datetime,
    reason: str | None,
    order: str | None = None,
    store: str | None = None,
    channel: str | None = None,
    expires_at: datetime | None = None,
) -> DomainEvent:
    return emit(
        session,
        kind=ENTRY_EVENTS[entry_kind],
        program_id=program_id,
        member_id=member_id,
        entry_id=entry_id,
        at=at,
        payload=entry_payload(
            program=program,
            member_id=member_id,
            entry_id=entry_id,
            entry_kind=entry_kind,
            points=points,
            occurred_at=occurred_at,
            reason=reason,
            order=order,
            store=store,
            channel=channel,
            expires_at=expires_at,
        ),
    )


def kind_literal(kind: str) -> Any:
    return literal(kind, String)
