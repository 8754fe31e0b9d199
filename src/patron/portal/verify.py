"""A code that proves a contact belongs to whoever typed it, before something is done with it.

Used where there is no member behind the contact yet (self sign-up) or where the contact is not
the member's yet (changing e-mail or phone). The code is sent to that contact; only its HMAC is
kept, with what to do once it is confirmed (`payload`, e.g. the sign-up form). Like sign-in
codes: valid 10 minutes, 5 tries, a new one ends the earlier ones of the same purpose and contact.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from patron.events.keys import instance_key
from patron.members.models import PortalVerification
from patron.portal import i18n
from patron.portal.service import CODE_TRIES, CODE_TTL, KEY_NAME, CodeMessage
from patron.programs.models import Program

PURPOSES = ("sign_up", "contact")


@dataclass(frozen=True)
class Confirmed:
    """A verification whose code matched: the contact is proven, do what `payload` says."""

    id: int
    purpose: str
    channel: str
    contact: str
    member_id: int | None
    payload: dict[str, Any]


def _hash(key: bytes, program_id: int, purpose: str, contact: str, code: str) -> str:
    text = f"{program_id}:{purpose}:{contact}:{code}"
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def start(
    session: Session,
    program: Program,
    *,
    purpose: str,
    channel: str,
    contact: str,
    lang: str,
    now: datetime,
    member_id: int | None = None,
    payload: dict[str, Any] | None = None,
) -> CodeMessage:
    """Make a code for `contact` (already normalised: see service.normalise_contact) and the
    message that carries it, in `lang`. Send the message after the commit."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown verification purpose {purpose!r}")
    session.execute(
        update(PortalVerification)
        .where(
            PortalVerification.program_id == program.id,
            PortalVerification.purpose == purpose,
            PortalVerification.contact == contact,
            PortalVerification.used_at.is_(None),
        )
        .values(used_at=now)
    )
    code = f"{secrets.randbelow(10**6):06d}"
    key = instance_key(session, KEY_NAME, now=now)
    session.add(
        PortalVerification(
            program_id=program.id,
            purpose=purpose,
            member_id=member_id,
            channel=channel,
            contact=contact,
            payload=payload or {},
            code_hash=_hash(key, program.id, purpose, contact, code),
            tries=0,
            created_at=now,
            expires_at=now + CODE_TTL,
        )
    )
    session.flush()
    lang = i18n.language(lang)
    minutes = int(CODE_TTL.total_seconds() // 60)
    values = {"program": program.name, "code": code, "minutes": minutes}
    return CodeMessage(
        channel=channel,
        to=contact,
        subject=i18n.translate(f"verify.{purpose}.subject", lang, **values),
        body=i18n.translate(f"verify.{purpose}.body", lang, **values),
    )


def confirm(
    session: Session,
    program: Program,
    *,
    purpose: str,
    contact: str,
    code: str,
    now: datetime,
    member_id: int | None = None,
) -> Confirmed | None:
    """The live verification for this purpose and contact when `code` is its code (it is used
    up); else None, and one of its tries is spent. `member_id` must match the one it was started
    for, so a member cannot finish another member's contact change."""
    row = session.scalars(
        select(PortalVerification)
        .where(
            PortalVerification.program_id == program.id,
            PortalVerification.purpose == purpose,
            PortalVerification.contact == contact,
            PortalVerification.used_at.is_(None),
            PortalVerification.expires_at > now,
        )
        .order_by(PortalVerification.id.desc())
        .limit(1)
        .with_for_update()
    ).one_or_none()
    if row is None or row.tries >= CODE_TRIES or row.member_id != member_id:
        return None
    key = instance_key(session, KEY_NAME, now=now)
    given = code.strip()
    if not hmac.compare_digest(row.code_hash, _hash(key, program.id, purpose, contact, given)):
        session.execute(
            update(PortalVerification)
            .where(PortalVerification.id == row.id)
            .values(tries=PortalVerification.tries + 1)
        )
        return None
    row.used_at = now
    session.flush()
    return Confirmed(row.id, purpose, row.channel, contact, row.member_id, dict(row.payload))
