"""A program's fraud controls: the document staff edit (API, admin page, CLI), its validation
(bad settings are a 422) and the frozen rules the sale path reads from the program cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.errors import Invalid
from patron.fraud.models import FraudSettings
from patron.programs.models import Program
from patron.sales import program_cache

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


class FraudSettingsOut(FraudDoc):
    program: str
    updated_at: datetime | None = None
    updated_by: str | None = None


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
    """For `program_cache.load` (once per configuration version, never per sale)."""
    document = session.scalar(
        select(FraudSettings.document).where(FraudSettings.program_id == program_id)
    )
    return rules_of(document)


def current(session: Session, program_id: int) -> Rules | None:
    """The rules in force, from the worker's program cache (no statement when cached)."""
    config = program_cache.cached(session, program_id) or program_cache.load(session, program_id)
    return config.fraud


def get(session: Session, program: Program) -> FraudSettingsOut:
    row = session.get(FraudSettings, program.id)
    doc = FraudDoc.model_validate(row.document) if row is not None else FraudDoc()
    return FraudSettingsOut(
        program=program.code,
        updated_at=row.updated_at if row is not None else None,
        updated_by=row.updated_by if row is not None else None,
        **doc.model_dump(),
    )


def parse(values: dict[str, Any]) -> FraudDoc:
    """A document from untyped input (CLI, admin form): a 422 with the field at fault."""
    try:
        return FraudDoc.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise Invalid(f"{where}: {first['msg']}", code="invalid_fraud_settings") from None


def save(
    session: Session, program: Program, doc: FraudDoc, *, actor: Actor, now: datetime
) -> FraudSettingsOut:
    """Replace the program's controls (audited); every worker's cache sees them at its next
    sale (the configuration token changes in this transaction)."""
    row = session.get(FraudSettings, program.id, with_for_update=True)
    before = row.document if row is not None else {}
    document = doc.model_dump(exclude_defaults=True)
    if row is None:
        row = FraudSettings(program_id=program.id, document=document, updated_at=now)
        session.add(row)
    else:
        row.document = document
        row.updated_at = now
    row.updated_by = str(actor)
    session.flush()
    program_cache.touch(session, program.id)
    audit.record(
        session,
        actor=actor,
        action="fraud.settings_changed",
        subject_type="program",
        subject_id=program.id,
        program_id=program.id,
        at=now,
        before=before,
        after=document,
    )
    return get(session, program)
