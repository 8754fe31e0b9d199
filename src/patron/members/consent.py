"""Consent per member and purpose, with its history (who, when, how, which text version).

A record's `channel` names its purpose: "email" is marketing e-mail, "sms" marketing SMS and
"profiling" the use of her history to tailor offers (patron.privacy.consents names them
marketing_email, marketing_sms, profiling). The latest record for a member and channel is in
force; a member with none yet has the consent given at enrollment (members.marketing_consent)
for the two marketing channels and no consent to profiling. Transactional messages (about the
member's own account) need no consent; marketing ones are only sent with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.events.keys import instance_key, sign, verify
from patron.members.models import ConsentRecord, Member

CHANNELS: tuple[str, ...] = ("email", "sms")  # the marketing channels messages go out on
PROFILING = "profiling"
KINDS: tuple[str, ...] = (*CHANNELS, PROFILING)  # every purpose a record may be about
# The purposes a member is asked to consent to, by name, and the kind of record each is kept as
# (privacy consents, segment conditions).
PURPOSES: dict[str, str] = {
    "marketing_email": "email",
    "marketing_sms": "sms",
    "profiling": PROFILING,
}
Source = Literal[
    "api", "admin", "portal", "unsubscribe_link", "sms_keyword", "import", "enrollment"
]
SOURCES: tuple[str, ...] = (
    "api",
    "admin",
    "portal",
    "unsubscribe_link",
    "sms_keyword",
    "import",
    "enrollment",
)
# Words that withdraw SMS consent when a member texts them back (case-insensitive, trimmed).
STOP_WORDS = frozenset(
    {
        "stop",
        "stopall",
        "unsubscribe",
        "cancel",
        "end",
        "quit",
        "수신거부",
        "거부",
        "退订",
        "td",
        "取消",
    }
)


def current(session: Session, member: Member, channel: str) -> bool:
    latest = session.scalar(
        select(ConsentRecord.granted)
        .where(ConsentRecord.member_id == member.id, ConsentRecord.channel == channel)
        .order_by(ConsentRecord.id.desc())
        .limit(1)
    )
    if latest is None:
        return bool(member.marketing_consent) if channel in CHANNELS else False
    return bool(latest)


def current_all(session: Session, member: Member) -> dict[str, bool]:
    return {channel: current(session, member, channel) for channel in CHANNELS}


def change(
    session: Session,
    member: Member,
    channels: Iterable[str],
    *,
    granted: bool,
    source: str,
    actor: Actor,
    now: datetime,
    note: str | None = None,
    version: str | None = None,
    program_id: int | None = None,
) -> list[ConsentRecord]:
    """Record a consent change on each channel (even if unchanged: the member said it again,
    and when and how is the record). members.marketing_consent follows: true while any
    marketing channel is granted. `version` is the consent text agreed to (or withdrawn)."""
    rows = []
    channels = list(channels)
    before = current_all(session, member)
    if PROFILING in channels:
        before[PROFILING] = current(session, member, PROFILING)
    for channel in channels:
        row = ConsentRecord(
            member_id=member.id,
            channel=channel,
            granted=granted,
            source=source,
            actor=str(actor),
            at=now,
            note=note,
            version=version,
            program_id=program_id,
        )
        session.add(row)
        rows.append(row)
    session.flush()
    after = current_all(session, member)
    member.marketing_consent = any(after.values())
    if PROFILING in channels:
        after[PROFILING] = current(session, member, PROFILING)
    audit.record(
        session,
        actor=actor,
        action="members.consent_changed",
        subject_type="member",
        subject_id=member.id,
        at=now,
        before={"consent": before},
        after={"consent": after, "source": source, "note": note}
        | ({"version": version} if version is not None else {}),
    )
    session.flush()
    return rows


def history(
    session: Session,
    member_id: int,
    *,
    limit: int = 200,
    channels: Iterable[str] = CHANNELS,
) -> list[ConsentRecord]:
    """Newest first; the marketing channels unless `channels` says otherwise."""
    return list(
        session.scalars(
            select(ConsentRecord)
            .where(ConsentRecord.member_id == member_id, ConsentRecord.channel.in_(list(channels)))
            .order_by(ConsentRecord.id.desc())
            .limit(limit)
        )
    )


def count(session: Session, member_id: int) -> int:
    return int(
        session.scalar(select(func.count()).where(ConsentRecord.member_id == member_id)) or 0
    )


# --- unsubscribe links ---------------------------------------------------------------------


def unsubscribe_token(session: Session, member_id: int, channel: str, *, now: datetime) -> str:
    """`<member>.<channel>.<tag>`: the tag is an HMAC with this installation's own key, so a
    link cannot be made for another member."""
    key = instance_key(session, "unsubscribe", now=now)
    return f"{member_id}.{channel}.{sign(key, f'{member_id}:{channel}')}"


def read_token(session: Session, token: str, *, now: datetime) -> tuple[int, str] | None:
    parts = token.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or parts[1] not in CHANNELS:
        return None
    member_id, channel, tag = int(parts[0]), parts[1], parts[2]
    if member_id > 2**53:
        return None
    key = instance_key(session, "unsubscribe", now=now)
    return (member_id, channel) if verify(key, f"{member_id}:{channel}", tag) else None


def is_stop_word(text: str) -> bool:
    return text.strip().strip(".!").lower() in STOP_WORDS
