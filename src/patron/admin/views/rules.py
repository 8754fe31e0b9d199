"""Program setup: the rule-set editor.

Every change — add, edit, switch off or on, delete, the settings, the whole document as JSON —
goes through one preview page first: the candidate rule set is validated with the rules core's
own model (errors land under the field named by the service's path, rules.2.factor → factor),
the what-if report replays recent purchases under it (`patron.rules.simulate`, writing nothing),
and only "Publish" stores it, as the next version, through `patron.rules.service.publish` with
the signed-in user as the actor. The preview carries the candidate and the version it started
from; if someone published meanwhile, publishing is refused (409) instead of overwriting.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron import clock
from patron.admin import forms, i18n
from patron.admin import service as staff_users
from patron.admin.context import programs as all_programs
from patron.admin.deps import Staff, form_data, get_db, require
from patron.admin.templating import path_for, render
from patron.errors import Invalid, NotFound, StaleVersion
from patron.programs.models import Program, Store
from patron.programs.service import get_program
from patron.rules import service as rules
from patron.rules import simulate as what_if
from patron.rules.model import DAYS, RULE_ID, RULE_KINDS, RuleSetDoc, rule_label
from patron.tiers.models import TierDefinition

router = APIRouter()

CHANNELS = ("pos", "online", "app")
EVENTS = ("signup", "birthday", "profile_completed", "review", "newsletter", "referral")
# The what-if replays this many days ending today (program timezone) unless told otherwise.
DEFAULT_DAYS = 30
# A longer replay would hold a request for minutes on a big program; the CLI has no such bound.
MAX_DAYS = 366
TOP_MEMBERS = 10
ACTIONS = ("add", "edit", "toggle", "delete", "settings", "json", "candidate")
NOTICES = frozenset({"published"})

# Form fields of each kind, besides the ones every rule has (id, name, enabled, window, scope).
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "base_rate": ("mode", "points", "per_amount", "rounding"),
    "exclude": ("match",),
    "product_bonus": ("match", "points_per_unit", "qualifying"),
    "product_multiplier": ("match", "factor"),
    "tier_multiplier": ("factors",),
    "time_weight": ("days", "from_time", "to_time", "factor"),
    "promotion": ("factor", "bonus_points", "budget_points", "qualifying"),
    "order_bonus": ("points", "qualifying"),
    "cap": ("per", "max_points"),
    "event": ("event", "points", "limit", "qualifying"),
}
CHOICES: dict[str, tuple[str, ...]] = {
    "mode": ("per_full_unit", "proportional"),
    "rounding": ("down", "half_up", "up"),
    "per": ("order", "member_day", "member_month", "member_year"),
    "limit": ("once", "per_day", "per_month", "per_year", "unlimited"),
    "combine": ("multiply", "add"),
}
# Conditions the form edits; the others (member attributes, minimum items) are kept as they are
# and edited in the JSON editor.
FORM_CONDITIONS = ("min_amount", "tiers", "min_purchases", "joined_within_days", "birthday_month")


# --- the program a page is about ------------------------------------------------------------


@dataclass(frozen=True)
class Prog:
    """What the pages show of a program, copied out of the session."""

    id: int
    code: str
    name: str
    currency: str
    timezone: str
    rule_version: int

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def today(self) -> date:
        return clock.now().astimezone(self.tz).date()


def prog_of(program: Program) -> Prog:
    return Prog(
        program.id,
        program.code,
        program.name,
        program.currency,
        program.timezone,
        program.rule_version,
    )


def pick_program(
    session: Session, code: str | None
) -> tuple[Program | None, list[tuple[str, str]]]:
    """The program asked for (404 if unknown), else the first one; and every (code, name)."""
    listed = all_programs(session)
    choices = [(p.code, p.name) for p in listed]
    if code:
        return get_program(session, code), choices
    return (listed[0] if listed else None), choices


def _blank(value: str | None) -> str:
    return (value or "").strip()


# --- rules in words ---------------------------------------------------------------------------


def factor_text(value: Any) -> str:
    """Decimal("2.0000") → "2", "1.50" → "1.5"."""
    number = Decimal(str(value))
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def _words(lang: str, keys: Iterable[str], prefix: str) -> str:
    return ", ".join(
        i18n.translate(f"{prefix}{k}", lang) if i18n.has_message(f"{prefix}{k}") else k
        for k in keys
    )


def days_text(days: Iterable[str], lang: str) -> str:
    chosen = [d for d in DAYS if d in set(days)]
    if len(chosen) == 7:
        return i18n.translate("rules.days.every", lang)
    if chosen == ["sat", "sun"]:
        return i18n.translate("rules.days.weekend", lang)
    if chosen == ["mon", "tue", "wed", "thu", "fri"]:
        return i18n.translate("rules.days.weekdays", lang)
    return _words(lang, chosen, "rules.day.")


def match_text(match: Any, lang: str) -> str:
    parts = []
    if match.categories:
        parts.append(
            i18n.translate("rules.match.categories", lang, list=", ".join(match.categories))
        )
    if match.skus:
        parts.append(i18n.translate("rules.match.skus", lang, list=", ".join(match.skus)))
    return " / ".join(parts)


def _points(value: int, lang: str) -> str:
    return i18n.points(value, lang)


def _what(rule: Any, currency: str, lang: str, tier_names: Mapping[str, str]) -> str:
    t = i18n.translate
    kind = rule.kind
    if kind == "base_rate":
        per = i18n.money(rule.per_amount, currency, lang)
        if rule.mode == "per_full_unit":
            return t("rules.sum.base_full", lang, points=_points(rule.points, lang), per=per)
        return t(
            "rules.sum.base_prop",
            lang,
            points=_points(rule.points, lang),
            per=per,
            rounding=t(f"rules.rounding.{rule.rounding}", lang),
        )
    if kind == "exclude":
        return t("rules.sum.exclude", lang, match=match_text(rule.match, lang))
    if kind == "product_bonus":
        return t(
            "rules.sum.product_bonus",
            lang,
            points=_points(rule.points_per_unit, lang),
            match=match_text(rule.match, lang),
        )
    if kind == "product_multiplier":
        return t(
            "rules.sum.product_multiplier",
            lang,
            factor=factor_text(rule.factor),
            match=match_text(rule.match, lang),
        )
    if kind == "tier_multiplier":
        return ", ".join(
            f"{tier_names.get(code, code)} ×{factor_text(f)}" for code, f in rule.factors.items()
        )
    if kind == "time_weight":
        when = days_text(rule.days, lang)
        if rule.from_time is not None and rule.to_time is not None:
            when += f" {rule.from_time:%H:%M}–{rule.to_time:%H:%M}"
        return t("rules.sum.time_weight", lang, when=when, factor=factor_text(rule.factor))
    if kind == "promotion":
        parts = []
        if rule.factor != 1:
            parts.append(f"×{factor_text(rule.factor)}")
        if rule.bonus_points:
            parts.append(t("rules.sum.per_order", lang, points=_points(rule.bonus_points, lang)))
        if rule.budget_points is not None:
            parts.append(t("rules.sum.budget", lang, points=_points(rule.budget_points, lang)))
        return ", ".join(parts)
    if kind == "order_bonus":
        return t("rules.sum.per_order", lang, points=_points(rule.points, lang))
    if kind == "cap":
        return t(f"rules.sum.cap.{rule.per}", lang, points=_points(rule.max_points, lang))
    if kind == "event":
        key = f"rules.event.{rule.event}"
        event = t(key, lang) if i18n.has_message(key) else rule.event
        return t(
            "rules.sum.event",
            lang,
            points=_points(rule.points, lang),
            event=event,
            limit=t(f"rules.limit.{rule.limit}", lang),
        )
    return kind


def _scope(rule: Any, currency: str, lang: str, tier_names: Mapping[str, str]) -> list[str]:
    t = i18n.translate
    parts = []
    if rule.stores:
        parts.append(t("rules.scope.stores", lang, stores=", ".join(rule.stores)))
    if rule.channels:
        parts.append(
            t("rules.scope.channels", lang, channels=_words(lang, rule.channels, "rules.channel."))
        )
    if rule.payment_methods:
        parts.append(t("rules.scope.payment", lang, methods=", ".join(rule.payment_methods)))
    c = rule.conditions
    if c is not None:
        if c.min_amount is not None:
            amount = i18n.money(c.min_amount, currency, lang)
            parts.append(t("rules.cond.min_amount", lang, amount=amount))
        if c.min_items is not None:
            parts.append(
                t(
                    "rules.cond.min_items",
                    lang,
                    count=factor_text(c.min_items.count),
                    match=match_text(c.min_items.match, lang),
                )
            )
        if c.tiers:
            names = ", ".join(tier_names.get(code, code) for code in c.tiers)
            parts.append(t("rules.cond.tiers", lang, tiers=names))
        if c.min_purchases is not None:
            parts.append(t("rules.cond.min_purchases", lang, count=c.min_purchases))
        if c.joined_within_days is not None:
            parts.append(t("rules.cond.joined", lang, days=c.joined_within_days))
        if c.birthday_month:
            parts.append(t("rules.cond.birthday", lang))
        if c.attributes:
            attrs = ", ".join(f"{k}={v}" for k, v in c.attributes.items())
            parts.append(t("rules.cond.attributes", lang, attrs=attrs))
    return parts


def summary(
    rule: Any, currency: str, lang: str, tier_names: Mapping[str, str] | None = None
) -> str:
    """One line a store manager can read: "×2 on category cake · only at mapo"."""
    tier_names = tier_names or {}
    return " · ".join(
        [p for p in [_what(rule, currency, lang, tier_names)] if p]
        + _scope(rule, currency, lang, tier_names)
    )


def window_text(starts: date | None, ends: date | None, lang: str) -> str:
    if starts and ends:
        return i18n.translate(
            "rules.window.range",
            lang,
            start=i18n.format_date(starts, lang),
            end=i18n.format_date(ends, lang),
        )
    if starts:
        return i18n.translate("rules.window.from", lang, start=i18n.format_date(starts, lang))
    if ends:
        return i18n.translate("rules.window.until", lang, end=i18n.format_date(ends, lang))
    return i18n.translate("rules.window.always", lang)


def status_of(rule: Any, today: date) -> str:
    if not rule.enabled:
        return "off"
    if rule.ends is not None and rule.ends < today:
        return "ended"
    if rule.starts is not None and rule.starts > today:
        return "scheduled"
    return "on"


@dataclass(frozen=True)
class RuleRow:
    index: int
    id: str
    label: str
    kind: str
    summary: str
    window: str
    status: str
    enabled: bool


def rule_rows(
    doc: RuleSetDoc, prog: Prog, lang: str, tier_names: Mapping[str, str]
) -> list[RuleRow]:
    today = prog.today()
    return [
        RuleRow(
            index=index,
            id=rule.id,
            label=rule_label(rule),
            kind=rule.kind,
            summary=summary(rule, prog.currency, lang, tier_names),
            window=window_text(rule.starts, rule.ends, lang),
            status=status_of(rule, today),
            enabled=rule.enabled,
        )
        for index, rule in enumerate(doc.rules)
    ]


def settings_lines(doc: RuleSetDoc, lang: str) -> list[tuple[str, str]]:
    """The rule set's own settings as (label, value) lines."""
    t = i18n.translate
    lines = [
        (t("rules.field.combine", lang), t(f"rules.combine.{doc.combine}", lang)),
        (t("rules.field.set_rounding", lang), t(f"rules.rounding.{doc.rounding}", lang)),
    ]
    red = doc.redemption
    if red.excluded is not None:
        lines.append((t("rules.settings.no_redeem_on", lang), match_text(red.excluded, lang)))
    if red.stores is not None:
        lines.append((t("rules.settings.redeem_stores", lang), ", ".join(red.stores)))
    if red.channels is not None:
        channels = _words(lang, red.channels, "rules.channel.")
        lines.append((t("rules.settings.redeem_channels", lang), channels))
    return lines


