"""The outbox and its deliveries.

`domain_events` is the outbox: one row per thing that happened (points.earned, tier.changed,
…), inserted by the same transaction as the change, never updated except for `dispatched`,
which the delivery runner sets once it has turned the event into deliveries.

A `deliveries` row is one message to one target: a webhook endpoint, or a member's e-mail
address or phone. Deliveries of one queue (`queue_key`: the target and the member) leave in
the order of their ids; see patron.delivery.runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from patron.db.base import Base
from patron.db.types import BigIntPK, JSONType, UTCDateTime


class DomainEvent(Base):
    """One thing that happened, e.g. points.earned; its public id is ``evt_<id>``."""

    __tablename__ = "domain_events"
    __table_args__ = (
        Index(
            "ix_domain_events_undispatched",
            "id",
            postgresql_where=text("NOT dispatched"),
            sqlite_where=text("NOT dispatched"),
        ),
        Index("ix_domain_events_member", "member_id", "id"),
        Index("ix_domain_events_program_at", "program_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int | None] = mapped_column(BigInteger)
    member_id: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(60))
    # The ledger entry this event reports (points.*): `patron check` proves every entry has one.
    entry_id: Mapped[int | None] = mapped_column(BigInteger)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set once the runner has created this event's deliveries (or found none were wanted).
    dispatched: Mapped[bool] = mapped_column(Boolean, default=False)


class EventFacts(Protocol):
    """What fanning an event out reads of it: a `DomainEvent`, or the `OutboxEvent` the
    dispatcher reads from a row."""

    @property
    def id(self) -> int: ...
    @property
    def program_id(self) -> int | None: ...
    @property
    def member_id(self) -> int | None: ...
    @property
    def kind(self) -> str: ...
    @property
    def entry_id(self) -> int | None: ...
    @property
    def payload(self) -> dict[str, Any]: ...
    @property
    def at(self) -> datetime: ...


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """An outbox row as the dispatcher reads it: plain values, no ORM instance to build,
    track or flush for each of a round's events (decision 0032)."""

    id: int
    program_id: int | None
    member_id: int | None
    kind: str
    entry_id: int | None
    payload: dict[str, Any]
    at: datetime


# Delivery states. A delivery waits in pending/retry until next_attempt_at, is `sending` while a
# runner holds its lease, and ends delivered, dead (tries used up), skipped (not sent: no
# consent, no contact, frequency cap — with the reason) or cancelled.
OPEN_STATES = ("pending", "retry", "sending")
STATES = (*OPEN_STATES, "delivered", "dead", "skipped", "cancelled")


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        Index(
            "ix_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status IN ('pending', 'retry', 'sending')"),
            sqlite_where=text("status IN ('pending', 'retry', 'sending')"),
        ),
        Index(
            "ix_deliveries_queue_open",
            "queue_key",
            "id",
            postgresql_where=text("status IN ('pending', 'retry', 'sending')"),
            sqlite_where=text("status IN ('pending', 'retry', 'sending')"),
        ),
        Index("ix_deliveries_member", "member_id", "id"),
        Index("ix_deliveries_program", "program_id", "id"),
        Index("ix_deliveries_endpoint", "endpoint_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("domain_events.id"), index=True)
    program_id: Mapped[int | None] = mapped_column(BigInteger)
    member_id: Mapped[int | None] = mapped_column(BigInteger)
    event_kind: Mapped[str] = mapped_column(String(60))
    channel: Mapped[str] = mapped_column(String(10))  # webhook | email | sms | log
    endpoint_id: Mapped[int | None] = mapped_column(BigInteger)  # webhooks
    # Deliveries with the same key go out one at a time, in id order (per target and member).
    queue_key: Mapped[str] = mapped_column(String(80))
    recipient: Mapped[str | None] = mapped_column(String(500))  # address, phone or URL
    purpose: Mapped[str] = mapped_column(String(15), default="transactional")  # | marketing
    language: Mapped[str | None] = mapped_column(String(10))
    subject: Mapped[str | None] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(10), default="pending")
    skip_reason: Mapped[str | None] = mapped_column(String(40))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DeliveryAttempt(Base):
    """One try of a delivery: what the target answered and how long it took."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    ok: Mapped[bool] = mapped_column(Boolean)
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(1000))
    # The start of what the target answered (webhooks, SMS providers).
    response: Mapped[str | None] = mapped_column(String(1000))


class InstanceKey(Base):
    """Secrets this installation generates once and all its workers share (e.g. the key that
    signs unsubscribe links)."""

    __tablename__ = "instance_keys"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
