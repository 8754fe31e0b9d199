"""Merges and transfers in the admin UI: the "moves" card of a member (merge this member into
another, with a reason; give points to another member; the transfers and merges on record)
and a program's transfer settings.

Every action calls the service the API calls (patron.moves.merge, .transfer) with the
signed-in user as the actor. A refused form comes back with its status and the message above
it; success redirects (303) back with a notice.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from patron import clock
from patron.admin import forms, member_card, program_context
from patron.admin.deps import Staff, form_data, get_db, require
from patron.admin.templating import path_for, render
from patron.errors import NotFound, PatronError
from patron.members import service as members
from patron.members.models import Member
from patron.moves import merge as merges
from patron.moves import transfer as transfers
from patron.programs.service import get_program

router = APIRouter()
MemberId = Path(ge=1, le=2**53)
NOTICES = frozenset({"merged", "transferred", "settings"})
REFUSALS = {
    "same_member": "moves.refused.same_member",
    "already_merged": "moves.refused.already_merged",
    "reason_required": "moves.refused.reason",
    "transfers_disabled": "moves.refused.disabled",
    "insufficient_points": "moves.refused.insufficient",
    "over_transfer_limit": "moves.refused.over_transfer",
    "over_daily_limit": "moves.refused.over_daily",
    "invalid_points": "moves.refused.points",
}


def _int(value: str | None, field: str) -> int:
    try:
        number = int((value or "").strip())
    except ValueError:
        raise PatronError(
            f"{field} must be a whole number", code="invalid_points", status=422
        ) from None
    if not 0 < number <= 2**53:
        raise PatronError(f"{field} must be positive", code="invalid_points", status=422)
    return number


def _card(
    request: Request,
    staff: Staff,
    member_id: int,
    *,
    program: str | None,
    errors: dict[str, dict[str, str]] | None = None,
    status: int = 200,
) -> Response:
    fragment = request.headers.get("HX-Request") == "true" or request.query_params.get("fragment")
    with get_db(request).unit_of_work(readonly=True) as session:
        member = members.get_member(session, member_id)
        where = member_card.program_of(session, staff, member_id, program)
        conf = transfers.settings(session, where)
        done = request.query_params.get("done")
        return render(
            request,
            "members/_moves.html" if fragment else "members/merge.html",
            status=status,
            section="members",
            member=member,
            program_code=where.code,
            transfers_on=bool(conf.enabled),
            limits=transfers.settings_out(conf),
            transfers=transfers.transfers_of(session, where, member_id),
            merged=merges.merges_into(session, member_id),
            errors=errors or {},
            done=done if done in NOTICES else None,
            # One key per form shown: a double submit is answered once.
            form_key=f"admin-{uuid.uuid4()}",
        )


def _refused(
    request: Request,
    staff: Staff,
    member_id: int,
    program: str | None,
    form: str,
    exc: PatronError,
) -> Response:
    if exc.status == 404 and exc.code == "member_not_found" and form != "merge":
        raise exc
    errors = {form: {forms.FORM: member_card.refusal(exc, staff.language, REFUSALS)}}
    return _card(request, staff, member_id, program=program, errors=errors, status=exc.status)


@router.get("/members/{member_id}/moves", name="member_moves")
def member_moves(
    request: Request,
    member_id: int = MemberId,
    program: str | None = Query(None, max_length=40),
    staff: Staff = Depends(require("members.view")),
) -> Response:
    """Merge and transfer forms of one member, with her transfers and merges (a page, or the
    fragment the member page loads)."""
    return _card(request, staff, member_id, program=program)


@router.post("/members/{member_id}/merge", name="member_merge")
def member_merge(
    request: Request,
    member_id: int = MemberId,
    staff: Staff = Depends(require("members.edit")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    """Merge this member (a duplicate) into the member named in the form, with a reason."""
    program = form.get("program") or None
    try:
        into = _int(form.get("into"), "member")
        with get_db(request).unit_of_work() as session:
            member_card.program_of(session, staff, member_id, program)
            survivor = session.get(Member, into)
            if survivor is None or not any(
                staff.reaches(c) for c in member_card.program_codes(session, into)
            ):
                raise NotFound(f"no member with id {into}", code="member_not_found")
            merges.merge(
                session,
                member_id,
                into,
                reason=form.get("reason", ""),
                actor=staff.actor,
                now=clock.now(),
            )
    except PatronError as exc:
        return _refused(request, staff, member_id, program, "merge", exc)
    return RedirectResponse(
        path_for(request, "member_moves", {"program": program, "done": "merged"}, member_id=into)
        + "#moves",
        status_code=303,
    )


@router.post("/members/{member_id}/transfers", name="member_transfer")
def member_transfer(
    request: Request,
    member_id: int = MemberId,
    staff: Staff = Depends(require("points.adjust")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    """Give points of this member to another one (support, on the member's request)."""
    program = form.get("program") or None
    try:
        to = _int(form.get("to"), "member")
        points = _int(form.get("points"), "points")
        with get_db(request).unit_of_work() as session:
            where = member_card.program_of(session, staff, member_id, program)
            transfers.transfer(
                session,
                where,
                member_id,
                receiver_id=to,
                points=points,
                key=form.get("key") or f"admin-{uuid.uuid4()}",
                note=form.get("note") or None,
                actor=staff.actor,
                now=clock.now(),
            )
    except PatronError as exc:
        return _refused(request, staff, member_id, program, "transfer", exc)
    return member_card.back(request, "member_moves", member_id, program, "transferred")


@router.get("/program/transfers", name="program_transfers")
def program_transfers(
    request: Request,
    program: str | None = Query(None, max_length=40),
    staff: Staff = Depends(require("program.view")),
) -> Response:
    """A program's transfer settings: whether members may give points, and the limits; the
    user's first program when none is named."""
    return _settings(request, staff, program)


def _settings(
    request: Request,
    staff: Staff,
    program: str | None,
    *,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    if program and not staff.reaches(program):
        raise NotFound(f"no program {program}", code="program_not_found")
    with get_db(request).unit_of_work(readonly=True) as session:
        where, _choices = program_context.pick_program(session, program)
        if where is None:
            return render(request, "program/empty.html", section="program")
        return render(
            request,
            "members/merge_settings.html",
            status=status,
            section="program",
            program_code=where.code,
            limits=transfers.settings_out(transfers.settings(session, where)),
            errors=errors or {},
            done=request.query_params.get("done") == "settings",
        )


@router.post("/program/transfers", name="program_transfers_save")
def program_transfers_save(
    request: Request,
    staff: Staff = Depends(require("program.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    program = form.get("program", "")
    try:
        limits = {}
        for name in ("max_per_transfer", "max_per_day"):
            raw = (form.get(name) or "").strip()
            limits[name] = _int(raw, name) if raw else None
        if not staff.reaches(program):
            raise NotFound(f"no program {program}", code="program_not_found")
        with get_db(request).unit_of_work() as session:
            transfers.set_settings(
                session,
                get_program(session, program),
                enabled=form.get("enabled") == "1",
                actor=staff.actor,
                now=clock.now(),
                **limits,
            )
    except PatronError as exc:
        if exc.status == 404:
            raise
        return _settings(
            request,
            staff,
            program,
            errors={forms.FORM: member_card.refusal(exc, staff.language, REFUSALS)},
            status=exc.status,
        )
    return RedirectResponse(
        path_for(request, "program_transfers", {"program": program, "done": "settings"}),
        status_code=303,
    )