def tier_names_of(session: Session, program_id: int, lang: str) -> dict[str, str]:
    rows = session.execute(
        select(TierDefinition.code, TierDefinition.names)
        .where(TierDefinition.program_id == program_id)
        .order_by(TierDefinition.rank)
    )
    return {
        code: (names or {}).get(lang) or (names or {}).get("en") or code for code, names in rows
    }


def store_codes(session: Session, program_id: int) -> list[tuple[str, str]]:
    return [
        (code, name)
        for code, name in session.execute(
            select(Store.code, Store.name).where(Store.program_id == program_id).order_by(Store.id)
        )
    ]


# --- errors: the service's field paths → the form's fields ------------------------------------

_TYPE_KEYS = {
    "decimal_parsing": "rules.error.number",
    "decimal_type": "rules.error.number",
    "float_parsing": "rules.error.number",
    "decimal_max_places": "rules.error.places",
    "decimal_max_digits": "rules.error.too_big",
    "time_parsing": "rules.error.time",
    "time_type": "rules.error.time",
    "too_short": "rules.error.choose",
    "too_long": "rules.error.too_many",
    "extra_forbidden": "rules.error.unknown_field",
    "json_invalid": "rules.error.json",
}
_BOUND_KEYS = {
    "greater_than_equal": ("rules.error.min", "ge"),
    "greater_than": ("rules.error.above", "gt"),
    "less_than_equal": ("rules.error.max", "le"),
    "less_than": ("rules.error.below", "lt"),
}
# The rules core's own refusals (model validators), by the start of their English message.
_VALUE_ERRORS = (
    ("ends (", "ends", "rules.error.window"),
    ("give both from_time and to_time", "to_time", "rules.error.both_times"),
    ("from_time equals to_time", "to_time", "rules.error.empty_hours"),
    ("a promotion needs", "factor", "rules.error.promotion"),
    ("match needs", "match.skus", "rules.error.match"),
    ("two enabled event rules", "event", "rules.error.event_twice"),
)
_USED_TWICE = re.compile(r"rules\[(\d+)\]\.id .* is used twice")


