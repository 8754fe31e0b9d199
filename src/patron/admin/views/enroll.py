"""Enroll a member at the counter: the form, the duplicate check, and the welcome sheet.

The member is created by the same service as the API's POST /members (members.create_member,
which enrolls her in the program, records the consent given and audits member.created and
member.enrolled); an existing member of another program is enrolled with members.enroll, as
POST /members/{id}/enroll does. There is no second enrollment path here, only the form around it.

Before creating, the form looks for the person already being a member: the same phone, e-mail
or card (which the data cannot hold twice, so there is no "create anyway": the page offers the
existing member, or enrolling her in this program) and the same name and birthday in the program
(two people may share them, so "create anyway" is offered). A user limited to programs is not
told who holds a phone number outside their programs.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from patron import clock
from patron.admin import context, forms, i18n, search
from patron.admin.deps import Staff, form_data, get_db, require
from patron.admin.templating import path_for, render
from patron.audit import service as audit
from patron.errors import Conflict, Invalid, PatronError
from patron.events.models import Delivery, DomainEvent
from patron.ledger.models import Account
from patron.members import consent
from patron.members import service as members
from patron.members.models import Card, Member
from patron.members.phone import national_format, normalise_phone
from patron.members.schemas import CardIn, MemberCreate
from patron.notify import settings as notify_settings
from patron.portal import signup
from patron.programs.models import Program
from patron.programs.service import get_program

router = APIRouter()
MemberId = Path(ge=1, le=2**53)
FIELDS = ("program", "name", "phone", "email", "birthday", "language", "card")
LANGUAGES = ("ko", "zh", "en", "ja")
CARD_CHOICES = ("none", "typed", "generated")
# A welcome e-mail in one of these states is on its way or out: another would be a duplicate.
OPEN_STATES = ("pending", "retry", "sending")
WELCOME = "member.enrolled"


# --- duplicate detection ----------------------------------------------------------------------


@dataclass(frozen=True)
class Lookalike:
    member_id: int
    name: str | None  # None: outside the user's programs, not named to them
    phone: str | None  # national format
    reasons: tuple[str, ...]  # phone, email, card (unique: no "create anyway"), name
    in_program: bool  # already a member of the program asked for

    @property
    def blocking(self) -> bool:
        return any(r in ("phone", "email", "card") for r in self.reasons)


def _programs_of(session: Session, member_ids: list[int]) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    if member_ids:
        for member_id, code in session.execute(
            select(Account.member_id, Program.code)
            .join(Program, Program.id == Account.program_id)
            .where(Account.member_id.in_(member_ids))
        ):
            found.setdefault(member_id, set()).add(code)
    return found


def lookalikes(
    session: Session,
    program: Program,
    staff: Staff,
    *,
    name: str,
    phone: str | None,
    email: str | None,
    card: str | None,
    birthday: Any,
) -> list[Lookalike]:
    """Members the new one may already be: the same phone, e-mail or card anywhere, or the
    same name (and birthday, when both have one) in the program."""
    reasons: dict[int, list[str]] = {}
    if phone:
        for mid in session.scalars(select(Member.id).where(Member.phone == phone)):
            reasons.setdefault(mid, []).append("phone")
    if email:
        for mid in session.scalars(select(Member.id).where(Member.email == email)):
            reasons.setdefault(mid, []).append("email")
    if card:
        for mid in session.scalars(
            select(Card.member_id).where(func.upper(Card.number) == card.upper())
        ):
            reasons.setdefault(mid, []).append("card")
    same_name = (
        select(Member.id)
        .join(Account, Account.member_id == Member.id)
        .where(
            Account.program_id == program.id,
            func.lower(Member.name) == name.strip().lower(),
            Member.status != "erased",
        )
        .limit(5)
    )
    if birthday is not None:
        same_name = same_name.where(or_(Member.birthday.is_(None), Member.birthday == birthday))
    for mid in session.scalars(same_name):
        reasons.setdefault(mid, []).append("name")
    if not reasons:
        return []
    programs = _programs_of(session, list(reasons))
    rows = session.scalars(select(Member).where(Member.id.in_(list(reasons))).order_by(Member.id))
    found = []
    for m in rows:
        theirs = programs.get(m.id, set())
        visible = staff.programs is None or bool(theirs & staff.programs)
        found.append(
            Lookalike(
                member_id=m.id,
                name=m.name if visible else None,
                phone=national_format(m.phone) if visible else None,
                reasons=tuple(reasons[m.id]),
                in_program=program.code in theirs,
            )
        )
    return found


# --- card numbers -----------------------------------------------------------------------------


def _luhn_digit(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 0:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return str((10 - total % 10) % 10)


def new_card_number(session: Session) -> str:
    """A card number nobody holds: 12 digits, the last a Luhn check digit (a mistyped digit is
    then no other member's card), as a scanner or a keypad enters it."""
    for _ in range(20):
        body = str(secrets.randbelow(9 * 10**10) + 10**10)  # 11 digits, no leading zero
        number = body + _luhn_digit(body)
        if session.scalar(select(Card.id).where(Card.number == number)) is None:
            return number
    raise Conflict("could not find a free card number", code="card_number_exhausted")


# --- the form ---------------------------------------------------------------------------------


def _reachable(session: Session, staff: Staff) -> list[Program]:
    return [p for p in context.programs(session) if staff.reaches(p.code)]


def _form_page(
    request: Request,
    staff: Staff,
    values: dict[str, Any],
    *,
    errors: forms.Errors | None = None,
    found: list[Lookalike] | None = None,
    status: int = 200,
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        programs = _reachable(session, staff)
        return render(
            request,
            "members/new.html",
            status=status,
            tz=context.default_timezone(session),
            section="members",
            programs=programs,
            v=values,
            errors=errors or {},
            found=found or [],
            member_languages=LANGUAGES,
            soft_only=bool(found) and not any(f.blocking for f in found or []),
        )


def _prefill(q: str) -> dict[str, str]:
    """What was searched for, in the field it belongs to (a search that found nobody)."""
    q = q.strip()[:100]
    if not q:
        return {}
    if "@" in q:
        return {"email": q}
    if search._PHONE_CHARS.match(q) and sum(c.isdigit() for c in q) >= 7:
        return {"phone": q}
    if q.replace("-", "").isalnum() and any(c.isdigit() for c in q):
        return {"card": q, "card_choice": "typed"}
    return {"name": q}


@router.get("/members/new", name="member_new")
def member_new(
    request: Request,
    program: str | None = Query(None, max_length=40),
    q: str = Query("", max_length=200),
    staff: Staff = Depends(require("members.edit")),
) -> Response:
    values: dict[str, Any] = {
        "program": program or "",
        "language": staff.language,
        "card_choice": "generated",
    }
    values.update(_prefill(q))
    return _form_page(request, staff, values)


class _LooksLike(Exception):
    def __init__(self, found: list[Lookalike]) -> None:
        super().__init__("the new member looks like an existing one")
        self.found = found


def _read(form: dict[str, str]) -> dict[str, Any]:
    choice = form.get("card_choice", "none")
    return {
        "program": (form.get("program") or "").strip(),
        "name": (form.get("name") or "").strip(),
        "phone": (form.get("phone") or "").strip(),
        "email": (form.get("email") or "").strip(),
        "birthday": (form.get("birthday") or "").strip(),
        "language": form.get("language") or "en",
        "consent_email": form.get("consent_email") == "1",
        "consent_sms": form.get("consent_sms") == "1",
        "card_choice": choice if choice in CARD_CHOICES else "none",
        "card": (form.get("card") or "").strip(),
    }


@router.post("/members/new", name="member_create")
def member_create(
    request: Request,
    staff: Staff = Depends(require("members.edit")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    lang = staff.language
    values = _read(form)
    errors = forms.required(values, ("program", "name"), lang)
    if values["card_choice"] == "typed" and not values["card"]:
        errors["card"] = i18n.translate("form.error.required", lang)
    if errors:
        return _form_page(request, staff, values, errors=errors, status=422)
    cards = []
    if values["card_choice"] == "typed":
        cards = [{"number": values["card"], "kind": "physical"}]
    try:
        data = MemberCreate.model_validate(
            {
                "name": values["name"],
                "phone": values["phone"] or None,
                "email": values["email"] or None,
                "birthday": values["birthday"] or None,
                "language": values["language"],
                "program": values["program"],
                "cards": cards,
            }
        )
    except ValidationError as exc:
        errors = forms.from_validation(exc, lang, (*FIELDS, "cards"))
        if "cards" in errors:
            errors["card"] = errors.pop("cards")
        return _form_page(request, staff, values, errors=errors, status=422)
    try:
        with get_db(request).unit_of_work() as session:
            program = get_program(session, values["program"])
            phone = (
                normalise_phone(data.phone, members.default_region(session, program))
                if data.phone
                else None
            )
            found = lookalikes(
                session,
                program,
                staff,
                name=data.name,
                phone=phone,
                email=data.email.lower() if data.email else None,
                card=values["card"] if cards else None,
                birthday=data.birthday,
            )
            if found and (any(f.blocking for f in found) or form.get("anyway") != "1"):
                raise _LooksLike(found)  # nothing written: the unit of work rolls back
            if values["card_choice"] == "generated":
                data.cards = [CardIn(number=new_card_number(session), kind="ecard")]
            now = clock.now()
            member = members.create_member(
                session, data, program=program, actor=staff.actor, now=now
            )
            _record_consent(session, member, values, staff, now, program)
            member_id = member.id
    except _LooksLike as exc:
        return _form_page(request, staff, values, found=exc.found, status=409)
    except PatronError as exc:
        if exc.status == 404 and exc.code not in ("program_not_found",):
            raise
        errors = forms.from_error(exc, lang, FIELDS)
        if exc.code == "duplicate_card":
            errors = {"card": exc.detail}
        return _form_page(request, staff, values, errors=errors, status=422)
    url = path_for(request, "member_welcome", {"program": values["program"]}, member_id=member_id)
    return RedirectResponse(url, status_code=303)


def _record_consent(
    session: Session,
    member: Member,
    values: dict[str, Any],
    staff: Staff,
    now: datetime,
    program: Program,
) -> None:
    """The marketing consent she gave (or did not) at the counter, per channel, on record."""
    given = [c for c in consent.CHANNELS if values.get(f"consent_{c}")]
    refused = [c for c in consent.CHANNELS if c not in given]
    for channels, granted in ((given, True), (refused, False)):
        if channels:
            consent.change(
                session, member, channels, granted=granted, source="enrollment",
                actor=staff.actor, now=now, program_id=program.id,
            )  # fmt: skip


@router.post("/members/{member_id}/enroll", name="member_enroll_existing")
def member_enroll_existing(
    request: Request,
    member_id: int = MemberId,
    staff: Staff = Depends(require("members.edit")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    """The person at the counter is a member of another program already: enroll her here."""
    code = (form.get("program") or "").strip()
    if not code:
        raise Invalid("program: choose the program", code="program_required")
    with get_db(request).unit_of_work() as session:
        program = get_program(session, code)
        member = members.get_member(session, member_id)
        members.ensure_active(member)
        try:
            members.enroll(session, member, program, actor=staff.actor, now=clock.now())
        except Conflict as exc:
            if exc.code != "already_enrolled":
                raise
    url = path_for(request, "member_welcome", {"program": code}, member_id=member_id)
    return RedirectResponse(url, status_code=303)


# --- the welcome ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WelcomeState:
    automatic: bool  # the program sends the welcome itself when someone joins
    purpose: str
    queued: bool  # the joining event is not dispatched yet: the automatic one is coming
    last: Delivery | None  # the latest welcome message to her in this program


def welcome_state(session: Session, program: Program, member: Member) -> WelcomeState:
    setting = notify_settings.load(session, program.id).event(WELCOME)
    waiting = session.scalar(
        select(DomainEvent.id).where(
            DomainEvent.kind == WELCOME,
            DomainEvent.program_id == program.id,
            DomainEvent.member_id == member.id,
            DomainEvent.dispatched.is_(False),
        )
    )
    last = session.scalars(
        select(Delivery)
        .where(
            Delivery.program_id == program.id,
            Delivery.member_id == member.id,
            Delivery.event_kind == WELCOME,
            Delivery.channel != "webhook",
        )
        .order_by(Delivery.id.desc())
        .limit(1)
    ).first()
    return WelcomeState(
        automatic=setting.enabled,
        purpose=setting.purpose,
        queued=setting.enabled and waiting is not None,
        last=last,
    )


def email_refusal(session: Session, program: Program, member: Member) -> str | None:
    """Why the welcome e-mail may not go now (a message key), or None."""
    if member.status != "active":
        return "enroll.welcome.refused.blocked"
    if not member.email:
        return "enroll.welcome.refused.no_email"
    state = welcome_state(session, program, member)
    if state.purpose == "marketing" and not consent.current(session, member, "email"):
        return "enroll.welcome.refused.no_consent"
    if state.queued or (state.last is not None and state.last.status in OPEN_STATES):
        return "enroll.welcome.refused.on_its_way"
    return None


def queue_welcome_email(
    session: Session, program: Program, member: Member, *, actor: Any, now: datetime
) -> Delivery:
    """The program's welcome message (its member.enrolled template, in her language) as an
    e-mail in the delivery queue: the delivery worker sends it, with its tries and log, like
    every other message."""
    from patron.notify import templates
    from patron.notify.routing import queue_key

    state = welcome_state(session, program, member)
    rendered = templates.render_for_member(session, program, member, WELCOME, "email", {}, now=now)
    row = Delivery(
        event_id=None,
        program_id=program.id,
        member_id=member.id,
        event_kind=WELCOME,
        channel="email",
        queue_key=queue_key("email", member_id=member.id),
        recipient=member.email,
        purpose=state.purpose,
        language=rendered.language,
        subject=rendered.subject,
        body=rendered.body,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="member.welcome_emailed",
        subject_type="member",
        subject_id=member.id,
        program_id=program.id,
        at=now,
        after={"to": member.email, "delivery": row.id},
    )
    return row


@router.get("/members/{member_id}/welcome", name="member_welcome")
def member_welcome(
    request: Request,
    member_id: int = MemberId,
    program: str = Query(..., max_length=40),
    staff: Staff = Depends(require("members.view")),
) -> Response:
    done = request.query_params.get("done")
    refused = request.query_params.get("refused")
    with get_db(request).unit_of_work(readonly=True) as session:
        prog = get_program(session, program)
        member = members.get_member(session, member_id)
        card = session.scalars(
            select(Card)
            .where(Card.member_id == member.id, Card.status == "active")
            .order_by(Card.id.desc())
            .limit(1)
        ).first()
        enrolled = session.scalar(
            select(Account.id).where(Account.program_id == prog.id, Account.member_id == member.id)
        )
        if enrolled is None:
            raise Invalid(f"member {member_id} is not in program {prog.code}", code="not_enrolled")
        return render(
            request,
            "members/welcome.html",
            tz=context.default_timezone(session),
            section="members",
            member=member,
            phone=national_format(member.phone),
            prog=prog,
            card=card,
            portal=signup.portal_url(prog.code),
            state=welcome_state(session, prog, member),
            refusal=email_refusal(session, prog, member),
            done=done if done in ("emailed",) else None,
            refused=refused if refused and refused.startswith("enroll.welcome.refused.") else None,
        )


@router.post("/members/{member_id}/welcome/email", name="member_welcome_email")
def member_welcome_email(
    request: Request,
    member_id: int = MemberId,
    staff: Staff = Depends(require("members.edit")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    code = (form.get("program") or "").strip()
    if not code:
        raise Invalid("program: choose the program", code="program_required")
    with get_db(request).unit_of_work() as session:
        program = get_program(session, code)
        member = members.get_member(session, member_id)
        refusal = email_refusal(session, program, member)
        if refusal is None:
            queue_welcome_email(session, program, member, actor=staff.actor, now=clock.now())
    query = {"program": code, **({"refused": refusal} if refusal else {"done": "emailed"})}
    url = path_for(request, "member_welcome", query, member_id=member_id)
    return RedirectResponse(f"{url}#welcome-email", status_code=303)
