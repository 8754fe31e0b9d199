"""Jinja2 for the admin pages: one environment, locale-aware filters, and `render`.

Templates get, besides what the view passes:
  staff       the signed-in Staff (or None on the sign-in and error pages)
  lang, tz    the user's language and the timezone dates are shown in
  t(key, **)  a translated message (i18n.translate)
  url(name, _query=None, **path)   the path of an admin route, e.g. url("member_detail", member_id=3)
  static(path)                     /admin/static/<path>?v=<version>
  csrf_token  the token forms.html's csrf_field() puts in every POST form
  nav, section                     the navigation and the current section
  now, version                     the clock's now (patron.clock) and Patron's version
Filters (all in the user's language, written by patron.formats — Babel/CLDR; decision 0037):
number(places), signed(places) (+1.5), points, signed_points, money(currency), money_minor(currency), percent(places),
date, datetime, period(granularity) (a report row's day, week or month); isodate only for
date inputs and links, never for reading; compact (any value as short text);
audit_action (an audit code in words), audit_pairs (a before/after snapshot as (field, value)).
"""

from __future__ import annotations

import json
from datetime import UTC, date, timedelta, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from patron import __version__, clock, formats
from patron.admin import audit_words, i18n
from patron.admin.deps import Staff
from patron.admin.nav import nav_links

TEMPLATES = Path(__file__).parent / "templates"

env = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    # A misspelt variable fails the page's test instead of rendering blank.
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def path_for(request: Request, name: str, _query: dict[str, Any] | None = None, **params) -> str:
    path = request.scope.get("root_path", "") + request.app.url_path_for(
        name, **{k: str(v) for k, v in params.items()}
    )
    query = {k: v for k, v in (_query or {}).items() if v not in (None, "")}
    return f"{path}?{urlencode(query, doseq=True)}" if query else path


@pass_context
def _t(ctx, key: str, **values: Any) -> str:
    return i18n.translate(key, ctx["lang"], **values)


@pass_context
def _url(ctx, name: str, _query: dict[str, Any] | None = None, **params: Any) -> str:
    return path_for(ctx["request"], name, _query, **params)


@pass_context
def _static(ctx, path: str) -> str:
    root = ctx["request"].scope.get("root_path", "")
    return f"{root}/static/{path}?v={__version__}"


@pass_context
def _number(ctx, value: Any, places: int | None = None) -> str:
    return i18n.number(value, ctx["lang"], places=places)


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
def _money_minor(ctx, value: Any, currency: str) -> str:
    return i18n.money(value, currency, ctx["lang"], minor_units=True)


@pass_context
def _date(ctx, value: Any) -> str:
    return i18n.format_date(value, ctx["lang"], ctx["tz"])


@pass_context
def _datetime(ctx, value: Any) -> str:
    return i18n.format_datetime(value, ctx["lang"], ctx["tz"])


@pass_context
def _isodate(ctx, value: Any) -> str:
    return i18n.iso_date(value, ctx["tz"])


@pass_context
def _percent(ctx, value: Any, places: int = 1) -> str:
    return formats.percent(value, ctx["lang"], places=places)


@pass_context
def _signed(ctx, value: Any, places: int | None = None) -> str:
    return formats.signed(value, ctx["lang"], places=places)


@pass_context
def _period(ctx, row: Any, granularity: str) -> str:
    """A report row's period (its `starts`, and `ends` where it has one) in words."""
    starts: date = row.starts
    ends: date | None = getattr(row, "ends", None)
    if ends is None:  # a week runs Monday to Sunday
        ends = starts + timedelta(days=6 - starts.weekday()) if granularity == "week" else starts
    return formats.period(starts, ends, granularity, ctx["lang"])


@pass_context
def _audit_action(ctx, code: str) -> str:
    return audit_words.action(code, ctx["lang"])


@pass_context
def _audit_pairs(ctx, data: Any) -> list[audit_words.Pair]:
    return audit_words.pairs(data, ctx["lang"])


def _compact(value: Any, limit: int = 120) -> str:
    """An audit value as one short line: text as is, anything else as JSON."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


env.globals.update(
    t=_t, url=_url, static=_static, languages=i18n.LANGUAGE_NAMES, version=__version__
)
env.filters.update(
    number=_number,
    points=_points,
    signed_points=_signed_points,
    money=_money,
    money_minor=_money_minor,
    date=_date,
    datetime=_datetime,
    isodate=_isodate,
    percent=_percent,
    signed=_signed,
    period=_period,
    compact=_compact,
    audit_action=_audit_action,
    audit_pairs=_audit_pairs,
)


def browser_language(request: Request) -> str:
    """For pages before sign-in: ?lang=, else the first of ko/zh/en the browser asks for."""
    asked = request.query_params.get("lang")
    if asked in i18n.LANGUAGES:
        return asked
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in i18n.LANGUAGES:
            return code
    return i18n.DEFAULT_LANGUAGE


def current_staff_of(request: Request) -> Staff | None:
    staff: Staff | None = getattr(request.state, "staff", None)
    return staff


def render(
    request: Request,
    template: str,
    *,
    status: int = 200,
    tz: tzinfo | None = None,
    section: str | None = None,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """A whole page (or an htmx fragment) with the shared context above."""
    staff = current_staff_of(request)
    lang = staff.language if staff is not None else browser_language(request)
    csrf = staff.csrf_token if staff is not None else context.pop("csrf_token", "")
    body = env.get_template(template).render(
        request=request,
        staff=staff,
        lang=lang,
        tz=tz or UTC,
        csrf_token=csrf,
        nav=nav_links(request, staff),
        section=section,
        now=clock.now(),
        **context,
    )
    return HTMLResponse(body, status_code=status, headers=headers)