def bound_text(value: Any, lang: str) -> str:
    try:
        return i18n.number(Decimal(str(value)), lang)
    except ArithmeticError:
        return str(value)


def message_for(err: Mapping[str, Any], lang: str) -> str:
    """A pydantic error in the user's language; the core's English text when nothing fits."""
    kind = str(err.get("type", ""))
    ctx = err.get("ctx") or {}
    if kind in _BOUND_KEYS:
        key, bound = _BOUND_KEYS[kind]
        return i18n.translate(key, lang, limit=bound_text(ctx.get(bound, ""), lang))
    if kind in _TYPE_KEYS:
        return i18n.translate(_TYPE_KEYS[kind], lang)
    if kind == "value_error":
        text = str(err.get("msg", "")).removeprefix("Value error, ")
        for start, _field, key in _VALUE_ERRORS:
            if text.startswith(start):
                return i18n.translate(key, lang)
        if _USED_TWICE.search(text):
            return i18n.translate("rules.error.id_twice", lang)
        return text
    if kind == "string_pattern_mismatch":
        return i18n.translate("rules.error.code", lang)
    return forms._message(dict(err), lang)


def _value_error_field(err: Mapping[str, Any]) -> str | None:
    if err.get("type") != "value_error":
        return None
    text = str(err.get("msg", "")).removeprefix("Value error, ")
    for start, field, _key in _VALUE_ERRORS:
        if text.startswith(start):
            return field
    return "id" if _USED_TWICE.search(text) else None


def rule_field(parts: list[str]) -> str:
    """The form field for a path inside one rule: match.skus.0 → match.skus, stores.1 → stores,
    conditions.min_amount → cond.min_amount, factors.gold → factor.gold."""
    if not parts:
        return forms.FORM
    head = parts[0]
    if head == "match":
        return "match." + (parts[1] if len(parts) > 1 else "skus")
    if head == "conditions":
        sub = parts[1] if len(parts) > 1 else ""
        return f"cond.{sub}" if sub in FORM_CONDITIONS else forms.FORM
    if head == "factors":
        return f"factor.{parts[1]}" if len(parts) > 1 else "factors"
    return head


def rule_errors(exc: ValidationError, index: int | None, lang: str) -> forms.Errors:
    """Errors of a candidate rule set, for the form of the rule at `index` (or the settings form
    when index is None). An error about another rule or an unknown place goes above the form."""
    out: forms.Errors = {}
    for err in exc.errors():
        path = rules.field_path(err.get("loc", ())).split(".")
        field = forms.FORM
        if path[:1] == ["rules"] and len(path) >= 2 and path[1].isdigit():
            if index is not None and int(path[1]) == index:
                field = _value_error_field(err) or rule_field(path[2:])
        elif path[:1] == ["rules"]:
            field = _value_error_field(err) or forms.FORM
        elif index is None and path[:1] == ["redemption"]:
            field = "red." + (path[2] if len(path) > 2 and path[1] == "excluded" else path[1])
            if path[1:2] == ["excluded"] and len(path) == 2:
                field = "red.skus"
        elif index is None and path[0] in ("combine", "rounding"):
            field = path[0]
        message = message_for(err, lang)
        if field == forms.FORM and index is not None:
            where = ".".join(path)
            message = f"{where}: {message}" if where else message
        out.setdefault(field, message)
    return out


def all_errors(exc: ValidationError, lang: str) -> list[str]:
    """Every error of a whole document as "rules.2.factor: message" (the JSON editor)."""
    lines = []
    for err in exc.errors():
        where = rules.field_path(err.get("loc", ())) or i18n.translate("rules.json.document", lang)
        lines.append(f"{where}: {message_for(err, lang)}")
    return lines


_BRACKETS = re.compile(r"\[(\d+)\]")


def service_error_path(exc: Invalid) -> str:
    """rules[0].stores or rules.0.stores → rules.0.stores (the part before ": ")."""
    head, sep, _rest = exc.detail.partition(": ")
    return _BRACKETS.sub(r".\1", head) if sep else ""


# --- a rule ⇄ its form --------------------------------------------------------------------------


def _list_text(values: Iterable[str] | None) -> str:
    return ", ".join(values or [])


def _split(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,\n]", text) if part.strip()]


