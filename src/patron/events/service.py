"""Reading the outbox and the delivery log; replaying and cancelling deliveries."""

from __future__ import annotations

import base64
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.errors import Conflict, Invalid, NotFound
from patron.events.kinds import EVENT_TYPES, public_id
from patron.events.models import STATES, Delivery, DeliveryAttempt, DomainEvent
from patron.events.schemas import AttemptOut, DeliveryOut, EventOut
from patron.programs.models import Program

REPLAYABLE = ("dead", "skipped", "cancelled", "delivered", "retry")


def encode_cursor(row_id: int) -> str:
    return base64.urlsafe_b64encode(f"c{row_id}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor.encode()).decode()
        if not raw.startswith("c") or not raw[1:].isdigit() or len(raw) > 20:
            raise ValueError
        return int(raw[1:])
    except (ValueError, UnicodeDecodeError):
        raise Invalid("cursor is not one this API returned", code="invalid_cursor") from None


def event_out(event: DomainEvent, program_code: str | None) -> EventOut:
    return EventOut(
        id=public_id(event.id),
        type=event.kind,
        program=program_code,
        member_id=event.member_id,
        entry_id=event.entry_id,
        at=event.at,
        data=event.payload,
        dispatched=event.dispatched,
    )


def list_events(
    session: Session,
    program: Program,
    *,
    member_id: int | None = None,
    kind: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 100,
) -> tuple[list[EventOut], str | None]:
    """Oldest first, so an integrator can read the feed forward with the cursor."""
    if kind is not None and kind not in EVENT_TYPES:
        raise Invalid(
            f"unknown event type {kind!r}; known: {', '.join(EVENT_TYPES)}",
            code="unknown_event_type",
        )
    stmt = select(DomainEvent).where(DomainEvent.program_id == program.id)
    if member_id is not None:
        stmt = stmt.where(DomainEvent.member_id == member_id)
    if kind is not None:
        stmt = stmt.where(DomainEvent.kind == kind)
    if since is not None:
        stmt = stmt.where(DomainEvent.at >= since)
    if until is not None:
        stmt = stmt.where(DomainEvent.at < until)
    if cursor:
        stmt = stmt.where(DomainEvent.id > decode_cursor(cursor))
    rows = list(session.scalars(stmt.order_by(DomainEvent.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return [event_out(e, program.code) for e in rows], (
        encode_cursor(rows[-1].id) if more else None
    )


def delivery_out(row: Delivery, attempts: list[DeliveryAttempt] | None = None) -> DeliveryOut:
    return DeliveryOut(
        id=row.id,
        event_id=public_id(row.event_id) if row.event_id else None,
        event_type=row.event_kind,
        member_id=row.member_id,
        channel=row.channel,
        endpoint_id=row.endpoint_id,
        recipient=row.recipient,
        purpose=row.purpose,
        language=row.language,
        subject=row.subject,
        body=row.body,
        status=row.status,
        skip_reason=row.skip_reason,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        last_status_code=row.last_status_code,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
        log=[
            AttemptOut(
                at=a.at,
                ok=a.ok,
                status_code=a.status_code,
                duration_ms=a.duration_ms,
                error=a.error,
                response=a.response,
            )
            for a in attempts or []
        ],
    )


def attempts_of(session: Session, ids: list[int]) -> dict[int, list[DeliveryAttempt]]:
    out: dict[int, list[DeliveryAttempt]] = {i: [] for i in ids}
    if ids:
        for a in session.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id.in_(ids))
            .order_by(DeliveryAttempt.id)
        ):
            out[a.delivery_id].append(a)
    return out


def list_deliveries(
    session: Session,
    program: Program,
    *,
    member_id: int | None = None,
    status: str | None = None,
    channel: str | None = None,
    endpoint_id: int | None = None,
    kind: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
    messages_only: bool = False,
) -> tuple[list[Delivery], str | None]:
    """Newest first (a log). `messages_only`: e-mail and SMS, no webhook calls."""
    if status is not None and status not in STATES:
        raise Invalid(f"status must be one of {', '.join(STATES)}", code="invalid_status")
    stmt = select(Delivery).where(Delivery.program_id == program.id)
    if member_id is not None:
        stmt = stmt.where(Delivery.member_id == member_id)
    if status is not None:
        stmt = stmt.where(Delivery.status == status)
    if channel is not None:
        stmt = stmt.where(Delivery.channel == channel)
    if messages_only:
        stmt = stmt.where(Delivery.channel != "webhook")
    if endpoint_id is not None:
        stmt = stmt.where(Delivery.endpoint_id == endpoint_id)
    if kind is not None:
        stmt = stmt.where(Delivery.event_kind == kind)
    if cursor:
        stmt = stmt.where(Delivery.id < decode_cursor(cursor))
    rows = list(session.scalars(stmt.order_by(Delivery.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1].id) if more else None)


def get_delivery(session: Session, program: Program, delivery_id: int) -> Delivery:
    row = session.get(Delivery, delivery_id)
    if row is None or row.program_id != program.id:
        raise NotFound(f"no delivery {delivery_id} in program {program.code}")
    return row


def replay(
    session: Session, program: Program, delivery_id: int, *, actor: Actor, now: datetime
) -> Delivery:
    """Send a finished delivery again (a dead letter once its target is fixed, or a message
    the member says never arrived): back to pending, due now. The tries so far stay counted in
    its log; it gets a fresh set of tries."""
    row = get_delivery(session, program, delivery_id)
    if row.status not in REPLAYABLE:
        raise Conflict(
            f"delivery {delivery_id} is {row.status}; only {', '.join(REPLAYABLE)} ones are replayed",
            code="delivery_not_replayable",
        )
    before = {"status": row.status, "attempts": row.attempts}
    row.status, row.skip_reason, row.next_attempt_at, row.lease_until = "pending", None, now, None
    row.attempts = 0
    audit.record(
        session,
        actor=actor,
        action="deliveries.replayed",
        subject_type="delivery",
        subject_id=row.id,
        program_id=program.id,
        at=now,
        before=before,
        after={"status": "pending"},
    )
    session.flush()
    return row


def cancel(
    session: Session, program: Program, delivery_id: int, *, actor: Actor, now: datetime
) -> Delivery:
    row = get_delivery(session, program, delivery_id)
    if row.status not in ("pending", "retry"):
        raise Conflict(
            f"delivery {delivery_id} is {row.status}; only pending or retrying ones are cancelled",
            code="delivery_not_cancellable",
        )
    before = {"status": row.status}
    row.status, row.skip_reason = "cancelled", "cancelled_by_staff"
    audit.record(
        session,
        actor=actor,
        action="deliveries.cancelled",
        subject_type="delivery",
        subject_id=row.id,
        program_id=program.id,
        at=now,
        before=before,
        after={"status": "cancelled"},
    )
    session.flush()
    return row
