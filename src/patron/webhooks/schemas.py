"""What the webhook API exchanges. Secrets appear in exactly two answers: the endpoint just
created (WebhookCreated) and a rotation (SecretRotated); everything else shows a hint only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from patron.events.schemas import AttemptOut

EventType = Annotated[
    str,
    Field(
        min_length=1,
        max_length=60,
        description='An event type (docs/webhooks.md lists them), or "*" for all',
    ),
]
Url = Annotated[
    str,
    Field(
        min_length=1,
        max_length=500,
        description="http:// or https://; loopback and private addresses are refused unless "
        "the server allows them (PATRON_WEBHOOK_ALLOW_PRIVATE)",
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WebhookCreate(Strict):
    url: Url
    description: str = Field("", max_length=200)
    event_types: list[EventType] = Field(
        min_length=1, max_length=50, description='The events sent here; ["*"] for every event'
    )


class WebhookUpdate(Strict):
    """Only the fields given change."""

    url: Url | None = None
    description: str | None = Field(None, max_length=200)
    event_types: list[EventType] | None = Field(None, min_length=1, max_length=50)
    active: bool | None = Field(None, description="false: no events are sent here until true")


class RotateRequest(Strict):
    keep_previous_hours: int = Field(
        24,
        ge=0,
        le=168,
        description="How long the previous secret keeps signing next to the new one "
        "(0: it stops at once)",
    )


class WebhookOut(BaseModel):
    id: int
    program: str
    url: str
    description: str
    event_types: list[str]
    active: bool
    secret_hint: str = Field(description='The secret\'s first characters, e.g. "whsec_Ab3k…"')
    previous_secret_until: datetime | None = Field(
        description="While set and in the future, the previous secret signs too"
    )
    last_delivery_status: str | None = Field(
        None, description="Status of the newest delivery to this endpoint"
    )
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="whsec_…: shown once; keep it to verify signatures")


class SecretRotated(BaseModel):
    id: int
    secret: str = Field(description="The new secret: shown once")
    secret_hint: str
    previous_secret_until: datetime | None = Field(
        description="Until then the previous secret signs every message too"
    )


class WebhookTestResult(BaseModel):
    delivery_id: int
    status: str = Field(description="The delivery's status after the try: delivered, retry, …")
    attempt: AttemptOut | None = Field(description="The try just made (none if none was made)")
