"""Jinja2 for the member pages: `t(key)`, `url(name, **path)` and locale-aware filters
(points, money, date, datetime) in the member's language and the program's timezone."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from patron import __version__
from patron.portal import i18n

if TYPE_CHECKING:
    from patron.portal.context import Viewer

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
    body = env.get_template(template).render(
        request=request,
        viewer=viewer,
        lang=viewer.language if viewer is not None else browser_language(request),
        tz=program.tz if program is not None else UTC,
        program=program,
        program_code=program.code if program is not None else request.path_params.get("program"),
        csrf_token=viewer.csrf_token if viewer is not None else csrf_token,
        **context,
    )
    return HTMLResponse(body, status_code=status)
