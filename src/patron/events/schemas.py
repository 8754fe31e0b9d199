"""API shapes for events and deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class EventOut(BaseModel):
    id: str = Field(description="The event's public id, e.g. evt_123 (webhook-id)")
    type: str
    program: str | None
    member_id: int | None
    entry_id: int | None
    at: datetime
    data: dict[str, Any]
    dispatched: bool


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end"
    )


class AttemptOut(BaseModel):
    at: datetime
    ok: bool
    status_code: int | None
    duration_ms: int
    error: str | None
    response: str | None


class DeliveryOut(BaseModel):
    id: int
    event_id: str | None
    event_type: str
    member_id: int | None
    channel: str
    endpoint_id: int | None
    recipient: str | None
    purpose: str
    language: str | None
    subject: str | None
    body: str
    status: str
    skip_reason: str | None
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    last_status_code: int | None
    created_at: datetime
    delivered_at: datetime | None
    log: list[AttemptOut] = Field(default_factory=list, description="Every try, oldest first")


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None
