"""Erasure of a member's personal data, and the legal holds that stop it.

Erasure keeps every row the ledger, the reports and `patron check` count (accounts, lots,
entries with their points, purchases with their amounts, redemptions, coupons, tier history)
and removes or irreversibly replaces what names the person: her profile (name, phone, e-mail,
birthday, gender, preferences, attributes), her card numbers (the row stays, its number becomes
a random value nobody can guess or scan), her portal sessions, codes and verifications, the
addresses and text of messages to her, and free text written about her (consent notes,
privacy-request reasons, adjustment reasons, tier-change notes, coupon-event reasons). The
audit records about her keep who did what and when; their before/after snapshots are replaced
by a redaction marker, and each such record's digest before and after goes into
audit_redactions so `patron audit verify` accepts exactly that change (patron.audit.chain).

The member row stays, with status "erased": ids in the ledger still point at it, and the old
phone, e-mail and cards no longer find her, so a new enrolment with them makes a new member.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from patron.audit import chain
from patron.audit import service as audit
from patron.audit.models import AuditRecord
from patron.audit.service import Actor
from patron.coupons.models import Coupon, CouponEvent
from patron.errors import Conflict, Invalid, NotFound
from patron.events.models import OPEN_STATES, Delivery, DeliveryAttempt, DomainEvent
from patron.events.outbox import emit, iso_utc
from patron.ledger.models import Account, Entry
from patron.members.models import Card, ConsentRecord, Member, PortalCode, PortalVerification
from patron.portal.models import PortalSession, PrivacyRequest
from patron.privacy.models import AuditRedaction, LegalHold
from patron.programs.models import Program
from patron.tiers.models import TierChange

ERASED = "erased"
ERASED_NAME = "(erased)"
ERASED_TEXT = "[erased]"
ERASED_EVENT = "member.erased"
REASON_MAX = 500
# Keys of an event payload that may name the person (event payloads are otherwise ids,
# points and amounts).
_PERSONAL_KEYS = frozenset(
    {"name", "phone", "email", "birthday", "gender", "card", "cards", "to", "recipient",
     "contact", "address", "reason", "note", "attributes", "preferences"}
)  # fmt: skip


def redaction_marker(erasure_id: int) -> dict[str, Any]:
    return {"redacted": True, "erasure": erasure_id}


def is_redaction(before: Any, after: Any, erasure_id: int) -> bool:
    return before is None and after == redaction_marker(erasure_id)


class LegalHoldOpen(Conflict):
    code = "legal_hold"


class AlreadyErased(Conflict):
    code = "member_erased"


def check_reason(reason: str | None, *, code: str = "invalid_reason") -> str:
    text = (reason or "").strip()
    if not text:
        raise Invalid("give a reason", code=code)
    if len(text) > REASON_MAX:
        raise Invalid(f"a reason is up to {REASON_MAX} characters", code=code)
    return text


def _locked_member(session: Session, member_id: int) -> Member:
    # The member's row lock: an erasure and a hold (or a second erasure) on her take turns.
    member = session.scalars(
        select(Member).where(Member.id == member_id).with_for_update()
    ).one_or_none()
    if member is None:
        raise NotFound(f"no member with id {member_id}", code="member_not_found")
    return member


# --- legal holds ------------------------------------------------------------------------------


def open_holds(session: Session, member_id: int) -> list[LegalHold]:
    return list(
        session.scalars(
            select(LegalHold)
            .where(LegalHold.member_id == member_id, LegalHold.released_at.is_(None))
            .order_by(LegalHold.id)
        )
    )


def holds(session: Session, member_id: int) -> list[LegalHold]:
    return list(
        session.scalars(
            select(LegalHold).where(LegalHold.member_id == member_id).order_by(LegalHold.id)
        )
    )


def hold_out(h: LegalHold) -> dict[str, Any]:
    return {
        "id": h.id,
        "reason": h.reason,
        "placed_by": h.placed_by,
        "placed_at": h.placed_at,
        "released_at": h.released_at,
        "released_by": h.released_by,
        "release_reason": h.release_reason,
        "open": h.released_at is None,
    }


def place_hold(
    session: Session,
    member_id: int,
    *,
    reason: str | None,
    program_id: int | None,
    actor: Actor,
    now: datetime,
) -> LegalHold:
    text = check_reason(reason)
    member = _locked_member(session, member_id)
    if member.status == ERASED:
        raise AlreadyErased(f"member {member_id} is already erased")
    hold = LegalHold(
        member_id=member_id, program_id=program_id, reason=text, placed_by=str(actor),
        placed_at=now,
    )  # fmt: skip
    session.add(hold)
    session.flush()
    audit.record(
        session, actor=actor, action="privacy.hold_placed", subject_type="member",
        subject_id=member_id, program_id=program_id, at=now,
        after={"hold": hold.id, "reason": text},
    )  # fmt: skip
    return hold


def release_hold(
    session: Session, member_id: int, hold_id: int, *, reason: str | None, actor: Actor,
    now: datetime,
) -> LegalHold:  # fmt: skip
    text = check_reason(reason)
    _locked_member(session, member_id)
    hold = session.get(LegalHold, hold_id)
    if hold is None or hold.member_id != member_id:
        raise NotFound(f"member {member_id} has no legal hold {hold_id}", code="hold_not_found")
    if hold.released_at is not None:
        raise Conflict(f"legal hold {hold_id} is already released", code="hold_released")
    hold.released_at, hold.released_by, hold.release_reason = now, str(actor), text
    audit.record(
        session, actor=actor, action="privacy.hold_released", subject_type="member",
        subject_id=member_id, program_id=hold.program_id, at=now,
        after={"hold": hold.id, "reason": text},
    )  # fmt: skip
    session.flush()
    return hold


# --- erasure ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErasureReport:
    erasure_id: int
    member_id: int
    cards: int
    messages: int
    audit_redacted: int
    requests_closed: int

    def as_dict(self) -> dict[str, int]:
        return {
            "erasure_id": self.erasure_id, "member_id": self.member_id, "cards": self.cards,
            "messages": self.messages, "audit_redacted": self.audit_redacted,
            "requests_closed": self.requests_closed,
        }  # fmt: skip


def open_requests(session: Session, program_id: int | None = None) -> list[PrivacyRequest]:
    """Erasure requests members filed that are neither withdrawn nor carried out, oldest first."""
    stmt = select(PrivacyRequest).where(
        PrivacyRequest.kind == "erasure", PrivacyRequest.status == "requested"
    )
    if program_id is not None:
        stmt = stmt.where(PrivacyRequest.program_id == program_id)
    return list(session.scalars(stmt.order_by(PrivacyRequest.id)))


def _scrub(payload: Any) -> Any:
    if isinstance(payload, dict):
        return {k: (None if k in _PERSONAL_KEYS else _scrub(v)) for k, v in payload.items()}
    if isinstance(payload, list):
        return [_scrub(v) for v in payload]
    return payload


def _redact_audit(session: Session, member_id: int, erasure_id: int, now: datetime) -> int:
    """Replace the before/after of every audit record about her by the marker, keeping each
    record's digest before and after (see AuditRedaction)."""
    table = AuditRecord.__table__
    columns = [table.c[n] for n in ("id", "at", "actor", "action", "subject_type",
                                    "subject_id", "program_id", "before", "after")]  # fmt: skip
    rows = session.execute(
        select(*columns)
        .where(AuditRecord.subject_type == "member", AuditRecord.subject_id == str(member_id))
        .order_by(AuditRecord.id)
    ).all()
    rows = [r for r in rows if r.before is not None or r.after is not None]
    marker = redaction_marker(erasure_id)
    count = 0
    for row in rows:
        if row.before is None and row.after == marker:
            continue
        redacted = SimpleNamespace(**(dict(row._mapping) | {"before": None, "after": marker}))
        session.add(
            AuditRedaction(
                record_id=row.id, original_digest=chain.record_digest(row),
                redacted_digest=chain.record_digest(redacted), erasure_id=erasure_id, at=now,
            )
        )  # fmt: skip
        count += 1
    if rows:
        ids = [r.id for r in rows]
        for start in range(0, len(ids), 500):
            session.execute(
                update(AuditRecord)
                .where(AuditRecord.id.in_(ids[start : start + 500]))
                .values(before=None, after=marker)
            )
    return count


