"""Form errors next to their fields, in the user's language.

A view validates a posted form with the API's own pydantic schema, calls the service, and on
failure re-renders the form with status 422 and `errors = {field: message}`; forms.html's
`field()` macro shows each message under its input. Services name the field their error is about
with a "field: …" prefix in the detail (e.g. "until: 2026-01-01 is in the past") or by code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from patron.admin import i18n
from patron.errors import PatronError

Errors = dict[str, str]
# str.isdigit() also says yes to "²" and "٣", which int() refuses (or reads): only 0-9 here.
ASCII_DIGITS = re.compile(r"[0-9]+")
_M = TypeVar("_M", bound=BaseModel)
FORM = "__form__"  # an error about the whole form, shown above it

# Error codes whose field is not in their detail.
CODE_FIELDS = {
    "duplicate_phone": "phone",
    "invalid_phone": "phone",
    "duplicate_email": "email",
    "invalid_email": "email",
    "invalid_name": "name",
    "insufficient_points": "points",
    "unknown_tier": "tier",
    "until_in_past": "until",
    "wrong_password": "current_password",
    "password_too_short": "password",
    "password_too_long": "password",
    "password_too_weak": "password",
    "password_reused": "password",
}

_TYPES = {
    "missing": "form.error.required",
    "string_too_short": "form.error.too_short",
    "string_too_long": "form.error.too_long",
    "int_parsing": "form.error.integer",
    "int_type": "form.error.integer",
    "int_from_float": "form.error.integer",
    "greater_than_equal": "form.error.range",
    "less_than_equal": "form.error.range",
    "date_parsing": "form.error.date",
    "date_from_datetime_parsing": "form.error.date",
    "date_from_datetime_inexact": "form.error.date",
    "date_type": "form.error.date",
    "literal_error": "form.error.choice",
    "enum": "form.error.choice",
    "bool_parsing": "form.error.choice",
    "string_pattern_mismatch": "form.error.invalid",
}


def _message(err: dict[str, Any], lang: str) -> str:
    kind = str(err.get("type", ""))
    ctx = err.get("ctx") or {}
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return i18n.translate("form.error.required", lang)
    key = _TYPES.get(kind)
    if key is None:
        if kind == "value_error" and "email" in str(err.get("msg", "")):
            key = "form.error.email"
        else:
            key = "form.error.invalid"
    return i18n.translate(
        key,
        lang,
        min=_figure(ctx.get("min_length"), lang),
        max=_figure(ctx.get("max_length"), lang),
        **_bounds(ctx, lang),
    )


def _figure(value: Any, lang: str) -> str:
    """A bound as staff read it (2000 -> "2,000"); nothing when there is none."""
    return "" if value is None else i18n.number(value, lang)


def _bounds(ctx: dict[str, Any], lang: str) -> dict[str, Any]:
    return {"ge": _figure(ctx.get("ge"), lang), "le": _figure(ctx.get("le"), lang)}


def from_validation(exc: ValidationError, lang: str, fields: Iterable[str] = ()) -> Errors:
    """pydantic errors -> {field: message}; errors on unknown fields go to the whole form."""
    known = set(fields)
    out: Errors = {}
    for err in exc.errors():
        loc = err.get("loc") or ()
        field = str(loc[0]) if loc else FORM
        if known and field not in known:
            field = FORM
        out.setdefault(field, _message(dict(err), lang))
    return out


def from_error(exc: PatronError, lang: str, fields: Iterable[str] = ()) -> Errors:
    """A service's refusal -> {field: message}, or the whole form when no field is named."""
    known = set(fields)
    head, sep, rest = exc.detail.partition(": ")
    field = CODE_FIELDS.get(exc.code) or (head if sep and head in known else FORM)
    if known and field not in known:
        field = FORM
    key = f"error.code.{exc.code}"
    if i18n.has_message(key):
        message = i18n.translate(key, lang)
    else:
        message = rest if sep and head == field else exc.detail
    return {field: message}


def optional_int(text: str | None, *, low: int = 1, high: int = 2**53) -> int | None:
    """A whole number from a GET filter, where an empty field arrives as "" (None then, and
    for anything that is not a number in range)."""
    text = (text or "").strip()
    if not ASCII_DIGITS.fullmatch(text) or len(text) > 16:
        return None
    value = int(text)
    return value if low <= value <= high else None


class BadDate(ValueError):
    pass


def optional_date(text: str | None) -> date | None:
    """A YYYY-MM-DD date from a GET filter; "" is None, anything else unreadable is BadDate."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10]) if len(text) == 10 else date.fromisoformat(text)
    except ValueError:
        raise BadDate(text) from None


def required(values: Mapping[str, object], names: Iterable[str], lang: str) -> Errors:
    return {
        name: i18n.translate("form.error.required", lang)
        for name in names
        if not str(values.get(name) or "").strip()
    }


def save_document(
    document: str, schema: type[_M], save: Callable[[_M], object], *, language: str, json_key: str
) -> str | None:
    """Validate a JSON document from an editor page with the API's schema and save it.

    Returns the message to show above the editor when the document is refused (not JSON, not
    valid, or refused by the service), or None once saved. Errors a form cannot answer (5xx,
    401/403) propagate."""
    try:
        body = schema.model_validate(json.loads(document))
        save(body)
    except json.JSONDecodeError as exc:
        return i18n.translate(json_key, language, detail=str(exc))
    except ValidationError as exc:
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
    except PatronError as exc:
        if exc.status >= 500 or exc.status in (401, 403):
            raise
        return exc.detail
    return None
