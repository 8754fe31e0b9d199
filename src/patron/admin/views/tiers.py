"""Program setup: the tier editor.

The policy (metric, window, upgrade, downgrade, manual tiers) and the ordered tiers are edited in
one form. "Check the effect" validates it with the API's schema and the tier service's own checks
and shows the threshold what-if (`patron.tiers.reports.what_if`: how many members the last
complete window would put in each tier); "Save" replaces the setup through
`patron.tiers.service.set_tiers` with the signed-in user as the actor. The preview carries the
candidate and a fingerprint of the setup it started from: if the tiers changed meanwhile, saving
is refused (409) instead of overwriting. Nothing is written before "Save".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from patron import clock
from patron.admin import forms, i18n
from patron.admin.deps import Staff, form_data, get_db, require
from patron.admin.program_context import Prog, pick_program, prog_of
from patron.admin.rules_ui.diff import FieldChange, field_changes
from patron.admin.rules_ui.form import message_for
from patron.admin.rules_ui.words import factor_text
from patron.admin.templating import path_for, render
from patron.errors import Invalid, StaleVersion
from patron.money import quantum
from patron.programs.models import Program
from patron.programs.schemas import ExpiryPolicy
from patron.programs.service import get_program
from patron.tiers import reports
from patron.tiers import service as tiers
from patron.tiers.schemas import TierSetup, TierSetupOut

router = APIRouter()

ROW_FIELDS = (
    "code",
    "name_en",
    "name_ko",
    "name_zh",
    "threshold",
    "multiplier",
    "extra_expiry_months",
    "expiry_kind",
    "expiry_months",
    "expiry_days",
    "benefits",
)
# A tier's own expiry policy: "" keeps the program's (programs.schemas.ExpiryPolicy's kinds).
EXPIRY_KINDS = ("", "months", "days", "rolling", "end_of_month", "end_of_year", "none")
POLICY_CHOICES: dict[str, tuple[str, ...]] = {
    "metric": ("points", "spend", "visits"),
    "window": ("half_year", "year", "rolling", "lifetime"),
    "upgrade": ("immediate", "next_period"),
    "downgrade": ("to_earned", "one_level", "grace"),
    "manual": ("keep", "reevaluate"),
}
POLICY_NUMBERS = ("rolling_months", "grace_periods")
MAX_ROWS = 60  # the schema allows 50 tiers; more rows are refused by it, not dropped here
ROW_KEY = re.compile(r"^tier-(\d{1,3})-([a-z_]+)$")
NOTICES = frozenset({"saved"})
DEFAULT_POLICY = {
    "metric": "points",
    "window": "year",
    "rolling_months": "12",
    "upgrade": "immediate",
    "downgrade": "to_earned",
    "grace_periods": "1",
    "manual": "keep",
}


# --- the form ⇄ a tier setup ---------------------------------------------------------------


@dataclass
class Editor:
    """What the form shows: the policy's fields and one dict of fields per tier row."""

    policy: dict[str, str]
    rows: list[dict[str, str]]
    errors: forms.Errors = field(default_factory=dict)


def _money_text(minor: int, currency: str) -> str:
    return format((Decimal(minor) * quantum(currency)).normalize(), "f")


def threshold_text(value: int, metric: str, currency: str) -> str:
    """A threshold as typed in the form: spend in money (minor units stored), else as is."""
    return _money_text(value, currency) if metric == "spend" else str(value)


def editor_from_setup(setup: TierSetupOut | TierSetup, currency: str) -> Editor:
    if setup.policy is None:
        return Editor(dict(DEFAULT_POLICY), [blank_row(threshold="0")])
    policy = {k: str(v) for k, v in setup.policy.model_dump().items()}
    metric = policy["metric"]
    rows = []
    for tier in setup.tiers:
        names = tier.names if isinstance(tier.names, dict) else tier.names.model_dump()
        rows.append(
            {
                "code": tier.code,
                "name_en": names.get("en") or "",
                "name_ko": names.get("ko") or "",
                "name_zh": names.get("zh") or "",
                "threshold": threshold_text(tier.threshold, metric, currency),
                "multiplier": factor_text(tier.multiplier),
                "extra_expiry_months": str(tier.extra_expiry_months),
                **expiry_fields(tier.expiry),
                "benefits": "\n".join(tier.benefits),
            }
        )
    return Editor(policy, rows or [blank_row(threshold="0")])


