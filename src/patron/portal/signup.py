"""Self sign-up on the member page, and the staff's invitation to it.

A program owner switches sign-up on and picks what the form asks (`SignupSettings`, one JSON
document per program in `portal_enrollment`). A visitor fills the form; the contact the program
verifies with gets a code (portal/verify.py) and the form waits in the verification's payload.
Once the code matches, the member is created and enrolled by the members service, the
program's `signup` event rule (if any) credits its points through the ledger, the ticked
consents are recorded and she is signed in.

Nobody can find out through this form who is a member: a contact that already belongs to a
member gets the same page, and that member a normal sign-in code, which the code page accepts.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.config import get_settings
from patron.errors import Conflict, NotFound, PatronError
from patron.ledger.models import Account
from patron.members import consent
from patron.members import service as members
from patron.members.models import Member
from patron.members.phone import normalise_phone
from patron.members.schemas import MemberCreate, MemberRef
from patron.portal import i18n, service, verify
from patron.portal.models import PortalEnrollment
from patron.programs.models import Program
from patron.rules import service as rules
from patron.rules.events import EventRequest
from patron.rules.model import Event

FieldMode = Literal["off", "optional", "required"]
OPTIONAL_FIELDS = ("email", "phone", "birthday")
# The form's contact field -> the verification (and consent) channel it is.
CHANNEL_OF = {"email": "email", "phone": "sms"}
SIGNUP_EVENT = "signup"
# Invitations: one per member per hour (in this process's memory, per database).
INVITES_PER_MEMBER = parse("1/hour")
_EMAIL = TypeAdapter(EmailStr)


class SignupFields(BaseModel):
    """Which optional fields the form asks for (the name is always asked, and required)."""

    model_config = ConfigDict(extra="forbid")

    email: FieldMode = "required"
    phone: FieldMode = "optional"
    birthday: FieldMode = "off"


class SignupConsents(BaseModel):
    """Which marketing consent boxes the form shows; each is unticked until she ticks it."""

    model_config = ConfigDict(extra="forbid")

    email: bool = False
    sms: bool = False


class SignupSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Whether visitors may join on the member page")
    fields: SignupFields = Field(default_factory=SignupFields)
    verify_with: Literal["email", "phone"] = Field(
        "email", description="The contact the code is sent to; that field must be required"
    )
    consents: SignupConsents = Field(default_factory=SignupConsents)
    terms_url: str | None = Field(
        None, max_length=500, description="https:// address of the program's terms, or none"
    )

    @field_validator("terms_url")
    @classmethod
    def _terms(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if (
            not value.startswith("https://")
            or len(value) <= len("https://")
            or any(c.isspace() or c in "\"'<>\\" for c in value)
        ):
            raise ValueError("must be an https:// address")
        return value

    @model_validator(mode="after")
    def _contact(self) -> SignupSettings:
        if self.fields.email == "off" and self.fields.phone == "off":
            raise ValueError("the form must ask for an e-mail or a phone number (or both)")
        if getattr(self.fields, self.verify_with) != "required":
            raise ValueError(f"verify_with is {self.verify_with}, so that field must be required")
        return self


# --- settings -------------------------------------------------------------------------------


def get(session: Session, program: Program) -> SignupSettings:
    row = session.get(PortalEnrollment, program.id)
    return SignupSettings() if row is None else SignupSettings.model_validate(row.document)


def is_enabled(session: Session, program_id: int) -> bool:
    row = session.get(PortalEnrollment, program_id)
    return row is not None and bool(row.document.get("enabled"))


def _flat(settings: SignupSettings) -> dict[str, Any]:
    data = settings.model_dump(mode="json")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def save(
    session: Session, program: Program, settings: SignupSettings, *, actor: Actor, now: datetime
) -> SignupSettings:
    """Store the program's sign-up settings; audited as program.signup.updated (what changed)."""
    row = session.get(PortalEnrollment, program.id)
    before = SignupSettings() if row is None else SignupSettings.model_validate(row.document)
    old, new = audit.changes(_flat(before), _flat(settings))
    if row is not None and not new:
        return settings
    document = settings.model_dump(mode="json")
    if row is None:
        row = PortalEnrollment(program_id=program.id, document=document, updated_at=now)
        session.add(row)
    row.document = document
    row.updated_at = now
    row.updated_by = str(actor)
    session.flush()
    audit.record(
        session, actor=actor, action="program.signup.updated", subject_type="program",
        subject_id=program.code, program_id=program.id, at=now, before=old, after=new,
    )  # fmt: skip
    return settings


# --- the form -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignupForm:
    """A checked sign-up form: contacts normalised, birthday parsed, consents the shown ones."""

    name: str
    email: str | None
    phone: str | None  # E.164
    birthday: date | None
    consents: tuple[str, ...]  # "email" | "sms", ticked ones only
    channel: str  # where the code goes: email | sms
    contact: str  # the normalised contact the code goes to

    def payload(self, lang: str) -> dict[str, Any]:
        return {
            "name": self.name,
            "email": self.email,
            "phone": self.phone,
            "birthday": self.birthday.isoformat() if self.birthday else None,
            "consents": list(self.consents),
            "language": i18n.language(lang),
        }


