from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.errors import Conflict, Invalid, MemberBlocked, NotFound
from patron.ledger.models import Account
from patron.ledger.service import open_account
from patron.members import consent
from patron.members.models import Card, Member
from patron.members.phone import normalise_phone
from patron.members.schemas import (
    CardIn,
    CardOut,
    MemberCreate,
    MemberOut,
    MemberRef,
    MemberUpdate,
)
from patron.programs.models import Program

PROFILE_FIELDS = (
    "name",
    "phone",
    "email",
    "birthday",
    "gender",
    "language",
    "preferences",
    "attributes",
    "marketing_consent",
    "status",
)


_UNSET: Any = object()  # a field the request left out


def default_region(session: Session, program: Program | None = None) -> str:
    if program is not None:
        return program.country
    first = session.scalar(select(Program.country).order_by(Program.id).limit(1))
    return first or "US"


def snapshot(member: Member) -> dict[str, Any]:
    data = {f: getattr(member, f) for f in PROFILE_FIELDS}
    data["birthday"] = member.birthday.isoformat() if member.birthday else None
    return data


def to_out(session: Session, member: Member) -> MemberOut:
    cards = session.scalars(select(Card).where(Card.member_id == member.id).order_by(Card.id))
    programs = session.scalars(
        select(Program.code)
        .join(Account, Account.program_id == Program.id)
        .where(Account.member_id == member.id)
        .order_by(Program.id)
    )
    return MemberOut(
        id=member.id,
        name=member.name,
        phone=member.phone,
        email=member.email,
        birthday=member.birthday,
        gender=member.gender,
        language=member.language,
        preferences=member.preferences or {},
        attributes=member.attributes or {},
        marketing_consent=member.marketing_consent,
        status=member.status,
        cards=[
            CardOut(number=c.number, kind=c.kind, status=c.status, created_at=c.created_at)
            for c in cards
        ],
        programs=list(programs),
        created_at=member.created_at,
        updated_at=member.updated_at,
    )


def _ensure_unique(
    session: Session, *, phone: str | None, email: str | None, exclude_id: int | None = None
) -> None:
    if phone is not None:
        other = session.scalar(select(Member.id).where(Member.phone == phone))
        if other is not None and other != exclude_id:
            raise Conflict(f"phone {phone} belongs to member {other}", code="duplicate_phone")
    if email is not None:
        other = session.scalar(select(Member.id).where(Member.email == email))
        if other is not None and other != exclude_id:
            raise Conflict(f"e-mail {email} belongs to member {other}", code="duplicate_email")


def _add_card(session: Session, member: Member, card: CardIn, now: datetime) -> Card:
    owner = session.scalar(select(Card.member_id).where(Card.number == card.number))
    if owner is not None:
        raise Conflict(
            f"card {card.number} is already issued to member {owner}", code="duplicate_card"
        )
    row = Card(
        member_id=member.id, number=card.number, kind=card.kind, status="active", created_at=now
    )
    session.add(row)
    session.flush()
    return row


def create_member(
    session: Session, data: MemberCreate, *, program: Program | None, actor: Actor, now: datetime
) -> Member:
    region = default_region(session, program)
    phone = normalise_phone(data.phone, region) if data.phone else None
    email = data.email.lower() if data.email else None
    _ensure_unique(session, phone=phone, email=email)
    numbers = [c.number for c in data.cards]
    if len(set(numbers)) != len(numbers):
        raise Invalid("the same card number is given twice", code="duplicate_card")
    member = Member(
        name=data.name.strip(),
        phone=phone,
        email=email,
        birthday=data.birthday,
        gender=data.gender,
        language=data.language or "en",
        preferences=data.preferences or {},
        attributes=data.attributes or {},
        marketing_consent=bool(data.marketing_consent),
        status="active",
        created_at=now,
        updated_at=now,
    )
    session.add(member)
    session.flush()
    for card in data.cards:
        _add_card(session, member, card, now)
    if data.marketing_consent is not None:
        # The consent given at enrollment, on record with when and how.
        consent.change(
            session, member, consent.CHANNELS, granted=bool(data.marketing_consent),
            source="enrollment", actor=actor, now=now,
        )  # fmt: skip
    after = snapshot(member) | {"cards": numbers}
    audit.record(
        session,
        actor=actor,
        action="member.created",
        subject_type="member",
        subject_id=member.id,
        at=now,
        after=after,
        program_id=program.id if program else None,
    )
    if program is not None:
        enroll(session, member, program, actor=actor, now=now)
    return member


