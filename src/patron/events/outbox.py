"""Writing events: always in the caller's transaction, next to the change they report.

Three ways in, one row shape:
- `emit` for one event from service code (ORM session);
- `entry_event` for a ledger entry written through the ORM (`ledger.service._entry`);
- `entry_payload` (in Python) and `entry_payload_sql` (in SQL) for set-based writers (the hot
  earn path, batches, expiry), which insert the same columns with their own statements.

Every ledger entry has exactly one points.* event (`patron check` proves it), so an integrator
who keeps the events keeps the ledger.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, String, case, func, literal, null
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
    """The payload of a points.* event: the entry as an integrator needs it (ids and codes,
    no personal data). Instants are in UTC whatever offset the till sent, so every writer (and
    `entry_payload_sql`) gives the same text for the same entry."""
    return {
        "program": program,
        "member_id": member_id,
        "entry_id": entry_id,
        "entry_kind": entry_kind,
        "points": points,
        "occurred_at": iso_utc(occurred_at),
        "reason": reason,
        "order": order,
        "store": store,
        "channel": channel,
        "expires_at": iso_utc(expires_at) if expires_at is not None else None,
    }


def iso_utc(value: datetime) -> str:
    """2027-01-15T15:00:00+00:00 (with .ffffff only when there are microseconds)."""
    return value.astimezone(UTC).isoformat()


def iso_utc_sql(column: Any, dialect: str) -> ColumnElement[str]:
    """A stored UTC instant as `iso_utc` writes it, computed in SQL (NULL stays NULL)."""
    text = String()
    empty = literal("", text)
    if dialect == "postgresql":
        utc = func.timezone("UTC", column)
        whole = func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS', type_=text)
        fraction = case(
            (func.date_trunc("second", utc) != utc, func.to_char(utc, ".US", type_=text)),
            else_=empty,
        )
    else:
        # SQLAlchemy stores 'YYYY-MM-DD HH:MM:SS.ffffff' (naive, UTC). Python writes no
        # fraction when it is zero, and six digits otherwise (padded, should one be short).
        digits = func.substr(column, 21, type_=text)
        six = func.substr(digits.op("||", return_type=text)("000000"), 1, 6, type_=text)
        whole = func.replace(func.substr(column, 1, 19, type_=text), " ", "T", type_=text)
        fraction = case(
            (func.rtrim(digits, "0", type_=text) != "", literal(".", text).op("||")(six)),
            else_=empty,
        )
    return whole.op("||", return_type=text)(fraction).op("||", return_type=text)("+00:00")


def entry_payload_sql(
    dialect: str,
    *,
    program: Any,
    member_id: Any,
    entry_id: Any,
    entry_kind: Any,
    points: Any,
    occurred_at: Any,
    reason: Any,
    order: Any = None,
    store: Any = None,
    channel: Any = None,
    expires_at: Any = None,
) -> ColumnElement[Any]:
    """`entry_payload` built by the database from columns (jsonb_build_object on PostgreSQL,
    json_object on SQLite): the same keys and values, for INSERT … SELECT writers."""
    build = func.jsonb_build_object if dialect == "postgresql" else func.json_object
    values: dict[str, Any] = {
        "program": program,
        "member_id": member_id,
        "entry_id": entry_id,
        "entry_kind": entry_kind,
        "points": points,
        "occurred_at": iso_utc_sql(occurred_at, dialect),
        "reason": reason,
        "order": order,
        "store": store,
        "channel": channel,
        "expires_at": iso_utc_sql(expires_at, dialect) if expires_at is not None else None,
    }
    args: list[Any] = []
    for key, value in values.items():
        args += [literal(key, String), null() if value is None else value]
    return build(*args)


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


def enrolled(
    session: Session, *, program_id: int, program: str, member_id: int, at: datetime
) -> DomainEvent:
    """member.enrolled: the member's account in the program was opened (ids only)."""
    return emit(
        session,
        kind="member.enrolled",
        program_id=program_id,
        member_id=member_id,
        payload={"program": program, "member_id": member_id},
        at=at,
    )
