"""What a change does before it is published: field-by-field differences between two rule sets
and the period the what-if replays."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from patron.admin import forms, i18n
from patron.admin.program_context import Prog
from patron.admin.rules_ui.form import dump_doc
from patron.admin.rules_ui.words import RuleRow, rule_rows
from patron.rules import service as rules
from patron.rules.model import RuleSetDoc
from patron.rules.simulate import MAX_SHIFT_YEARS

# The what-if replays this many days ending today (program timezone) unless told otherwise.
DEFAULT_DAYS = 30


# A longer replay would hold a request for minutes on a big program; the CLI has no such bound.
MAX_DAYS = 366


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
    words: Callable[[str, str | None], str | None] | None = None,
) -> list[FieldChange]:
    """Field by field, what differs between two versions of a rule (or of the settings);
    `words(path, value)` may put a value in words (None: as stored, "—" when absent)."""
    old, new = _flat(dict(before)), _flat(dict(after))
    keys = list(old) + [k for k in new if k not in old]

    def shown(key: str, value: str | None) -> str:
        text = words(key, value) if words else None
        return text if text is not None else (value if value is not None else "—")

    return [
        FieldChange(k, shown(k, old.get(k)), shown(k, new.get(k)), label(k) if label else "")
        for k in keys
        if old.get(k) != new.get(k)
    ]


_FIELD_KEYS = {
    "match.categories": "rules.field.categories",
    "match.skus": "rules.field.skus",
    "only.categories": "rules.field.only_categories",
    "only.skus": "rules.field.only_skus",
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


# Fields whose stored values are codes, shown in words: path -> message prefix (and the code
# an absent value stands for).
_VALUE_WORDS = {"stop": ("rules.stop.", "none"), "base_rates": ("rules.base_rates.", "first")}


def value_words(path: str, value: str | None, lang: str) -> str | None:
    """A coded value in words ("sum" -> "Base rates add up"); None for the other fields."""
    if path not in _VALUE_WORDS:
        return None
    prefix, absent = _VALUE_WORDS[path]
    key = prefix + (value if value is not None else absent)
    return i18n.translate(key, lang) if i18n.has_message(key) else None


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
                fields=field_changes(
                    before,
                    after,
                    lambda p: rule_field_label(p, lang),
                    lambda p, v: value_words(p, v, lang),
                ),
            )
        )
    # Every setting, the rules apart, compared here (not only those the service's diff names).
    settings = field_changes(
        {k: v for k, v in dump_doc(old).items() if k != "rules"},
        {k: v for k, v in dump_doc(new).items() if k != "rules"},
        lambda p: rule_field_label(p, lang),
        lambda p, v: value_words(p, v, lang),
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


def read_shift(form: Mapping[str, str]) -> int:
    """How many years back the what-if replays (a warning's suggestion sets it; 0 otherwise)."""
    text = (form.get("sim_shift") or "").strip()
    return int(text) if text.isdigit() and int(text) <= MAX_SHIFT_YEARS else 0


def percent_change(before: int | Decimal, after: int | Decimal) -> Decimal | None:
    if not before:
        return None
    return ((Decimal(after) - Decimal(before)) * 100 / Decimal(before)).quantize(Decimal("0.1"))