def enroll(
    session: Session, member: Member, program: Program, *, actor: Actor, now: datetime
) -> Account:
    """Open the member's account in `program` (open_account writes member.enrolled to the
    outbox, as it does when a first sale or event opens the account)."""
    existing = session.scalar(
        select(Account.id).where(Account.program_id == program.id, Account.member_id == member.id)
    )
    if existing is not None:
        raise Conflict(
            f"member {member.id} is already in program {program.code}", code="already_enrolled"
        )
    account = open_account(session, program_id=program.id, member_id=member.id, now=now)
    audit.record(
        session,
        actor=actor,
        action="member.enrolled",
        subject_type="member",
        subject_id=member.id,
        program_id=program.id,
        at=now,
        after={"program": program.code},
    )
    return account


def update_member(
    session: Session,
    member: Member,
    data: MemberUpdate,
    *,
    program: Program | None,
    actor: Actor,
    now: datetime,
    source: str = "api",
) -> Member:
    given = data.model_dump(exclude_unset=True)
    before = snapshot(member)
    if "phone" in given:
        given["phone"] = (
            normalise_phone(given["phone"], default_region(session, program))
            if given["phone"]
            else None
        )
    if "email" in given:
        given["email"] = given["email"].lower() if given["email"] else None
    if "name" in given:
        if not given["name"]:
            raise Invalid("name cannot be empty", code="invalid_name")
        given["name"] = given["name"].strip()
    _ensure_unique(
        session, phone=given.get("phone"), email=given.get("email"), exclude_id=member.id
    )
    wants_consent = given.pop("marketing_consent", _UNSET)
    if wants_consent is None:
        raise Invalid("marketing_consent cannot be null", code="invalid_marketing_consent")
    for key, value in given.items():
        if key == "language" and value is None:
            raise Invalid(f"{key} cannot be null", code=f"invalid_{key}")
        if key in ("preferences", "attributes") and value is None:
            value = {}
        setattr(member, key, value)
    if wants_consent is not _UNSET and any(
        granted != wants_consent for granted in consent.current_all(session, member).values()
    ):
        # Consent lives in its history (who, when, how); the flag on the member follows it.
        consent.change(
            session, member, consent.CHANNELS, granted=bool(wants_consent), source=source, actor=actor,
            now=now,
        )  # fmt: skip
    after = snapshot(member)
    old, new = audit.changes(before, after)
    if new:
        member.updated_at = now
        audit.record(
            session,
            actor=actor,
            action="member.updated",
            subject_type="member",
            subject_id=member.id,
            at=now,
            before=old,
            after=new,
        )
    session.flush()
    return member


def set_status(
    session: Session, member: Member, status: str, *, reason: str, actor: Actor, now: datetime
) -> Member:
    if member.status == status:
        return member
    before = member.status
    member.status = status
    member.updated_at = now
    audit.record(
        session,
        actor=actor,
        action=f"member.{'blocked' if status == 'blocked' else 'unblocked'}",
        subject_type="member",
        subject_id=member.id,
        at=now,
        before={"status": before},
        after={"status": status, "reason": reason},
    )
    session.flush()
    return member


def add_card(
    session: Session, member: Member, card: CardIn, *, actor: Actor, now: datetime
) -> Card:
    row = _add_card(session, member, card, now)
    audit.record(
        session,
        actor=actor,
        action="card.issued",
        subject_type="member",
        subject_id=member.id,
        at=now,
        after={"card": row.number, "kind": row.kind},
    )
    return row


def set_card_status(
    session: Session, number: str, status: str, *, actor: Actor, now: datetime
) -> Card:
    card = session.scalars(select(Card).where(Card.number == number)).one_or_none()
    if card is None or not in_reach(session, actor, card.member_id):
        raise NotFound(f"no card {number!r}", code="card_not_found")
    if card.status != status:
        audit.record(
            session,
            actor=actor,
            action="card.status_changed",
            subject_type="member",
            subject_id=card.member_id,
            at=now,
            before={"card": number, "status": card.status},
            after={"card": number, "status": status},
        )
        card.status = status
        session.flush()
    return card


