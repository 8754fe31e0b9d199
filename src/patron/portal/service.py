"""Member sign-in by one-time code, and member sessions.

A member types her phone or e-mail. If it belongs to an active member of the program, a 6-digit
code is made, its HMAC (keyed with the instance's "portal_codes" key) stored, and the message to
send handed back to the edge, which sends it straight through the notify channels after the
commit: a code never goes through the outbox, so it can never reach a webhook. Whether or not
the contact exists the form answers the same, and the rate limits count both alike.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.events.keys import instance_key
from patron.ledger.models import Account
from patron.members.models import Member, PortalCode
from patron.members.phone import normalise_phone
from patron.portal import i18n
from patron.portal.models import PortalSession
from patron.programs.models import Program

CODE_TTL = timedelta(minutes=10)
CODE_TRIES = 5
SESSION_TTL = timedelta(days=30)
KEY_NAME = "portal_codes"
# Codes asked for one contact, and sign-in requests (asking or typing a code) from one address.
PER_CONTACT = parse("3/10 minutes")
PER_IP = parse("30/10 minutes")


@dataclass(frozen=True)
class CodeMessage:
    """What to send, once the code is committed."""

    channel: str  # email | sms
    to: str
    subject: str
    body: str


@dataclass(frozen=True)
class SignedIn:
    token: str  # for the cookie; only its hash is stored
    session_id: int


class Throttle:
    """The member page's rate limits, counted in `storage` (a `limits` storage URI): memory://
    counts per server process, redis://… one count shared by every worker."""

    def __init__(self, storage: str = "memory://") -> None:
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage))

    def ip_allows(self, ip: str) -> bool:
        return self._limiter.hit(PER_IP, "portal-ip", ip)

    def contact_allows(self, program_id: int, contact: str) -> bool:
        return self._limiter.hit(PER_CONTACT, "portal-contact", str(program_id), contact)


def normalise_contact(program: Program, raw: str) -> tuple[str, str] | None:
    """("email", address) or ("sms", E.164 number), or None when it is neither."""
    text = raw.strip()
    if not text or len(text) > 254:
        return None
    if "@" in text:
        return "email", text.lower()
    try:
        return "sms", normalise_phone(text, program.country)
    except Exception:  # an unparsable number is simply not a contact
        return None


def find_member(session: Session, program: Program, kind: str, contact: str) -> Member | None:
    """The active member of `program` with this e-mail or phone."""
    column = Member.email if kind == "email" else Member.phone
    return session.scalars(
        select(Member)
        .join(Account, Account.member_id == Member.id)
        .where(column == contact, Account.program_id == program.id, Member.status == "active")
    ).one_or_none()


def _code_hash(key: bytes, program_id: int, member_id: int, code: str) -> str:
    return hmac.new(key, f"{program_id}:{member_id}:{code}".encode(), hashlib.sha256).hexdigest()


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def request_code(
    session: Session, program: Program, raw_contact: str, *, now: datetime
) -> CodeMessage | None:
    """Make a code for the member with this contact, or None when there is no such member.
    Earlier codes of the member stop working: only the newest one counts."""
    parsed = normalise_contact(program, raw_contact)
    if parsed is None:
        return None
    kind, contact = parsed
    member = find_member(session, program, kind, contact)
    if member is None:
        return None
    session.execute(
        update(PortalCode)
        .where(PortalCode.member_id == member.id, PortalCode.used_at.is_(None))
        .values(used_at=now)
    )
    code = f"{secrets.randbelow(10**6):06d}"
    key = instance_key(session, KEY_NAME, now=now)
    session.add(
        PortalCode(
            program_id=program.id,
            member_id=member.id,
            channel=kind,
            code_hash=_code_hash(key, program.id, member.id, code),
            tries=0,
            created_at=now,
            expires_at=now + CODE_TTL,
        )
    )
    session.flush()
    lang = i18n.language(member.language)
    minutes = int(CODE_TTL.total_seconds() // 60)
    return CodeMessage(
        channel=kind,
        to=contact,
        subject=i18n.translate("code.subject", lang, program=program.name),
        body=i18n.translate("code.body", lang, program=program.name, code=code, minutes=minutes),
    )


def verify_code(
    session: Session,
    program: Program,
    raw_contact: str,
    code: str,
    *,
    now: datetime,
    user_agent: str | None = None,
) -> SignedIn | None:
    """A new session when `code` is the member's live code; else None (and one try used)."""
    parsed = normalise_contact(program, raw_contact)
    if parsed is None:
        return None
    member = find_member(session, program, *parsed)
    if member is None:
        return None
    row = session.scalars(
        select(PortalCode)
        .where(
            PortalCode.program_id == program.id,
            PortalCode.member_id == member.id,
            PortalCode.used_at.is_(None),
            PortalCode.expires_at > now,
        )
        .order_by(PortalCode.id.desc())
        .limit(1)
        .with_for_update()
    ).one_or_none()
    if row is None or row.tries >= CODE_TRIES:
        return None
    key = instance_key(session, KEY_NAME, now=now)
    given = code.strip()
    if not hmac.compare_digest(row.code_hash, _code_hash(key, program.id, member.id, given)):
        # Counted by SQL expression, so two wrong tries at once both count.
        session.execute(
            update(PortalCode).where(PortalCode.id == row.id).values(tries=PortalCode.tries + 1)
        )
        return None
    row.used_at = now
    return open_session(session, program, member, now=now, user_agent=user_agent,
                        channel=row.channel)  # fmt: skip


def open_session(
    session: Session,
    program: Program,
    member: Member,
    *,
    now: datetime,
    user_agent: str | None,
    channel: str,
) -> SignedIn:
    """Sign `member` in (her contact on `channel` was just proven): a new session, audited."""
    token = secrets.token_urlsafe(32)
    signed = PortalSession(
        program_id=program.id,
        member_id=member.id,
        token_hash=_token_hash(token),
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + SESSION_TTL,
        user_agent=(user_agent or "")[:200] or None,
    )
    session.add(signed)
    session.flush()
    audit.record(
        session, actor=Actor("member", str(member.id)), action="portal.signed_in",
        subject_type="portal_session", subject_id=signed.id, at=now, program_id=program.id,
        after={"channel": channel},
    )  # fmt: skip
    return SignedIn(token=token, session_id=signed.id)


def resolve_session(
    session: Session, program: Program, token: str, *, now: datetime
) -> PortalSession | None:
    row = session.scalars(
        select(PortalSession).where(PortalSession.token_hash == _token_hash(token))
    ).one_or_none()
    if (
        row is None
        or row.program_id != program.id
        or row.revoked_at is not None
        or row.expires_at <= now
    ):
        return None
    return row


def member_sessions(session: Session, member_id: int, *, now: datetime) -> list[PortalSession]:
    return list(
        session.scalars(
            select(PortalSession)
            .where(
                PortalSession.member_id == member_id,
                PortalSession.revoked_at.is_(None),
                PortalSession.expires_at > now,
            )
            .order_by(PortalSession.id.desc())
        )
    )


def revoke(session: Session, member_id: int, session_id: int, *, now: datetime) -> bool:
    """End one of the member's own sessions; False when it is not hers (or already ended)."""
    result = session.execute(
        update(PortalSession)
        .where(
            PortalSession.id == session_id,
            PortalSession.member_id == member_id,
            PortalSession.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    if not getattr(result, "rowcount", 0):
        return False
    audit.record(
        session, actor=Actor("member", str(member_id)), action="portal.signed_out",
        subject_type="portal_session", subject_id=session_id, at=now,
    )  # fmt: skip
    return True
