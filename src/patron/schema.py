"""Every table of Patron: importing this module registers each package's models on
Base.metadata, for Alembic (patron/migrations/env.py) and the test suite.

It sits above every package, as app.py does, so that `patron.db` (engines, units of work, the
column types every model uses) imports none of the packages built on it."""

from patron.admin.models import StaffSession, StaffUser
from patron.audit.models import AuditRecord, IdempotencyKey
from patron.auth.models import ApiKey
from patron.bulk.models import AdjustmentKey, BulkJob, BulkJobError, MemberImportRef  # noqa: F401
from patron.coupons.models import Coupon, CouponEvent, Redemption, Reward, RewardVersion, StockMove
from patron.db.base import Base
from patron.db.job_runs import JobRun
from patron.events.models import Delivery, DeliveryAttempt, DomainEvent, InstanceKey
from patron.experiments.models import Campaign, CampaignMember  # noqa: F401
from patron.fraud.models import FraudActivity, FraudReview, FraudSettings  # noqa: F401
from patron.ledger.models import Account, Entry, Lot, Movement, Purchase, Refund
from patron.members.models import Card, ConsentRecord, Member, PortalCode, PortalVerification
from patron.milestones.models import Milestone, MilestoneAchievement  # noqa: F401
from patron.moves.models import MemberMerge, Transfer, TransferSettings  # noqa: F401
from patron.notify.models import MessageTemplate, NotificationConfig, ReminderMark
from patron.portal.models import (
    PortalEnrollment,
    PortalSession,
    PrivacyRequest,
)
from patron.privacy.models import AuditRedaction, ConsentText, LegalHold  # noqa: F401
from patron.programs.models import Program, ProgramBranding, Store
from patron.reports.models import ReportDaily, ReportWatermark  # noqa: F401
from patron.rules.models import EventClaim, PromotionBudget, RuleSetVersion
from patron.segments.models import Segment, SegmentSnapshot, SegmentSnapshotMember  # noqa: F401
from patron.surveys.models import (  # noqa: F401
    Survey,
    SurveyAnswer,
    SurveyInvitation,
    SurveyMark,
    SurveyResponse,
)
from patron.tiers.models import (
    TierChange,
    TierDefinition,
    TierEvaluationRun,
    TierPolicy,
)
from patron.webhooks.models import WebhookEndpoint

__all__ = [
    "Account",
    "ApiKey",
    "AuditRecord",
    "Base",
    "Card",
    "ConsentRecord",
    "Coupon",
    "CouponEvent",
    "Delivery",
    "DeliveryAttempt",
    "DomainEvent",
    "Entry",
    "EventClaim",
    "IdempotencyKey",
    "InstanceKey",
    "JobRun",
    "Lot",
    "Member",
    "MessageTemplate",
    "Movement",
    "NotificationConfig",
    "PortalCode",
    "PortalEnrollment",
    "PortalSession",
    "PortalVerification",
    "PrivacyRequest",
    "Program",
    "ProgramBranding",
    "PromotionBudget",
    "Purchase",
    "Redemption",
    "Refund",
    "ReminderMark",
    "Reward",
    "RewardVersion",
    "RuleSetVersion",
    "StaffSession",
    "StaffUser",
    "StockMove",
    "Store",
    "TierChange",
    "TierDefinition",
    "TierEvaluationRun",
    "TierPolicy",
    "WebhookEndpoint",
]