def parse_form(
    settings: SignupSettings, program: Program, form: dict[str, str], *, today: date
) -> tuple[SignupForm | None, dict[str, str]]:
    """The posted form -> a SignupForm, or {field: message key} for every wrong field."""
    errors: dict[str, str] = {}
    name = " ".join(form.get("name", "").split())[:201]
    if not name:
        errors["name"] = "signup.error.required"
    elif len(name) > 200:
        errors["name"] = "signup.error.name"
    modes = settings.fields
    found: dict[str, Any] = {}
    for field in OPTIONAL_FIELDS:
        mode: str = getattr(modes, field)
        text = form.get(field, "").strip()[:255] if mode != "off" else ""
        if not text:
            if mode == "required":
                errors[field] = "signup.error.required"
            found[field] = None
            continue
        try:
            found[field] = _parse_field(field, text, program, today)
        except ValueError:
            errors[field] = f"signup.error.{field}"
    ticked = tuple(
        channel
        for channel in consent.CHANNELS
        if getattr(settings.consents, channel) and form.get(f"consent_{channel}") == "on"
    )
    if errors:
        return None, errors
    field = settings.verify_with
    return SignupForm(
        name=name,
        email=found["email"],
        phone=found["phone"],
        birthday=found["birthday"],
        consents=ticked,
        channel=CHANNEL_OF[field],
        contact=found[field],
    ), {}


def _parse_field(field: str, text: str, program: Program, today: date) -> Any:
    if field == "email":
        try:
            address = str(_EMAIL.validate_python(text))
        except ValidationError:
            raise ValueError("not an e-mail address") from None
        parsed = service.normalise_contact(program, address)
        if parsed is None or parsed[0] != "email":
            raise ValueError("not an e-mail address")
        return parsed[1]
    if field == "phone":
        if "@" in text:
            raise ValueError("not a phone number")
        try:
            return normalise_phone(text, program.country)
        except Exception:  # an unparsable number is simply wrong input
            raise ValueError("not a phone number") from None
    born = date.fromisoformat(text)  # a ValueError when it is not YYYY-MM-DD
    if born > today or born.year < 1900:
        raise ValueError("not a birthday")
    return born


# --- starting and finishing a sign-up -------------------------------------------------------


def begin(
    session: Session, program: Program, form: SignupForm, *, lang: str, now: datetime
) -> service.CodeMessage | None:
    """The message to send: a sign-up code, or — when the contact already belongs to a member
    of the program — her normal sign-in code (the caller answers the same either way)."""
    if service.find_member(session, program, form.channel, form.contact) is not None:
        return service.request_code(session, program, form.contact, now=now)
    return verify.start(
        session, program, purpose="sign_up", channel=form.channel, contact=form.contact,
        lang=lang, payload=form.payload(lang), now=now,
    )  # fmt: skip


@dataclass(frozen=True)
class Finished:
    """How a code on the sign-up page ended: signed in (a new member, or one who already was
    and typed her sign-in code), or `already` a member who must sign in."""

    signed: service.SignedIn | None
    member_id: int | None
    created: bool
    already: bool = False


def finish(
    session: Session,
    program: Program,
    raw_contact: str,
    code: str,
    *,
    now: datetime,
    user_agent: str | None = None,
) -> Finished | None:
    """Check the code typed on the sign-up page; None when it is wrong (a try is spent)."""
    parsed = service.normalise_contact(program, raw_contact)
    if parsed is None:
        return None
    channel, contact = parsed
    confirmed = verify.confirm(session, program, purpose="sign_up", contact=contact, code=code,
                               now=now)  # fmt: skip
    if confirmed is None:
        # A member of the program who tried to join got her sign-in code: it signs her in.
        signed = service.verify_code(session, program, contact, code, now=now,
                                     user_agent=user_agent)  # fmt: skip
        if signed is None:
            return None
        return Finished(signed=signed, member_id=None, created=False)
    form = confirmed.payload
    try:
        with session.begin_nested():
            member, created = _member_for(session, program, channel, contact, form, now=now)
    except (IntegrityError, Conflict):
        # Someone joined with this contact (or the other one) at the same moment.
        return Finished(signed=None, member_id=None, created=False, already=True)
    if member is None:
        return Finished(signed=None, member_id=None, created=False, already=True)
    by = Actor("member", str(member.id))
    wanted = [c for c in form.get("consents", []) if c in consent.CHANNELS]
    if wanted:
        consent.change(session, member, wanted, granted=True, source="portal", actor=by, now=now)
    _credit_signup(session, program, member, actor=by, now=now)
    signed = service.open_session(session, program, member, now=now, user_agent=user_agent,
                                  channel=channel)  # fmt: skip
    return Finished(signed=signed, member_id=member.id, created=created)


