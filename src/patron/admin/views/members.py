"""Member 360°: find a member, see everything about them, and act with a reason.

Every action calls the same service as the API (members.service, ledger.purchases.adjust,
tiers.service.set_manual) with the signed-in user as the actor, so the audit log, the ledger
entry and the tier history all name the user. A refused form comes back with status 422 and the
message under the field; success redirects (303) back to the page with a notice.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from starlette.background import BackgroundTask

from patron import clock
from patron.admin import forms, i18n, member360, search
from patron.admin.deps import Staff, form_data, get_db, require
from patron.admin.templating import path_for, render
from patron.audit import service as audit
from patron.errors import Invalid, PatronError
from patron.ledger import views
from patron.members import service as members
from patron.members.models import Member
from patron.members.phone import national_format, normalise_phone
from patron.members.schemas import BlockRequest, MemberRef, MemberUpdate
from patron.portal import signup
from patron.portal.web import send_code
from patron.programs.service import get_program
from patron.sales import purchases
from patron.sales.schemas import AdjustRequest
from patron.tiers import service as tiers
from patron.tiers.schemas import ManualTierRequest

router = APIRouter()
MemberId = Path(ge=1, le=2**53)
ProgramCode = Query(None, max_length=40)


def date_query(alias: str) -> Any:
    # Text, not a date: a GET form sends an empty field as "", which is "no bound" here.
    return Query("", alias=alias, max_length=40)


PROFILE_FIELDS = ("name", "phone", "email", "birthday", "gender", "language", "marketing_consent")
GENDERS = ("", "female", "male", "other", "undisclosed")
MEMBER_LANGUAGES = ("ko", "zh", "en", "ja")
# The notices a redirect may ask for (?done=...): never free text from the address bar.
NOTICES = frozenset(
    {
        "profile",
        "adjusted",
        "tier",
        "blocked",
        "unblocked",
        "consent",
        "replayed",
        "cancelled",
        "invited",
    }
)
# Why an invitation was refused -> the message shown at the button.
INVITE_REFUSALS = {
    "rate_limited": "members.invite.error.rate_limited",
    "no_contact": "members.invite.error.no_contact",
    "member_blocked": "members.invite.error.blocked",
}


# --- search -----------------------------------------------------------------------------------


@router.get("/members", name="members_search")
def members_search(
    request: Request,
    q: str = Query("", max_length=200),
    staff: Staff = Depends(require("members.view")),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        region = members.default_region(session)
        hits = search.search(session, q, region=region, programs=staff.programs)
        exact = _exact_member(session, q, region, staff, hits) if q.strip() else None
    # A scanned card, a whole phone number or e-mail, "#id", or a search with one hit: go
    # straight to the member (a card's number may be the start of other cards' numbers).
    if exact is None and len(hits) == 1 and q.strip():
        exact = hits[0].id
    if exact is not None and not request.headers.get("HX-Request"):
        return RedirectResponse(
            path_for(request, "member_detail", member_id=exact), status_code=303
        )
    return render(request, "members/search.html", section="members", q=q, hits=hits)


_MEMBER_ID = re.compile(r"#\s*([0-9]{1,15})")


def _exact_member(
    session: Any, q: str, region: str, staff: Staff, hits: list[search.MemberHit]
) -> int | None:
    """The one member `q` names whole: "#id" (the id the results show), or a hit whose card,
    e-mail or phone is exactly `q` -- what a keyboard-wedge scanner or a typed number gives."""
    text = q.strip()
    by_id = _MEMBER_ID.fullmatch(text)
    if by_id:
        member_id = int(by_id.group(1))
        if member_id > 2**53 or session.get(Member, member_id) is None:
            return None
        if staff.programs is not None and not any(
            staff.reaches(p.code) for p in members.member_programs(session, member_id)
        ):
            return None
        return member_id
    upper, lower = text.upper(), text.lower()
    phone = national_format(_e164(text, region))
    exact = {
        h.id
        for h in hits
        if any(c.upper() == upper for c in h.cards)
        or (h.email or "").lower() == lower
        or (phone is not None and h.phone == phone)
    }
    return exact.pop() if len(exact) == 1 else None


def _e164(text: str, region: str) -> str | None:
    try:
        return normalise_phone(text, region)
    except Invalid:
        return None


@router.get("/members/results", name="members_results")
def members_results(
    request: Request,
    q: str = Query("", max_length=200),
    staff: Staff = Depends(require("members.view")),
) -> Response:
    """The result list alone, for search-as-you-type."""
    with get_db(request).unit_of_work(readonly=True) as session:
        hits = search.search(
            session, q, region=members.default_region(session), programs=staff.programs
        )
    return render(request, "members/_results.html", q=q, hits=hits)


# --- the 360° page ----------------------------------------------------------------------------


def _in_reach(session: Any, staff: Staff, member_id: int, program: str | None) -> str | None:
    """For a user limited to programs, the member's first program of theirs when none is asked
    (deps.require has already refused one outside them): never another program's figures."""
    if program or staff.programs is None:
        return program
    mine = [p.code for p in members.member_programs(session, member_id) if staff.reaches(p.code)]
    return mine[0] if mine else None


