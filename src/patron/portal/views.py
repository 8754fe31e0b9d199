"""The member pages: each parses the request, calls the services the API uses, renders."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime, tzinfo
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from patron import clock
from patron.audit import idempotency
from patron.coupons import lookup
from patron.earning import events
from patron.errors import NotFound
from patron.ledger import views as ledger_views
from patron.portal import engagement, i18n, service, signup
from patron.portal.templating import render
from patron.portal.web import (
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    ProgramCode,
    Viewer,
    actor,
    code_fields,
    cookie_args,
    current_viewer,
    form_of,
    get_db,
    limited,
    load_program,
    member_of,
    new_signin_token,
    optional_viewer,
    qr_svg,
    send_code,
)
from patron.programs.models import Program
from patron.rewards import redeem as rewards_redeem
from patron.rewards import views as rewards_views
from patron.tiers import progress as tier_progress
from patron.tiers import service as tier_service
from patron.tiers.progress import ProgressOut, TiersNotConfigured

router = APIRouter(prefix="/{program}")
PAGE = 20
LATEST = 5


HISTORY_KINDS = ("earn", "redeem", "expire", "adjust", "reverse")
MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def month_window(text: str | None, tz: tzinfo) -> tuple[datetime, datetime] | None:
    """[first instant, first instant of the next month) of "YYYY-MM" in the program's timezone,
    or None when `text` is not such a month."""
    found = MONTH.match(text or "")
    if found is None:
        return None
    year, month = int(found.group(1)), int(found.group(2))
    if not (1 <= month <= 12 and 2000 <= year <= 2999):
        return None
    start = datetime(year, month, 1, tzinfo=tz)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def tier_amount(tier: ProgressOut | None, viewer: Viewer, which: str) -> str:
    """What is missing for the next tier (or to keep this one), in the member's language:
    money for a spend metric (kept in minor units), a plain number otherwise."""
    if tier is None:
        return ""
    value = tier.to_next if which == "next" else tier.to_keep
    if tier.metric == "spend":
        return i18n.money(value, viewer.program.currency, viewer.language, minor_units=True)
    return i18n.number(value, viewer.language)


def explained(
    session: Session, program: Program, viewer: Viewer, entry_id: int
) -> events.ExplanationOut:
    """An entry explained for her: money as she writes it (12,000원) and tiers by their name in
    her language (골드), not the codes integrators see."""
    lang = viewer.language
    names = {t.code: t.names for t in tier_service.definitions(session, program.id)}

    def tier_name(code: str) -> str:
        found = names.get(code) or {}
        return found.get(lang) or found.get("en") or code

    return events.explain_entry(
        session, program, entry_id, lang, tier_name=tier_name,
        money=lambda value: i18n.money(value, program.currency, lang),
    )  # fmt: skip


# --- sign-in ------------------------------------------------------------------------------


def _sign_in_form(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    token = request.cookies.get(SIGNIN_COOKIE) or new_signin_token()
    response = render(request, template, viewer=None, status=status, csrf_token=token, **context)
    response.set_cookie(
        SIGNIN_COOKIE,
        token,
        max_age=3600,
        **cookie_args(request, request.path_params["program"]),
    )
    return response


@router.get("/sign-in", name="sign_in")
def sign_in(
    request: Request,
    program: str = ProgramCode,
    viewer: Viewer | None = Depends(optional_viewer),
) -> Response:
    info = load_program(request, program)
    if viewer is not None:
        return RedirectResponse(request.url_for("home", program=program).path, status_code=303)
    with get_db(request).unit_of_work(readonly=True) as session:
        can_join = signup.is_enabled(session, info.id)
    return _sign_in_form(request, "sign_in.html", contact="", error=None, can_join=can_join)


@router.post("/sign-in", name="request_code")
async def request_code(request: Request, program: str = ProgramCode) -> Response:
    info = load_program(request, program)
    contact = (await form_of(request)).get("contact", "").strip()[:254]
    if not contact:
        return _sign_in_form(request, "sign_in.html", 422, contact="", error="sign_in.required")
    throttle = limited(request)

    def run() -> service.CodeMessage | None:
        # A contact asking too often gets the same page, just no new code.
        if not throttle.contact_allows(info.id, contact.lower()):
            return None
        with get_db(request).unit_of_work() as session:
            found = session.get(Program, info.id)
            assert found is not None
            return service.request_code(session, found, contact, now=clock.now())

    message = await run_in_threadpool(run)
    response = _sign_in_form(request, "code.html", contact=contact, error=None)
    if message is not None:
        # Sent after the answer, so a member's contact is not told apart by a slower reply.
        response.background = BackgroundTask(send_code, message)
    return response


@router.post("/sign-in/code", name="verify_code")
async def verify_code(request: Request, program: str = ProgramCode) -> Response:
    info = load_program(request, program)
    form = await form_of(request)
    contact, code = code_fields(form)
    limited(request)

    def run() -> service.SignedIn | None:
        with get_db(request).unit_of_work() as session:
            found = session.get(Program, info.id)
            assert found is not None
            return service.verify_code(
                session, found, contact, code, now=clock.now(),
                user_agent=request.headers.get("user-agent"),
            )  # fmt: skip

    signed = await run_in_threadpool(run)
    if signed is None:
        return _sign_in_form(request, "code.html", 422, contact=contact, error="code.wrong")
    response = RedirectResponse(request.url_for("home", program=program).path, status_code=303)
    args = cookie_args(request, program)
    response.set_cookie(
        SESSION_COOKIE, signed.token, max_age=int(service.SESSION_TTL.total_seconds()), **args
    )
    response.delete_cookie(SIGNIN_COOKIE, path=args["path"])
    return response


@router.post("/sign-out", name="sign_out")
def sign_out(
    request: Request, program: str = ProgramCode, viewer: Viewer = Depends(current_viewer)
) -> Response:
    with get_db(request).unit_of_work() as session:
        service.revoke(session, viewer.member_id, viewer.session_id, now=clock.now())
    response = RedirectResponse(request.url_for("sign_in", program=program).path, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=cookie_args(request, program)["path"])
    return response


# --- pages --------------------------------------------------------------------------------


@router.get("/", name="home")
def home(
    request: Request, program: str = ProgramCode, viewer: Viewer = Depends(current_viewer)
) -> Response:
    now = clock.now()
    with get_db(request).unit_of_work(readonly=True) as session:
        the_program, _member_row = member_of(session, viewer)
        account = ledger_views.get_account(session, the_program, viewer.member_id)
        totals = ledger_views.totals(session, account, now)
        try:
            tier = tier_progress.progress(session, the_program, account, now)
        except TiersNotConfigured:
            tier = None
        entries, _next = ledger_views.history(session, account, limit=LATEST)
        stores = ledger_views.store_codes(session, the_program.id)
        latest = [
            (
                ledger_views.entry_out(entry, stores),
                explained(session, the_program, viewer, entry.id).text,
            )
            for entry in entries
        ]
        milestones = engagement.badges(session, the_program, viewer, now)
        invitations = engagement.invitations(session, the_program, viewer, now)
    return render(request, "home.html", viewer=viewer, totals=totals, tier=tier, latest=latest,
                  to_next=tier_amount(tier, viewer, "next"), to_keep=tier_amount(tier, viewer, "keep"),
                  milestones=milestones, invitations=invitations, page="home")  # fmt: skip


@router.get("/history", name="history")
def history(
    request: Request,
    program: str = ProgramCode,
    cursor: str | None = Query(None, max_length=200),
    kind: str | None = Query(None, max_length=10),
    month: str | None = Query(None, max_length=7),
    viewer: Viewer = Depends(current_viewer),
) -> Response:
    """Her entries, newest first, 20 a page; filtered by kind and by a month of the program's
    calendar. A filter value that makes no sense shows everything rather than an error page."""
    kind = kind if kind in HISTORY_KINDS else None
    window = month_window(month, viewer.program.tz)
    month = month if window is not None else None
    lo, hi = window or (None, None)
    with get_db(request).unit_of_work(readonly=True) as session:
        the_program, _member_row = member_of(session, viewer)
        account = ledger_views.get_account(session, the_program, viewer.member_id)
        entries, next_cursor = ledger_views.history(
            session, account, cursor=cursor, limit=PAGE, lo=lo, hi=hi,
            kinds=[kind] if kind else None,
        )  # fmt: skip
        stores = ledger_views.store_codes(session, the_program.id)
        rows = [
            (
                ledger_views.entry_out(entry, stores),
                explained(session, the_program, viewer, entry.id).lines,
            )
            for entry in entries
        ]
    return render(request, "history.html", viewer=viewer, rows=rows, next_cursor=next_cursor,
                  kinds=HISTORY_KINDS, kind=kind, month=month, page="history")  # fmt: skip


@router.get("/rewards", name="rewards")
def rewards(
    request: Request, program: str = ProgramCode, viewer: Viewer = Depends(current_viewer)
) -> Response:
    now = clock.now()
    with get_db(request).unit_of_work(readonly=True) as session:
        the_program, _member_row = member_of(session, viewer)
        account = ledger_views.get_account(session, the_program, viewer.member_id)
        items = rewards_views.catalog_for(session, the_program, account, now=now, channel="portal")
        available = ledger_views.totals(session, account, now).available
    return render(request, "rewards.html", viewer=viewer, items=items, available=available,
                  page="rewards")  # fmt: skip


@router.get("/rewards/{reward}", name="reward_confirm")
def reward_confirm(
    request: Request,
    program: str = ProgramCode,
    reward: str = Path(max_length=40),
    viewer: Viewer = Depends(current_viewer),
) -> Response:
    now = clock.now()
    with get_db(request).unit_of_work(readonly=True) as session:
        the_program, _member_row = member_of(session, viewer)
        account = ledger_views.get_account(session, the_program, viewer.member_id)
        items = rewards_views.catalog_for(session, the_program, account, now=now, channel="portal")
        item = next((i for i in items if i.reward.code == reward), None)
        if item is None:
            raise NotFound(f"no reward {reward}")
        available = ledger_views.totals(session, account, now).available
    return render(request, "confirm.html", viewer=viewer, item=item, available=available,
                  nonce=secrets.token_urlsafe(16), page="rewards")  # fmt: skip


@router.post("/rewards/{reward}", name="redeem")
async def redeem(
    request: Request,
    program: str = ProgramCode,
    reward: str = Path(max_length=40),
    viewer: Viewer = Depends(current_viewer),
) -> Response:
    nonce = (await form_of(request)).get("nonce", "")[:64]
    if len(nonce) < 16:
        raise NotFound("no confirmation")

    def run() -> None:
        now = clock.now()
        with get_db(request).unit_of_work() as session:
            the_program, member = member_of(session, viewer)
            # The confirmation page's nonce: a second submit of the same page redeems nothing.
            try:
                claim = idempotency.claim(
                    session, actor=str(actor(viewer)), key=f"portal-redeem:{nonce}",
                    payload={"program": program, "reward": reward}, now=now,
                )  # fmt: skip
            except idempotency.Replay:
                return
            rewards_redeem.redeem(
                session, the_program, reward, member=member, quantity=1, store=None,
                channel="portal", actor=actor(viewer), now=now,
            )  # fmt: skip
            idempotency.answer(session, claim, 303, {"reward": reward})

    await run_in_threadpool(run)
    return RedirectResponse(request.url_for("coupons", program=program).path, status_code=303)


@router.get("/coupons", name="coupons")
def coupons(
    request: Request, program: str = ProgramCode, viewer: Viewer = Depends(current_viewer)
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        the_program, _member_row = member_of(session, viewer)
        rows = rewards_views.member_coupons(session, the_program, viewer.member_id, limit=50)
        out = rewards_views.coupons_out(session, the_program, rows)
    return render(request, "coupons.html", viewer=viewer, coupons=out, page="rewards")


@router.get("/coupons/{code}", name="coupon")
def coupon(
    request: Request,
    program: str = ProgramCode,
    code: str = Path(max_length=64),
    viewer: Viewer = Depends(current_viewer),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        the_program, _member_row = member_of(session, viewer)
        found = lookup.find_coupon(session, the_program, code)
        if found.member_id != viewer.member_id:
            raise NotFound(f"no coupon {code}")
        out = rewards_views.coupons_out(session, the_program, [found])[0]
    qr = qr_svg(out.offline_token or out.code, scale=5) if out.status == "issued" else None
    return render(request, "coupon.html", viewer=viewer, coupon=out, qr=qr, page="rewards")
