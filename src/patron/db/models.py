"""Import every model so Base.metadata knows all tables (Alembic, create_all)."""

from patron.admin.models import StaffSession, StaffUser
from patron.audit.models import AuditRecord, IdempotencyKey
from patron.auth.models import ApiKey
from patron.db.base import Base
from patron.ledger.models import Account, Entry, Lot, Movement, Purchase, Refund
from patron.members.models import Card, Member
from patron.programs.models import Program, Store
from patron.reports.models import ReportDaily, ReportWatermark  # noqa: F401
from patron.rules.models import EventClaim, PromotionBudget, RuleSetVersion
from patron.tiers.models import (
    DomainEvent,
    TierChange,
    TierDefinition,
    TierEvaluationRun,
    TierPolicy,
)

__all__ = [
    "Account",
    "ApiKey",
    "AuditRecord",
    "Base",
    "Card",
    "DomainEvent",
    "Entry",
    "EventClaim",
    "IdempotencyKey",
    "Lot",
    "Member",
    "Movement",
    "Program",
    "PromotionBudget",
    "Purchase",
    "Refund",
    "RuleSetVersion",
    "StaffSession",
    "StaffUser",
    "Store",
    "TierChange",
    "TierDefinition",
    "TierEvaluationRun",
    "TierPolicy",
]
