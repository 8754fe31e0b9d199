"""Each program's notification settings: which events send a message, on which channels, for
what purpose, and the etiquette (quiet hours, frequency cap) and schedule of the jobs.

Stored as one JSON document per program (`notification_configs`); a program without one uses
`NotifySettings()`'s defaults, and a stored document that predates an event type gets that
type's default (so a new event type starts as the defaults say, not switched off).
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.events.kinds import EVENT_TYPES
from patron.notify.models import NotificationConfig
from patron.programs.models import Program

Channel = Literal["email", "sms"]
Purpose = Literal["transactional", "marketing"]
CHANNELS: tuple[str, ...] = ("email", "sms")


class EventSetting(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    # Tried in order: the message goes to the first channel the member has a contact for (and,
    # for marketing, consent on).
    channels: list[Channel] = Field(default_factory=lambda: ["email", "sms"], min_length=1)  # type: ignore[arg-type]
    # marketing: only with the member's recorded consent, never in quiet hours, counted by the
    # frequency cap. transactional: about the member's own account, sent whenever it happens.
    purpose: Purpose = "transactional"

    @field_validator("channels")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a channel is listed twice")
        return value


def _defaults() -> dict[str, EventSetting]:
    on, off = True, False
    t, m = "transactional", "marketing"
    table: dict[str, tuple[bool, str]] = {
        "member.enrolled": (on, t),
        "points.earned": (off, t),  # the receipt: the program's choice
        "points.redeemed": (off, t),
        "points.refunded": (off, t),
        "points.adjusted": (on, t),
        "points.expired": (off, t),
        "points.expiring": (on, m),
        "points.statement": (off, m),
        "tier.changed": (on, t),
        "member.birthday": (on, m),
        "reward.redeemed": (on, t),  # the code to show at the till
        "coupon.issued": (on, m),  # a campaign's gift: marketing, with consent
        "coupon.used": (off, t),  # the member is at the till: the program's choice
        "coupon.cancelled": (on, t),  # the coupon is gone and the points are back
        "coupon.expired": (off, t),  # as points.expired
        "member.erasure_requested": (on, t),  # her confirmation that the request is recorded
        "member.merged": (on, t),  # her two memberships are one now
        "points.merged": (off, t),  # member.merged says it already
        "points.transferred": (on, t),  # both members hear of a transfer
        "campaign.launched": (off, t),  # for webhooks: no member to tell
        "campaign.ended": (off, t),
        "campaign.offer": (on, m),  # a campaign's message to its members: with consent only
        "milestone.achieved": (on, m),  # a badge and its reward: marketing, with consent
        "survey.answered": (off, t),  # for webhooks: the member knows she answered
        "fraud.review": (off, t),  # for webhooks; a message only if the program wants it
        # For webhooks: her address is gone with the rest of her data, so no message can reach her.
        "member.erased": (off, t),
    }
    return {
        kind: EventSetting(enabled=enabled, purpose=purpose)
        for kind, (enabled, purpose) in table.items()
    }


class NotifySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: dict[str, EventSetting] = Field(default_factory=_defaults)
    # The expiring-points reminder goes this many days before the points expire.
    expiring_days_before: int = Field(30, ge=1, le=365)
    # Marketing messages wait while the program's local time is in [start, end) (over midnight
    # when start > end); equal times switch quiet hours off.
    quiet_hours_start: time = time(21, 0)
    quiet_hours_end: time = time(8, 0)
    # At most this many marketing messages per member in any 24 hours; 0 = no cap.
    frequency_cap_per_day: int = Field(2, ge=0, le=100)
    # The local hour at which the worker starts the day's scheduled jobs.
    jobs_hour: int = Field(10, ge=0, le=23)
    # The statement job runs on this day of the month (1–28).
    statement_day: int = Field(1, ge=1, le=28)

    @field_validator("events")
    @classmethod
    def _known(cls, value: dict[str, EventSetting]) -> dict[str, EventSetting]:
        unknown = sorted(set(value) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"unknown event types: {', '.join(unknown)}")
        return {**_defaults(), **value}

    @model_validator(mode="after")
    def _whole_minutes(self) -> NotifySettings:
        for t in (self.quiet_hours_start, self.quiet_hours_end):
            if t.second or t.microsecond or t.tzinfo is not None:
                raise ValueError("quiet hours are local times in whole minutes, e.g. 21:00")
        return self

    def event(self, kind: str) -> EventSetting:
        return self.events.get(kind) or EventSetting()

    def in_quiet_hours(self, local: time) -> bool:
        start, end = self.quiet_hours_start, self.quiet_hours_end
        if start == end:
            return False
        if start < end:
            return start <= local < end
        return local >= start or local < end


def load(session: Session, program_id: int) -> NotifySettings:
    row = session.get(NotificationConfig, program_id)
    return NotifySettings() if row is None else NotifySettings.model_validate(row.config)


def save(
    session: Session, program: Program, new: NotifySettings, *, actor: Actor, now: datetime
) -> NotifySettings:
    row = session.get(NotificationConfig, program.id)
    before: dict[str, Any] | None = row.config if row is not None else None
    doc = new.model_dump(mode="json")
    if row is None:
        session.add(NotificationConfig(program_id=program.id, config=doc, updated_at=now))
    else:
        row.config = doc
        row.updated_at = now
    audit.record(
        session,
        actor=actor,
        action="notifications.settings_changed",
        subject_type="program",
        subject_id=program.id,
        program_id=program.id,
        at=now,
        before=before,
        after=doc,
    )
    session.flush()
    return new