def form_values(rule: Mapping[str, Any]) -> dict[str, str]:
    """A rule (as JSON data) as the form's strings, for editing."""
    values: dict[str, str] = {}
    for key in ("id", "name", "starts", "ends", "mode", "rounding", "per", "limit", "event"):
        if rule.get(key) is not None:
            values[key] = str(rule[key])
    for key in (
        "points",
        "per_amount",
        "points_per_unit",
        "factor",
        "bonus_points",
        "budget_points",
        "max_points",
    ):
        if rule.get(key) is not None:
            # As stored ("1.50" stays "1.50"), so an untouched field is no change.
            values[key] = str(rule[key])
    for key in ("from_time", "to_time"):
        if rule.get(key):
            values[key] = str(rule[key])[:5]
    values["enabled"] = "1" if rule.get("enabled", True) else ""
    values["qualifying"] = "1" if rule.get("qualifying", True) else ""
    for code in rule.get("stores") or []:
        values[f"store.{code}"] = "1"
    for channel in rule.get("channels") or []:
        values[f"channel.{channel}"] = "1"
    values["payment_methods"] = _list_text(rule.get("payment_methods"))
    match = rule.get("match") or {}
    values["match.skus"] = _list_text(match.get("skus"))
    values["match.categories"] = _list_text(match.get("categories"))
    for code, factor in (rule.get("factors") or {}).items():
        values[f"factor.{code}"] = str(factor)
    for day in rule.get("days") or (DAYS if rule.get("kind") == "time_weight" else ()):
        values[f"day.{day}"] = "1"
    cond = rule.get("conditions") or {}
    if cond.get("min_amount") is not None:
        values["cond.min_amount"] = str(cond["min_amount"])
    for key in ("min_purchases", "joined_within_days"):
        if cond.get(key) is not None:
            values[f"cond.{key}"] = str(cond[key])
    for code in cond.get("tiers") or []:
        values[f"cond.tier.{code}"] = "1"
    values["cond.birthday_month"] = "1" if cond.get("birthday_month") else ""
    return values


def _checked(form: Mapping[str, str], prefix: str) -> list[str]:
    return [key[len(prefix) :] for key, value in form.items() if key.startswith(prefix) and value]


