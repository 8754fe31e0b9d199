"""Members' data rights in the admin UI: the privacy card of a member (consent per purpose with
its text version and history, the data export, legal holds, erasure) and the privacy page
(open erasure requests to carry out, and each program's consent text versions).

Every action calls the service the API calls (patron.privacy) with the signed-in user as the
actor. A refused form comes back with its status (422, 409) and the message above it; success
redirects (303) back with a notice.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from patron import clock
from patron.admin import forms, member_card
from patron.admin.deps import Staff, form_data, get_db, require
from patron.admin.templating import path_for, render
from patron.errors import NotFound, PatronError
from patron.members import consent
from patron.members import service as members
from patron.portal.models import PrivacyRequest
from patron.privacy import consents, erasure
from patron.privacy import export as dsr
from patron.programs.service import get_program, list_programs

router = APIRouter()
MemberId = Path(ge=1, le=2**53)
NOTICES = frozenset({"consent", "hold", "released", "erased", "version", "request_erased"})
# Refusals with a message of their own (others show the service's detail).
REFUSALS = {
    "legal_hold": "privacy.refused.legal_hold",
    "member_erased": "privacy.refused.erased",
    "invalid_reason": "privacy.refused.reason",
    "invalid_purpose": "privacy.refused.purpose",
    "invalid_version": "privacy.refused.version",
    "hold_released": "privacy.refused.hold_released",
    "confirm_erasure": "privacy.refused.confirm",
}


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
        texts = consents.current_versions(session, where.id)
        requests = erasure.open_requests_of(session, member_id)
        return render(
            request,
            "members/_privacy.html" if fragment else "privacy/member.html",
            status=status,
            section="members",
            member=member,
            program_code=where.code,
            purposes=list(consent.PURPOSES),
            current=consents.current(session, member),
            history=[consents.record_out(r) for r in consents.history(session, member_id)],
            texts={p: (t.version if t else None) for p, t in texts.items()},
            holds=[erasure.hold_out(h) for h in erasure.holds(session, member_id)],
            requests=requests,
            erased=member.status == erasure.ERASED,
            errors=errors or {},
            done=request.query_params.get("done")
            if request.query_params.get("done") in NOTICES
            else None,
        )


def _refused(
    request: Request, staff: Staff, member_id: int, program: str | None, form: str,
    exc: PatronError,
) -> Response:  # fmt: skip
    if exc.status == 404 and exc.code == "member_not_found":
        raise exc
    errors = {form: {forms.FORM: member_card.refusal(exc, staff.language, REFUSALS)}}
    return _card(request, staff, member_id, program=program, errors=errors, status=exc.status)


@router.get("/members/{member_id}/privacy", name="member_privacy")
def member_privacy(
    request: Request,
    member_id: int = MemberId,
    program: str | None = Query(None, max_length=40),
    staff: Staff = Depends(require("members.view")),
) -> Response:
    """Consent per purpose, export, legal holds and erasure of one member (a page, or the
    fragment the member page loads)."""
    return _card(request, staff, member_id, program=program)


@router.post("/members/{member_id}/privacy/consents", name="member_privacy_consent")
def member_privacy_consent(
    request: Request,
    member_id: int = MemberId,
    staff: Staff = Depends(require("members.edit")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    """Record what the member told staff, per purpose, with the text version she agreed to."""
    program = form.get("program") or None
    purposes = [p for p in consent.PURPOSES if form.get(f"purpose_{p}") == "1"]
    try:
        if form.get("granted") not in ("0", "1"):
            raise PatronError("choose grant or withdraw", code="invalid_purpose", status=422)
        with get_db(request).unit_of_work() as session:
            where = member_card.program_of(session, staff, member_id, program)
            consents.record(
                session, where, members.get_member(session, member_id), purposes,
                granted=form["granted"] == "1", source="admin", version=form.get("version"),
                note=form.get("note"), actor=staff.actor, now=clock.now(),
            )  # fmt: skip
    except PatronError as exc:
        return _refused(request, staff, member_id, program, "consent", exc)
    return member_card.back(request, "member_privacy", member_id, program, "consent")


@router.get("/members/{member_id}/privacy/export", name="member_privacy_export")
def member_privacy_export(
    request: Request,
    member_id: int = MemberId,
    program: str | None = Query(None, max_length=40),
    staff: Staff = Depends(require("privacy.export")),
) -> Response:
    """Everything Patron holds on the member, as JSON files in a ZIP (audited)."""
    now = clock.now()
    with get_db(request).unit_of_work() as session:
        where = member_card.program_of(session, staff, member_id, program)
        member = members.get_member(session, member_id)
        data = dsr.build_zip(
            session, member, program=where, source="admin", actor=staff.actor, now=now
        )
        name = dsr.filename(member, now)
    return Response(
        data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post("/members/{member_id}/privacy/holds", name="member_privacy_hold")
def member_privacy_hold(
    request: Request,
    member_id: int = MemberId,
    staff: Staff = Depends(require("privacy.hold")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    program = form.get("program") or None
    try:
        with get_db(request).unit_of_work() as session:
            where = member_card.program_of(session, staff, member_id, program)
            erasure.place_hold(
                session, member_id, reason=form.get("reason"), program_id=where.id,
                actor=staff.actor, now=clock.now(),
            )  # fmt: skip
    except PatronError as exc:
        return _refused(request, staff, member_id, program, "hold", exc)
    return member_card.back(request, "member_privacy", member_id, program, "hold")


@router.post("/members/{member_id}/privacy/holds/{hold_id}/release", name="member_privacy_release")
def member_privacy_release(
    request: Request,
    member_id: int = MemberId,
    hold_id: int = Path(ge=1, le=2**53),
    staff: Staff = Depends(require("privacy.hold")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    program = form.get("program") or None
    try:
        with get_db(request).unit_of_work() as session:
            erasure.release_hold(
                session, member_id, hold_id, reason=form.get("reason"), actor=staff.actor,
                now=clock.now(),
            )  # fmt: skip
    except PatronError as exc:
        return _refused(request, staff, member_id, program, "hold", exc)
    return member_card.back(request, "member_privacy", member_id, program, "released")


def _erase(
    session: Session, staff: Staff, member_id: int, program: str | None, form: dict[str, str],
    request_id: int | None = None,
) -> None:  # fmt: skip
    if form.get("confirm") != "1":
        raise PatronError("tick the box to confirm the erasure", code="confirm_erasure", status=422)
    where = member_card.program_of(session, staff, member_id, program)
    outside = [c for c in member_card.program_codes(session, member_id) if not staff.reaches(c)]
    if outside:
        raise PatronError(
            f"member {member_id} is also in programs you do not manage", code="forbidden",
            status=403,
        )  # fmt: skip
    erasure.erase(
        session, member_id, program=where, reason=form.get("reason"), source="admin",
        actor=staff.actor, now=clock.now(), request_id=request_id,
    )  # fmt: skip


@router.post("/members/{member_id}/privacy/erase", name="member_privacy_erase")
def member_privacy_erase(
    request: Request,
    member_id: int = MemberId,
    staff: Staff = Depends(require("privacy.erase")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    """Erase the member's personal data (irreversible; the ledger keeps every amount)."""
    program = form.get("program") or None
    request_id = form.get("request") or ""
    try:
        with get_db(request).unit_of_work() as session:
            _erase(
                session, staff, member_id, program, form,
                int(request_id) if request_id.isdigit() and len(request_id) < 16 else None,
            )  # fmt: skip
    except PatronError as exc:
        return _refused(request, staff, member_id, program, "erase", exc)
    return member_card.back(request, "member_privacy", member_id, program, "erased")