def get_member(session: Session, member_id: int, *, actor: Actor | None = None) -> Member:
    """The member; for a key limited to programs, only one enrolled in one of them (any other
    is answered as not found: the key does not learn who else the deployment holds)."""
    member = session.get(Member, member_id)
    if member is None or (actor is not None and not in_reach(session, actor, member_id)):
        raise NotFound(f"no member with id {member_id}", code="member_not_found")
    return member


def in_reach(session: Session, actor: Actor, member_id: int) -> bool:
    if actor.programs is None:
        return True
    found = session.scalar(
        select(Account.id)
        .join(Program, Program.id == Account.program_id)
        .where(Account.member_id == member_id, Program.code.in_(sorted(actor.programs)))
        .limit(1)
    )
    return found is not None


def member_programs(session: Session, member_id: int) -> list[Program]:
    """The programs the member has an account in, oldest first."""
    return list(
        session.scalars(
            select(Program)
            .join(Account, Account.program_id == Program.id)
            .where(Account.member_id == member_id)
            .order_by(Program.id)
        )
    )


def find_member(session: Session, ref: MemberRef, *, program: Program | None = None) -> Member:
    """Resolve a member reference (id, card or phone)."""
    if ref.id is not None:
        return get_member(session, ref.id)
    if ref.card is not None:
        card = session.scalars(select(Card).where(Card.number == ref.card)).one_or_none()
        if card is None:
            raise NotFound(f"no member has card {ref.card!r}", code="member_not_found")
        if card.status != "active":
            raise Conflict(f"card {ref.card} is {card.status}", code="card_not_active")
        return get_member(session, card.member_id)
    if ref.email is not None:
        member = session.scalars(
            select(Member).where(Member.email == ref.email.strip().lower())
        ).one_or_none()
        if member is None:
            raise NotFound(f"no member with e-mail {ref.email}", code="member_not_found")
        return _survivor(session, member)
    assert ref.phone is not None
    phone = normalise_phone(ref.phone, default_region(session, program))
    member = session.scalars(select(Member).where(Member.phone == phone)).one_or_none()
    if member is None:
        raise NotFound(f"no member with phone {ref.phone}", code="member_not_found")
    return _survivor(session, member)


def _survivor(session: Session, member: Member) -> Member:
    """A merged member's phone or e-mail finds the member it was merged into
    (patron.moves.merge)."""
    hops = 0
    while member.status == "merged" and member.merged_into is not None and hops < 20:
        member = session.get(Member, member.merged_into) or member
        hops += 1
    return member


def ensure_active(member: Member) -> None:
    if member.status != "active":
        raise MemberBlocked(f"member {member.id} is blocked and cannot earn or redeem")


def _encode_cursor(member_id: int) -> str:
    return base64.urlsafe_b64encode(str(member_id).encode()).decode()


def _decode_cursor(cursor: str) -> int:
    try:
        member_id = int(base64.urlsafe_b64decode(cursor.encode()).decode())
        if not 0 < member_id < 2**62:
            raise ValueError("not a cursor")
        return member_id
    except (ValueError, UnicodeDecodeError):
        raise Invalid("cursor is not one this API returned", code="invalid_cursor") from None


def list_members(
    session: Session,
    *,
    program: Program | None = None,
    q: str | None = None,
    phone: str | None = None,
    email: str | None = None,
    card: str | None = None,
    status: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[Member], str | None]:
    stmt = select(Member)
    if program is not None:
        stmt = stmt.join(Account, Account.member_id == Member.id).where(
            Account.program_id == program.id
        )
    if q:
        pattern = (
            "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        )
        stmt = stmt.where(func.lower(Member.name).like(pattern, escape="\\"))
    if phone:
        stmt = stmt.where(Member.phone == normalise_phone(phone, default_region(session, program)))
    if email:
        stmt = stmt.where(Member.email == email.lower())
    if card:
        stmt = stmt.where(Member.id.in_(select(Card.member_id).where(Card.number == card)))
    if status:
        stmt = stmt.where(Member.status == status)
    if cursor:
        stmt = stmt.where(Member.id > _decode_cursor(cursor))
    rows = list(session.scalars(stmt.order_by(Member.id).limit(limit + 1)))
    next_cursor = _encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor
