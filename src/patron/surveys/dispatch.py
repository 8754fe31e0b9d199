"""Invitations from purchases, made by the delivery worker's dispatch round (never by the
sale itself): the points.earned event of an order turns, for each open
survey whose stores and channels match, into an invitation and its message.

The token is in the message body only (which the delivery keeps until it is sent, like the
unsubscribe link); the invitation keeps its hash."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from patron.config import Settings
from patron.events.models import Delivery, EventFacts
from patron.members import consent
from patron.members.models import Member
from patron.notify.routing import choose_channel, queue_key
from patron.programs.models import Program
from patron.surveys import service

# Only the earn: a purchase that also spends points has a points.redeemed event too, and one
# purchase must not count twice.
TRIGGERS = ("points.earned",)

MESSAGE = {
    "ko": (
        "{program}: {title}",
        "{program}을(를) 이용해 주셔서 감사합니다. 잠깐 의견을 들려주세요{bonus}: {url}",
    ),
    "zh": ("{program}：{title}", "感谢光临 {program}。请花一分钟告诉我们您的感受{bonus}：{url}"),
    "en": (
        "{program}: {title}",
        "Thank you for visiting {program}. Tell us how it went{bonus}: {url}",
    ),
}
BONUS = {
    "ko": " (응답 시 {points}포인트)",
    "zh": "（回答即得 {points} 积分）",
    "en": " ({points} points for answering)",
}


def on_event(
    session: Session,
    event: EventFacts,
    program: Program,
    *,
    now: Any,
    settings: Settings,
    cache: dict[str, Any] | None = None,
) -> int:
    """Invitations made for `event` (0 when it is no purchase or no survey matches).
    `cache` (the dispatch round's) keeps each program's open surveys for the round, so a round
    of 200 sales reads the surveys once, not 200 times."""
    payload = event.payload if isinstance(event.payload, dict) else {}
    if event.kind not in TRIGGERS or event.member_id is None or not payload.get("order"):
        return 0
    per_program = (cache if cache is not None else {}).setdefault("_open_surveys", {})
    if program.id not in per_program:
        per_program[program.id] = service.open_surveys(session, program.id, now=now)
    surveys = service.matching(
        per_program[program.id], store=payload.get("store"), channel=payload.get("channel")
    )
    # The common case at steady state: a regular invited lately. One primary-key read each,
    # before the member, her consent and the claim are looked at.
    # no_autoflush: the round's pending deliveries stay one batched flush instead of a flush
    # before each read here.
    with session.no_autoflush:
        surveys = [s for s in surveys if service.may_invite(session, s, event.member_id, now)]
    if not surveys:
        return 0
    member = session.get(Member, event.member_id)
    if member is None:
        return 0
    # A request for feedback with points attached is promotional: it needs marketing consent.
    # A member who cannot be reached is not invited (no link nobody receives, no cooldown used).
    via, address, reason = choose_channel(session, member, ("email", "sms"), "marketing")
    if via is None or address is None or reason is not None:
        return 0
    made = 0
    for survey in surveys:
        got = service.invite(
            session,
            survey,
            event.member_id,
            now=now,
            store=payload.get("store"),
            channel=payload.get("channel"),
            order=str(payload["order"])[:120],
            event_id=event.id,
        )
        if got is None:
            continue
        made += 1
        _message(session, event, program, member, survey, got[1], via, address, now=now,
                 settings=settings)  # fmt: skip
    return made


def _message(
    session: Session,
    event: EventFacts,
    program: Program,
    member: Member,
    survey: Any,
    token: str,
    channel: str,
    address: str,
    *,
    now: Any,
    settings: Settings,
) -> None:
    lang = member.language if member.language in MESSAGE else survey.fallback_language
    url = f"{settings.public_url.rstrip('/')}/s/{token}"
    bonus = BONUS[lang].format(points=survey.points) if survey.points else ""
    subject, body = MESSAGE[lang]
    text = body.format(program=program.name, bonus=bonus, url=url)
    if channel == "email":
        unsubscribe = consent.unsubscribe_token(session, member.id, "email", now=now)
        text += f"\n\n{settings.public_url.rstrip('/')}/u/{unsubscribe}"
    title = service.text_in(survey.title, lang, survey.fallback_language)
    session.add(
        Delivery(
            event_id=event.id,
            program_id=program.id,
            member_id=member.id,
            event_kind="survey.invitation",
            channel=channel,
            queue_key=queue_key(channel, member_id=member.id),
            recipient=address,
            purpose="marketing",
            language=lang,
            subject=subject.format(program=program.name, title=title),
            body=text,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