def _page(
    request: Request,
    staff: Staff,
    member_id: int,
    *,
    program: str | None,
    range_text: tuple[str, str] = ("", ""),
    cursor: str | None = None,
    errors: dict[str, forms.Errors] | None = None,
    values: dict[str, dict[str, Any]] | None = None,
    status: int = 200,
    template: str = "members/detail.html",
    history_limit: int = member360.HISTORY_PAGE,
) -> Response:
    errors = dict(errors or {})
    date_from, date_to, range_errors = _date_range(range_text, staff.language)
    if range_errors:
        errors["history"] = range_errors
        status = 422
    done = request.query_params.get("done")
    delta = request.query_params.get("delta", "")
    # Rendered inside the unit of work: its rollback at the end expires the ORM rows.
    with get_db(request).unit_of_work(readonly=True) as session:
        program = _in_reach(session, staff, member_id, program)
        try:
            data = member360.load(
                session,
                member_id,
                program_code=program,
                lang=staff.language,
                now=clock.now(),
                date_from=date_from,
                date_to=date_to,
                cursor=cursor,
                history_limit=history_limit,
            )
        except Invalid as exc:
            if exc.code not in ("invalid_range", "invalid_cursor"):
                raise
            # A range that ends before it starts: say so at the filter, show the whole history.
            errors["history"] = forms.from_error(exc, staff.language, ("from", "to"))
            status = 422
            data = member360.load(
                session, member_id, program_code=program, lang=staff.language, now=clock.now()
            )
        if staff.programs is not None:
            # A member shared with another program: that program's tab and changes stay hidden.
            shown = [p for p in data.programs if staff.reaches(p.code)]
            hidden = {p.id for p in data.programs} - {p.id for p in shown}
            changes = [c for c in data.changes if c.program_id not in hidden]
            data = replace(data, programs=shown, changes=changes)
        return render(
            request,
            template,
            status=status,
            tz=data.tz,
            section="members",
            m=data,
            errors=errors,
            values=values or {},
            done=done if done in NOTICES else None,
            notice_card=NOTICE_CARDS.get(done or ""),
            delta=int(delta) if re.fullmatch(r"-?[0-9]{1,15}", delta) else None,
            date_from=date_from,
            date_to=date_to,
            genders=GENDERS,
            member_languages=MEMBER_LANGUAGES,
        )


@router.get("/members/{member_id}", name="member_detail")
def member_detail(
    request: Request,
    member_id: int = MemberId,
    program: str | None = ProgramCode,
    date_from: str = date_query("from"),
    date_to: str = date_query("to"),
    cursor: str | None = Query(None, max_length=200),
    staff: Staff = Depends(require("members.view")),
) -> Response:
    return _page(
        request, staff, member_id, program=program, range_text=(date_from, date_to), cursor=cursor
    )