def expiry_fields(policy: ExpiryPolicy | None) -> dict[str, str]:
    """A tier's own expiry policy as the row's fields (all empty: the program's policy)."""
    if policy is None:
        return {"expiry_kind": "", "expiry_months": "", "expiry_days": ""}
    return {
        "expiry_kind": policy.kind,
        "expiry_months": str(policy.months)
        if policy.kind not in ("days", "none") and not (policy.kind == "rolling" and policy.days)
        else "",
        "expiry_days": str(policy.days) if policy.days is not None else "",
    }


def expiry_data(row: Mapping[str, str]) -> dict[str, Any] | None:
    """The row's expiry fields as the schema's policy; None when the row keeps the program's.
    Only the N its kind reads is sent, so a leftover in the other field is not an error."""
    kind = row.get("expiry_kind", "")
    if not kind:
        return None
    data: dict[str, Any] = {"kind": kind}
    if kind == "days":
        data["months"] = 0
        data["days"] = row.get("expiry_days", "") or None
    elif kind == "none":
        data["months"] = 0
    elif kind == "rolling":
        # N in days when given, else in months.
        days = row.get("expiry_days", "") or None
        data["days"] = days
        data["months"] = 0 if days else (row.get("expiry_months", "") or None)
    elif kind in ("months", "end_of_month", "end_of_year"):
        data["months"] = row.get("expiry_months", "") or None
    return data


def blank_row(**values: str) -> dict[str, str]:
    return {key: values.get(key, "") for key in ROW_FIELDS}


def editor_from_form(form: Mapping[str, str]) -> Editor:
    """The posted form; rows come in the order of their numbers, wholly empty rows are dropped."""
    policy = {key: (form.get(key) or "").strip() for key in (*POLICY_CHOICES, *POLICY_NUMBERS)}
    found: dict[int, dict[str, str]] = {}
    for key, value in form.items():
        match = ROW_KEY.match(key)
        if match and match.group(2) in ROW_FIELDS and len(found) <= MAX_ROWS:
            row = found.setdefault(int(match.group(1)), blank_row())
            row[match.group(2)] = value.strip() if match.group(2) != "benefits" else value
    rows = [found[i] for i in sorted(found) if any(v.strip() for v in found[i].values())]
    return Editor(policy, rows)


def _minor(text: str, currency: str) -> str | int:
    """A money amount as minor units, or the text as typed when it is not one (the schema
    then says what is wrong with it)."""
    try:
        amount = Decimal(text.replace(",", ""))
    except InvalidOperation:
        return text
    if not amount.is_finite():
        return text
    minor = amount / quantum(currency)
    return int(minor) if minor == minor.to_integral_value() else text


def setup_data(editor: Editor, currency: str) -> dict[str, Any]:
    """The editor as the API's TierSetup payload (strings left for the schema to parse)."""
    policy: dict[str, Any] = {k: v for k, v in editor.policy.items() if v != ""}
    spend = editor.policy.get("metric") == "spend"
    tier_list = []
    for row in editor.rows:
        names = {lang: row[f"name_{lang}"] for lang in ("en", "ko", "zh") if row[f"name_{lang}"]}
        tier: dict[str, Any] = {"code": row["code"], "names": names}
        threshold = row["threshold"].replace(",", "")
        if threshold:
            tier["threshold"] = _minor(threshold, currency) if spend else threshold
        for key in ("multiplier", "extra_expiry_months"):
            if row[key]:
                tier[key] = row[key].replace(",", "")
        if expiry := expiry_data(row):
            tier["expiry"] = expiry
        benefits = [line.strip() for line in row["benefits"].splitlines() if line.strip()]
        if benefits:
            tier["benefits"] = benefits
        tier_list.append(tier)
    return {"policy": policy, "tiers": tier_list}


def sort_rows(editor: Editor, currency: str) -> None:
    """Tiers rank by threshold: put the rows in that order when every threshold is a number,
    so a tier added at the bottom lands where it belongs."""
    keys: list[Decimal] = []
    for row in editor.rows:
        try:
            keys.append(Decimal(row["threshold"].replace(",", "")))
        except InvalidOperation:
            return
        if not keys[-1].is_finite():
            return
    order = sorted(range(len(editor.rows)), key=lambda i: keys[i])
    editor.rows = [editor.rows[i] for i in order]


