"""Webhook endpoints in the admin UI: the list, a new endpoint (its secret shown once), the
detail page with the edit form, activate/deactivate, secret rotation, the test send and the
delivery log with replay.

Permissions: webhooks.view to see (owners and marketers), webhooks.manage to change (owners:
the pages hand out signing secrets), and deliveries.replay (with webhooks.view) to send a failed
delivery again. Every change goes through patron.webhooks.service (the test send through
patron.delivery.ping) with the signed-in user as the actor, so the audit log names them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron import clock
from patron.admin import forms, i18n, program_context
from patron.admin.deps import PermissionDenied, Staff, form_data, get_db, require
from patron.admin.templating import path_for, render
from patron.delivery.ping import send_test
from patron.errors import PatronError
from patron.events import service as events
from patron.events.kinds import EVENT_TYPES, public_id
from patron.events.models import Delivery, DeliveryAttempt
from patron.programs import service as programs
from patron.programs.models import Program
from patron.programs.schemas import CODE_PATTERN
from patron.webhooks import service, signing
from patron.webhooks.models import WebhookEndpoint

router = APIRouter()
ProgramCode = Path(pattern=CODE_PATTERN)
WebhookId = Path(ge=1, le=2**53)
DeliveryId = Path(ge=1, le=2**53)

FIELDS = ("url", "description", "event_types")
NOTICES = frozenset({"saved", "unchanged", "activated", "deactivated", "replayed"})
KEEP_HOURS = (24, 72, 168, 0)
LOG_PAGE = 20
# Error codes and the message that says, in the user's language, what to fix.
CODE_MESSAGES = {
    "invalid_url": ("url", "webhooks.error.invalid_url"),
    "unknown_event_type": ("event_types", "webhooks.error.event_types"),
    "event_types_required": ("event_types", "webhooks.error.event_types"),
    "invalid_description": ("description", "webhooks.error.description"),
}


@dataclass(frozen=True)
class ProgramChoice:
    code: str
    name: str


@dataclass(frozen=True)
class EndpointRow:
    id: int
    url: str
    description: str
    event_types: list[str]
    active: bool
    secret_hint: str
    previous_secret_until: datetime | None
    last_status: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class AttemptRow:
    at: datetime
    ok: bool
    status_code: int | None
    duration_ms: int
    error: str | None
    response: str | None


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    event_id: str | None
    event_kind: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    tries: list[AttemptRow]

    @property
    def last_duration_ms(self) -> int | None:
        return self.tries[-1].duration_ms if self.tries else None

    @property
    def replayable(self) -> bool:
        return self.status in service.REPLAYABLE


def _row(endpoint: WebhookEndpoint, last_status: str | None = None) -> EndpointRow:
    until = endpoint.previous_secret_until
    return EndpointRow(
        id=endpoint.id,
        url=endpoint.url,
        description=endpoint.description,
        event_types=list(endpoint.event_types),
        active=endpoint.active,
        secret_hint=signing.secret_hint(endpoint.secret),
        previous_secret_until=until if endpoint.previous_secret else None,
        last_status=last_status,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )


def _attempt(a: DeliveryAttempt) -> AttemptRow:
    return AttemptRow(a.at, a.ok, a.status_code, a.duration_ms, a.error, a.response)


def _delivery(d: Delivery, tries: list[DeliveryAttempt]) -> DeliveryRow:
    return DeliveryRow(
        id=d.id,
        event_id=public_id(d.event_id) if d.event_id is not None else None,
        event_kind=d.event_kind,
        status=d.status,
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        created_at=d.created_at,
        delivered_at=d.delivered_at,
        tries=[_attempt(a) for a in tries],
    )


def _choices(session: Session) -> list[ProgramChoice]:
    return [
        ProgramChoice(p.code, p.name)
        for p in program_context.visible(programs.list_programs(session))
    ]


def _pick(session: Session, code: str | None) -> Program | None:
    if code:
        return program_context.visible_program(session, code)
    found = program_context.visible(programs.list_programs(session))
    return found[0] if found else None


def _event_options(lang: str) -> list[tuple[str, str]]:
    """(event type, what it means) for the checkboxes; the descriptions are the catalogue's own
    English lines, translated here."""
    return [(kind, i18n.translate(f"webhooks.event.{kind}", lang)) for kind in EVENT_TYPES]


def posted_values(form: dict[str, str]) -> dict[str, Any]:
    chosen = [kind for kind in EVENT_TYPES if form.get(f"event_{kind}") == "1"]
    if form.get("event_all") == "1":
        chosen = [service.ALL_EVENTS]
    return {
        "url": form.get("url", "").strip(),
        "description": form.get("description", "").strip(),
        "event_types": chosen,
    }


def _form_errors(values: dict[str, Any], lang: str) -> forms.Errors:
    errors = forms.required(values, ("url",), lang)
    if not values["event_types"]:
        errors["event_types"] = i18n.translate("webhooks.error.event_types", lang)
    return errors


def _service_errors(exc: PatronError, lang: str) -> forms.Errors:
    found = CODE_MESSAGES.get(exc.code)
    if found is None:
        return forms.from_error(exc, lang, FIELDS)
    field, key = found
    message = i18n.translate(key, lang)
    if exc.code == "invalid_url":
        # Say which rule the URL broke ("… is not a public address"); the detail is English.
        message = f"{message} ({exc.detail.removeprefix('url: ')})"
    return {field: message}


def _detail_url(request: Request, code: str, webhook_id: int, **query: Any) -> str:
    return path_for(request, "webhook_detail", query, code=code, webhook_id=webhook_id)


# --- the list ---------------------------------------------------------------------------------


@router.get("/webhooks", name="webhooks_list")
def webhooks_list(
    request: Request,
    program: str | None = Query(None, max_length=40, pattern=CODE_PATTERN),
    staff: Staff = Depends(require("webhooks.view")),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        chosen = _pick(session, program)
        if chosen is None:
            return render(request, "webhooks/list.html", section="webhooks", program=None)
        rows = service.list_endpoints(session, chosen)
        last = service.last_statuses(session, [e.id for e in rows])
        return render(
            request,
            "webhooks/list.html",
            tz=ZoneInfo(chosen.timezone),
            section="webhooks",
            program=chosen,
            choices=_choices(session),
            endpoints=[_row(e, last.get(e.id)) for e in rows],
        )


# --- a new endpoint ---------------------------------------------------------------------------


def _new_page(
    request: Request,
    staff: Staff,
    code: str,
    *,
    values: dict[str, Any] | None = None,
    errors: forms.Errors | None = None,
    status: int = 200,
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        program = programs.get_program(session, code)
        return render(
            request,
            "webhooks/new.html",
            status=status,
            section="webhooks",
            program=program,
            v=values or {"url": "", "description": "", "event_types": []},
            errors=errors or {},
            events=_event_options(staff.language),
        )


@router.get("/webhooks/{code}/new", name="webhook_new")
def webhook_new(
    request: Request, code: str = ProgramCode, staff: Staff = Depends(require("webhooks.manage"))
) -> Response:
    return _new_page(request, staff, code)


@router.post("/webhooks/{code}/new", name="webhook_create")
def webhook_create(
    request: Request,
    code: str = ProgramCode,
    staff: Staff = Depends(require("webhooks.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    lang = staff.language
    values = posted_values(form)
    errors = _form_errors(values, lang)
    if errors:
        return _new_page(request, staff, code, values=values, errors=errors, status=422)
    try:
        with get_db(request).unit_of_work() as session:
            program = programs.get_program(session, code)
            endpoint, secret = service.create_endpoint(
                session,
                program,
                values["url"],
                values["description"],
                values["event_types"],
                actor=staff.actor,
                now=clock.now(),
            )
            row = _row(endpoint)
            tz = ZoneInfo(program.timezone)
    except PatronError as exc:
        if exc.status == 404:
            raise
        errors = _service_errors(exc, lang)
        return _new_page(request, staff, code, values=values, errors=errors, status=422)
    return render(
        request,
        "webhooks/secret.html",
        tz=tz,
        section="webhooks",
        program_code=code,
        endpoint=row,
        secret=secret,
        created=True,
    )


# --- the detail page --------------------------------------------------------------------------


def _detail_page(
    request: Request,
    staff: Staff,
    code: str,
    webhook_id: int,
    *,
    values: dict[str, Any] | None = None,
    errors: forms.Errors | None = None,
    status: int = 200,
    cursor: str | None = None,
    tested: int | None = None,
) -> Response:
    done = request.query_params.get("done")
    with get_db(request).unit_of_work(readonly=True) as session:
        program = programs.get_program(session, code)
        endpoint = service.get_endpoint(session, program, webhook_id)
        last = service.last_statuses(session, [endpoint.id]).get(endpoint.id)
        try:
            logged, tries, next_cursor = service.deliveries(
                session, program, endpoint, cursor=cursor, limit=LOG_PAGE
            )
        except PatronError:  # a cursor edited by hand: show the first page
            logged, tries, next_cursor = service.deliveries(
                session, program, endpoint, limit=LOG_PAGE
            )
            cursor = None
        test_result = None
        if tested is not None:
            found = session.scalars(
                select(Delivery).where(
                    Delivery.id == tested,
                    Delivery.endpoint_id == endpoint.id,
                    Delivery.event_kind == service.TEST_EVENT,
                )
            ).one_or_none()
            if found is not None:
                test_result = _delivery(found, events.attempts_of(session, [found.id])[found.id])
        row = _row(endpoint, last)
        v = values or {
            "url": row.url,
            "description": row.description,
            "event_types": row.event_types,
        }
        return render(
            request,
            "webhooks/detail.html",
            status=status,
            tz=ZoneInfo(program.timezone),
            section="webhooks",
            program=program,
            endpoint=row,
            v=v,
            errors=errors or {},
            events=_event_options(staff.language),
            deliveries=[_delivery(d, tries[d.id]) for d in logged],
            cursor=cursor,
            next_cursor=next_cursor,
            test_result=test_result,
            done=done if done in NOTICES else None,
            can_manage=staff.can("webhooks.manage"),
            can_replay=staff.can("deliveries.replay"),
        )


@router.get("/webhooks/{code}/{webhook_id}", name="webhook_detail")
def webhook_detail(
    request: Request,
    code: str = ProgramCode,
    webhook_id: int = WebhookId,
    cursor: str | None = Query(None, max_length=200),
    tested: int | None = Query(None, ge=1, le=2**53),
    staff: Staff = Depends(require("webhooks.view")),
) -> Response:
    return _detail_page(request, staff, code, webhook_id, cursor=cursor, tested=tested)


@router.post("/webhooks/{code}/{webhook_id}", name="webhook_save")
def webhook_save(
    request: Request,
    code: str = ProgramCode,
    webhook_id: int = WebhookId,
    staff: Staff = Depends(require("webhooks.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    lang = staff.language
    values = posted_values(form)
    errors = _form_errors(values, lang)
    if errors:
        return _detail_page(
            request, staff, code, webhook_id, values=values, errors=errors, status=422
        )
    try:
        with get_db(request).unit_of_work() as session:
            program = programs.get_program(session, code)
            endpoint = service.get_endpoint(session, program, webhook_id, for_update=True)
            before = endpoint.updated_at
            service.update_endpoint(
                session,
                endpoint,
                actor=staff.actor,
                now=clock.now(),
                url=values["url"],
                description=values["description"],
                event_types=values["event_types"],
            )
            changed = endpoint.updated_at != before
    except PatronError as exc:
        if exc.status == 404:
            raise
        errors = _service_errors(exc, lang)
        return _detail_page(
            request, staff, code, webhook_id, values=values, errors=errors, status=422
        )
    done = "saved" if changed else "unchanged"
    return RedirectResponse(_detail_url(request, code, webhook_id, done=done), status_code=303)


@router.post("/webhooks/{code}/{webhook_id}/active", name="webhook_active")
def webhook_active(
    request: Request,
    code: str = ProgramCode,
    webhook_id: int = WebhookId,
    staff: Staff = Depends(require("webhooks.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    active = form.get("active") == "1"
    with get_db(request).unit_of_work() as session:
        program = programs.get_program(session, code)
        endpoint = service.get_endpoint(session, program, webhook_id, for_update=True)
        service.update_endpoint(
            session, endpoint, actor=staff.actor, now=clock.now(), active=active
        )
    done = "activated" if active else "deactivated"
    return RedirectResponse(_detail_url(request, code, webhook_id, done=done), status_code=303)


# --- the secret -------------------------------------------------------------------------------


@router.get("/webhooks/{code}/{webhook_id}/rotate", name="webhook_rotate_confirm")
def webhook_rotate_confirm(
    request: Request,
    code: str = ProgramCode,
    webhook_id: int = WebhookId,
    staff: Staff = Depends(require("webhooks.manage")),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        program = programs.get_program(session, code)
        endpoint = service.get_endpoint(session, program, webhook_id)
        return render(
            request,
            "webhooks/rotate.html",
            tz=ZoneInfo(program.timezone),
            section="webhooks",
            program=program,
            endpoint=_row(endpoint),
            keep_hours=KEEP_HOURS,
        )


@router.post("/webhooks/{code}/{webhook_id}/rotate", name="webhook_rotate")
def webhook_rotate(
    request: Request,
    code: str = ProgramCode,
    webhook_id: int = WebhookId,
    staff: Staff = Depends(require("webhooks.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    hours = forms.optional_int(form.get("keep_previous_hours"), low=0, high=168)
    with get_db(request).unit_of_work() as session:
        program = programs.get_program(session, code)
        endpoint = service.get_endpoint(session, program, webhook_id, for_update=True)
        secret = service.rotate_secret(
            session,
            endpoint,
            keep_previous_hours=24 if hours is None else hours,
            actor=staff.actor,
            now=clock.now(),
        )
        row = _row(endpoint)
        tz = ZoneInfo(program.timezone)
    return render(
        request,
        "webhooks/secret.html",
        tz=tz,
        section="webhooks",
        program_code=code,
        endpoint=row,
        secret=secret,
        created=False,
    )


# --- the test send and replay -----------------------------------------------------------------


@router.post("/webhooks/{code}/{webhook_id}/test", name="webhook_test")
def webhook_test(
    request: Request,
    code: str = ProgramCode,
    webhook_id: int = WebhookId,
    staff: Staff = Depends(require("webhooks.manage")),
) -> Response:
    sent = send_test(get_db(request), code, webhook_id, actor=staff.actor, now=clock.now())
    target = _detail_url(request, code, webhook_id, tested=sent.delivery_id)
    return RedirectResponse(target + "#test-result", status_code=303)


@router.post("/webhooks/{code}/{webhook_id}/deliveries/{delivery_id}/replay", name="webhook_replay")
def webhook_replay(
    request: Request,
    code: str = ProgramCode,
    webhook_id: int = WebhookId,
    delivery_id: int = DeliveryId,
    staff: Staff = Depends(require("deliveries.replay")),
) -> Response:
    if not staff.can("webhooks.view"):
        raise PermissionDenied("webhooks.view")
    with get_db(request).unit_of_work() as session:
        program = programs.get_program(session, code)
        endpoint = service.get_endpoint(session, program, webhook_id)
        # Only this endpoint's deliveries, whatever id the form names.
        owned = session.scalar(
            select(Delivery.id).where(
                Delivery.id == delivery_id, Delivery.endpoint_id == endpoint.id
            )
        )
        if owned is None:
            raise service.DeliveryNotFound(f"no delivery {delivery_id} for this endpoint")
        service.replay_delivery(session, delivery_id, actor=staff.actor, now=clock.now())
    return RedirectResponse(
        _detail_url(request, code, webhook_id, done="replayed") + "#log", status_code=303
    )
