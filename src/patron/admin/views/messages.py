"""Messages: which events send a message and how (the program's notification settings), and
the template editor with a live preview for a real member.

- /messages                      every event kind: on/off, purpose, channel order, links to its
                                 templates; and the etiquette and schedule settings. One form,
                                 saved by notify.settings.save (messages.manage).
- /messages/templates/{kind}/{channel}/{language}
                                 the editor: subject and body, the variables, a preview (htmx
                                 fragment, or the whole page without JavaScript), Save (checked
                                 by templates.put_template: a broken template is never saved)
                                 and Reset to the default.

Pages take ?program= like the other sections; the forms post to routes with the program's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron import clock
from patron.admin import forms, i18n, program_context, setup_service
from patron.admin.deps import Staff, form_data, get_db, require
from patron.admin.service import actor_labels
from patron.admin.templating import path_for, render
from patron.errors import NotFound, PatronError
from patron.events.kinds import EVENT_TYPES
from patron.members import service as members
from patron.members.models import Card, Member
from patron.members.schemas import MemberRef
from patron.notify import formatting, templates
from patron.notify import settings as notify_settings
from patron.notify.settings import NotifySettings
from patron.notify.templates import PreviewOut, TemplateInvalid
from patron.programs import service as programs
from patron.programs.models import Program
from patron.programs.schemas import CODE_PATTERN

router = APIRouter()
ProgramCode = Path(pattern=CODE_PATTERN)
Kind = Path(max_length=60)
Channel = Path(max_length=10)
Language = Path(max_length=10)

PURPOSES = ("transactional", "marketing")
# The channel order as one choice: the message goes to the first the member can get.
CHANNEL_ORDERS = ("email,sms", "sms,email", "email", "sms")
NUMBER_FIELDS = ("expiring_days_before", "frequency_cap_per_day", "jobs_hour", "statement_day")
TIME_FIELDS = ("quiet_hours_start", "quiet_hours_end")
SETTINGS_NOTICES = frozenset({"saved"})
TEMPLATE_NOTICES = frozenset({"saved", "reset", "unchanged"})


def event_field(kind: str, part: str) -> str:
    return f"{kind}:{part}"


@dataclass(frozen=True)
class Prog:
    code: str
    name: str
    currency: str
    timezone: str


def _pick(session: Session, code: str | None) -> tuple[Program | None, list[tuple[str, str]]]:
    """The program asked for (404 if unknown), else the first; and every (code, name)."""
    listed = program_context.visible(programs.list_programs(session))
    choices = [(p.code, p.name) for p in listed]
    if code:
        return program_context.visible_program(session, code), choices
    return (listed[0] if listed else None), choices


def _prog(program: Program) -> Prog:
    return Prog(program.code, program.name, program.currency, program.timezone)


# --- the settings form ------------------------------------------------------------------------


def settings_values(current: NotifySettings) -> dict[str, Any]:
    """The settings as the form's flat fields."""
    values: dict[str, Any] = {}
    for kind in EVENT_TYPES:
        setting = current.event(kind)
        values[event_field(kind, "enabled")] = setting.enabled
        values[event_field(kind, "purpose")] = setting.purpose
        values[event_field(kind, "channels")] = ",".join(setting.channels)
    values["expiring_days_before"] = str(current.expiring_days_before)
    values["quiet_hours_start"] = current.quiet_hours_start.strftime("%H:%M")
    values["quiet_hours_end"] = current.quiet_hours_end.strftime("%H:%M")
    values["frequency_cap_per_day"] = str(current.frequency_cap_per_day)
    values["jobs_hour"] = str(current.jobs_hour)
    values["statement_day"] = str(current.statement_day)
    return values


