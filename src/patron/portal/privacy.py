"""A member's requests about her data, from the member page: a copy of everything Patron holds
about her in one program (the export), and a request to close her account and erase her data.

The export is built from her rows only (each query is by her member id, her account or her
coupons) and recorded as a `privacy_requests` row of kind "export". An erasure request is only
recorded here — with an outbox event `member.erasure_requested` and an audit record in the same
transaction — and confirmed to her; the program carries it out (within 30 days) with the privacy
operations. While one is open a second is not recorded, and she may withdraw it.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.coupons.models import Redemption, Reward
from patron.events.models import Delivery
from patron.events.outbox import emit, iso_utc
from patron.ledger import views as ledger_views
from patron.ledger.models import Account, Entry, Purchase
from patron.members.models import Card, ConsentRecord, Member
from patron.money import from_minor
from patron.portal.models import PortalSession, PrivacyRequest
from patron.programs.models import Program
from patron.rewards import views as rewards_views
from patron.tiers.models import TierChange
from patron.tiers.service import held_until

EXPORT_FORMAT = "patron.member-export/1"
ERASURE_EVENT = "member.erasure_requested"
ERASURE_DAYS = 30  # what the page promises; the privacy operations keep to it
REASON_MAX = 500
# Messages to her (not webhook deliveries, which go to the program's integrations).
MEMBER_CHANNELS = ("email", "sms", "log")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def to_json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, indent=1, default=_json_default).encode()


# --- export -------------------------------------------------------------------------------


def _profile(member: Member) -> dict[str, Any]:
    return {
        "id": member.id,
        "name": member.name,
        "email": member.email,
        "phone": member.phone,
        "birthday": member.birthday,
        "gender": member.gender,
        "language": member.language,
        "preferences": member.preferences or {},
        "attributes": member.attributes or {},
        "marketing_consent": member.marketing_consent,
        "status": member.status,
        "created_at": member.created_at,
        "updated_at": member.updated_at,
    }


def _account(session: Session, account: Account, now: datetime) -> dict[str, Any]:
    return {
        "totals": ledger_views.totals(session, account, now).model_dump(mode="json"),
        "tier": account.tier,
        "tier_since": account.tier_since,
        "tier_valid_until": held_until(session, account),
        "opened_at": account.created_at,
    }


def _purchases(
    session: Session, program: Program, account: Account, stores: dict[int, str]
) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(Purchase).where(Purchase.account_id == account.id).order_by(Purchase.id)
    )
    return [
        {
            "order": p.external_id,
            "occurred_at": p.occurred_at,
            "store": stores.get(p.store_id) if p.store_id else None,
            "channel": p.channel,
            "payment_method": p.payment_method,
            "amount": from_minor(p.amount_minor, program.currency),
            "currency": program.currency,
            "lines": p.lines or [],
            "points_earned": p.points_earned,
            "points_spent": p.points_spent,
            "refunded": from_minor(p.refunded_minor, program.currency),
            "points_reversed": p.reversed_points,
            "points_restored": p.restored_points,
        }
        for p in rows
    ]


def _redemptions(
    session: Session, program: Program, member: Member, stores: dict[int, str]
) -> list[dict[str, Any]]:
    rows = session.execute(
        select(Redemption, Reward.code)
        .join(Reward, Reward.id == Redemption.reward_id)
        .where(Redemption.program_id == program.id, Redemption.member_id == member.id)
        .order_by(Redemption.id)
    )
    return [
        {
            "reward": code,
            "quantity": r.quantity,
            "points": r.points,
            "value": from_minor(r.value_minor, program.currency),
            "tier": r.tier,
            "store": stores.get(r.store_id) if r.store_id else None,
            "channel": r.channel,
            "at": r.created_at,
        }
        for r, code in rows
    ]


def _coupons(session: Session, program: Program, member: Member) -> list[dict[str, Any]]:
    rows = rewards_views.member_coupons(session, program, member.id, limit=100_000)
    # The QR links and offline token are ways to use a coupon, not data about her.
    hidden = {"qr_svg", "qr_png", "offline_token", "member_id"}
    return [
        {k: v for k, v in c.model_dump(mode="json").items() if k not in hidden}
        for c in rewards_views.coupons_out(session, program, rows)
    ]


def _ledger(
    session: Session, program: Program, account: Account | None, now: datetime
) -> dict[str, Any]:
    """Her account's totals, every entry (oldest first), her lots, tier moves and purchases."""
    if account is None:
        return {"account": None, "entries": [], "lots": [], "tier_changes": [], "purchases": []}
    stores = ledger_views.store_codes(session, program.id)
    entries = session.scalars(
        select(Entry).where(Entry.account_id == account.id).order_by(Entry.occurred_at, Entry.id)
    )
    tier_changes = session.scalars(
        select(TierChange).where(TierChange.account_id == account.id).order_by(TierChange.id)
    )
    return {
        "account": _account(session, account, now),
        "entries": [ledger_views.entry_out(e, stores).model_dump(mode="json") for e in entries],
        "lots": [
            lot.model_dump(mode="json")
            for lot in ledger_views.lots(session, account, now=now, include_empty=True)
        ],
        "tier_changes": [
            {"from": t.from_tier, "to": t.to_tier, "at": t.at, "reason": t.reason,
             "period": t.period}
            for t in tier_changes
        ],
        "purchases": _purchases(session, program, account, stores),
    }  # fmt: skip