_ROW_PATH = re.compile(r"^tiers\.(\d+)\.([a-z_]+)(?:\.([a-z]+))?")


def row_field(path: str) -> str:
    """tiers.2.threshold → tier-2-threshold; tiers.1.names.ko → tier-1-name_ko;
    policy.metric → metric."""
    match = _ROW_PATH.match(path)
    if match:
        index, name, sub = match.groups()
        if name == "names":
            return f"tier-{index}-name_{sub or 'en'}"
        if name == "expiry":
            # The policy's own checks (no N for its kind) land on the kind's field.
            field_name = f"expiry_{sub}" if sub in ("months", "days") else "expiry_kind"
            return f"tier-{index}-{field_name}"
        if name in ROW_FIELDS:
            return f"tier-{index}-{name}"
        return forms.FORM
    parts = path.split(".")
    if parts[0] == "policy" and len(parts) > 1 and parts[1] in (*POLICY_CHOICES, *POLICY_NUMBERS):
        return parts[1]
    return forms.FORM


def validation_errors(exc: ValidationError, lang: str) -> forms.Errors:
    out: forms.Errors = {}
    for err in exc.errors():
        path = ".".join(str(p) for p in err.get("loc", ()))
        where = row_field(path)
        message = message_for(err, lang)
        if where == forms.FORM and path == "tiers" and err.get("type") == "too_short":
            message = i18n.translate("tiers.error.no_tiers", lang)
        out.setdefault(where, message)
    return out


_SERVICE_MESSAGES = (
    ("is already used", "tiers.error.code_twice"),
    ("must be 0", "tiers.error.entry_zero"),
    ("must be greater than", "tiers.error.increasing"),
)


def service_errors(exc: Invalid, lang: str) -> forms.Errors:
    """The tier service's refusal ("tiers.1.threshold: …") at its field."""
    head, _sep, rest = exc.detail.partition(": ")
    where = row_field(head)
    message = next(
        (i18n.translate(key, lang) for text, key in _SERVICE_MESSAGES if text in rest),
        rest or exc.detail,
    )
    return {where: message}


def check(editor: Editor, currency: str, lang: str) -> TierSetup | None:
    """Validate the editor; fills editor.errors and returns None when it is refused."""
    sort_rows(editor, currency)
    try:
        setup = TierSetup.model_validate(setup_data(editor, currency))
    except ValidationError as exc:
        editor.errors = validation_errors(exc, lang)
        return None
    try:
        # The service's own checks (unique codes, thresholds from 0 and rising), before any
        # what-if, so the preview never shows a setup that saving would refuse.
        tiers._validate(setup)
    except Invalid as exc:
        editor.errors = service_errors(exc, lang)
        return None
    return setup


# --- pages ------------------------------------------------------------------------------------


def _editor_page(
    request: Request,
    staff: Staff,
    session: Session,
    found: Program,
    editor: Editor,
    *,
    programs: list[tuple[str, str]],
    base: str,
    status: int = 200,
    done: str | None = None,
) -> Response:
    prog = prog_of(found)
    current = tiers.tier_setup(session, found)
    return render(
        request,
        "tiers/setup.html",
        status=status,
        section="tiers",
        tz=prog.tz,
        prog=prog,
        programs=programs,
        editor=editor,
        errors=editor.errors,
        current=current,
        base=base,
        choices=POLICY_CHOICES,
        expiry_options=[
            (kind, i18n.translate(f"tiers.expiry_kind.{kind or 'program'}", staff.language))
            for kind in EXPIRY_KINDS
        ],
        row_fields=ROW_FIELDS,
        done=done,
        unit=_unit_text(editor.policy.get("metric") or "points", prog.currency, staff.language),
        threshold_text=threshold_text,
    )


def _unit_text(metric: str, currency: str, lang: str) -> str:
    key = f"tiers.unit.{metric}" if metric in POLICY_CHOICES["metric"] else "tiers.unit.points"
    return i18n.translate(key, lang, currency=currency)


