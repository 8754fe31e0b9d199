"""A segment definition: conditions combined with all / any / not, as a Pydantic document.

Every condition is a JSON object with a `type`; a bad field is a 422 that names it. Pure: what
needs the database (store, reward and segment codes exist; no cycles) is checked by
`patron.segments.service.check_references`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CODE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"
MAX_DAYS = 3650
MAX_VALUE = 10**15
MAX_DEPTH = 8  # nesting of all/any/not, and of segments within segments
MAX_CONDITIONS = 50

Code = Annotated[str, Field(pattern=CODE_PATTERN, max_length=40)]
Days = Annotated[int, Field(ge=1, le=MAX_DAYS)]
Amount = Annotated[int, Field(ge=0, le=MAX_VALUE)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Range(_Strict):
    min: Amount | None = None
    max: Amount | None = None

    @model_validator(mode="after")
    def _bounds(self) -> _Range:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class TierIs(_Strict):
    """The member's tier is one of `tiers` (as of the date: from tier history)."""

    type: Literal["tier"]
    tiers: list[Code] = Field(min_length=1, max_length=20)


class Balance(_Range):
    """Points balance (available + pending − debt; as of a date: the sum of ledger entries)."""

    type: Literal["balance"]


class Activity(_Range):
    """Points earned, points spent, money spent (minor units) or visits in the last `days`."""

    type: Literal["activity"]
    metric: Literal["points_earned", "points_spent", "spend", "visits"]
    days: Days


class Dormant(_Strict):
    """No purchase in the last `days`; members who never bought count only with `include_never`."""

    type: Literal["dormant"]
    days: Days
    include_never: bool = False


class Birthday(_Strict):
    type: Literal["birthday"]
    months: list[Annotated[int, Field(ge=1, le=12)]] = Field(min_length=1, max_length=12)


class Joined(_Strict):
    """Joined the program within the last `days`."""

    type: Literal["joined"]
    days: Days


class StoreUsed(_Strict):
    """Bought at one of `stores` (codes), ever or in the last `days`."""

    type: Literal["store"]
    stores: list[Code] = Field(min_length=1, max_length=50)
    days: Days | None = None


class ChannelUsed(_Strict):
    """Bought through one of `channels`, ever or in the last `days`."""

    type: Literal["channel"]
    channels: list[Literal["pos", "online", "app"]] = Field(min_length=1, max_length=3)
    days: Days | None = None


class Attribute(_Strict):
    """A member attribute (members.attributes[key]) compared as text; `exists`: has the key."""

    type: Literal["attribute"]
    key: str = Field(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9_.-]+$")
    op: Literal["eq", "ne", "in", "exists"] = "eq"
    values: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _values(self) -> Attribute:
        if self.op == "exists" and self.values:
            raise ValueError("exists takes no values")
        if self.op in ("eq", "ne") and len(self.values) != 1:
            raise ValueError(f"{self.op} takes exactly one value")
        if self.op == "in" and not self.values:
            raise ValueError("in takes at least one value")
        return self


class Consent(_Strict):
    """Consent to a purpose (patron.privacy.consents) in force at the date is `granted`."""

    type: Literal["consent"]
    purpose: Literal["marketing_email", "marketing_sms", "profiling"]
    granted: bool = True


class Redeemed(_Strict):
    """Has (or, with has=false, has not) redeemed `reward` (any when null), ever or in `days`."""

    type: Literal["redeemed"]
    reward: Code | None = None
    days: Days | None = None
    has: bool = True


class InSegment(_Strict):
    """A member of the program's segment `segment` (evaluated as of the same date)."""

    type: Literal["segment"]
    segment: Code


class All(_Strict):
    type: Literal["all"]
    of: list[Condition] = Field(min_length=1, max_length=MAX_CONDITIONS)


class Any_(_Strict):
    type: Literal["any"]
    of: list[Condition] = Field(min_length=1, max_length=MAX_CONDITIONS)


class Not(_Strict):
    type: Literal["not"]
    condition: Condition


Condition = Annotated[
    All
    | Any_
    | Not
    | TierIs
    | Balance
    | Activity
    | Dormant
    | Birthday
    | Joined
    | StoreUsed
    | ChannelUsed
    | Attribute
    | Consent
    | Redeemed
    | InSegment,
    Field(discriminator="type"),
]
All.model_rebuild()
Any_.model_rebuild()
Not.model_rebuild()


class Definition(_Strict):
    """The document a segment stores: one condition (usually an `all` or `any`)."""

    condition: Condition

    @model_validator(mode="after")
    def _size(self) -> Definition:
        count, depth = _measure(self.condition, 1)
        if depth > MAX_DEPTH:
            raise ValueError(f"conditions nest at most {MAX_DEPTH} deep")
        if count > MAX_CONDITIONS:
            raise ValueError(f"a segment has at most {MAX_CONDITIONS} conditions")
        return self


def _measure(cond: Condition, depth: int) -> tuple[int, int]:
    if isinstance(cond, All | Any_):
        parts = [_measure(c, depth + 1) for c in cond.of]
        return 1 + sum(p[0] for p in parts), max(p[1] for p in parts)
    if isinstance(cond, Not):
        count, deepest = _measure(cond.condition, depth + 1)
        return count + 1, deepest
    return 1, depth


def walk(cond: Condition):
    """Every condition in the tree, the root first."""
    yield cond
    if isinstance(cond, All | Any_):
        for c in cond.of:
            yield from walk(c)
    elif isinstance(cond, Not):
        yield from walk(cond.condition)