@router.get("/members/{member_id}/print", name="member_print")
def member_print(
    request: Request,
    member_id: int = MemberId,
    program: str | None = ProgramCode,
    date_from: str = date_query("from"),
    date_to: str = date_query("to"),
    staff: Staff = Depends(require("members.view")),
) -> Response:
    """The member on paper: profile, totals, tier and up to 500 entries of the chosen range."""
    return _page(
        request,
        staff,
        member_id,
        program=program,
        range_text=(date_from, date_to),
        template="members/print.html",
        history_limit=500,
    )


def _date_range(texts: tuple[str, str], lang: str) -> tuple[date | None, date | None, forms.Errors]:
    bounds: list[date | None] = []
    errors: forms.Errors = {}
    for field, text in zip(("from", "to"), texts, strict=True):
        try:
            bounds.append(forms.optional_date(text))
        except forms.BadDate:
            bounds.append(None)
            errors[field] = i18n.translate("form.error.date", lang)
    return bounds[0], bounds[1], errors


# The card each notice belongs in: the page comes back there (its #fragment), with the notice
# inside it, where the eye already is -- not at the top of a long page.
NOTICE_CARDS = {
    "profile": "profile",
    "adjusted": "adjust",
    "tier": "appeal",
    "blocked": "status",
    "unblocked": "status",
    "consent": "consent",
    "invited": "invite",
    "replayed": "messages",
    "cancelled": "messages",
}


def _back(request: Request, member_id: int, program: str | None, done: str, **extra: Any):
    query = {"program": program, "done": done, **extra}
    url = path_for(request, "member_detail", query, member_id=member_id)
    return RedirectResponse(f"{url}#{NOTICE_CARDS[done]}", status_code=303)


def _refused(
    request: Request,
    staff: Staff,
    member_id: int,
    program: str | None,
    form_name: str,
    errors: forms.Errors,
    values: dict[str, Any],
) -> Response:
    return _page(
        request,
        staff,
        member_id,
        program=program,
        errors={form_name: errors},
        values={form_name: values},
        status=422,
    )


