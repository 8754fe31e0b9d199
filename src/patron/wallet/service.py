"""What a member's pass shows: balance, tier and card, in the program's colours and the
member's language."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.errors import Conflict, NotFound
from patron.ledger import views
from patron.ledger.models import Account
from patron.members.models import Card, Member
from patron.programs import branding
from patron.programs.models import Program
from patron.tiers.models import TierDefinition
from patron.wallet.pkpass import PassCard

# The pass's own few words; the member's language when we have it, else English.
LABELS = {
    "en": {"balance": "Points", "tier": "Tier", "member": "Member", "card": "Member card"},
    "ko": {"balance": "포인트", "tier": "등급", "member": "회원", "card": "멤버십 카드"},
    "zh": {"balance": "积分", "tier": "等级", "member": "会员", "card": "会员卡"},
}


class NoActiveCard(Conflict):
    code = "no_active_card"


def _tier_name(session: Session, program: Program, code: str | None, language: str) -> str | None:
    if code is None:
        return None
    tier = session.scalars(
        select(TierDefinition).where(
            TierDefinition.program_id == program.id, TierDefinition.code == code
        )
    ).one_or_none()
    if tier is None:
        return code
    return tier.names.get(language) or tier.names.get("en") or code


def pass_card(session: Session, program: Program, member_id: int, *, now: datetime) -> PassCard:
    """The pass for the member's first active card; NotFound (member_not_found) when the
    member is not in the program, NoActiveCard when they hold no active card."""
    account = session.scalars(
        select(Account).where(Account.program_id == program.id, Account.member_id == member_id)
    ).one_or_none()
    member = session.get(Member, member_id) if account is not None else None
    if account is None or member is None:
        raise NotFound(
            f"member {member_id} is not in program {program.code}", code="member_not_found"
        )
    card = session.scalars(
        select(Card)
        .where(Card.member_id == member_id, Card.status == "active")
        .order_by(Card.id)
        .limit(1)
    ).first()
    if card is None:
        raise NoActiveCard(f"member {member_id} has no active card to put in a wallet")
    language = member.language if member.language in LABELS else "en"
    labels = LABELS[language]
    brand = branding.get(session, program)
    return PassCard(
        card_number=card.number,
        member_name=member.name,
        organization_name=brand.name_in(language, program.name),
        description=labels["card"],
        balance=views.totals(session, account, now).balance,
        tier_name=_tier_name(session, program, account.tier, language),
        balance_label=labels["balance"],
        tier_label=labels["tier"],
        member_label=labels["member"],
        background_color=brand.card_background,
        foreground_color=brand.card_text,
    )
