"""Which members have a verified contact: one who signed in on the member page with a code
sent to her phone or e-mail (`PortalCode` used), or confirmed a code sent to her current
phone or e-mail (`PortalVerification` used: a self sign-up or a contact change)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from patron.fraud.errors import ContactNotVerified
from patron.members.models import Member, PortalCode, PortalVerification


def verified_members_stmt(program_id: Any, member_ids: Any) -> Any:
    """SELECT the ids among `member_ids` (ids, or an expanding bind parameter) with a verified
    contact in the program (an id, or a bind parameter)."""
    signed_in = exists().where(
        PortalCode.program_id == program_id,
        PortalCode.member_id == Member.id,
        PortalCode.used_at.is_not(None),
    )
    confirmed = exists().where(
        PortalVerification.program_id == program_id,
        PortalVerification.used_at.is_not(None),
        or_(
            PortalVerification.member_id == Member.id,
            PortalVerification.contact == Member.email,
            PortalVerification.contact == Member.phone,
        ),
    )
    return select(Member.id).where(Member.id.in_(member_ids), signed_in | confirmed)


def require_verified(session: Session, program_id: int, member_id: int) -> None:
    """403 contact_not_verified unless the member has a verified contact."""
    if session.scalar(verified_members_stmt(program_id, [member_id])) is None:
        raise ContactNotVerified(member_id)