def _blank_is_none(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


@router.post("/members/{member_id}/profile", name="member_profile")
def member_profile(
    request: Request,
    member_id: int = MemberId,
    staff: Staff = Depends(require("members.edit")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    program = _blank_is_none(form.get("program"))
    values: dict[str, Any] = {
        "name": form.get("name", "").strip(),
        "phone": _blank_is_none(form.get("phone")),
        "email": _blank_is_none(form.get("email")),
        "birthday": _blank_is_none(form.get("birthday")),
        "gender": _blank_is_none(form.get("gender")),
        "language": form.get("language") or "en",
        "marketing_consent": form.get("marketing_consent") == "1",
    }
    try:
        update = MemberUpdate.model_validate(values)
    except ValidationError as exc:
        errors = forms.from_validation(exc, staff.language, PROFILE_FIELDS)
        return _refused(request, staff, member_id, program, "profile", errors, values)
    try:
        with get_db(request).unit_of_work() as session:
            prog = get_program(session, program) if program else None
            members.update_member(
                session,
                members.get_member(session, member_id),
                update,
                program=prog,
                actor=staff.actor,
                now=clock.now(),
                source="admin",
            )
    except PatronError as exc:
        if exc.status == 404:
            raise
        errors = forms.from_error(exc, staff.language, PROFILE_FIELDS)
        return _refused(request, staff, member_id, program, "profile", errors, values)
    return _back(request, member_id, program, "profile")


@router.post("/members/{member_id}/adjust", name="member_adjust")
def member_adjust(
    request: Request,
    member_id: int = MemberId,
    staff: Staff = Depends(require("points.adjust")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    program = _blank_is_none(form.get("program"))
    points = form.get("points", "").strip()
    values: dict[str, Any] = {
        "points": points,
        "reason": form.get("reason", "").strip(),
        "qualifying": form.get("qualifying") == "1",
    }
    fields = ("points", "reason")
    errors = forms.required(values, fields, staff.language)
    whole = points[1:] if points[:1] in ("+", "-") else points
    if points and not (forms.ASCII_DIGITS.fullmatch(whole) and len(whole) <= 13):
        errors["points"] = i18n.translate("form.error.integer", staff.language)
    elif points and int(points) == 0:
        errors["points"] = i18n.translate("members.adjust.zero", staff.language)
    if errors or program is None:
        errors = errors or {forms.FORM: i18n.translate("members.no_program", staff.language)}
        return _refused(request, staff, member_id, program, "adjust", errors, values)
    try:
        req = AdjustRequest(
            member=MemberRef(id=member_id),
            points=values["points"],
            reason=values["reason"],
            qualifying=values["qualifying"],
        )
    except ValidationError as exc:
        errors = forms.from_validation(exc, staff.language, fields)
        return _refused(request, staff, member_id, program, "adjust", errors, values)
    try:
        with get_db(request).unit_of_work() as session:
            members.get_member(session, member_id)
            purchases.adjust(
                session, get_program(session, program), req, actor=staff.actor, now=clock.now()
            )
    except PatronError as exc:
        if exc.status == 404 and exc.code != "account_not_found":
            raise
        errors = forms.from_error(exc, staff.language, fields)
        return _refused(request, staff, member_id, program, "adjust", errors, values)
    return _back(request, member_id, program, "adjusted", delta=req.points)


@router.post("/members/{member_id}/tier", name="member_tier")
def member_tier(
    request: Request,
    member_id: int = MemberId,
    staff: Staff = Depends(require("tiers.assign")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    program = _blank_is_none(form.get("program"))
    values: dict[str, Any] = {
        "tier": form.get("tier", "").strip(),
        "reason": form.get("reason", "").strip(),
        "until": _blank_is_none(form.get("until")),
    }
    fields = ("tier", "reason", "until")
    errors = forms.required(values, ("tier", "reason"), staff.language)
    if errors or program is None:
        errors = errors or {forms.FORM: i18n.translate("members.no_program", staff.language)}
        return _refused(request, staff, member_id, program, "tier", errors, values)
    try:
        req = ManualTierRequest.model_validate(values)
    except ValidationError as exc:
        errors = forms.from_validation(exc, staff.language, fields)
        return _refused(request, staff, member_id, program, "tier", errors, values)
    try:
        with get_db(request).unit_of_work() as session:
            members.get_member(session, member_id)
            tiers.set_manual(
                session,
                get_program(session, program),
                member_id,
                req,
                actor=staff.actor,
                now=clock.now(),
            )
    except PatronError as exc:
        if exc.status == 404 and exc.code not in ("account_not_found", "tiers_not_configured"):
            raise
        errors = forms.from_error(exc, staff.language, fields)
        return _refused(request, staff, member_id, program, "tier", errors, values)
    return _back(request, member_id, program, "tier")


def _status_change(
    request: Request, staff: Staff, member_id: int, form: dict[str, str], status: str
) -> Response:
    program = _blank_is_none(form.get("program"))
    values = {"reason": form.get("reason", "").strip()}
    try:
        req = BlockRequest.model_validate(values)
    except ValidationError as exc:
        errors = forms.from_validation(exc, staff.language, ("reason",))
        return _refused(request, staff, member_id, program, "status", errors, values)
    with get_db(request).unit_of_work() as session:
        members.set_status(
            session,
            members.get_member(session, member_id),
            status,
            reason=req.reason,
            actor=staff.actor,
            now=clock.now(),
        )
    return _back(request, member_id, program, "blocked" if status == "blocked" else "unblocked")


@router.post("/members/{member_id}/block", name="member_block")
def member_block(
    request: Request,
    member_id: int = MemberId,
    staff: Staff = Depends(require("members.edit")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    return _status_change(request, staff, member_id, form, "blocked")


@router.post("/members/{member_id}/unblock", name="member_unblock")
def member_unblock(
    request: Request,
    member_id: int = MemberId,
    staff: Staff = Depends(require("members.edit")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    return _status_change(request, staff, member_id, form, "active")


@router.post("/members/{member_id}/consent", name="member_consent")
def member_consent(
    request: Request,
    member_id: int = MemberId,
    staff: Staff = Depends(require("members.edit")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    """Record what the member told staff about marketing messages (source "admin")."""
    from patron.members import consent

    program = _blank_is_none(form.get("program"))
    channels = [c for c in ("email", "sms") if form.get(c)]
    note = (form.get("note") or "").strip()[:500] or None
    if not channels or form.get("granted") not in ("0", "1"):
        errors = {forms.FORM: i18n.translate("consent.pick_channel", staff.language)}
        return _refused(request, staff, member_id, program, "consent", errors, {"note": note})
    with get_db(request).unit_of_work() as session:
        consent.change(
            session,
            members.get_member(session, member_id),
            channels,
            granted=form["granted"] == "1",
            source="admin",
            actor=staff.actor,
            now=clock.now(),
            note=note,
        )
    return _back(request, member_id, program, "consent")


@router.post("/members/{member_id}/invite", name="member_invite")
def member_invite(
    request: Request,
    member_id: int = MemberId,
    staff: Staff = Depends(require("members.edit")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    """Send the member the link to her member page (the API's invitation: once an hour)."""
    program = _blank_is_none(form.get("program"))
    lang = staff.language
    if program is None:
        errors = {forms.FORM: i18n.translate("members.no_program", lang)}
        return _refused(request, staff, member_id, program, "invite", errors, {})
    try:
        with get_db(request).unit_of_work() as session:
            invitation = signup.invite(
                session,
                get_program(session, program),
                member_id,
                url=signup.portal_url(program),
                actor=staff.actor,
                now=clock.now(),
            )
    except PatronError as exc:
        if exc.status == 404:
            raise
        key = INVITE_REFUSALS.get(exc.code)
        message = i18n.translate(key, lang) if key else exc.detail
        return _page(
            request,
            staff,
            member_id,
            program=program,
            errors={"invite": {forms.FORM: message}},
            status=exc.status,
        )
    response = _back(request, member_id, program, "invited")
    response.background = BackgroundTask(send_code, invitation.message)
    return response


@router.get("/members/{member_id}/export", name="member_export")
def member_export(
    request: Request,
    member_id: int = MemberId,
    program: str | None = ProgramCode,
    format: Literal["csv", "xlsx"] = Query("csv"),
    from_text: str = date_query("from"),
    to_text: str = date_query("to"),
    staff: Staff = Depends(require("members.export")),
) -> Response:
    """The history file the API's export gives; the download itself is audited (personal data
    leaving the system)."""
    date_from, date_to, range_errors = _date_range((from_text, to_text), staff.language)
    if range_errors:
        raise Invalid("from/to: give dates as YYYY-MM-DD", code="invalid_date")
    now = clock.now()
    with get_db(request).unit_of_work() as session:
        program = _in_reach(session, staff, member_id, program)
        prog, rows = member360.export_rows(
            session, member_id, program_code=program, date_from=date_from, date_to=date_to
        )
        audit.record(
            session,
            actor=staff.actor,
            action="member.history_exported",
            subject_type="member",
            subject_id=member_id,
            program_id=prog.id,
            at=now,
            after={
                "format": format,
                "from": date_from.isoformat() if date_from else None,
                "to": date_to.isoformat() if date_to else None,
                "rows": len(rows),
            },
        )
    name = f"{prog.code}-member-{member_id}-history"
    if format == "xlsx":
        return Response(
            views.to_xlsx(rows, title=f"member {member_id}"),
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'},
        )
    return Response(
        views.to_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )
