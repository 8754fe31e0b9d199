"""Points for things that are not purchases (sign-up, birthday, review …) and entry explanations.

An event is credited by the program's enabled `event` rule for it. A limited event (once, per
day/month/year) claims its period in `event_claims`; the claim is checked and written under the
account's row lock, in the same transaction as the earn entry, so two concurrent calls for one
member cannot both be credited (the unique key on (account, period) backs the lock up).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, cast

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron import formats
from patron.audit.service import Actor
from patron.errors import Conflict, Invalid, NotFound
from patron.ledger import service as ledger
from patron.ledger import views
from patron.ledger.models import Account, Entry
from patron.members import service as members
from patron.members.models import Member
from patron.programs.models import Program
from patron.programs.service import get_store
from patron.rules import service as rules
from patron.rules.engine import evaluate_event
from patron.rules.events import EventOut, EventRequest
from patron.rules.explain import LANGUAGES, explain_steps
from patron.rules.model import Event
from patron.rules.models import EventClaim
from patron.sales.plan import Source
from patron.sales.points import operate
from patron.sales.purchases import check_occurred_at
from patron.tiers import service as tiers

Language = Literal["en", "ko", "zh"]


def _claimed(session: Session, account: Account, period_key: str) -> bool:
    return (
        session.scalar(
            select(EventClaim.id).where(
                EventClaim.account_id == account.id, EventClaim.period_key == period_key
            )
        )
        is not None
    )


def record_event(
    session: Session, program: Program, req: EventRequest, *, actor: Actor, now: datetime
) -> EventOut:
    """Credit the points the current rule set gives for `req.event`, within its limit."""
    occurred_at = check_occurred_at(req.occurred_at, now)
    doc = rules.document(session, program)
    if not any(isinstance(r, Event) and r.enabled and r.event == req.event for r in doc.rules):
        raise Invalid(
            f"program {program.code} has no enabled rule for event {req.event!r}",
            code="unknown_event",
        )
    store_id = None
    if req.store is not None:
        try:
            store_id = get_store(session, program, req.store).id
        except NotFound as exc:
            raise Invalid(exc.detail, code="store_not_found") from None
    member = members.find_member(session, req.member, program=program)
    members.ensure_active(member)

    # The account lock serialises this member's events: check the claim, then write it.
    account = ledger.open_account(session, program_id=program.id, member_id=member.id, now=now)
    ledger.settle_due(session, account, now)
    context = rules.member_context(session, program, account, member, occurred_at, rules.needs(doc))
    result = evaluate_event(
        doc,
        req.event,
        occurred_at=occurred_at,
        timezone=program.timezone,
        member=context,
        store=req.store,
        channel=req.channel,
    )
    if result.rule is None:
        reasons = "; ".join(str(s.get("reason")) for s in result.steps if not s.get("applied"))
        raise Conflict(
            f"event {req.event!r} earns nothing now: {reasons}", code="event_not_eligible"
        )
    if result.period_key is not None and _claimed(session, account, result.period_key):
        raise Conflict(
            _limit_message(req.event, result.rule.limit, result.period_key),
            code="event_limit_reached",
        )

    source = Source(store_id=store_id, channel=req.channel)
    points, qualifying, steps = (
        result.points,
        result.points if result.rule.qualifying else 0,
        result.steps,
    )
    entry = operate(
        session,
        program.id,
        member.id,
        lambda planner, _state: planner.credit(
            member.id,
            points,
            reason=f"event {req.event}",
            occurred_at=occurred_at,
            source=source,
            qualifying=qualifying,
            breakdown=steps,
            rule_version=program.rule_version,
        ),
        actor=actor,
        now=now,
        new_rows=(1, 2),
    )
    if result.period_key is not None:
        try:
            with session.begin_nested():
                session.add(
                    EventClaim(
                        account_id=account.id,
                        period_key=result.period_key,
                        entry_id=entry.id,
                        created_at=now,
                    )
                )
        except IntegrityError:  # pragma: no cover - the account lock makes this unreachable
            raise Conflict(
                _limit_message(req.event, result.rule.limit, result.period_key),
                code="event_limit_reached",
            ) from None
    tiers.upgrade_if_qualified(session, program, account, now=now, actor=actor)
    return EventOut(
        member_id=member.id,
        event=req.event,
        rule=result.rule.id,
        points=result.points,
        period_key=result.period_key,
        entry=entry,
        totals=views.totals(session, account, now, settled=True),
    )


def _limit_message(event: str, limit: str, period_key: str) -> str:
    if limit == "once":
        return f"event {event!r} is credited once per member and already was"
    period = period_key.rsplit(":", 1)[-1]
    return f"event {event!r} was already credited for {period} ({limit.replace('_', ' ')})"


# --- explaining a ledger entry ----------------------------------------------------------------


class ExplanationOut(BaseModel):
    entry_id: int
    kind: str
    points: int
    rule_version: int | None
    language: Language
    lines: list[str] = Field(
        description="One sentence per step, in `language`; tiers by their name in that language"
    )
    text: str


_PLAIN: dict[str, dict[str, str]] = {
    "earn": {
        "en": "{points} points earned: {reason}",
        "ko": "{points}포인트 적립: {reason}",
        "zh": "获得 {points} 积分:{reason}",
    },
    "redeem": {
        "en": "{points} points used: {reason}",
        "ko": "{points}포인트 사용: {reason}",
        "zh": "使用 {points} 积分:{reason}",
    },
    "expire": {
        "en": "{points} points expired",
        "ko": "{points}포인트 소멸",
        "zh": "{points} 积分已过期",
    },
    "adjust_plus": {
        "en": "{points} points added by staff: {reason}",
        "ko": "직원이 {points}포인트 지급: {reason}",
        "zh": "工作人员增加 {points} 积分:{reason}",
    },
    "adjust_minus": {
        "en": "{points} points removed by staff: {reason}",
        "ko": "직원이 {points}포인트 차감: {reason}",
        "zh": "工作人员扣除 {points} 积分:{reason}",
    },
    "reverse_plus": {
        "en": "{points} points given back: {reason}",
        "ko": "{points}포인트 반환: {reason}",
        "zh": "退回 {points} 积分:{reason}",
    },
    "reverse_minus": {
        "en": "{points} points taken back: {reason}",
        "ko": "{points}포인트 회수: {reason}",
        "zh": "收回 {points} 积分:{reason}",
    },
    # Reasons Patron itself writes (patron.sales): stored in English, worded for the reader.
    "refund_earned": {
        "en": "Refund {ref}: {points} points earned on the purchase taken back",
        "ko": "환불 {ref}: 구매로 적립된 {points}포인트 회수",
        "zh": "退款 {ref}:收回该笔消费获得的 {points} 积分",
    },
    "refund_paid": {
        "en": "Refund {ref}: {points} points used to pay given back",
        "ko": "환불 {ref}: 결제에 사용한 {points}포인트 반환",
        "zh": "退款 {ref}:退回支付时使用的 {points} 积分",
    },
    "refund_qualifying": {
        "en": "Refund {ref}: {qualifying} points no longer count towards your tier",
        "ko": "환불 {ref}: 등급 산정 포인트 {qualifying} 차감",
        "zh": "退款 {ref}:{qualifying} 积分不再计入等级",
    },
    "paid_with_points": {
        "en": "{points} points used: paid {money} with points",
        "ko": "{points}포인트 사용: {money} 결제",
        "zh": "使用 {points} 积分:抵扣 {money}",
    },
    "already_expired": {
        "en": "{n} more points had already expired",
        "ko": "{n}포인트는 이미 소멸됨",
        "zh": "另有 {n} 积分已过期",
    },
    "debt_added": {
        "en": "{n} points more than the balance held are owed",
        "ko": "잔액보다 많은 {n}포인트는 차감 예정(부족분)",
        "zh": "超出余额的 {n} 积分记为欠分",
    },
    "written_off": {
        "en": "{n} points could not be taken back (written off)",
        "ko": "{n}포인트는 회수하지 못해 면제됨",
        "zh": "{n} 积分无法收回,已核销",
    },
}

# The reasons patron.sales writes, so an old entry is worded in the reader's language too.
_SYSTEM_REASONS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^refund (?P<ref>.+): points earned taken back$"), "refund_earned"),
    (re.compile(r"^refund (?P<ref>.+): points paid given back$"), "refund_paid"),
    (re.compile(r"^refund (?P<ref>.+): qualifying points taken back$"), "refund_qualifying"),
    (
        re.compile(r"^paid (?P<amount>[0-9.]+) (?P<currency>[A-Z]{3}) with points$"),
        "paid_with_points",
    ),
)


def _plain(entry: Entry, language: str) -> list[str]:
    points = formats.number(abs(entry.points), language)
    for pattern, key in _SYSTEM_REASONS:
        found = pattern.match(entry.reason or "")
        if found is None:
            continue
        words = found.groupdict()
        if "amount" in words:  # "paid 1120 KRW" is read "₩1,120"
            words["money"] = formats.money(words["amount"], words["currency"], language)
        lines = [
            _PLAIN[key][language].format(
                points=points, qualifying=formats.number(abs(entry.qualifying), language), **words
            )
        ]
        details = entry.details or {}
        lines += [
            _PLAIN[name][language].format(n=formats.number(int(details[name]), language))
            for name in ("already_expired", "debt_added", "written_off")
            if details.get(name)
        ]
        return lines
    key = entry.kind
    if entry.kind in ("adjust", "reverse"):
        key = f"{entry.kind}_{'plus' if entry.points > 0 else 'minus'}"
    template = _PLAIN.get(key, _PLAIN["earn"])[language]
    return [template.format(points=points, reason=entry.reason or entry.kind)]


def _tier_names(session: Session, program: Program, language: str) -> Callable[[str], str]:
    """A tier code → its name in `language` (else English, else the code: a tier since renamed
    or removed still reads)."""
    names = {t.code: t.names for t in tiers.definitions(session, program.id)}

    def tier_name(code: str) -> str:
        found = names.get(code) or {}
        return found.get(language) or found.get("en") or code

    return tier_name


def explain_entry(
    session: Session,
    program: Program,
    entry_id: int,
    language: str | None = None,
    *,
    money: Callable[[Any], str] | None = None,
    tier_name: Callable[[str], str] | None = None,
    skipped: bool = False,
) -> ExplanationOut:
    """An entry in plain words: its stored breakdown, or one line from its kind and reason.
    Tiers are named in the explanation's language (from the tier definitions unless `tier_name`
    is given); `money` words amounts for a member (see explain.explain_steps); with `skipped`
    the rules that did not apply are listed too, each with why."""
    row = session.execute(
        select(Entry, Member.language)
        .join(Account, Account.id == Entry.account_id)
        .join(Member, Member.id == Account.member_id)
        .where(Entry.id == entry_id, Entry.program_id == program.id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"program {program.code} has no entry {entry_id}", code="entry_not_found")
    entry, member_language = row
    lang = language or (member_language if member_language in LANGUAGES else "en")
    breakdown: list[dict[str, Any]] | None = entry.breakdown
    if breakdown:
        if tier_name is None and any(step.get("tier") for step in breakdown):
            tier_name = _tier_names(session, program, lang)
        lines = explain_steps(
            breakdown, entry.points, lang, money=money, tier_name=tier_name, skipped=skipped
        )
    else:
        lines = _plain(entry, lang)
    return ExplanationOut(
        entry_id=entry.id,
        kind=entry.kind,
        points=entry.points,
        rule_version=entry.rule_version,
        language=cast(Language, lang),
        lines=lines,
        text="; ".join(lines),
    )
