"""A rule and its form: the fields each kind edits, a stored rule as form values and the posted
form as a rule, and the rules core's validation errors placed under the form's fields."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from patron.admin import forms, i18n
from patron.admin.program_context import blank
from patron.errors import Invalid
from patron.rules import service as rules
from patron.rules.model import DAYS, RuleSetDoc

CHANNELS = ("pos", "online", "app")


EVENTS = ("signup", "birthday", "profile_completed", "review", "newsletter", "referral")


# Form fields of each kind, besides the ones every rule has (id, name, enabled, window, scope).
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "base_rate": ("mode", "points", "per_amount", "rounding", "only"),
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
    "base_rates": ("first", "sum"),
    # "none" stands for no stop (the model's None) so the select always sends a value.
    "stop": ("none", "stage", "all"),
}


# Kinds whose form sets an order within the stage and a stop (priority, stop): caps always all
# apply and events are not part of a purchase's stages, so the rules core refuses their stop.
# A priority such a rule has (from the JSON editor) is kept as it is.
ORDERED_KINDS = tuple(kind for kind in KIND_FIELDS if kind not in ("cap", "event"))


# Conditions the form edits; the others (member attributes, minimum items) are kept as they are
# and edited in the JSON editor.
FORM_CONDITIONS = (
    "min_amount",
    "tiers",
    "min_purchases",
    "joined_within_days",
    "birthday_month",
    "first_purchase",
    "nth_purchase",
    "within_first_purchases",
    "recent_purchases",
    "segments",
)


# Whole-number conditions, each one form field named cond.<key>.
_COUNT_CONDITIONS = (
    "min_purchases",
    "joined_within_days",
    "nth_purchase",
    "within_first_purchases",
)


# The window of recent purchases: cond.recent_purchases.days, .min and .max.
RECENT_FIELDS = ("days", "min", "max")


# first_purchase in the form: a choice, its value "yes" (true) or "no" (false); empty: any.
FIRST_PURCHASE = {"yes": True, "no": False}


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
    # The place of an empty match is its path: match, only (a base rate's lines), ...
    ("match needs", None, "rules.error.match"),
    ("two enabled event rules", "event", "rules.error.event_twice"),
    ("give min and/or max", "cond.recent_purchases.min", "rules.error.recent_bounds"),
    ("min (", "cond.recent_purchases.max", "rules.error.recent_order"),
    ("stop does not apply", "stop", "rules.error.no_stop"),
)


# "min_purchases 2, first_purchase true can never all hold: ..." (the rules core's refusal of
# purchase-count conditions that contradict each other): the message names them all, and the
# error sits at the last one named (the form shows them together, under "Purchases so far").
_COUNTS_CLASH = re.compile(r"^(.*) can never all hold")


def _clash_names(text: str) -> list[str]:
    found = _COUNTS_CLASH.match(text)
    return [part.split(" ")[0] for part in found.group(1).split(", ")] if found else []


def _condition_field(name: str) -> str:
    return "cond.recent_purchases.min" if name == "recent_purchases" else f"cond.{name}"


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
        names = _clash_names(text)
        if names:
            labels = ", ".join(i18n.translate(f"rules.field.{name}", lang) for name in names)
            return i18n.translate("rules.error.counts", lang, conditions=labels)
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
    names = _clash_names(text)
    if names:
        return _condition_field(names[-1])
    return "id" if _USED_TWICE.search(text) else None


def rule_field(parts: list[str]) -> str:
    """The form field for a path inside one rule: match.skus.0 → match.skus, stores.1 → stores,
    conditions.min_amount → cond.min_amount, factors.gold → factor.gold."""
    if not parts:
        return forms.FORM
    head = parts[0]
    if head in ("match", "only"):
        return f"{head}." + (parts[1] if len(parts) > 1 else "skus")
    if head == "conditions":
        sub = parts[1] if len(parts) > 1 else ""
        if sub == "recent_purchases":
            return "cond.recent_purchases." + (parts[2] if len(parts) > 2 else "days")
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
        elif index is None and path[0] in ("combine", "rounding", "base_rates"):
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


def _list_text(values: Iterable[str] | None) -> str:
    return ", ".join(values or [])


def split_list(text: str) -> list[str]:
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
    for key in ("match", "only"):
        match = rule.get(key) or {}
        values[f"{key}.skus"] = _list_text(match.get("skus"))
        values[f"{key}.categories"] = _list_text(match.get("categories"))
    if rule.get("priority") is not None:
        values["priority"] = str(rule["priority"])
    values["stop"] = str(rule.get("stop") or "none")
    for code, factor in (rule.get("factors") or {}).items():
        values[f"factor.{code}"] = str(factor)
    # A new day-and-time weight starts with no day ticked: the marketer picks the days (all
    # seven ticked made "weekend ×0.5" publish as every day ×0.5 with one click).
    for day in rule.get("days") or ():
        values[f"day.{day}"] = "1"
    cond = rule.get("conditions") or {}
    if cond.get("min_amount") is not None:
        values["cond.min_amount"] = str(cond["min_amount"])
    for key in _COUNT_CONDITIONS:
        if cond.get(key) is not None:
            values[f"cond.{key}"] = str(cond[key])
    for code in cond.get("tiers") or []:
        values[f"cond.tier.{code}"] = "1"
    for code in cond.get("segments") or []:
        values[f"cond.segment.{code}"] = "1"
    values["cond.birthday_month"] = "1" if cond.get("birthday_month") else ""
    if cond.get("first_purchase") is not None:
        values["cond.first_purchase"] = "yes" if cond["first_purchase"] else "no"
    for key, value in (cond.get("recent_purchases") or {}).items():
        if value is not None:
            values[f"cond.recent_purchases.{key}"] = str(value)
    return values


def checked(form: Mapping[str, str], prefix: str) -> list[str]:
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

    put("id", blank(form.get("id")))
    put("name", blank(form.get("name")))
    rule["enabled"] = bool(form.get("enabled"))
    put("starts", blank(form.get("starts")))
    put("ends", blank(form.get("ends")))
    # Checkboxes for the program's stores; a store the rule names that the program has lost is
    # kept only while it stays ticked (the form lists it too).
    put("stores", checked(form, "store."))
    put("channels", [c for c in CHANNELS if form.get(f"channel.{c}")])
    put("payment_methods", split_list(form.get("payment_methods", "")))

    cond: dict[str, Any] = dict(rule.get("conditions") or {})
    for key in FORM_CONDITIONS:
        cond.pop(key, None)
    if blank(form.get("cond.min_amount")):
        cond["min_amount"] = blank(form.get("cond.min_amount")).replace(",", "")
    chosen_tiers = checked(form, "cond.tier.")
    if chosen_tiers:
        cond["tiers"] = chosen_tiers
    chosen_segments = checked(form, "cond.segment.")
    if chosen_segments:
        cond["segments"] = chosen_segments
    for key in _COUNT_CONDITIONS:
        if blank(form.get(f"cond.{key}")):
            cond[key] = blank(form.get(f"cond.{key}")).replace(",", "")
    if form.get("cond.birthday_month"):
        cond["birthday_month"] = True
    first = blank(form.get("cond.first_purchase"))
    if first:
        # Anything but yes/no is passed on as typed, for the model to refuse at the field.
        cond["first_purchase"] = FIRST_PURCHASE.get(first, first)
    recent = {
        key: blank(form.get(f"cond.recent_purchases.{key}")).replace(",", "")
        for key in RECENT_FIELDS
        if blank(form.get(f"cond.recent_purchases.{key}"))
    }
    if recent:
        cond["recent_purchases"] = recent
    put("conditions", cond)

    fields = KIND_FIELDS.get(kind, ())
    for key in ("mode", "rounding", "per", "limit", "event"):
        if key in fields:
            put(key, blank(form.get(key)))
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
            put(key, blank(form.get(key)).replace(",", ""))
    for key in ("from_time", "to_time"):
        # A typed "9:00" is what a browser's time input would send as "09:00".
        if key in rule and re.fullmatch(r"\d:\d\d", str(rule[key])):
            rule[key] = "0" + rule[key]
    if "qualifying" in fields:
        rule["qualifying"] = bool(form.get("qualifying"))
    if "match" in fields:
        rule["match"] = _match_from_form(form, "match")
    if "only" in fields:
        # No line listed: every line earns (the field is left out).
        put("only", _match_from_form(form, "only"))
    if kind in ORDERED_KINDS:
        # Empty: the default order (0); "none": no stop. Both are left out of the rule.
        put("priority", blank(form.get("priority")).replace(",", ""))
        stop = blank(form.get("stop"))
        put("stop", None if stop == "none" else stop)
    if "days" in fields:
        rule["days"] = [d for d in DAYS if form.get(f"day.{d}")]
    if "factors" in fields:
        rule["factors"] = {
            code[len("factor.") :]: blank(value).replace(",", "")
            for code, value in form.items()
            if code.startswith("factor.") and blank(value)
        }
    # Fields of another kind (the form only sends this kind's) never reach the rule.
    for key in set(rule) - _allowed_keys(kind):
        rule.pop(key)
    return rule


def _match_from_form(form: Mapping[str, str], prefix: str) -> dict[str, list[str]]:
    match = {
        "skus": split_list(form.get(f"{prefix}.skus", "")),
        "categories": split_list(form.get(f"{prefix}.categories", "")),
    }
    return {k: v for k, v in match.items() if v}


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
    "priority",
    "stop",
}


def _allowed_keys(kind: str) -> set[str]:
    keys = set(_COMMON_KEYS)
    for field in KIND_FIELDS.get(kind, ()):
        keys.add(field)
    return keys


def new_id(kind: str, taken: Iterable[str]) -> str:
    used = set(taken)
    stem = kind.replace("_", "-")
    n = 1
    while f"{stem}-{n}" in used:
        n += 1
    return f"{stem}-{n}"


def channel_options(lang: str) -> list[tuple[str, str]]:
    return [(c, i18n.translate(f"rules.channel.{c}", lang)) for c in CHANNELS]


def scoped(values: Mapping[str, str]) -> bool:
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


def has_hidden_conditions(rule: Mapping[str, Any]) -> bool:
    cond = rule.get("conditions") or {}
    return any(key not in FORM_CONDITIONS for key in cond)


def settings_values(doc: Mapping[str, Any]) -> dict[str, str]:
    red = doc.get("redemption") or {}
    excluded = red.get("excluded") or {}
    values = {
        "combine": str(doc.get("combine", "multiply")),
        "base_rates": str(doc.get("base_rates", "first")),
        "rounding": str(doc.get("rounding", "down")),
        "red.skus": _list_text(excluded.get("skus")),
        "red.categories": _list_text(excluded.get("categories")),
    }
    for code in red.get("stores") or []:
        values[f"red.store.{code}"] = "1"
    for channel in red.get("channels") or []:
        values[f"red.channel.{channel}"] = "1"
    return values


def pretty(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


def dump_doc(doc: RuleSetDoc) -> dict[str, Any]:
    """A rule set as plain JSON data, without unset fields."""
    return doc.model_dump(mode="json", exclude_none=True)
