"""Where a message goes: the channel a member can be reached on, and the queue key that keeps
one member's (or one webhook endpoint's) deliveries in order. Shared by the dispatcher and the
features that queue their own messages (surveys), without importing the dispatcher."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from patron.members import consent
from patron.members.models import Member


def queue_key(channel: str, *, member_id: int | None, endpoint_id: int | None = None) -> str:
    """Deliveries with one key leave one at a time, in order: per webhook endpoint and member,
    or per channel and member for messages."""
    if channel == "webhook":
        return f"webhook:{endpoint_id}:{member_id or 0}"
    return f"{channel}:{member_id or 0}"


def choose_channel(
    session: Session, member: Member, channels: Sequence[str], purpose: str
) -> tuple[str | None, str | None, str | None]:
    """(channel, address, None) for the first channel the member can be reached on — the one
    she prefers first (preferences["channel"], set on her page) when the event may use it — or
    (channel tried, None, why not) — member_blocked, no_contact or no_consent."""
    if member.status != "active":
        return None, None, "member_blocked"
    preferred = (member.preferences or {}).get("channel")
    if isinstance(preferred, str) and preferred in channels:
        channels = [preferred, *(c for c in channels if c != preferred)]
    reason = "no_contact"
    for channel in channels:
        address = member.email if channel == "email" else member.phone
        if not address:
            continue
        if purpose == "marketing" and not consent.current(session, member, channel):
            reason = "no_consent"
            continue
        return channel, address, None
    return None, None, reason