def _cards(session: Session, member: Member) -> list[dict[str, Any]]:
    rows = session.scalars(select(Card).where(Card.member_id == member.id).order_by(Card.id))
    return [
        {"number": c.number, "kind": c.kind, "status": c.status, "created_at": c.created_at}
        for c in rows
    ]


def _consents(session: Session, member: Member) -> list[dict[str, Any]]:
    rows = session.scalars(
        select(ConsentRecord).where(ConsentRecord.member_id == member.id).order_by(ConsentRecord.id)
    )
    purposes = {"email": "marketing_email", "sms": "marketing_sms"}
    return [
        {"channel": c.channel, "purpose": purposes.get(c.channel, c.channel),
         "granted": c.granted, "source": c.source, "at": c.at, "version": c.version,
         "note": c.note}
        for c in rows
    ]  # fmt: skip


def _sessions(session: Session, program: Program, member: Member) -> list[dict[str, Any]]:
    """Her signed-in browsers, without the token hash or CSRF token."""
    rows = session.scalars(
        select(PortalSession)
        .where(PortalSession.program_id == program.id, PortalSession.member_id == member.id)
        .order_by(PortalSession.id)
    )
    return [
        {"id": s.id, "created_at": s.created_at, "last_seen_at": s.last_seen_at,
         "expires_at": s.expires_at, "revoked_at": s.revoked_at, "user_agent": s.user_agent}
        for s in rows
    ]  # fmt: skip


def _messages(session: Session, program: Program, member: Member) -> list[dict[str, Any]]:
    """The messages sent (or decided against) to her: what, how, when — not their text."""
    rows = session.scalars(
        select(Delivery)
        .where(
            Delivery.program_id == program.id,
            Delivery.member_id == member.id,
            Delivery.channel.in_(MEMBER_CHANNELS),
        )
        .order_by(Delivery.id)
    )
    return [
        {"event": d.event_kind, "channel": d.channel, "to": d.recipient, "purpose": d.purpose,
         "language": d.language, "subject": d.subject, "status": d.status,
         "skip_reason": d.skip_reason, "created_at": d.created_at,
         "delivered_at": d.delivered_at}
        for d in rows
    ]  # fmt: skip


def export(
    session: Session, program: Program, member: Member, *, actor: Actor, now: datetime
) -> dict[str, Any]:
    """Everything about `member` in `program`, as one JSON-ready document; the export itself
    is recorded (privacy_requests and the audit log) before it is built, so it is listed too.
    Every query is by her member id, her account or her coupons."""
    request = PrivacyRequest(
        program_id=program.id, member_id=member.id, kind="export", status="done",
        source="portal", reason=None, requested_at=now, closed_at=now,
    )  # fmt: skip
    session.add(request)
    session.flush()
    audit.record(
        session, actor=actor, action="privacy.exported", subject_type="member",
        subject_id=member.id, at=now, program_id=program.id, after={"request": request.id},
    )  # fmt: skip
    account = session.scalars(
        select(Account).where(Account.program_id == program.id, Account.member_id == member.id)
    ).one_or_none()
    stores = ledger_views.store_codes(session, program.id)
    return {
        "format": EXPORT_FORMAT,
        "generated_at": now,
        "program": {"code": program.code, "name": program.name, "timezone": program.timezone},
        "profile": _profile(member),
        "cards": _cards(session, member),
        **_ledger(session, program, account, now),
        "redemptions": _redemptions(session, program, member, stores),
        "coupons": _coupons(session, program, member),
        "consents": _consents(session, member),
        "sessions": _sessions(session, program, member),
        "privacy_requests": [
            {"kind": r.kind, "status": r.status, "source": r.source, "reason": r.reason,
             "requested_at": r.requested_at, "closed_at": r.closed_at}
            for r in _requests(session, program.id, member.id)
        ],
        "messages": _messages(session, program, member),
    }  # fmt: skip


