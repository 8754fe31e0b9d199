"""Find a member as staff type: by card, phone, e-mail or name, best matches first.

The API's member list matches whole values (a full phone number, a whole card number); at the
counter staff type a few digits of a phone or card, or part of a name, so this search matches
parts and ranks exact hits first. It scans with LIKE, which is fine for the few hundred thousand
members of a typical program; a very large one would add a trigram index on PostgreSQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from sqlalchemy import case, false, func, or_, select
from sqlalchemy.orm import Session

from patron.ledger.models import Account
from patron.members.models import Card, Member
from patron.members.phone import national_format
from patron.programs.models import Program

MAX_QUERY = 100
_PHONE_CHARS = re.compile(r"^[0-9+\-\s().]+$")


@dataclass(frozen=True)
class MemberHit:
    id: int
    name: str
    phone: str | None  # national format, as staff would say it: 010-1234-5678
    email: str | None
    cards: list[str]
    status: str


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _contains(text: str) -> str:
    return "%" + _escape(text) + "%"


def _phone_pattern(text: str, region: str) -> str | None:
    """A LIKE pattern over stored E.164 numbers for what staff typed, or None if it is not
    (part of) a phone number. "010-1234" in Korea is the start of +82101234…; "+8210…" is the
    start as typed; other digits ("5678") match anywhere, from 3 digits on."""
    if not _PHONE_CHARS.match(text):
        return None
    digits = re.sub(r"\D", "", text)
    if text.lstrip().startswith("+"):
        return f"+{digits}%" if len(digits) >= 2 else None
    if digits.startswith("0") and len(digits) >= 2:
        code = phonenumbers.country_code_for_region(region)
        return f"+{code}{digits[1:]}%" if code else None
    return f"%{digits}%" if len(digits) >= 3 else None


def _full_phone(text: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def search(
    session: Session,
    text: str,
    *,
    region: str = "US",
    limit: int = 20,
    programs: frozenset[str] | None = None,
) -> list[MemberHit]:
    """`programs` (codes) limits the hits to members enrolled in one of them (a staff user's
    reach); None: every member."""
    text = text.strip()[:MAX_QUERY]
    if not text:
        return []
    lowered, upper = text.lower(), text.upper()
    card_hit = select(Card.member_id).where(func.upper(Card.number).like(_contains(upper), "\\"))
    card_exact = select(Card.member_id).where(func.upper(Card.number) == upper)
    matches = [
        func.lower(Member.name).like(_contains(lowered), "\\"),
        Member.email.like(_contains(lowered), "\\"),
        Member.id.in_(card_hit),
    ]
    phone_like = _phone_pattern(text, region)
    if phone_like is not None:
        matches.append(Member.phone.like(phone_like))
    full_phone = _full_phone(text, region) if phone_like else None
    rank = case(
        (Member.id.in_(card_exact), 0),
        (Member.email == lowered, 0),
        (Member.phone == full_phone if full_phone else false(), 0),
        (func.lower(Member.name) == lowered, 1),
        (func.lower(Member.name).like(_escape(lowered) + "%", "\\"), 2),
        else_=3,
    )
    stmt = select(Member).where(or_(*matches))
    if programs is not None:
        enrolled = (
            select(Account.member_id)
            .join(Program, Program.id == Account.program_id)
            .where(Program.code.in_(sorted(programs)))
        )
        stmt = stmt.where(Member.id.in_(enrolled))
    rows = list(session.scalars(stmt.order_by(rank, Member.id).limit(limit)))
    cards: dict[int, list[str]] = {}
    if rows:
        for member_id, number in session.execute(
            select(Card.member_id, Card.number)
            .where(Card.member_id.in_([m.id for m in rows]))
            .order_by(Card.id)
        ):
            cards.setdefault(member_id, []).append(number)
    return [
        MemberHit(
            id=m.id,
            name=m.name,
            phone=national_format(m.phone),
            email=m.email,
            cards=cards.get(m.id, []),
            status=m.status,
        )
        for m in rows
    ]
