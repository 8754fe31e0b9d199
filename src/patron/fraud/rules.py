"""The fraud controls' document (what staff set) and the rules the sale path reads from it.

Kept apart from `settings` (which saves the document and bumps the program cache) so the program
cache can load the rules without importing itself back (docs/fraud.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.fraud.models import FraudSettings

DIMENSIONS = ("member", "card", "store", "key")
LIMITS = ("sales_per_minute", "sales_per_day", "points_per_day", "redemptions_per_day")
Dimension = Literal["member", "card", "store", "key"]

_Limit = Field(None, ge=1, le=10**9)


class Limits(BaseModel):
    """Limits for one dimension; None: no limit."""

    model_config = ConfigDict(extra="forbid")

    sales_per_minute: int | None = _Limit
    sales_per_day: int | None = _Limit
    points_per_day: int | None = _Limit
    redemptions_per_day: int | None = _Limit


class FraudDoc(BaseModel):
    """What staff set. Every control is off when left out."""

    model_config = ConfigDict(extra="forbid")

    member: Limits = Field(default_factory=Limits, description="Per member")
    card: Limits = Field(default_factory=Limits, description="Per card the till names")
    store: Limits = Field(default_factory=Limits, description="Per store")
    key: Limits = Field(default_factory=Limits, description="Per API key")
    duplicate_window_minutes: int | None = Field(
        None,
        ge=1,
        le=1440,
        description="Hold a sale with the same member, amount and store as another sale "
        "within this many minutes (by the time the sales happened) under another order id",
    )
    hold_points_above: int | None = Field(
        None, ge=1, le=10**12, description="Hold the points of a sale earning more than this"
    )
    verified_contact_for_redemption: bool = Field(
        False,
        description="Refuse redemptions (points spent, rewards, coupons) by members with no "
        "verified phone or e-mail (403 contact_not_verified)",
    )


@dataclass(frozen=True)
class Rules:
    """The document as the sale path reads it (in `ProgramConfig.fraud`)."""

    limits: dict[tuple[str, str], int] = field(default_factory=dict)  # (dimension, limit)
    duplicate_minutes: int | None = None
    hold_above: int | None = None
    verified_contact: bool = False

    @property
    def earn_checks(self) -> bool:
        """Whether a sale needs the guard at all (otherwise: no statement of its own)."""
        return bool(self.limits or self.duplicate_minutes or self.hold_above)

    def dimensions(self) -> list[str]:
        return [d for d in DIMENSIONS if any((d, x) in self.limits for x in LIMITS)]


def rules_of(document: dict[str, Any] | None) -> Rules | None:
    if not document:
        return None
    doc = FraudDoc.model_validate(document)
    limits = {
        (d, x): v
        for d in DIMENSIONS
        for x in LIMITS
        if (v := getattr(getattr(doc, d), x)) is not None
    }
    rules = Rules(
        limits=limits,
        duplicate_minutes=doc.duplicate_window_minutes,
        hold_above=doc.hold_points_above,
        verified_contact=doc.verified_contact_for_redemption,
    )
    return rules if rules.earn_checks or rules.verified_contact else None


def load_rules(session: Session, program_id: int) -> Rules | None:
    """For `program_cache.load` (once per configuration version, never per sale) and the
    redemption checks (`fraud.redemption`: once per redemption, off the sale path)."""
    document = session.scalar(
        select(FraudSettings.document).where(FraudSettings.program_id == program_id)
    )
    return rules_of(document)
