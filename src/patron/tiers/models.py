"""Tier definitions, each program's tier policy, tier history and evaluation runs."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.db.base import Base
from patron.db.config_version import ProgramConfiguration
from patron.db.types import BigIntPK, DecimalText, JSONType, UTCDateTime


class TierPolicy(ProgramConfiguration, Base):
    """How a program qualifies members for tiers (one row per program)."""

    __tablename__ = "tier_policies"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), unique=True)
    # points: qualifying points earned; spend: amount bought (minor units); visits: purchases.
    metric: Mapped[str] = mapped_column(String(10))
    # half_year (Jan–Jun, Jul–Dec) | year | rolling (rolling_months) | lifetime
    window: Mapped[str] = mapped_column(String(10))
    rolling_months: Mapped[int] = mapped_column(Integer, default=12)
    # immediate: move up as soon as the threshold is reached; next_period: at the evaluation.
    upgrade: Mapped[str] = mapped_column(String(12))
    # to_earned | one_level | grace (keep for grace_periods more periods, then to_earned)
    downgrade: Mapped[str] = mapped_column(String(10))
    grace_periods: Mapped[int] = mapped_column(Integer, default=1)
    # What the next evaluation does with a manual tier: keep (until its end date) | reevaluate
    manual: Mapped[str] = mapped_column(String(10))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TierDefinition(ProgramConfiguration, Base):
    __tablename__ = "tier_definitions"
    __table_args__ = (UniqueConstraint("program_id", "code"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(40))
    # {"en": "Gold", "ko": "골드", "zh": "金卡"}
    names: Mapped[dict[str, str]] = mapped_column(JSONType)
    rank: Mapped[int] = mapped_column(Integer)  # 0 = the entry tier, higher is better
    # In the policy's metric: points, minor currency units, or purchases.
    threshold: Mapped[int] = mapped_column(BigInteger)
    multiplier: Mapped[Decimal] = mapped_column(DecimalText)
    extra_expiry_months: Mapped[int] = mapped_column(Integer, default=0)
    # The tier's own expiry policy (as the program's: kind, months, days); a null kind means
    # the program's policy. `extra_expiry_months` lengthens whichever applies (migration 0016).
    expiry_kind: Mapped[str | None] = mapped_column(String(20), nullable=True)
    expiry_months: Mapped[int | None] = mapped_column(Integer, nullable=True)
    expiry_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    benefits: Mapped[list[str]] = mapped_column(JSONType, default=list)


class TierChange(Base):
    """Tier history: every move of an account, with why."""

    __tablename__ = "tier_changes"
    __table_args__ = (Index("ix_tier_changes_account", "account_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    from_tier: Mapped[str | None] = mapped_column(String(40))
    to_tier: Mapped[str | None] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    # upgrade | period_evaluation | manual | manual_ended
    reason: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(String(500))
    actor: Mapped[str] = mapped_column(String(80))
    # The qualification window this move came from, e.g. "2026H1"; runs are idempotent on it.
    period: Mapped[str | None] = mapped_column(String(20))
    metric_value: Mapped[int | None] = mapped_column(BigInteger)


class TierEvaluationRun(Base):
    """One period-end evaluation of a program; `last_account_id` lets a run resume.

    Its accounts up to `last_account_id` (all of them once done) hold their tier until at least
    `valid_until`."""

    __tablename__ = "tier_evaluation_runs"
    __table_args__ = (UniqueConstraint("program_id", "period"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    period: Mapped[str] = mapped_column(String(20))  # the window evaluated, e.g. "2026H1"
    status: Mapped[str] = mapped_column(String(10))  # running | done
    last_account_id: Mapped[int] = mapped_column(BigInteger, default=0)
    # The summary so far: {"accounts": n, "moves": {"silver→gold": 12}, "kept_in_grace": n, …}
    moves: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Until when a member who holds a (non-manual) tier after this run keeps it: the same for
    # every member of the period, so it is kept here once rather than written to every account
    # (decision 0015; see `service.held_until`). Null: for good (lifetime), or a run from before
    # migration 0014, which wrote it to the accounts themselves.
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
