"""Jinja2 for the member pages: `t(key)`, `url(name, **path)` and locale-aware filters
(points, money, date, datetime) in the member's language and the program's timezone; every
page of a program gets its branding (`brand`, `brand_name`, `brand_version`)."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from patron import __version__
from patron.portal import i18n
from patron.portal.security import csp_with_image_origin
from patron.programs import branding
from patron.programs.models import Program

if TYPE_CHECKING:
    from patron.portal.context import ProgramInfo, Viewer

# A logo's https host, as it may appear in the page's Content-Security-Policy.
LOGO_HOST = re.compile(r"^[a-z0-9.-]+(:[0-9]{1,5})?$")

env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def path_for(request: Request, name: str, **params: Any) -> str:
    return request.scope.get("root_path", "") + request.app.url_path_for(
        name, **{k: str(v) for k, v in params.items()}
    )


@pass_context
def _t(ctx, key: str, **values: Any) -> str:
    return i18n.translate(key, ctx["lang"], **values)


@pass_context
def _url(ctx, name: str, **params: Any) -> str:
    return path_for(ctx["request"], name, program=ctx["program_code"], **params)


@pass_context
def _static(ctx, path: str) -> str:
    return f"{ctx['request'].scope.get('root_path', '')}/static/{path}?v={__version__}"


@pass_context
def _points(ctx, value: Any) -> str:
    return i18n.points(value, ctx["lang"])


@pass_context
def _signed_points(ctx, value: Any) -> str:
    return i18n.points(value, ctx["lang"], signed=True)


@pass_context
def _money(ctx, value: Any, currency: str) -> str:
    return i18n.money(value, currency, ctx["lang"])


@pass_context
def _number(ctx, value: Any) -> str:
    return i18n.number(value, ctx["lang"])


@pass_context
def _date(ctx, value: Any) -> str:
    return i18n.format_date(value, ctx["lang"], ctx["tz"])


@pass_context
def _datetime(ctx, value: Any) -> str:
    return i18n.format_datetime(value, ctx["lang"], ctx["tz"])


@pass_context
def _named(ctx, names: dict[str, str]) -> str:
    """A reward's name in the member's language, else English, else any."""
    return names.get(ctx["lang"]) or names.get("en") or next(iter(names.values()), "")


env.globals.update(t=_t, url=_url, static=_static, languages=i18n.LANGUAGE_NAMES)
env.filters.update(
    points=_points, signed_points=_signed_points, money=_money, number=_number, date=_date,
    datetime=_datetime, named=_named,
)  # fmt: skip


def browser_language(request: Request) -> str:
    asked = request.query_params.get("lang")
    if asked in i18n.LANGUAGES:
        return asked
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in i18n.LANGUAGES:
            return code
    return i18n.DEFAULT_LANGUAGE


def brand_of(request: Request, program: ProgramInfo) -> branding.Branding:
    """The program's branding, read once per request."""
    found: branding.Branding | None = getattr(request.state, "brand", None)
    if found is None:
        with request.app.state.db.unit_of_work(readonly=True) as session:
            row = session.get(Program, program.id)
            found = branding.get(session, row) if row is not None else branding.Branding()
        request.state.brand = found
    return found


def brand_version(brand: branding.Branding) -> str:
    """Changes exactly when the branding does: brand.css's ETag and cache-busting query."""
    return hashlib.sha256(brand.model_dump_json().encode()).hexdigest()[:12]


def logo_origin(brand: branding.Branding) -> str | None:
    """The https origin of the logo (for img-src), or None for no logo or one on this server."""
    if brand.logo_url is None or not brand.logo_url.startswith("https://"):
        return None
    host = urlsplit(brand.logo_url).netloc.lower()
    return f"https://{host}" if LOGO_HOST.match(host) else None


def shown_logo(brand: branding.Branding) -> str | None:
    """The logo's address: a path on this server, or an https one whose host the CSP can
    name (anything else is not shown)."""
    url = brand.logo_url
    return url if url is not None and (url.startswith("/") or logo_origin(brand)) else None


def render(
    request: Request,
    template: str,
    *,
    viewer: Viewer | None,
    status: int = 200,
    csrf_token: str = "",
    **context: Any,
) -> HTMLResponse:
    context.setdefault("page", None)
    program = viewer.program if viewer is not None else getattr(request.state, "program", None)
    brand = brand_of(request, program) if program is not None else None
    lang = viewer.language if viewer is not None else browser_language(request)
    body = env.get_template(template).render(
        request=request,
        viewer=viewer,
        lang=lang,
        brand=brand,
        brand_name=brand.name_in(lang, program.name) if brand and program else "Patron",
        brand_version=brand_version(brand) if brand is not None else "",
        logo=shown_logo(brand) if brand is not None else None,
        tz=program.tz if program is not None else UTC,
        program=program,
        program_code=program.code if program is not None else request.path_params.get("program"),
        csrf_token=viewer.csrf_token if viewer is not None else csrf_token,
        **context,
    )
    response = HTMLResponse(body, status_code=status)
    origin = logo_origin(brand) if brand is not None else None
    if origin is not None:
        response.headers["Content-Security-Policy"] = csp_with_image_origin(origin)
    return response
