"""Import every model so Base.metadata knows all tables (Alembic, create_all)."""

from patron.audit.models import AuditRecord, IdempotencyKey
from patron.auth.models import ApiKey
from patron.db.base import Base
from patron.ledger.models import Account, Entry, Lot, Movement, Purchase, Refund
from patron.members.models import Card, Member
from patron.programs.models import Program, Store

__all__ = [
    "Account", "ApiKey", "AuditRecord", "Base", "Card", "Entry", "IdempotencyKey", "Lot",
    "Member", "Movement", "Program", "Purchase", "Refund", "Store",
]
