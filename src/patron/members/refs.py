"""Member references (id, card, e-mail, phone) resolved many at a time, for batches of sales.

`patron.members.service.find_member` resolves one and says why it cannot; this module finds the
members of a whole batch in two queries and leaves the ones it cannot find (None) to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.errors import PatronError
from patron.members.models import Card, Member
from patron.members.phone import normalise_phone
from patron.members.schemas import MemberRef


@dataclass(frozen=True)
class Found:
    member_id: int
    card_status: str | None  # of the card the member was named by


def normal_email(value: str) -> str:
    return value.strip().lower()


def resolve(session: Session, refs: Sequence[MemberRef], country: str) -> list[Found | None]:
    """Each reference's member (None: unknown, or a value no member can have)."""
    cards = {r.card for r in refs if r.card is not None and "\x00" not in r.card}
    emails = {normal_email(r.email) for r in refs if r.email is not None and "\x00" not in r.email}
    phones: dict[str, str | None] = {}
    for r in refs:
        if r.phone is not None and r.phone not in phones:
            try:
                phones[r.phone] = normalise_phone(r.phone, country)
            except PatronError:
                phones[r.phone] = None
    by_card: dict[str, tuple[int, str]] = {}
    if cards:
        for number, member_id, status in session.execute(
            select(Card.number, Card.member_id, Card.status).where(Card.number.in_(cards))
        ):
            by_card[number] = (member_id, status)
    by_email: dict[str, int] = {}
    by_phone: dict[str, int] = {}
    wanted_phones = {p for p in phones.values() if p is not None and "\x00" not in p}
    if emails or wanted_phones:
        for found_id, email, phone, merged_into in session.execute(
            select(Member.id, Member.email, Member.phone, Member.merged_into).where(
                Member.email.in_(emails) | Member.phone.in_(wanted_phones)
            )
        ):
            # A merged member's phone or e-mail names the survivor (patron.moves.merge).
            member_id = merged_into if merged_into is not None else found_id
            if email is not None:
                by_email[email] = member_id
            if phone is not None:
                by_phone[phone] = member_id
    out: list[Found | None] = []
    for ref in refs:
        if ref.id is not None:
            out.append(Found(ref.id, None))
        elif ref.card is not None:
            hit = by_card.get(ref.card)
            out.append(Found(hit[0], hit[1]) if hit is not None else None)
        elif ref.email is not None:
            by_mail = by_email.get(normal_email(ref.email))
            out.append(Found(by_mail, None) if by_mail is not None else None)
        else:
            normal = phones.get(ref.phone or "")
            by_number = by_phone.get(normal) if normal is not None else None
            out.append(Found(by_number, None) if by_number is not None else None)
    return out