def rule_from_form(
    kind: str, form: Mapping[str, str], original: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The rule the form describes, on top of the original (so what the form does not show,
    such as member-attribute conditions, is kept). Blank fields are left out (defaults apply);
    the values stay strings, the rules core's model parses and checks them."""
    rule: dict[str, Any] = dict(original or {})
    rule["kind"] = kind

    def put(key: str, value: Any) -> None:
        if value in (None, "", [], {}):
            rule.pop(key, None)
        else:
            rule[key] = value

    put("id", _blank(form.get("id")))
    put("name", _blank(form.get("name")))
    rule["enabled"] = bool(form.get("enabled"))
    put("starts", _blank(form.get("starts")))
    put("ends", _blank(form.get("ends")))
    # Checkboxes for the program's stores; a store the rule names that the program has lost is
    # kept only while it stays ticked (the form lists it too).
    put("stores", _checked(form, "store."))
    put("channels", [c for c in CHANNELS if form.get(f"channel.{c}")])
    put("payment_methods", _split(form.get("payment_methods", "")))

    cond: dict[str, Any] = dict(rule.get("conditions") or {})
    for key in FORM_CONDITIONS:
        cond.pop(key, None)
    if _blank(form.get("cond.min_amount")):
        cond["min_amount"] = _blank(form.get("cond.min_amount")).replace(",", "")
    chosen_tiers = _checked(form, "cond.tier.")
    if chosen_tiers:
        cond["tiers"] = chosen_tiers
    for key in ("min_purchases", "joined_within_days"):
        if _blank(form.get(f"cond.{key}")):
            cond[key] = _blank(form.get(f"cond.{key}"))
    if form.get("cond.birthday_month"):
        cond["birthday_month"] = True
    put("conditions", cond)

    fields = KIND_FIELDS.get(kind, ())
    for key in ("mode", "rounding", "per", "limit", "event"):
        if key in fields:
            put(key, _blank(form.get(key)))
    for key in (
        "points",
        "per_amount",
        "points_per_unit",
        "factor",
        "bonus_points",
        "budget_points",
        "max_points",
        "from_time",
        "to_time",
    ):
        if key in fields:
            put(key, _blank(form.get(key)).replace(",", ""))
    for key in ("from_time", "to_time"):
        # A typed "9:00" is what a browser's time input would send as "09:00".
        if key in rule and re.fullmatch(r"\d:\d\d", str(rule[key])):
            rule[key] = "0" + rule[key]
    if "qualifying" in fields:
        rule["qualifying"] = bool(form.get("qualifying"))
    if "match" in fields:
        match = {
            "skus": _split(form.get("match.skus", "")),
            "categories": _split(form.get("match.categories", "")),
        }
        rule["match"] = {k: v for k, v in match.items() if v}
    if "days" in fields:
        rule["days"] = [d for d in DAYS if form.get(f"day.{d}")]
    if "factors" in fields:
        rule["factors"] = {
            code[len("factor.") :]: _blank(value).replace(",", "")
            for code, value in form.items()
            if code.startswith("factor.") and _blank(value)
        }
    # Fields of another kind (the form only sends this kind's) never reach the rule.
    for key in set(rule) - _allowed_keys(kind):
        rule.pop(key)
    return rule


_COMMON_KEYS = {
    "id",
    "kind",
    "name",
    "enabled",
    "starts",
    "ends",
    "stores",
    "channels",
    "payment_methods",
    "conditions",
}


def _allowed_keys(kind: str) -> set[str]:
    keys = set(_COMMON_KEYS)
    for field in KIND_FIELDS.get(kind, ()):
        keys.add(field)
    return keys


def _new_id(kind: str, taken: Iterable[str]) -> str:
    used = set(taken)
    stem = kind.replace("_", "-")
    n = 1
    while f"{stem}-{n}" in used:
        n += 1
    return f"{stem}-{n}"


# --- loading what a page shows --------------------------------------------------------------


def _dump(doc: RuleSetDoc) -> dict[str, Any]:
    return doc.model_dump(mode="json", exclude_none=True)


def _doc_at(session: Session, program: Program, version: int | None) -> tuple[RuleSetDoc, int]:
    """The rule set at `version` (the current one if None or unknown) and its number."""
    if version is not None:
        try:
            return rules.document(session, program, version), version
        except NotFound:
            pass
    return rules.document(session, program), program.rule_version


def _version_int(text: str | None) -> int | None:
    return forms.optional_int(text, low=1, high=10**6)


def _lookups(session: Session, program: Program, lang: str) -> dict[str, Any]:
    return {
        "stores": store_codes(session, program.id),
        "tier_names": tier_names_of(session, program.id, lang),
    }


# --- pages ------------------------------------------------------------------------------------


@router.get("/rules", name="rules_list")
def rules_list(
    request: Request,
    program: str | None = Query(None, max_length=40),
    staff: Staff = Depends(require("rules.view")),
) -> Response:
    done = request.query_params.get("done")
    with get_db(request).unit_of_work(readonly=True) as session:
        found, choices = pick_program(session, program)
        if found is None:
            return render(request, "rules/none.html", section="rules")
        prog = prog_of(found)
        row = rules.get_version(session, found)
        doc = rules.document(session, found)
        names = tier_names_of(session, found.id, staff.language)
        labels = staff_users.actor_labels(session, [row.actor])
        return render(
            request,
            "rules/list.html",
            section="rules",
            tz=prog.tz,
            prog=prog,
            programs=choices,
            current=row,
            by=labels.get(row.actor, row.actor),
            rows=rule_rows(doc, prog, staff.language, names),
            settings=settings_lines(doc, staff.language),
            kinds=list(RULE_KINDS),
            done=done if done in NOTICES else None,
            published=_version_int(request.query_params.get("version")),
        )


def _form_page(
    request: Request,
    staff: Staff,
    session: Session,
    found: Program,
    *,
    kind: str,
    action: str,
    rule_id: str | None,
    base_version: int,
    values: Mapping[str, str],
    errors: forms.Errors | None = None,
    status: int = 200,
    hidden_conditions: bool = False,
) -> Response:
    prog = prog_of(found)
    lookups = _lookups(session, found, staff.language)
    # A store or tier the rule names but the program no longer has stays listed, to be unticked.
    store_list = list(lookups["stores"])
    for key in values:
        if key.startswith("store.") and key[6:] not in {c for c, _ in store_list}:
            store_list.append((key[6:], key[6:]))
    tier_list = list(lookups["tier_names"].items())
    for key in values:
        for prefix in ("cond.tier.", "factor."):
            code = key[len(prefix) :]
            if key.startswith(prefix) and code not in {c for c, _ in tier_list}:
                tier_list.append((code, code))
    return render(
        request,
        "rules/form.html",
        status=status,
        section="rules",
        tz=prog.tz,
        prog=prog,
        kind=kind,
        action=action,
        rule_id=rule_id,
        base_version=base_version,
        values=values,
        errors=errors or {},
        stores=store_list,
        tiers=tier_list,
        channels=CHANNELS,
        days=DAYS,
        events=EVENTS,
        choices=CHOICES,
        fields=KIND_FIELDS[kind],
        hidden_conditions=hidden_conditions,
        day_options=[(d, i18n.translate(f"rules.day.{d}", staff.language)) for d in DAYS],
        channel_options=channel_options(staff.language),
        scoped=_scoped(values),
    )


def channel_options(lang: str) -> list[tuple[str, str]]:
    return [(c, i18n.translate(f"rules.channel.{c}", lang)) for c in CHANNELS]


def _scoped(values: Mapping[str, str]) -> bool:
    """Whether the rule is limited by store, channel, payment or a condition (the form then
    opens that section)."""
    return any(
        value
        and (
            key.startswith(("store.", "channel.", "cond.tier.", "cond."))
            or key == "payment_methods"
        )
        for key, value in values.items()
    )


def _has_hidden_conditions(rule: Mapping[str, Any]) -> bool:
    cond = rule.get("conditions") or {}
    return any(key not in FORM_CONDITIONS for key in cond)


@router.get("/rules/new", name="rules_new")
def rules_new(
    request: Request,
    program: str | None = Query(None, max_length=40),
    kind: str = Query("product_multiplier", max_length=40),
    staff: Staff = Depends(require("rules.manage")),
) -> Response:
    if kind not in KIND_FIELDS:
        kind = "product_multiplier"
    with get_db(request).unit_of_work(readonly=True) as session:
        found, _ = pick_program(session, program)
        if found is None:
            return render(request, "rules/none.html", section="rules")
        doc = rules.document(session, found)
        values = form_values({"kind": kind, "id": _new_id(kind, [r.id for r in doc.rules])})
        return _form_page(
            request,
            staff,
            session,
            found,
            kind=kind,
            action="add",
            rule_id=None,
            base_version=found.rule_version,
            values=values,
        )


@router.get("/rules/items/{rule_id}/edit", name="rules_edit")
def rules_edit(
    request: Request,
    rule_id: str = Path(pattern=RULE_ID),
    program: str | None = Query(None, max_length=40),
    staff: Staff = Depends(require("rules.manage")),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        found, _ = pick_program(session, program)
        if found is None:
            return render(request, "rules/none.html", section="rules")
        data = _dump(rules.document(session, found))
        rule = next((r for r in data["rules"] if r["id"] == rule_id), None)
        if rule is None:
            raise NotFound(f"no rule {rule_id!r}", code="rule_not_found")
        return _form_page(
            request,
            staff,
            session,
            found,
            kind=rule["kind"],
            action="edit",
            rule_id=rule_id,
            base_version=found.rule_version,
            values=form_values(rule),
            hidden_conditions=_has_hidden_conditions(rule),
        )


def _settings_values(doc: Mapping[str, Any]) -> dict[str, str]:
    red = doc.get("redemption") or {}
    excluded = red.get("excluded") or {}
    values = {
        "combine": str(doc.get("combine", "multiply")),
        "rounding": str(doc.get("rounding", "down")),
        "red.skus": _list_text(excluded.get("skus")),
        "red.categories": _list_text(excluded.get("categories")),
    }
    for code in red.get("stores") or []:
        values[f"red.store.{code}"] = "1"
    for channel in red.get("channels") or []:
        values[f"red.channel.{channel}"] = "1"
    return values


def _settings_page(
    request: Request,
    staff: Staff,
    session: Session,
    found: Program,
    *,
    base_version: int,
    values: Mapping[str, str],
    errors: forms.Errors | None = None,
    status: int = 200,
) -> Response:
    prog = prog_of(found)
    return render(
        request,
        "rules/settings.html",
        status=status,
        section="rules",
        tz=prog.tz,
        prog=prog,
        base_version=base_version,
        values=values,
        errors=errors or {},
        stores=store_codes(session, found.id),
        channel_options=channel_options(staff.language),
        choices=CHOICES,
    )


@router.get("/rules/settings", name="rules_settings")
def rules_settings(
    request: Request,
    program: str | None = Query(None, max_length=40),
    staff: Staff = Depends(require("rules.manage")),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        found, _ = pick_program(session, program)
        if found is None:
            return render(request, "rules/none.html", section="rules")
        values = _settings_values(_dump(rules.document(session, found)))
        return _settings_page(
            request, staff, session, found, base_version=found.rule_version, values=values
        )


def _json_page(
    request: Request,
    found: Program,
    *,
    base_version: int,
    text: str,
    problems: list[str] | None = None,
    status: int = 200,
) -> Response:
    prog = prog_of(found)
    return render(
        request,
        "rules/json.html",
        status=status,
        section="rules",
        tz=prog.tz,
        prog=prog,
        base_version=base_version,
        text=text,
        problems=problems or [],
    )


def pretty(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


@router.get("/rules/json", name="rules_json")
def rules_json(
    request: Request,
    program: str | None = Query(None, max_length=40),
    staff: Staff = Depends(require("rules.manage")),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        found, _ = pick_program(session, program)
        if found is None:
            return render(request, "rules/none.html", section="rules")
        text = pretty(_dump(rules.document(session, found)))
        return _json_page(request, found, base_version=found.rule_version, text=text)


# --- the preview: what-if before publishing -------------------------------------------------


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: str
    after: str
    label: str = ""


def _flat(data: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(data, dict):
        out: dict[str, str] = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(data, list):
        return {prefix: ", ".join(str(v) for v in data)}
    if isinstance(data, bool):
        return {prefix: "true" if data else "false"}
    return {prefix: str(data)}


def field_changes(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    label: Callable[[str], str] | None = None,
) -> list[FieldChange]:
    """Field by field, what differs between two versions of a rule (or of the settings)."""
    old, new = _flat(dict(before)), _flat(dict(after))
    keys = list(old) + [k for k in new if k not in old]
    return [
        FieldChange(k, old.get(k, "—"), new.get(k, "—"), label(k) if label else "")
        for k in keys
        if old.get(k) != new.get(k)
    ]


_FIELD_KEYS = {
    "match.categories": "rules.field.categories",
    "match.skus": "rules.field.skus",
    "redemption.excluded.categories": "rules.settings.no_redeem_categories",
    "redemption.excluded.skus": "rules.settings.no_redeem_skus",
    "redemption.stores": "rules.settings.redeem_stores",
    "redemption.channels": "rules.settings.redeem_channels",
}


def rule_field_label(path: str, lang: str) -> str:
    """A rule's field path in words, as the form labels it ("" when the form has no label)."""
    if path.startswith("factors."):
        return i18n.translate("rules.field.tier_factor", lang, tier=path.partition(".")[2])
    key = _FIELD_KEYS.get(path) or "rules.field." + path.removeprefix("conditions.")
    return i18n.translate(key, lang) if i18n.has_message(key) else ""


@dataclass(frozen=True)
class RuleChangeView:
    id: str
    label: str
    kind: str
    before: str
    after: str
    fields: list[FieldChange]


@dataclass(frozen=True)
class DocDiff:
    added: list[RuleRow]
    removed: list[RuleRow]
    changed: list[RuleChangeView]
    settings: list[FieldChange]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.settings)


def doc_diff(
    old: RuleSetDoc, new: RuleSetDoc, prog: Prog, lang: str, tier_names: Mapping[str, str]
) -> DocDiff:
    """The service's diff (rules added, removed, changed, settings), with each rule in words."""
    changes = rules.diff(old, new)
    old_rows = {r.id: r for r in rule_rows(old, prog, lang, tier_names)}
    new_rows = {r.id: r for r in rule_rows(new, prog, lang, tier_names)}
    old_rules = {r.id: r for r in old.rules}
    new_rules = {r.id: r for r in new.rules}
    changed = []
    for rule_id in changes["changed"]:
        before = old_rules[rule_id].model_dump(mode="json", exclude_none=True)
        after = new_rules[rule_id].model_dump(mode="json", exclude_none=True)
        changed.append(
            RuleChangeView(
                id=rule_id,
                label=new_rows[rule_id].label,
                kind=new_rules[rule_id].kind,
                before=old_rows[rule_id].summary,
                after=new_rows[rule_id].summary,
                fields=field_changes(before, after, lambda p: rule_field_label(p, lang)),
            )
        )
    settings: list[FieldChange] = []
    if changes["settings"]:
        keep = ("combine", "rounding", "redemption")
        settings = field_changes(
            {k: v for k, v in _dump(old).items() if k in keep},
            {k: v for k, v in _dump(new).items() if k in keep},
            lambda p: rule_field_label(p, lang),
        )
    return DocDiff(
        added=[new_rows[i] for i in changes["added"]],
        removed=[old_rows[i] for i in changes["removed"]],
        changed=changed,
        settings=settings,
    )


def default_period(prog: Prog) -> tuple[date, date]:
    today = prog.today()
    return today - timedelta(days=DEFAULT_DAYS - 1), today


def read_period(form: Mapping[str, str], prog: Prog, lang: str) -> tuple[date, date, forms.Errors]:
    """The what-if period from the form (default: the last 30 days, today included)."""
    start, end = default_period(prog)
    errors: forms.Errors = {}
    bounds: dict[str, date] = {}
    for field, fallback in (("sim_from", start), ("sim_to", end)):
        try:
            bounds[field] = forms.optional_date(form.get(field)) or fallback
        except forms.BadDate:
            bounds[field] = fallback
            errors[field] = i18n.translate("form.error.date", lang)
    if not errors and bounds["sim_to"] < bounds["sim_from"]:
        errors["sim_to"] = i18n.translate("error.code.invalid_range", lang)
    elif not errors and (bounds["sim_to"] - bounds["sim_from"]).days >= MAX_DAYS:
        errors["sim_to"] = i18n.translate("rules.preview.too_long", lang, days=MAX_DAYS)
    return bounds["sim_from"], bounds["sim_to"], errors


@dataclass(frozen=True)
class Candidate:
    doc: RuleSetDoc
    change: str  # what the user did, in words, for the page and the default note


class Refused(Exception):
    """The change cannot become a candidate: show its form again with these errors."""

    def __init__(self, response: Response) -> None:
        self.response = response


def _change_text(lang: str, action: str, rule_id: str = "") -> str:
    return i18n.translate(f"rules.change.{action}", lang, rule=rule_id)


def _json_candidate(
    request: Request, found: Program, form: Mapping[str, str], base_version: int, lang: str
) -> Candidate:
    """The whole document from the JSON editor; every problem is listed with its path."""
    text = form.get("document", "")
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        problem = i18n.translate(
            "rules.json.syntax",
            lang,
            line=getattr(exc, "lineno", "?"),
            col=getattr(exc, "colno", "?"),
        )
        raise Refused(
            _json_page(
                request,
                found,
                base_version=base_version,
                text=text,
                problems=[problem],
                status=422,
            )
        ) from None
    try:
        doc = RuleSetDoc.model_validate(parsed)
    except ValidationError as exc:
        raise Refused(
            _json_page(
                request,
                found,
                base_version=base_version,
                text=text,
                problems=all_errors(exc, lang),
                status=422,
            )
        ) from None
    return Candidate(doc, _change_text(lang, "json"))


def _settings_candidate(
    request: Request,
    staff: Staff,
    session: Session,
    found: Program,
    form: Mapping[str, str],
    data: dict[str, Any],
    base_version: int,
) -> Candidate:
    """How factors combine, the final rounding and the redemption rules, from their form."""
    lang = staff.language
    red: dict[str, Any] = dict(data.get("redemption") or {})
    excluded = {
        "skus": _split(form.get("red.skus", "")),
        "categories": _split(form.get("red.categories", "")),
    }
    excluded = {k: v for k, v in excluded.items() if v}
    red.pop("excluded", None)
    if excluded:
        red["excluded"] = excluded
    for key, chosen in (
        ("stores", _checked(form, "red.store.")),
        ("channels", [c for c in CHANNELS if form.get(f"red.channel.{c}")]),
    ):
        red.pop(key, None)
        if chosen:
            red[key] = chosen
    data["combine"] = _blank(form.get("combine"))
    data["rounding"] = _blank(form.get("rounding"))
    data["redemption"] = red
    try:
        return Candidate(RuleSetDoc.model_validate(data), _change_text(lang, "settings"))
    except ValidationError as exc:
        raise Refused(
            _settings_page(
                request,
                staff,
                session,
                found,
                base_version=base_version,
                values=dict(form),
                errors=rule_errors(exc, None, lang),
                status=422,
            )
        ) from None


def build_candidate(
    request: Request,
    staff: Staff,
    session: Session,
    found: Program,
    form: Mapping[str, str],
    action: str,
    base_version: int,
) -> Candidate:
    """Apply the posted change to the rule set at `base_version`; Refused re-renders the form."""
    lang = staff.language
    base_doc, base_version = _doc_at(session, found, base_version)
    data = _dump(base_doc)
    ids = [r["id"] for r in data["rules"]]

    if action == "candidate":
        doc = parse_candidate(form.get("candidate", ""))
        return Candidate(doc, _blank(form.get("change"))[:200])

    if action == "json":
        return _json_candidate(request, found, form, base_version, lang)
    if action == "settings":
        return _settings_candidate(request, staff, session, found, form, data, base_version)

    rule_id = _blank(form.get("rule_id"))
    if action in ("toggle", "delete", "edit") and rule_id not in ids:
        raise NotFound(f"no rule {rule_id!r} in version {base_version}", code="rule_not_found")

    if action == "toggle":
        index = ids.index(rule_id)
        rule = data["rules"][index]
        rule["enabled"] = not rule.get("enabled", True)
        verb = "enable" if rule["enabled"] else "disable"
        return Candidate(rules.validate_doc(data), _change_text(lang, verb, rule_id))

    if action == "delete":
        data["rules"] = [r for r in data["rules"] if r["id"] != rule_id]
        return Candidate(rules.validate_doc(data), _change_text(lang, "delete", rule_id))

    # add or edit: the rule's form
    kind = _blank(form.get("kind"))
    if kind not in KIND_FIELDS:
        raise Invalid("kind: unknown rule kind", code="invalid_rule_kind")
    if action == "edit":
        index = ids.index(rule_id)
        original = data["rules"][index]
        if original["kind"] != kind:
            raise Invalid("kind: a rule keeps its kind", code="invalid_rule_kind")
    else:
        index = len(data["rules"])
        original = None
    rule = rule_from_form(kind, form, original)
    if action == "add" and not rule.get("id"):
        rule["id"] = _new_id(kind, ids)
    if action == "add":
        data["rules"].append(rule)
    else:
        data["rules"][index] = rule
    try:
        doc = RuleSetDoc.model_validate(data)
    except ValidationError as exc:
        errors = rule_errors(exc, index, lang)
        values = {k: v for k, v in form.items() if k != "csrf_token"}
        raise Refused(
            _form_page(
                request,
                staff,
                session,
                found,
                kind=kind,
                action=action,
                rule_id=rule_id or None,
                base_version=base_version,
                values=values,
                errors=errors,
                status=422,
                hidden_conditions=_has_hidden_conditions(rule),
            )
        ) from None
    name = rule["id"] if action == "add" else rule_id
    return Candidate(doc, _change_text(lang, action, name))


def parse_candidate(text: str) -> RuleSetDoc:
    """The candidate a preview page carried; a tampered one is a 422 page, never a 500."""
    try:
        return rules.validate_doc(json.loads(text))
    except ValueError:
        raise Invalid("candidate: not a rule set document", code="invalid_rule_set") from None


def _preview(
    request: Request,
    staff: Staff,
    session: Session,
    found: Program,
    candidate: Candidate,
    base_version: int,
    form: Mapping[str, str],
    *,
    note: str | None = None,
    problem: str | None = None,
    status: int = 200,
) -> Response:
    prog = prog_of(found)
    lang = staff.language
    names = tier_names_of(session, found.id, lang)
    current = rules.document(session, found)
    sim_from, sim_to, period_errors = read_period(form, prog, lang)
    report = None
    if not period_errors:
        report = what_if.simulate(
            session, found, candidate.doc, date_from=sim_from, date_to=sim_to, top=TOP_MEMBERS
        )
    return render(
        request,
        "rules/preview.html",
        status=422 if period_errors else status,
        section="rules",
        tz=prog.tz,
        prog=prog,
        change=candidate.change,
        candidate=json.dumps(_dump(candidate.doc), ensure_ascii=False, separators=(",", ":")),
        base_version=base_version,
        stale=base_version != found.rule_version,
        diff=doc_diff(current, candidate.doc, prog, lang, names),
        rows=rule_rows(candidate.doc, prog, lang, names),
        report=report,
        sim_from=sim_from,
        sim_to=sim_to,
        errors=period_errors,
        note=candidate.change if note is None else note,
        problem=problem,
        percent=percent_change,
    )


def percent_change(before: int | Decimal, after: int | Decimal) -> Decimal | None:
    if not before:
        return None
    return ((Decimal(after) - Decimal(before)) * 100 / Decimal(before)).quantize(Decimal("0.1"))


@router.post("/rules/preview", name="rules_preview")
def rules_preview(
    request: Request,
    staff: Staff = Depends(require("rules.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    action = form.get("action", "")
    if action not in ACTIONS:
        raise Invalid("action: unknown change", code="invalid_action")
    with get_db(request).unit_of_work(readonly=True) as session:
        found, _ = pick_program(session, _blank(form.get("program")) or None)
        if found is None:
            return render(request, "rules/none.html", section="rules")
        base = _version_int(form.get("base_version")) or found.rule_version
        try:
            candidate = build_candidate(request, staff, session, found, form, action, base)
        except Refused as refused:
            return refused.response
        note = form.get("note") if action == "candidate" else None
        return _preview(request, staff, session, found, candidate, base, form, note=note)


@router.post("/rules/publish", name="rules_publish")
def rules_publish(
    request: Request,
    staff: Staff = Depends(require("rules.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    code = _blank(form.get("program"))
    base = _version_int(form.get("base_version"))
    if not code or base is None:
        raise Invalid("program, base_version: missing", code="invalid_form")
    doc = parse_candidate(form.get("candidate", ""))
    note = _blank(form.get("note"))[:500] or None
    db = get_db(request)
    with db.unit_of_work() as session:
        found = get_program(session, code)
        try:
            # The service locks the program's row, then compares: two publishers cannot both
            # pass the check (the JSON API refuses a stale If-Match the same way).
            row = rules.publish(
                session, found, doc, actor=staff.actor, now=clock.now(), note=note,
                expected_version=base,
            )  # fmt: skip
        except StaleVersion:
            current = found.rule_version
            session.rollback()
            return _conflict(request, staff, code, base, current)
        except Invalid as exc:
            session.rollback()
            problem = f"{service_error_path(exc) or exc.code}: {exc.detail.partition(': ')[2] or exc.detail}"
            return _json_page(
                request,
                found,
                base_version=base,
                text=pretty(_dump(doc)),
                problems=[problem],
                status=422,
            )
        version = row.version
    return RedirectResponse(
        path_for(request, "rules_list", {"program": code, "done": "published", "version": version}),
        status_code=303,
    )


def _conflict(request: Request, staff: Staff, code: str, base: int, current: int) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        found = get_program(session, code)
        row = rules.get_version(session, found, current)
        labels = staff_users.actor_labels(session, [row.actor])
        prog = prog_of(found)
        return render(
            request,
            "rules/conflict.html",
            status=409,
            section="rules",
            tz=prog.tz,
            prog=prog,
            base=base,
            current=current,
            row=row,
            by=labels.get(row.actor, row.actor),
        )


# --- versions and differences -------------------------------------------------------------------


@router.get("/rules/versions", name="rules_versions")
def rules_versions(
    request: Request,
    program: str | None = Query(None, max_length=40),
    staff: Staff = Depends(require("rules.view")),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        found, choices = pick_program(session, program)
        if found is None:
            return render(request, "rules/none.html", section="rules")
        prog = prog_of(found)
        versions = rules.list_versions(session, found)
        labels = staff_users.actor_labels(session, [v.actor for v in versions])
        return render(
            request,
            "rules/versions.html",
            section="rules",
            tz=prog.tz,
            prog=prog,
            programs=choices,
            versions=versions,
            labels=labels,
        )


@router.get("/rules/versions/{version}", name="rules_version")
def rules_version(
    request: Request,
    version: int = Path(ge=1, le=10**6),
    program: str | None = Query(None, max_length=40),
    staff: Staff = Depends(require("rules.view")),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        found, _ = pick_program(session, program)
        if found is None:
            return render(request, "rules/none.html", section="rules")
        prog = prog_of(found)
        row = rules.get_version(session, found, version)
        doc = rules.document(session, found, version)
        names = tier_names_of(session, found.id, staff.language)
        labels = staff_users.actor_labels(session, [row.actor])
        return render(
            request,
            "rules/version.html",
            section="rules",
            tz=prog.tz,
            prog=prog,
            row=row,
            by=labels.get(row.actor, row.actor),
            rows=rule_rows(doc, prog, staff.language, names),
            settings=settings_lines(doc, staff.language),
            text=pretty(_dump(doc)),
        )


@router.get("/rules/diff", name="rules_diff")
def rules_diff(
    request: Request,
    program: str | None = Query(None, max_length=40),
    from_text: str = Query("", alias="from", max_length=20),
    to_text: str = Query("", alias="to", max_length=20),
    staff: Staff = Depends(require("rules.view")),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        found, _ = pick_program(session, program)
        if found is None:
            return render(request, "rules/none.html", section="rules")
        prog = prog_of(found)
        to = _version_int(to_text) or found.rule_version
        start = _version_int(from_text) or max(to - 1, 1)
        # 404 for a version that does not exist.
        old, new = rules.document(session, found, start), rules.document(session, found, to)
        names = tier_names_of(session, found.id, staff.language)
        rows = {v: rules.get_version(session, found, v) for v in (start, to)}
        labels = staff_users.actor_labels(session, [r.actor for r in rows.values()])
        versions = [v.version for v in rules.list_versions(session, found)]
        return render(
            request,
            "rules/diff.html",
            section="rules",
            tz=prog.tz,
            prog=prog,
            start=start,
            to=to,
            diff=doc_diff(old, new, prog, staff.language, names),
            old_row=rows[start],
            new_row=rows[to],
            labels=labels,
            versions=versions,
        )