# --- the privacy page -------------------------------------------------------------------------


def _home(
    request: Request,
    staff: Staff,
    program: str | None,
    *,
    errors: dict[str, dict[str, str]] | None = None,
    status: int = 200,
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        programs = [p for p in list_programs(session) if staff.reaches(p.code)]
        chosen = next((p for p in programs if p.code == program), programs[0] if programs else None)
        rows: list[PrivacyRequest] = []
        for p in programs:
            rows += erasure.open_requests(session, p.id)
        codes = {p.id: p.code for p in programs}
        holds_open: dict[int, bool] = {
            r.member_id: bool(erasure.open_holds(session, r.member_id)) for r in rows
        }
        texts = consents.current_versions(session, chosen.id) if chosen else {}
        return render(
            request,
            "privacy/home.html",
            status=status,
            section="privacy",
            programs=programs,
            program=chosen,
            requests=sorted(rows, key=lambda r: r.id),
            codes=codes,
            held=holds_open,
            texts=texts,
            purposes=list(consent.PURPOSES),
            errors=errors or {},
            done=request.query_params.get("done")
            if request.query_params.get("done") in NOTICES
            else None,
        )


@router.get("/privacy", name="privacy_home")
def privacy_home(
    request: Request,
    program: str | None = Query(None, max_length=40),
    staff: Staff = Depends(require("privacy.view")),
) -> Response:
    """Open erasure requests members filed, oldest first, and the consent text versions."""
    return _home(request, staff, program)


def _home_back(request: Request, program: str | None, done: str) -> Response:
    return RedirectResponse(
        path_for(request, "privacy_home", {"program": program, "done": done}), status_code=303
    )


@router.post("/privacy/requests/{request_id}/erase", name="privacy_request_erase")
def privacy_request_erase(
    request: Request,
    request_id: int = Path(ge=1, le=2**53),
    staff: Staff = Depends(require("privacy.erase")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    """Carry out a member's own erasure request."""
    program = form.get("program") or None
    try:
        with get_db(request).unit_of_work() as session:
            filed = session.get(PrivacyRequest, request_id)
            codes = {p.id: p.code for p in list_programs(session)}
            if filed is None or not staff.reaches(codes.get(filed.program_id, "")):
                raise NotFound(f"no erasure request {request_id}", code="request_not_found")
            members.get_member(session, filed.member_id, actor=staff.actor)
            _erase(session, staff, filed.member_id, codes[filed.program_id], form, request_id)
    except PatronError as exc:
        if exc.status == 404:
            raise
        return _home(
            request, staff, program, errors={"queue": {forms.FORM: member_card.refusal(exc, staff.language, REFUSALS)}},
            status=exc.status,
        )  # fmt: skip
    return _home_back(request, program, "request_erased")


@router.post("/privacy/consent-texts", name="privacy_text_set")
def privacy_text_set(
    request: Request,
    staff: Staff = Depends(require("program.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    """Set a program's current consent text version for a purpose."""
    program = form.get("program") or None
    try:
        with get_db(request).unit_of_work() as session:
            if not program or not staff.reaches(program):
                raise NotFound("choose a program", code="program_not_found")
            consents.set_version(
                session, get_program(session, program), form.get("purpose", ""),
                form.get("version", ""), summary=form.get("summary"), actor=staff.actor,
                now=clock.now(),
            )  # fmt: skip
    except PatronError as exc:
        if exc.status == 404:
            raise
        return _home(
            request, staff, program,
            errors={"texts": {forms.FORM: member_card.refusal(exc, staff.language, REFUSALS)}}, status=exc.status,
        )  # fmt: skip
    return _home_back(request, program, "version")
