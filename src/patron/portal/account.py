"""The member's own profile: a contact change proven by a code, her birthday (once), her
preferences (message channel, favourite store) and her consent history.

Contact changes go through `patron.portal.verify` (purpose "contact"): the code goes to the NEW
contact, and only once it comes back is the member's e-mail or phone changed, by the members
service (audited, source "portal"). Asking answers the same whether or not another member has
the contact; confirming says so, since by then the person has proven she holds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.audit.service import Actor
from patron.errors import Conflict
from patron.members import consent
from patron.members import service as members
from patron.members.models import Member
from patron.members.schemas import MemberUpdate
from patron.portal import verify
from patron.portal.service import CodeMessage, normalise_contact
from patron.programs.models import Program, Store

# Member.preferences keys the member page sets. Notify does not read a preferred channel yet;
# these are the names it should use when it does (see docs/portal.md).
PREFERRED_CHANNEL = "channel"  # "email" | "sms"
FAVOURITE_STORE = "store"  # a store code of the program
EARLIEST_BIRTHDAY = date(1900, 1, 1)
CONSENT_HISTORY = 50

# Where a consent change came from, as the member reads it (every consent.SOURCES value).
SOURCE_KEYS = {
    "api": "account.source.api",
    "admin": "account.source.admin",
    "portal": "account.source.portal",
    "unsubscribe_link": "account.source.unsubscribe_link",
    "sms_keyword": "account.source.sms_keyword",
    "import": "account.source.import",
    "enrollment": "account.source.enrollment",
}
CHANNEL_KEYS = {"email": "account.channel.email", "sms": "account.channel.sms"}


@dataclass(frozen=True)
class ContactStart:
    """A contact change asked for: what to show, and the message to send after the answer
    (None when the per-contact limit held it back; the page is the same)."""

    channel: str
    contact: str
    message: CodeMessage | None


ConfirmResult = Literal["changed", "wrong_code", "taken"]


@dataclass(frozen=True)
class ConsentLine:
    channel: str
    granted: bool
    source: str
    at: datetime


def parse_contact(program: Program, raw: str) -> tuple[str, str] | None:
    """("email" | "sms", normalised contact) when the members service would accept it."""
    parsed = normalise_contact(program, raw)
    if parsed is None:
        return None
    channel, contact = parsed
    if channel == "email":
        try:
            MemberUpdate.model_validate({"email": contact})
        except ValidationError:
            return None
    return channel, contact


def start_contact_change(
    session: Session,
    program: Program,
    member: Member,
    channel: str,
    contact: str,
    *,
    lang: str,
    now: datetime,
) -> CodeMessage:
    """A code for the new contact (sent to it even when another member has it: the answer
    must not tell, and the confirmation refuses)."""
    return verify.start(
        session, program, purpose="contact", channel=channel, contact=contact, lang=lang,
        member_id=member.id, payload={}, now=now,
    )  # fmt: skip


def _taken(session: Session, member: Member, channel: str, contact: str) -> bool:
    column = Member.email if channel == "email" else Member.phone
    other = session.scalar(select(Member.id).where(column == contact, Member.id != member.id))
    return other is not None


def confirm_contact_change(
    session: Session,
    program: Program,
    member: Member,
    contact: str,
    code: str,
    *,
    actor: Actor,
    now: datetime,
) -> ConfirmResult:
    """Change the member's e-mail or phone when `code` is the one sent to `contact` for her.
    A contact another member has is refused ("taken"); the code is used up either way."""
    parsed = parse_contact(program, contact)
    if parsed is None:
        return "wrong_code"
    normalised = parsed[1]
    confirmed = verify.confirm(
        session, program, purpose="contact", contact=normalised, code=code, now=now,
        member_id=member.id,
    )  # fmt: skip
    if confirmed is None:
        return "wrong_code"
    if _taken(session, member, confirmed.channel, normalised):
        return "taken"
    field = "email" if confirmed.channel == "email" else "phone"
    try:
        members.update_member(
            session, member, MemberUpdate.model_validate({field: normalised}), program=program,
            actor=actor, now=now, source="portal",
        )  # fmt: skip
    except Conflict:  # pragma: no cover - checked just above; kept for a racing writer
        return "taken"
    return "changed"


def birthday_error(value: str, *, today: date) -> tuple[date | None, str | None]:
    """(the date, None) or (None, the message key saying what is wrong)."""
    try:
        day = date.fromisoformat(value.strip())
    except ValueError:
        return None, "account.birthday.invalid"
    if day > today:
        return None, "account.birthday.future"
    if day < EARLIEST_BIRTHDAY:
        return None, "account.birthday.too_early"
    return day, None


def lock_member(session: Session, member_id: int) -> Member:
    """The member's row, locked (PostgreSQL; SQLite serialises writers) so two forms sent at
    once are decided one after the other."""
    member = session.scalars(
        select(Member).where(Member.id == member_id).with_for_update()
    ).one_or_none()
    if member is None:  # pragma: no cover - gone while signed in
        raise Conflict("member not found", code="member_not_found")
    return member


def set_birthday(
    session: Session, program: Program, member: Member, day: date, *, actor: Actor, now: datetime
) -> bool:
    """Set the birthday if she has none yet; False when one is already on file (only the shop
    corrects it)."""
    if member.birthday is not None:
        return False
    members.update_member(
        session, member, MemberUpdate.model_validate({"birthday": day}), program=program,
        actor=actor, now=now, source="portal",
    )  # fmt: skip
    return True


def active_stores(session: Session, program: Program) -> list[Store]:
    return list(
        session.scalars(
            select(Store)
            .where(Store.program_id == program.id, Store.active.is_(True))
            .order_by(Store.name, Store.code)
        )
    )


def reachable_channels(member: Member) -> list[str]:
    """The message channels she has a contact for."""
    return [c for c, v in (("email", member.email), ("sms", member.phone)) if v]


def preferences_error(
    session: Session, program: Program, member: Member, channel: str, store: str
) -> str | None:
    if channel and channel not in reachable_channels(member):
        return "account.preferences.invalid"
    if store and store not in {s.code for s in active_stores(session, program)}:
        return "account.preferences.invalid"
    return None


def set_preferences(
    session: Session,
    program: Program,
    member: Member,
    *,
    channel: str,
    store: str,
    actor: Actor,
    now: datetime,
) -> None:
    """Keep her other preferences; an empty choice removes the key."""
    wanted: dict[str, Any] = dict(member.preferences or {})
    for key, value in ((PREFERRED_CHANNEL, channel), (FAVOURITE_STORE, store)):
        if value:
            wanted[key] = value
        else:
            wanted.pop(key, None)
    members.update_member(
        session, member, MemberUpdate.model_validate({"preferences": wanted}), program=program,
        actor=actor, now=now, source="portal",
    )  # fmt: skip


def consent_history(session: Session, member: Member) -> list[ConsentLine]:
    return [
        ConsentLine(row.channel, row.granted, row.source, row.at)
        for row in consent.history(session, member.id, limit=CONSENT_HISTORY)
    ]
