"""A non-purchase event (sign-up, birthday, review …) as the API takes it and answers it; the
crediting itself is `patron.earning.events`.

The answer is named after this module in the OpenAPI document (`patron__rules__events__EventOut`,
the Python client's `RulesEventOut`: `patron.events.schemas` has an `EventOut` too), so the
shapes stay here, with the event rules they are checked against.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from patron.ledger.schemas import EntryOut, Totals
from patron.members.schemas import MemberRef

EVENT_NAME = r"^[a-z0-9][a-z0-9_-]{0,59}$"


class EventRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member: MemberRef
    event: str = Field(
        pattern=EVENT_NAME,
        description="signup, birthday, profile_completed, "
        "review, newsletter, referral or a custom event named in the rule set",
    )
    occurred_at: AwareDatetime | None = Field(None, description="When it happened; default now")
    store: str | None = Field(None, min_length=1, max_length=40)
    channel: Literal["pos", "online", "app"] | None = None


class EventOut(BaseModel):
    member_id: int
    event: str
    rule: str
    points: int
    period_key: str | None = Field(description="The period the event was counted in, if limited")
    entry: EntryOut
    totals: Totals