def erase(
    session: Session,
    member_id: int,
    *,
    program: Program,
    reason: str | None,
    source: str,
    actor: Actor,
    now: datetime,
    request_id: int | None = None,
) -> ErasureReport:
    """Erase the member's personal data (see the module's text). Refused with 409 legal_hold
    while a hold is open and member_erased when done before; nothing is written then."""
    text = (reason or "").strip()[:REASON_MAX] or None
    member = _locked_member(session, member_id)
    if member.status == ERASED:
        raise AlreadyErased(f"member {member_id} is already erased")
    held = open_holds(session, member_id)
    if held:
        raise LegalHoldOpen(
            f"member {member_id} is under legal hold ({held[0].reason}): release the hold "
            "before erasing",
        )
    filed = open_requests_of(session, member_id)
    if request_id is not None and request_id not in {r.id for r in filed}:
        raise NotFound(
            f"member {member_id} has no open erasure request {request_id}",
            code="request_not_found",
        )
    # The erasure's own row: the request she filed, or one recorded now.
    carried = next((r for r in filed if r.id == request_id), None)
    if carried is None:
        carried = PrivacyRequest(
            program_id=program.id, member_id=member_id, kind="erasure", status="requested",
            source=source, reason=None, requested_at=now, closed_at=None,
        )  # fmt: skip
        session.add(carried)
        session.flush()
    for r in [*filed, carried]:
        r.status, r.closed_at = "done", now
    session.execute(
        update(PrivacyRequest).where(PrivacyRequest.member_id == member_id).values(reason=None)
    )
    old_contacts = [c for c in (member.phone, member.email) if c]
    # The profile.
    member.name, member.phone, member.email = ERASED_NAME, None, None
    member.birthday, member.gender = None, None
    member.preferences, member.attributes = {}, {}
    member.marketing_consent, member.status, member.updated_at = False, ERASED, now
    # Cards: the row stays (ledger and coupon rows may name it); the number is replaced by a
    # random one that no till can guess or scan.
    cards = list(session.scalars(select(Card).where(Card.member_id == member_id)))
    for card in cards:
        card.number, card.status = f"erased-{secrets.token_hex(16)}", ERASED
    # The member page: sessions, sign-in codes, contact verifications.
    session.execute(delete(PortalSession).where(PortalSession.member_id == member_id))
    session.execute(delete(PortalCode).where(PortalCode.member_id == member_id))
    verifications = [PortalVerification.member_id == member_id]
    if old_contacts:
        verifications.append(PortalVerification.contact.in_(old_contacts))
    session.execute(delete(PortalVerification).where(or_(*verifications)))
    # Messages: addresses and text go; what was sent when stays. Unsent ones are cancelled.
    mine = select(Delivery.id).where(Delivery.member_id == member_id)
    session.execute(
        update(DeliveryAttempt).where(DeliveryAttempt.delivery_id.in_(mine)).values(response=None)
    )
    session.execute(
        update(Delivery)
        .where(Delivery.member_id == member_id, Delivery.status.in_(OPEN_STATES))
        .values(status="cancelled", skip_reason="member_erased")
    )
    messages = session.execute(
        update(Delivery)
        .where(Delivery.member_id == member_id)
        .values(recipient=None, subject=None, body="")
    )
    events = session.execute(
        select(DomainEvent.id, DomainEvent.payload).where(DomainEvent.member_id == member_id)
    ).all()
    for event_id, payload in events:
        scrubbed = _scrub(payload)
        if scrubbed != payload:
            session.execute(
                update(DomainEvent).where(DomainEvent.id == event_id).values(payload=scrubbed)
            )
    # Free text written about her; every amount stays.
    session.execute(
        update(ConsentRecord).where(ConsentRecord.member_id == member_id).values(note=None)
    )
    accounts = select(Account.id).where(Account.member_id == member_id)
    session.execute(
        update(Entry)
        .where(Entry.account_id.in_(accounts), Entry.reason.is_not(None))
        .values(reason=ERASED_TEXT)
    )
    session.execute(
        update(TierChange)
        .where(TierChange.account_id.in_(accounts), TierChange.note.is_not(None))
        .values(note=ERASED_TEXT)
    )
    coupons = select(Coupon.id).where(Coupon.member_id == member_id)
    session.execute(
        update(CouponEvent)
        .where(CouponEvent.coupon_id.in_(coupons), CouponEvent.reason.is_not(None))
        .values(reason=ERASED_TEXT)
    )
    session.flush()
    redacted = _redact_audit(session, member_id, carried.id, now)
    report = ErasureReport(
        erasure_id=carried.id, member_id=member_id, cards=len(cards),
        messages=int(getattr(messages, "rowcount", 0) or 0), audit_redacted=redacted,
        requests_closed=len(filed),
    )  # fmt: skip
    # Written after the redaction, so this record (no personal data in it) stays as it is.
    audit.record(
        session, actor=actor, action="privacy.erased", subject_type="member",
        subject_id=member_id, program_id=program.id, at=now,
        after=report.as_dict() | {"source": source, "reason": text},
    )  # fmt: skip
    emit(
        session, kind=ERASED_EVENT, program_id=program.id, member_id=member_id,
        payload={"program": program.code, "member_id": member_id, "erasure_id": carried.id,
                 "occurred_at": iso_utc(now), "source": source},
        at=now,
    )  # fmt: skip
    session.flush()
    return report


def open_requests_of(session: Session, member_id: int) -> list[PrivacyRequest]:
    return list(
        session.scalars(
            select(PrivacyRequest)
            .where(
                PrivacyRequest.member_id == member_id,
                PrivacyRequest.kind == "erasure",
                PrivacyRequest.status == "requested",
            )
            .order_by(PrivacyRequest.id)
        )
    )
