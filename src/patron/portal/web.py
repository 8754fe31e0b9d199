"""The member pages as their own ASGI app, mounted at /m by create_app: /m/{program}/…

Like the admin app it shares the API's Database, answers errors as HTML pages, checks a CSRF
token on every POST (the session's, or before sign-in a double-submitted cookie) and sends
only one small script (registering the service worker that keeps her card
for offline use). Every page is for the signed-in member only and shows only her rows: anything
addressed by a code or id that is not hers answers 404, as if it did not exist.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from pathlib import Path
from typing import Any

import segno
from fastapi import Depends, Request
from fastapi import Path as PathParam
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from patron import clock
from patron.audit.service import Actor
from patron.config import get_settings
from patron.db.engine import Database
from patron.errors import NotFound
from patron.members.models import Member
from patron.notify import channels
from patron.portal import i18n, service
from patron.portal.context import ProgramInfo, Viewer
from patron.portal.templating import render
from patron.programs.models import Program
from patron.programs.service import get_program

log = logging.getLogger("patron.portal")
STATIC = Path(__file__).parent / "static"
SESSION_COOKIE = "patron_member"
SIGNIN_COOKIE = "patron_member_signin"
CSRF_FIELD = "csrf_token"
# The program's code in every member page's address.
ProgramCode = PathParam(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class SignInRequired(Exception):
    def __init__(self, program: str) -> None:
        super().__init__(program)
        self.program = program


class CsrfRejected(Exception):
    pass


class TooManyRequests(Exception):
    pass


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def program_info(program: Program) -> ProgramInfo:
    return ProgramInfo(program.id, program.code, program.name, program.currency, program.timezone)


def load_program(request: Request, code: str) -> ProgramInfo:
    if not hasattr(request.state, "program"):
        with get_db(request).unit_of_work(readonly=True) as session:
            request.state.program = program_info(get_program(session, code))
    info: ProgramInfo = request.state.program
    return info


def optional_viewer(request: Request) -> Viewer | None:
    """The signed-in member of the program in the address, or None; looked up once."""
    if hasattr(request.state, "viewer"):
        found: Viewer | None = request.state.viewer
        return found
    viewer = None
    code = request.path_params.get("program")
    token = request.cookies.get(SESSION_COOKIE)
    if code and token:
        info = load_program(request, code)
        with get_db(request).unit_of_work(readonly=True) as session:
            program = session.get(Program, info.id)
            assert program is not None
            row = service.resolve_session(session, program, token, now=clock.now())
            member = session.get(Member, row.member_id) if row is not None else None
            if row is not None and member is not None and member.status == "active":
                viewer = Viewer(
                    program=info,
                    member_id=member.id,
                    name=member.name,
                    language=i18n.language(member.language),
                    session_id=row.id,
                    csrf_token=row.csrf_token,
                )
    request.state.viewer = viewer
    return viewer


def current_viewer(request: Request, viewer: Viewer | None = Depends(optional_viewer)) -> Viewer:
    if viewer is None:
        code = str(request.path_params.get("program", ""))
        load_program(request, code)  # an unknown program is a 404, not a sign-in page
        raise SignInRequired(code)
    return viewer


async def verify_csrf(request: Request) -> None:
    if request.method in SAFE_METHODS:
        return
    viewer = await run_in_threadpool(optional_viewer, request)
    expected = viewer.csrf_token if viewer is not None else request.cookies.get(SIGNIN_COOKIE)
    sent = None
    if request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not expected or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRejected()


def error_page(request: Request, status: int, title_key: str, detail: str | None = None):
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    return render(request, "error.html", viewer=viewer, status=status, title_key=title_key,
                  detail=detail)  # fmt: skip


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def limited(request: Request) -> service.Throttle:
    """The member pages' throttle, once this request is counted against its IP address
    (TooManyRequests when over): every form that sends or checks a code calls it first."""
    throttle: service.Throttle = request.app.state.throttle
    if not throttle.ip_allows(client_ip(request)):
        raise TooManyRequests()
    return throttle


def code_fields(form: dict[str, str]) -> tuple[str, str]:
    """The contact and the code a code form sent, cut to their longest sensible length."""
    return form.get("contact", "")[:254], form.get("code", "")[:20]


def send_code(message: service.CodeMessage) -> None:
    """Straight through the channel (never the outbox: a code must not reach a webhook)."""
    result = channels.send(
        message.channel, message.to, message.subject, message.body, settings=get_settings()
    )
    if not result.ok:
        log.warning("sign-in code not sent on %s: %s", message.channel, result.error)


def new_signin_token() -> str:
    return secrets.token_urlsafe(24)


def cookie_args(request: Request, program: str) -> dict[str, Any]:
    return {
        "httponly": True,
        "samesite": "lax",
        "secure": request.url.scheme == "https",
        "path": f"{request.scope.get('root_path', '')}/{program}",
    }


def actor(viewer: Viewer) -> Actor:
    return Actor("member", str(viewer.member_id))


def qr_svg(text: str, scale: int = 6) -> str:
    return segno.make_qr(text, error="m").svg_inline(scale=scale, border=2, omitsize=True)


async def form_of(request: Request) -> dict[str, str]:
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


def member_of(session: Session, viewer: Viewer) -> tuple[Program, Member]:
    """The signed-in member's program and member rows."""
    program = session.get(Program, viewer.program.id)
    member = session.get(Member, viewer.member_id)
    if program is None or member is None:  # pragma: no cover - gone while signed in
        raise NotFound("member not found")
    return program, member
