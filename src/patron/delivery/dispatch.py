"""Dispatch: each new outbox event becomes its deliveries — one per matching webhook endpoint,
and the member's message when the program sends one for that event.

Events are claimed with `FOR UPDATE SKIP LOCKED` on PostgreSQL (so several workers share the
outbox without taking the same event; SQLite has one writer), and the deliveries are written
in the same transaction that marks the event dispatched: an event is fanned out exactly once.

A message is decided here (channel, address, language, wording rendered from the program's
template with the member's figures now); whether it may go out *now* (quiet hours, frequency
cap, consent withdrawn meanwhile) is decided when it is sent (patron.delivery.runner).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from patron.config import Settings
from patron.db.engine import Database
from patron.events.models import Delivery, DomainEvent, EventFacts, OutboxEvent
from patron.members import consent
from patron.members.models import Member
from patron.notify import settings as notify_settings
from patron.notify.routing import choose_channel, queue_key
from patron.notify.settings import NotifySettings
from patron.programs.models import Program


@dataclass
class Round:
    """What one dispatch round did."""

    events: int = 0
    webhooks: int = 0
    messages: int = 0
    skipped: int = 0
    # per program, loaded once a round
    _settings: dict[int, NotifySettings] = field(default_factory=dict)
    _programs: dict[int, Program | None] = field(default_factory=dict)
    _endpoints: dict[tuple[int, str], list[Any]] = field(default_factory=dict)
    # The round's members, read together the first time a message needs one of them.
    _member_ids: list[int] = field(default_factory=list)
    _members: dict[int, Member] | None = None


_EVENTS = cast(Table, DomainEvent.__table__)
_pending: dict[str, Any] = {}


def _pending_stmt(dialect: str) -> Any:
    """The next round's events, oldest first (built once per process and engine)."""
    found = _pending.get(dialect)
    if found is None:
        found = (
            select(
                DomainEvent.id,
                DomainEvent.program_id,
                DomainEvent.member_id,
                DomainEvent.kind,
                DomainEvent.entry_id,
                DomainEvent.payload,
                DomainEvent.at,
            )
            .where(DomainEvent.dispatched.is_(False))
            .order_by(DomainEvent.id)
            .limit(bindparam("limit"))
        )
        if dialect == "postgresql":
            found = found.with_for_update(skip_locked=True)
        _pending[dialect] = found
    return found


def dispatch_pending(db: Database, *, now: datetime, settings: Settings, limit: int = 200) -> Round:
    """Fan out up to `limit` new events, oldest first, and mark them dispatched.

    The events are read as plain rows (`OutboxEvent`) and marked with one UPDATE for the
    round (decision 0032): loading them as ORM objects and flushing one UPDATE per event cost
    most of a round's CPU in a server, where an earn's `points.earned` usually wants no
    delivery at all."""
    with db.unit_of_work() as session:
        # On the session's connection: plain rows, without the ORM's per-statement work.
        conn = session.connection()
        stmt = _pending_stmt(conn.dialect.name)
        events = [OutboxEvent(*row) for row in conn.execute(stmt, {"limit": limit})]
        done = Round(_member_ids=[e.member_id for e in events if e.member_id is not None])
        for event in events:
            fan_out(session, event, now=now, settings=settings, done=done)
        if events:
            conn.execute(
                update(_EVENTS)
                .where(_EVENTS.c.id.in_([event.id for event in events]))
                .values(dispatched=True)
            )
        done.events = len(events)
        session.flush()
        return done


def fan_out(
    session: Session, event: EventFacts, *, now: datetime, settings: Settings, done: Round
) -> None:
    from patron.webhooks import service as webhooks

    if event.program_id is None:
        return
    if event.program_id not in done._programs:
        done._programs[event.program_id] = session.get(Program, event.program_id)
    program = done._programs[event.program_id]
    if program is None:
        return
    key = (program.id, event.kind)
    if key not in done._endpoints:
        done._endpoints[key] = webhooks.matching(session, program.id, event.kind)
    for endpoint in done._endpoints[key]:
        session.add(
            Delivery(
                event_id=event.id,
                program_id=program.id,
                member_id=event.member_id,
                event_kind=event.kind,
                channel="webhook",
                endpoint_id=endpoint.id,
                queue_key=queue_key("webhook", member_id=event.member_id, endpoint_id=endpoint.id),
                recipient=endpoint.url,
                purpose="transactional",
                body=webhooks.event_body(event, program.code),
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
        done.webhooks += 1
    if event.member_id is not None:
        _message(session, event, program, now=now, settings=settings, done=done)
    if event.kind == "points.earned":  # a purchase may invite to a survey (patron.surveys)
        from patron.surveys.dispatch import on_event

        on_event(session, event, program, now=now, settings=settings, cache=done.__dict__)


def _member(session: Session, done: Round, member_id: int | None) -> Member | None:
    """A member of the round: all of the round's members in one query the first time (one
    query per event was most of a round's time when every earn sends a message)."""
    if member_id is None:
        return None
    if done._members is None:
        ids = sorted(set(done._member_ids))
        done._members = {
            m.id: m
            for i in range(0, len(ids), 500)
            for m in session.scalars(select(Member).where(Member.id.in_(ids[i : i + 500])))
        }
    found = done._members.get(member_id)
    return found if found is not None else session.get(Member, member_id)


def _message(
    session: Session,
    event: EventFacts,
    program: Program,
    *,
    now: datetime,
    settings: Settings,
    done: Round,
) -> None:
    from patron.notify import templates

    if program.id not in done._settings:
        done._settings[program.id] = notify_settings.load(session, program.id)
    wanted = done._settings[program.id].event(event.kind)
    if not wanted.enabled:
        return
    if isinstance(event.payload, dict) and event.payload.get("import_job") is not None:
        # A member migrated in by `patron import members` (welcome, opening balance, tier)
        # already knew the program: integrations hear of it, the member gets no message.
        return
    member = _member(session, done, event.member_id)
    if member is None:
        return
    channel, address, reason = choose_channel(session, member, wanted.channels, wanted.purpose)
    row = Delivery(
        event_id=event.id,
        program_id=program.id,
        member_id=member.id,
        event_kind=event.kind,
        channel=channel or wanted.channels[0],
        queue_key=queue_key(channel or wanted.channels[0], member_id=member.id),
        recipient=address,
        purpose=wanted.purpose,
        language=member.language,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        body="",
    )
    if reason is not None:
        row.status, row.skip_reason = "skipped", reason
        done.skipped += 1
    else:
        unsubscribe_url = None
        if wanted.purpose == "marketing" and channel == "email":
            token = consent.unsubscribe_token(session, member.id, "email", now=now)
            unsubscribe_url = f"{settings.public_url.rstrip('/')}/u/{token}"
        try:
            rendered = templates.render_for_member(
                session,
                program,
                member,
                event.kind,
                row.channel,
                event.payload,
                now=now,
                unsubscribe_url=unsubscribe_url,
            )
        except Exception as exc:  # a template that renders badly for this member's data
            row.status, row.skip_reason = "dead", "template_error"
            row.last_error = f"the template could not be rendered: {exc}"[:1000]
            done.skipped += 1
        else:
            row.language, row.subject, row.body = rendered.language, rendered.subject, rendered.body
            done.messages += 1
    session.add(row)
