"""The admin builder's flat form <-> a definition document (pure).

The form is a combinator (all / any) over up to `MAX_ROWS` rows; each row has a type, a "not"
box and a few generic fields whose meaning depends on the type (`FIELDS`). Anything deeper
(nested groups) is built by referring to another segment, or in the JSON box, which wins when
filled."""

from __future__ import annotations

import json
from typing import Any

MAX_ROWS = 10
BLANK_ROWS = 3
TYPES = (
    "tier",
    "balance",
    "activity",
    "dormant",
    "birthday",
    "joined",
    "store",
    "channel",
    "attribute",
    "consent",
    "redeemed",
    "segment",
)
# Which generic fields each type uses: list, name, days, min, max, flag.
FIELDS: dict[str, tuple[str, ...]] = {
    "tier": ("list",),
    "balance": ("min", "max"),
    "activity": ("name", "days", "min", "max"),
    "dormant": ("days", "flag"),
    "birthday": ("list",),
    "joined": ("days",),
    "store": ("list", "days"),
    "channel": ("list", "days"),
    "attribute": ("name", "list"),
    "consent": ("name",),
    "redeemed": ("name", "days"),
    "segment": ("name",),
}


def _items(text: str) -> list[str]:
    return [part.strip() for part in text.replace("，", ",").split(",") if part.strip()]


def _number(text: str) -> int | str | None:
    text = text.strip().replace(",", "")
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return text  # left for the definition's validation to refuse, naming the field


def row_condition(row: dict[str, str]) -> dict[str, Any] | None:
    """One form row as a condition (None: an empty row)."""
    kind = row.get("type", "").strip()
    if not kind:
        return None
    cond: dict[str, Any] = {"type": kind}
    name = row.get("name", "").strip()
    items = _items(row.get("list", ""))
    days = _number(row.get("days", ""))
    for bound in ("min", "max"):
        if bound in FIELDS.get(kind, ()) and (value := _number(row.get(bound, ""))) is not None:
            cond[bound] = value
    if kind == "tier":
        cond["tiers"] = items
    elif kind == "activity":
        cond.update(metric=name, days=days)
    elif kind == "dormant":
        cond.update(days=days, include_never=row.get("flag") == "1")
    elif kind == "birthday":
        cond["months"] = [_number(i) for i in items]
    elif kind == "joined":
        cond["days"] = days
    elif kind in ("store", "channel"):
        cond["stores" if kind == "store" else "channels"] = items
        if days is not None:
            cond["days"] = days
    elif kind == "attribute":
        cond.update(key=name, op="in" if items else "exists", values=items)
    elif kind == "consent":
        cond["purpose"] = name
    elif kind == "redeemed":
        cond["reward"] = name or None
        if days is not None:
            cond["days"] = days
    elif kind == "segment":
        cond["segment"] = name
    if row.get("not") == "1":
        if kind == "redeemed":
            cond["has"] = False
        elif kind == "consent":
            cond["granted"] = False
        else:
            cond = {"type": "not", "condition": cond}
    return cond


def definition_of(form: dict[str, str]) -> dict[str, Any]:
    """The form as a definition document (not yet validated)."""
    raw = form.get("json", "").strip()
    if raw:
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            return {"__json_error__": str(exc)}
        return doc if isinstance(doc, dict) and "condition" in doc else {"condition": doc}
    rows = []
    for i in range(MAX_ROWS):
        row = {
            k: form.get(f"r{i}_{k}", "") for k in ("type", "not", "list", "name", "days", "min",
                                                     "max", "flag")
        }  # fmt: skip
        cond = row_condition(row)
        if cond is not None:
            rows.append(cond)
    combinator = "any" if form.get("combinator") == "any" else "all"
    if len(rows) == 1:
        return {"condition": rows[0]}
    return {"condition": {"type": combinator, "of": rows}}


def _row_of(cond: dict[str, Any]) -> dict[str, str] | None:
    negated = False
    if cond.get("type") == "not":
        negated, cond = True, cond["condition"]
    kind = cond.get("type")
    if kind not in TYPES:
        return None
    row = {"type": kind, "not": "1" if negated else "", "list": "", "name": "", "days": "",
           "min": "", "max": "", "flag": ""}  # fmt: skip
    for bound in ("min", "max", "days"):
        if cond.get(bound) is not None:
            row[bound] = str(cond[bound])
    if kind == "tier":
        row["list"] = ", ".join(cond["tiers"])
    elif kind == "birthday":
        row["list"] = ", ".join(str(m) for m in cond["months"])
    elif kind in ("store", "channel"):
        row["list"] = ", ".join(cond["stores" if kind == "store" else "channels"])
    elif kind == "activity":
        row["name"] = cond["metric"]
    elif kind == "dormant":
        row["flag"] = "1" if cond.get("include_never") else ""
    elif kind == "attribute":
        if cond.get("op") == "ne":
            return None
        row.update(name=cond["key"], list=", ".join(cond.get("values", [])))
    elif kind == "consent":
        row["name"] = cond["purpose"]
        row["not"] = "1" if negated or cond.get("granted") is False else ""
    elif kind == "redeemed":
        row["name"] = cond.get("reward") or ""
        row["not"] = "1" if negated or cond.get("has") is False else ""
    elif kind == "segment":
        row["name"] = cond["segment"]
    return row


def form_of(definition: dict[str, Any]) -> tuple[str, list[dict[str, str]]] | None:
    """(combinator, rows) for a definition the flat form can show; None: JSON only."""
    root = definition.get("condition", {})
    children = root.get("of") if root.get("type") in ("all", "any") else [root]
    rows = [_row_of(c) for c in children or []]
    if any(r is None for r in rows) or len(rows) > MAX_ROWS:
        return None
    combinator = "any" if root.get("type") == "any" else "all"
    return combinator, [r for r in rows if r is not None]
