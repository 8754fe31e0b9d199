"""The delivery log: every message and webhook call of a program, with its tries; replay a dead
letter, cancel a message that has not gone out. The same services as the API's."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from patron import clock
from patron.admin import context, forms, program_context
from patron.admin.deps import Staff, form_data, get_db, require
from patron.admin.templating import path_for, render
from patron.events import service
from patron.events.kinds import EVENT_TYPES
from patron.events.models import STATES, Delivery, DeliveryAttempt
from patron.programs.service import get_program

router = APIRouter()
DeliveryId = Path(ge=1, le=2**53)
CHANNELS = ("webhook", "email", "sms")


def _safe_next(request: Request, value: str | None, fallback: str) -> str:
    """Only a path inside the admin UI (no open redirect)."""
    root = request.scope.get("root_path", "")
    if value and value.startswith(root + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return fallback


@router.get("/deliveries", name="deliveries_list")
def deliveries_page(
    request: Request,
    program: str | None = Query(None, max_length=40),
    status: str = Query("", max_length=20),
    channel: str = Query("", max_length=10),
    kind: str = Query("", max_length=60),
    member: str = Query("", max_length=20),
    cursor: str | None = Query(None, max_length=40),
    staff: Staff = Depends(require("messages.view")),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        programs = program_context.visible(context.programs(session))
        prog = next((p for p in programs if p.code == program), programs[0] if programs else None)
        rows: list[Delivery] = []
        more: str | None = None
        log: dict[int, list[DeliveryAttempt]] = {}
        if prog is not None:
            rows, more = service.list_deliveries(
                session,
                prog,
                status=status if status in STATES else None,
                channel=channel if channel in CHANNELS else None,
                kind=kind if kind in EVENT_TYPES else None,
                member_id=forms.optional_int(member),
                cursor=cursor,
            )
            log = service.attempts_of(session, [r.id for r in rows])
        return render(
            request,
            "deliveries/list.html",
            tz=context.default_timezone(session),
            section="messages",
            programs=programs,
            prog=prog,
            rows=rows,
            log=log,
            more=more,
            flt={"status": status, "channel": channel, "kind": kind, "member": member},
            states=STATES,
            channels=CHANNELS,
            kinds=list(EVENT_TYPES),
        )


def _act(request: Request, staff: Staff, delivery_id: int, form: dict[str, str], what: str):
    code = form.get("program", "")
    with get_db(request).unit_of_work() as session:
        prog = get_program(session, code)
        action = service.replay if what == "replay" else service.cancel
        action(session, prog, delivery_id, actor=staff.actor, now=clock.now())
    fallback = path_for(request, "deliveries_list", {"program": code})
    target, _, fragment = _safe_next(request, form.get("next"), fallback).partition("#")
    sep = "&" if "?" in target else "?"
    done = "replayed" if what == "replay" else "cancelled"
    anchor = f"#{fragment}" if fragment else ""
    return RedirectResponse(f"{target}{sep}done={done}{anchor}", status_code=303)


@router.post("/deliveries/{delivery_id}/replay", name="delivery_replay")
def delivery_replay(
    request: Request,
    delivery_id: int = DeliveryId,
    staff: Staff = Depends(require("deliveries.replay")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    return _act(request, staff, delivery_id, form, "replay")


@router.post("/deliveries/{delivery_id}/cancel", name="delivery_cancel")
def delivery_cancel(
    request: Request,
    delivery_id: int = DeliveryId,
    staff: Staff = Depends(require("deliveries.replay")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    return _act(request, staff, delivery_id, form, "cancel")