def posted_settings(form: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for kind in EVENT_TYPES:
        values[event_field(kind, "enabled")] = form.get(event_field(kind, "enabled")) == "1"
        values[event_field(kind, "purpose")] = form.get(event_field(kind, "purpose"), "").strip()
        values[event_field(kind, "channels")] = form.get(event_field(kind, "channels"), "").strip()
    for name in (*NUMBER_FIELDS, *TIME_FIELDS):
        values[name] = form.get(name, "").strip()
    return values


def _field_message(field: str, lang: str) -> str:
    if field in NUMBER_FIELDS or field in TIME_FIELDS:
        key = "messages.error.quiet_hours" if field in TIME_FIELDS else f"messages.error.{field}"
        return i18n.translate(key, lang)
    return i18n.translate("form.error.choice", lang)


def parse_settings(values: dict[str, Any], lang: str) -> tuple[NotifySettings | None, forms.Errors]:
    """The flat form -> NotifySettings, or {field: message} for every problem at once."""
    errors = forms.required(values, (*NUMBER_FIELDS, *TIME_FIELDS), lang)
    events: dict[str, Any] = {}
    for kind in EVENT_TYPES:
        order = values[event_field(kind, "channels")]
        if order not in CHANNEL_ORDERS:
            errors[event_field(kind, "channels")] = _field_message("channels", lang)
        events[kind] = {
            "enabled": values[event_field(kind, "enabled")],
            "purpose": values[event_field(kind, "purpose")],
            "channels": order.split(",") if order in CHANNEL_ORDERS else ["email"],
        }
    doc: dict[str, Any] = {"events": events}
    for name in (*NUMBER_FIELDS, *TIME_FIELDS):
        if name not in errors:
            doc[name] = values[name]
    try:
        parsed = NotifySettings.model_validate(doc)
    except ValidationError as exc:
        for err in exc.errors():
            loc = [str(part) for part in err.get("loc") or ()]
            if loc[:1] == ["events"] and len(loc) >= 3:
                field = event_field(loc[1], loc[2])
            elif loc and loc[0] in (*NUMBER_FIELDS, *TIME_FIELDS):
                field = loc[0]
            else:  # the whole-minutes check of the quiet hours has no field of its own
                field = "quiet_hours_start"
            errors.setdefault(field, _field_message(loc[-1] if loc else field, lang))
        return None, errors
    if errors:
        return None, errors
    return parsed, {}


def _home_page(
    request: Request,
    staff: Staff,
    code: str | None,
    *,
    values: dict[str, Any] | None = None,
    errors: forms.Errors | None = None,
    status: int = 200,
) -> Response:
    done = request.query_params.get("done")
    with get_db(request).unit_of_work(readonly=True) as session:
        program, choices = _pick(session, code)
        if program is None:
            return render(request, "messages/none.html", section="messages")
        current = notify_settings.load(session, program.id)
        custom: dict[tuple[str, str], int] = {}
        for t in templates.list_templates(session, program):
            if t.custom:
                custom[(t.kind, t.channel)] = custom.get((t.kind, t.channel), 0) + 1
        changes = setup_service.recent_changes(
            session, subject_type="program", subject_id=program.id, action="notifications.", limit=5
        )
        return render(
            request,
            "messages/home.html",
            status=status,
            section="messages",
            tz=formatting.zone(program.timezone),
            prog=_prog(program),
            programs=choices,
            kinds=list(EVENT_TYPES),
            channels=templates.CHANNELS,
            purposes=PURPOSES,
            channel_orders=CHANNEL_ORDERS,
            v=values or settings_values(current),
            errors=errors or {},
            custom=custom,
            field=event_field,
            editor_language=i18n.language(staff.language),
            changes=changes,
            labels=actor_labels(session, [c.actor for c in changes]),
            done=done if done in SETTINGS_NOTICES else None,
        )


@router.get("/messages", name="messages_home")
def messages_home(
    request: Request,
    program: str | None = Query(None, max_length=40, pattern=CODE_PATTERN),
    staff: Staff = Depends(require("messages.view")),
) -> Response:
    return _home_page(request, staff, program)


@router.post("/messages/{code}/settings", name="messages_settings_save")
def messages_settings_save(
    request: Request,
    code: str = ProgramCode,
    staff: Staff = Depends(require("messages.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    values = posted_settings(form)
    parsed, errors = parse_settings(values, staff.language)
    if parsed is None:
        return _home_page(request, staff, code, values=values, errors=errors, status=422)
    with get_db(request).unit_of_work() as session:
        program = programs.get_program(session, code)
        notify_settings.save(session, program, parsed, actor=staff.actor, now=clock.now())
    return RedirectResponse(
        path_for(request, "messages_home", {"program": code, "done": "saved"}) + "#settings",
        status_code=303,
    )


# --- the template editor ----------------------------------------------------------------------


def problem_message(exc: TemplateInvalid, lang: str) -> str:
    """A template error in the user's language: where, and what to do about it."""
    key = f"messages.problem.{exc.problem}"
    if exc.problem == "too_long" and exc.name:
        key = f"{key}.{exc.name}"
    if not i18n.has_message(key):
        key = "messages.problem.error"
    text = i18n.translate(key, lang, name=exc.name or "", detail=exc.reason)
    if exc.line:
        return i18n.translate("messages.problem.at_line", lang, line=exc.line, message=text)
    return text


def _template_errors(exc: PatronError, lang: str) -> forms.Errors:
    if isinstance(exc, TemplateInvalid):
        return {exc.part: problem_message(exc, lang)}
    return forms.from_error(exc, lang, ("subject", "body"))


def find_member_id(session: Session, program: Program, text: str) -> int | None:
    """The member staff typed to preview for: a card number, a member number or a phone.
    None when nothing was typed; NotFound when it matches no member of the program."""
    text = text.strip()
    if not text:
        return None
    found: int | None = session.scalar(select(Card.member_id).where(Card.number == text))
    if found is None and text.isascii() and text.isdigit() and len(text) <= 15:
        found = int(text) if session.get(Member, int(text)) is not None else None
    if found is None and len(text) >= 3:
        try:
            found = members.find_member(session, MemberRef(phone=text), program=program).id
        except (PatronError, ValidationError):
            found = None
    if found is None:
        raise NotFound(f"no member {text!r}", code="member_not_found")
    return found


@dataclass
class EditorState:
    """What the editor shows besides the stored template: the typed text, errors, a preview."""

    subject: str | None
    body: str
    member: str = ""
    errors: forms.Errors | None = None
    preview: PreviewOut | None = None


def _preview(
    session: Session,
    program: Program,
    kind: str,
    channel: str,
    language: str,
    state: EditorState,
    lang: str,
) -> None:
    """Fill state.preview, or state.errors with why there is none."""
    try:
        member_id = find_member_id(session, program, state.member)
    except PatronError:
        state.errors = {"member": i18n.translate("messages.preview.no_member", lang)}
        return
    try:
        state.preview = templates.preview(
            session,
            program,
            kind,
            channel,
            language,
            state.subject,
            state.body,
            member_id,
            now=clock.now(),
        )
    except PatronError as exc:
        if exc.code == "member_not_found":
            state.errors = {"member": i18n.translate("messages.preview.no_member", lang)}
        else:
            state.errors = _template_errors(exc, lang)


def _editor_page(
    request: Request,
    staff: Staff,
    session: Session,
    program: Program,
    choices: list[tuple[str, str]],
    kind: str,
    channel: str,
    language: str,
    *,
    state: EditorState | None = None,
    status: int = 200,
) -> Response:
    current = templates.get_template(session, program, kind, channel, language)
    if state is None:
        state = EditorState(current.subject, current.body)
        _preview(session, program, kind, channel, language, state, staff.language)
    done = request.query_params.get("done")
    changes = setup_service.recent_changes(
        session,
        subject_type="message_template",
        subject_id=f"{program.code}/{kind}/{channel}/{language}",
        limit=5,
    )
    setting = notify_settings.load(session, program.id).event(kind)
    return render(
        request,
        "messages/editor.html",
        status=status,
        section="messages",
        tz=formatting.zone(program.timezone),
        prog=_prog(program),
        programs=choices,
        kind=kind,
        channel=channel,
        language=language,
        channels=templates.CHANNELS,
        languages_=templates.LANGUAGES,
        current=current,
        setting=setting,
        state=state,
        errors=state.errors or {},
        variables=[v for v in templates.variables() if not v.kinds or kind in v.kinds],
        sms_max=templates.SMS_MAX,
        changes=changes,
        labels=actor_labels(session, [c.actor for c in changes]),
        done=done if done in TEMPLATE_NOTICES else None,
    )


def _posted_template(form: dict[str, str], channel: str) -> EditorState:
    subject = form.get("subject") if channel == "email" else None
    return EditorState(
        subject=templates.normalise(subject),
        body=templates.normalise(form.get("body", "")) or "",
        member=form.get("member", "").strip()[:100],
    )


@router.get("/messages/templates/{kind}/{channel}/{language}", name="messages_template")
def messages_template(
    request: Request,
    kind: str = Kind,
    channel: str = Channel,
    language: str = Language,
    program: str | None = Query(None, max_length=40, pattern=CODE_PATTERN),
    staff: Staff = Depends(require("messages.view")),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        found, choices = _pick(session, program)
        if found is None:
            return render(request, "messages/none.html", section="messages")
        templates.check_key(kind, channel, language)
        return _editor_page(request, staff, session, found, choices, kind, channel, language)


@router.post(
    "/messages/{code}/templates/{kind}/{channel}/{language}/preview",
    name="messages_template_preview",
)
def messages_template_preview(
    request: Request,
    code: str = ProgramCode,
    kind: str = Kind,
    channel: str = Channel,
    language: str = Language,
    staff: Staff = Depends(require("messages.view")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    """The preview of the typed template: the fragment for htmx, the whole editor without."""
    state = _posted_template(form, channel)
    with get_db(request).unit_of_work(readonly=True) as session:
        program, choices = _pick(session, code)
        assert program is not None
        templates.check_key(kind, channel, language)
        if "body" not in form:
            # A viewer's form has its template fields disabled (not posted): the current one.
            current = templates.get_template(session, program, kind, channel, language)
            state.subject, state.body = current.subject, current.body
        _preview(session, program, kind, channel, language, state, staff.language)
        if request.headers.get("HX-Request"):
            # 200 even for a template error: htmx swaps only 2xx answers, and the fragment is
            # where the error is shown while typing.
            return render(
                request,
                "messages/_preview.html",
                tz=formatting.zone(program.timezone),
                state=state,
                errors=state.errors or {},
                channel=channel,
                sms_max=templates.SMS_MAX,
            )
        return _editor_page(
            request,
            staff,
            session,
            program,
            choices,
            kind,
            channel,
            language,
            state=state,
            status=422 if state.errors else 200,
        )


def _editor_path(request: Request, code: str, kind: str, channel: str, language: str, done: str):
    return path_for(
        request,
        "messages_template",
        {"program": code, "done": done},
        kind=kind,
        channel=channel,
        language=language,
    )


@router.post(
    "/messages/{code}/templates/{kind}/{channel}/{language}", name="messages_template_save"
)
def messages_template_save(
    request: Request,
    code: str = ProgramCode,
    kind: str = Kind,
    channel: str = Channel,
    language: str = Language,
    staff: Staff = Depends(require("messages.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    state = _posted_template(form, channel)
    try:
        with get_db(request).unit_of_work() as session:
            program = programs.get_program(session, code)
            before = templates.get_template(session, program, kind, channel, language)
            after = templates.put_template(
                session,
                program,
                kind,
                channel,
                language,
                state.subject,
                state.body,
                actor=staff.actor,
                now=clock.now(),
            )
            changed = (before.subject, before.body) != (after.subject, after.body)
    except PatronError as exc:
        if exc.status == 404:
            raise
        state.errors = _template_errors(exc, staff.language)
        with get_db(request).unit_of_work(readonly=True) as session:
            found, choices = _pick(session, code)
            assert found is not None
            return _editor_page(
                request,
                staff,
                session,
                found,
                choices,
                kind,
                channel,
                language,
                state=state,
                status=422,
            )
    done = "saved" if changed else "unchanged"
    return RedirectResponse(
        _editor_path(request, code, kind, channel, language, done), status_code=303
    )


@router.post(
    "/messages/{code}/templates/{kind}/{channel}/{language}/reset",
    name="messages_template_reset",
)
def messages_template_reset(
    request: Request,
    code: str = ProgramCode,
    kind: str = Kind,
    channel: str = Channel,
    language: str = Language,
    staff: Staff = Depends(require("messages.manage")),
) -> Response:
    with get_db(request).unit_of_work() as session:
        templates.reset_template(
            session,
            programs.get_program(session, code),
            kind,
            channel,
            language,
            actor=staff.actor,
            now=clock.now(),
        )
    return RedirectResponse(
        _editor_path(request, code, kind, channel, language, "reset"), status_code=303
    )