def _member_for(
    session: Session,
    program: Program,
    channel: str,
    contact: str,
    form: dict[str, Any],
    *,
    now: datetime,
) -> tuple[Member | None, bool]:
    """(the member, whether she is new): a new member enrolled in `program`; an active member
    of another program with this (now proven) contact is enrolled here; None for a member of
    this program already, or a blocked one."""
    column = Member.email if channel == "email" else Member.phone
    existing = session.scalars(select(Member).where(column == contact)).one_or_none()
    by = Actor("portal", "sign_up")
    if existing is not None:
        enrolled = session.scalar(
            select(Account.id).where(
                Account.program_id == program.id, Account.member_id == existing.id
            )
        )
        if enrolled is not None or existing.status != "active":
            return None, False
        members.enroll(session, existing, program, actor=by, now=now)
        return existing, False
    email, phone = form.get("email"), form.get("phone")
    # The contact she did not prove is kept only while it is nobody else's: this form must not
    # tell her whose it is.
    if channel == "email" and phone and _taken(session, Member.phone, phone):
        phone = None
    if channel == "sms" and email and _taken(session, Member.email, email):
        email = None
    data = MemberCreate.model_validate(
        {
            "name": form["name"],
            "email": email,
            "phone": phone,
            "birthday": form.get("birthday"),
            "language": form.get("language") or i18n.DEFAULT_LANGUAGE,
            "program": program.code,
        }
    )
    member = members.create_member(session, data, program=program, actor=by, now=now)
    return member, True


def _taken(session: Session, column: Any, value: str) -> bool:
    return session.scalar(select(Member.id).where(column == value)) is not None


def _credit_signup(
    session: Session, program: Program, member: Member, *, actor: Actor, now: datetime
) -> None:
    """The points of the program's enabled `signup` event rule, through the events service
    (the ledger's own operation, with its once-per-member claim); nothing when there is none."""
    from patron.earning import events  # earning.events imports the members service at load

    doc = rules.document(session, program)
    if not any(isinstance(r, Event) and r.enabled and r.event == SIGNUP_EVENT for r in doc.rules):
        return
    request = EventRequest(member=MemberRef(id=member.id), event=SIGNUP_EVENT)
    try:
        with session.begin_nested():
            events.record_event(session, program, request, actor=actor, now=now)
    except PatronError:  # a condition of the rule is not met, or already credited: no points
        pass


# --- invitations ----------------------------------------------------------------------------


class RateLimited(PatronError):
    status = 429
    code = "rate_limited"


_invite_limiters: weakref.WeakKeyDictionary[Any, MovingWindowRateLimiter] = (
    weakref.WeakKeyDictionary()
)


def _invite_limiter(session: Session) -> MovingWindowRateLimiter:
    """One count per database in this process (the API and the admin share it), kept where
    PATRON_RATE_LIMIT_STORAGE says: redis://… shares it with every worker."""
    bind: Engine | Connection = session.get_bind()
    engine = bind.engine if isinstance(bind, Connection) else bind
    limiter = _invite_limiters.get(engine)
    if limiter is None:
        limiter = _invite_limiters.setdefault(
            engine, MovingWindowRateLimiter(storage_from_string(get_settings().rate_limit_storage))
        )
    return limiter


def portal_url(program_code: str) -> str:
    """The program's member page on the installation's public address."""
    return f"{get_settings().public_url.rstrip('/')}/m/{program_code}/"


@dataclass(frozen=True)
class Invitation:
    member_id: int
    channel: str  # email | sms
    message: service.CodeMessage


def invite(
    session: Session, program: Program, member_id: int, *, url: str, actor: Actor, now: datetime
) -> Invitation:
    """The invitation to send to a member of `program`: by e-mail if she has one, else SMS, in
    her language. At most one per member an hour (RateLimited); audited as member.invited."""
    member = session.get(Member, member_id)
    in_program = member is not None and session.scalar(
        select(Account.id).where(Account.program_id == program.id, Account.member_id == member_id)
    )
    if member is None or not in_program:
        raise NotFound(f"member {member_id} is not in program {program.code}")
    members.ensure_active(member)
    if member.email:
        channel, to = "email", member.email
    elif member.phone:
        channel, to = "sms", member.phone
    else:
        raise Conflict(f"member {member_id} has no e-mail or phone", code="no_contact")
    if not _invite_limiter(session).hit(INVITES_PER_MEMBER, "invite", str(member_id)):
        raise RateLimited(f"member {member_id} was already invited in the last hour")
    lang = i18n.language(member.language)
    values = {"program": program.name, "name": member.name, "url": url}
    message = service.CodeMessage(
        channel=channel,
        to=to,
        subject=i18n.translate("invite.subject", lang, **values),
        body=i18n.translate("invite.body", lang, **values),
    )
    audit.record(
        session, actor=actor, action="member.invited", subject_type="member",
        subject_id=member_id, program_id=program.id, at=now,
        after={"channel": channel, "url": url},
    )  # fmt: skip
    return Invitation(member_id=member_id, channel=channel, message=message)