@router.get("/tiers", name="tiers_setup")
def tiers_setup(
    request: Request,
    program: str | None = Query(None, max_length=40),
    staff: Staff = Depends(require("tiers.view")),
) -> Response:
    done = request.query_params.get("done")
    with get_db(request).unit_of_work(readonly=True) as session:
        found, choices = pick_program(session, program)
        if found is None:
            return render(request, "rules/none.html", section="tiers")
        current = tiers.tier_setup(session, found)
        editor = editor_from_setup(current, found.currency)
        return _editor_page(
            request,
            staff,
            session,
            found,
            editor,
            programs=choices,
            base=tiers.setup_version(session, found),
            done=done if done in NOTICES else None,
        )


@router.post("/tiers/edit", name="tiers_edit")
def tiers_edit(
    request: Request,
    staff: Staff = Depends(require("tiers.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    """The editor again, without saving: a row added or removed (without JavaScript), or
    "Back to editing" from the preview (the candidate)."""
    op = form.get("op", "")
    with get_db(request).unit_of_work(readonly=True) as session:
        found = get_program(session, (form.get("program") or "").strip())
        if form.get("candidate") and not op:
            editor = editor_from_setup(parse_candidate(form["candidate"]), found.currency)
        else:
            editor = editor_from_form(form)
        if op == "add":
            editor.rows.append(blank_row())
        elif op.startswith("remove-") and op[7:].isdigit():
            index = int(op[7:])
            keys = sorted({int(m.group(1)) for k in form if (m := ROW_KEY.match(k)) is not None})
            # The button names the row's number in the form, not its place after blanks.
            if index in keys:
                position = keys.index(index)
                if position < len(editor.rows):
                    editor.rows.pop(position)
        if not editor.rows:
            editor.rows.append(blank_row(threshold="0"))
        return _editor_page(
            request,
            staff,
            session,
            found,
            editor,
            programs=[],
            base=(form.get("base") or "")[:64],
        )


def parse_candidate(text: str) -> TierSetup:
    try:
        return TierSetup.model_validate_json(text)
    except ValidationError:
        raise Invalid("candidate: not a tier setup", code="invalid_tiers") from None


def tier_field_label(path: str, lang: str) -> str:
    """policy and tier fields in words, as the editor labels them."""
    key = "tiers.field." + path.replace("names.", "name_")
    return i18n.translate(key, lang) if i18n.has_message(key) else ""


@dataclass(frozen=True)
class TierChangeView:
    code: str
    name: str
    change: str  # added | removed | changed
    fields: list[FieldChange]


def describe_changes(
    before: TierSetupOut, after: TierSetup, lang: str
) -> tuple[list[FieldChange], list[TierChangeView]]:
    """What the candidate changes: policy fields, and tiers added, removed or changed."""
    old_policy = before.policy.model_dump(mode="json") if before.policy else {}
    policy = field_changes(
        old_policy, after.policy.model_dump(mode="json"), lambda p: tier_field_label(p, lang)
    )
    old = {t.code: t for t in before.tiers}
    new = {t.code: t for t in after.tiers}

    def plain(tier: Any) -> dict[str, Any]:
        data = tier.model_dump(mode="json", exclude={"rank"})
        data["names"] = {k: v for k, v in data["names"].items() if v}
        data["multiplier"] = factor_text(data["multiplier"])
        return data

    def name(tier: Any) -> str:
        names = tier.names if isinstance(tier.names, dict) else tier.names.model_dump()
        return names.get(lang) or names.get("en") or tier.code

    changes = []
    for rank, tier in enumerate(after.tiers):
        code = tier.code
        if code not in old:
            changes.append(TierChangeView(code, name(tier), "added", []))
        else:
            fields = field_changes(
                plain(old[code]), plain(tier), lambda p: tier_field_label(p, lang)
            )
            if old[code].rank != rank:
                label = tier_field_label("rank", lang)
                fields.insert(0, FieldChange("rank", str(old[code].rank + 1), str(rank + 1), label))
            if fields:
                changes.append(TierChangeView(code, name(tier), "changed", fields))
    for code, gone in old.items():
        if code not in new:
            changes.append(TierChangeView(code, name(gone), "removed", []))
    return policy, changes


@dataclass(frozen=True)
class WhatIf:
    report: reports.WhatIfOut | None
    problem: str | None  # why there is no report


def run_what_if(
    session: Session, found: Program, current: TierSetupOut, setup: TierSetup, lang: str
) -> WhatIf:
    """The tier service's threshold what-if for the candidate's thresholds, metric and window.
    It places members in today's tiers, so it needs the same tier codes in the same order."""
    if current.policy is None or not current.tiers:
        return WhatIf(None, i18n.translate("tiers.whatif.first_setup", lang))
    if [t.code for t in current.tiers] != [t.code for t in setup.tiers]:
        return WhatIf(None, i18n.translate("tiers.whatif.codes_changed", lang))
    policy = setup.policy
    request = reports.WhatIfRequest(
        thresholds={t.code: t.threshold for t in setup.tiers},
        window=policy.window,
        rolling_months=policy.rolling_months,
        metric=policy.metric,
    )
    try:
        return WhatIf(reports.what_if(session, found, request, now=clock.now()), None)
    except Invalid as exc:
        return WhatIf(None, exc.detail)


@router.post("/tiers/preview", name="tiers_preview")
def tiers_preview(
    request: Request,
    staff: Staff = Depends(require("tiers.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    if form.get("op"):
        return tiers_edit(request, staff, form)
    lang = staff.language
    with get_db(request).unit_of_work(readonly=True) as session:
        found = get_program(session, (form.get("program") or "").strip())
        editor = editor_from_form(form)
        base = (form.get("base") or "")[:64]
        setup = check(editor, found.currency, lang)
        if setup is None:
            if not editor.rows:
                editor.rows.append(blank_row(threshold="0"))
            return _editor_page(
                request, staff, session, found, editor, programs=[], base=base, status=422
            )
        prog = prog_of(found)
        current = tiers.tier_setup(session, found)
        policy_changes, tier_changes = describe_changes(current, setup, lang)
        return render(
            request,
            "tiers/preview.html",
            section="tiers",
            tz=prog.tz,
            prog=prog,
            setup=setup,
            current=current,
            candidate=setup.model_dump_json(),
            base=base,
            stale=base != tiers.setup_version(session, found),
            policy_changes=policy_changes,
            tier_changes=tier_changes,
            what_if=run_what_if(session, found, current, setup, lang),
            unit=_unit_text(setup.policy.metric, prog.currency, lang),
            threshold_text=threshold_text,
            chart=_chart,
        )


def _chart(report: reports.WhatIfOut) -> dict[str, Any]:
    """Bar geometry for the inline SVG: members per tier today and with the proposal."""
    peak = max([1] + [max(r.today, r.proposed) for r in report.rows])
    width = 300
    rows = []
    for index, row in enumerate(report.rows):
        rows.append(
            {
                "y": 8 + index * 44,
                "today": round(width * row.today / peak),
                "proposed": round(width * row.proposed / peak),
                "row": row,
            }
        )
    return {"rows": rows, "height": 16 + 44 * len(report.rows), "width": width}


@router.post("/tiers/save", name="tiers_save")
def tiers_save(
    request: Request,
    staff: Staff = Depends(require("tiers.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    code = (form.get("program") or "").strip()
    base = (form.get("base") or "").strip()
    if not code:
        raise Invalid("program: missing", code="invalid_form")
    setup = parse_candidate(form.get("candidate", ""))
    with get_db(request).unit_of_work() as session:
        found = get_program(session, code)
        try:
            # The service locks the program's row, then compares: two savers cannot both pass.
            tiers.set_tiers(
                session, found, setup, actor=staff.actor, now=clock.now(), expected_version=base
            )
        except StaleVersion:
            session.rollback()
            return _conflict(request, code)
        except Invalid as exc:
            session.rollback()
            editor = editor_from_setup(setup, found.currency)
            editor.errors = service_errors(exc, staff.language)
            return _editor_page(
                request, staff, session, found, editor, programs=[], base=base, status=422
            )
    return RedirectResponse(
        path_for(request, "tiers_setup", {"program": code, "done": "saved"}), status_code=303
    )


def _conflict(request: Request, code: str) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        prog: Prog = prog_of(get_program(session, code))
    return render(
        request, "tiers/conflict.html", status=409, section="tiers", tz=prog.tz, prog=prog
    )