def export_filename(program: Program, member: Member, now: datetime) -> str:
    return f"{program.code}-member-{member.id}-{now.astimezone(UTC):%Y%m%d}.json"


# --- erasure requests ---------------------------------------------------------------------


def _requests(session: Session, program_id: int, member_id: int) -> list[PrivacyRequest]:
    return list(
        session.scalars(
            select(PrivacyRequest)
            .where(PrivacyRequest.program_id == program_id, PrivacyRequest.member_id == member_id)
            .order_by(PrivacyRequest.id)
        )
    )


def open_erasure(session: Session, program_id: int, member_id: int) -> PrivacyRequest | None:
    """Her erasure request in this program that is neither withdrawn nor carried out."""
    return session.scalars(
        select(PrivacyRequest)
        .where(
            PrivacyRequest.program_id == program_id,
            PrivacyRequest.member_id == member_id,
            PrivacyRequest.kind == "erasure",
            PrivacyRequest.status == "requested",
        )
        .order_by(PrivacyRequest.id.desc())
        .limit(1)
    ).one_or_none()


def _erasure_event(
    session: Session, program: Program, member: Member, request: PrivacyRequest, now: datetime
) -> None:
    payload = {
        "program": program.code,
        "member_id": member.id,
        "request_id": request.id,
        "occurred_at": iso_utc(request.requested_at),
        "source": request.source,
    }
    # Her confirmation is this event's member message (transactional, on by default), sent
    # and retried by the delivery worker like every other message.
    emit(session, kind=ERASURE_EVENT, program_id=program.id, member_id=member.id,
         payload=payload, at=now)  # fmt: skip


def request_erasure(
    session: Session,
    program: Program,
    member: Member,
    *,
    reason: str | None,
    actor: Actor,
    now: datetime,
) -> tuple[PrivacyRequest, bool]:
    """(her open request, True if it was made now). The caller holds the member's row lock, so
    two requests sent at once make one row."""
    existing = open_erasure(session, program.id, member.id)
    if existing is not None:
        return existing, False
    request = PrivacyRequest(
        program_id=program.id, member_id=member.id, kind="erasure", status="requested",
        source="portal", reason=(reason or "").strip()[:REASON_MAX] or None,
        requested_at=now, closed_at=None,
    )  # fmt: skip
    session.add(request)
    session.flush()
    _erasure_event(session, program, member, request, now)
    audit.record(
        session, actor=actor, action="privacy.erasure_requested", subject_type="member",
        subject_id=member.id, at=now, program_id=program.id,
        after={"request": request.id, "reason": request.reason},
    )  # fmt: skip
    session.flush()
    return request, True


def withdraw_erasure(
    session: Session, program: Program, member_id: int, request_id: int, *, actor: Actor,
    now: datetime,
) -> bool:  # fmt: skip
    """Cancel her open erasure request; False when there is no such request of hers."""
    result = session.execute(
        update(PrivacyRequest)
        .where(
            PrivacyRequest.id == request_id,
            PrivacyRequest.program_id == program.id,
            PrivacyRequest.member_id == member_id,
            PrivacyRequest.kind == "erasure",
            PrivacyRequest.status == "requested",
        )
        .values(status="cancelled", closed_at=now)
    )
    if not getattr(result, "rowcount", 0):
        return False
    audit.record(
        session, actor=actor, action="privacy.erasure_withdrawn", subject_type="member",
        subject_id=member_id, at=now, program_id=program.id, after={"request": request_id},
    )  # fmt: skip
    return True
