"""Program setup: the rule-set editor.

Every change — add, edit, switch off or on, delete, the settings, the whole document as JSON —
goes through one preview page first: the candidate rule set is validated with the rules core's
own model (errors land under the field named by the service's path, rules.2.factor → factor),
the what-if report replays recent purchases under it (`patron.rules.simulate`, writing nothing),
and only "Publish" stores it, as the next version, through `patron.rules.publishing.publish` with
the signed-in user as the actor. The preview carries the candidate and the version it started
from; if someone published meanwhile, publishing is refused (409) instead of overwriting.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from patron import clock
from patron.admin import forms, i18n
from patron.admin import service as staff_users
from patron.admin.deps import Staff, form_data, get_db, require
from patron.admin.program_context import blank, pick_program, prog_of, store_codes, tier_names_of
from patron.admin.rules_ui.diff import doc_diff, percent_change, read_period, read_shift
from patron.admin.rules_ui.form import (
    CHANNELS,
    CHOICES,
    EVENTS,
    KIND_FIELDS,
    ORDERED_KINDS,
    all_errors,
    channel_options,
    checked,
    dump_doc,
    form_values,
    has_hidden_conditions,
    new_id,
    pretty,
    rule_errors,
    rule_from_form,
    scoped,
    service_error_path,
    settings_values,
    split_list,
)
from patron.admin.rules_ui.words import rule_rows, settings_lines
from patron.admin.templating import path_for, render
from patron.earning import examples as rule_examples
from patron.errors import Invalid, NotFound, StaleVersion
from patron.programs.models import Program
from patron.programs.service import get_program
from patron.rules import confirm as large_change
from patron.rules import publishing
from patron.rules import service as rules
from patron.rules import simulate as what_if
from patron.rules.confirm import ConfirmationRequired
from patron.rules.model import DAYS, RULE_ID, RULE_KINDS, RuleSetDoc
from patron.segments import service as segments

router = APIRouter()

router = APIRouter()


TOP_MEMBERS = 10


ACTIONS = ("add", "edit", "toggle", "delete", "settings", "json", "candidate")


NOTICES = frozenset({"published"})


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
    # The program's segments by name; one the rule names that is gone stays, to be unticked.
    segment_list = [
        (row.code, row.name or row.code) for row in segments.list_segments(session, found)
    ]
    for key in values:
        if key.startswith("cond.segment.") and key[13:] not in {c for c, _ in segment_list}:
            segment_list.append((key[13:], key[13:]))
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
        segments=segment_list,
        channels=CHANNELS,
        days=DAYS,
        events=EVENTS,
        choices=CHOICES,
        fields=KIND_FIELDS[kind],
        ordered=kind in ORDERED_KINDS,
        hidden_conditions=hidden_conditions,
        day_options=[(d, i18n.translate(f"rules.day.{d}", staff.language)) for d in DAYS],
        channel_options=channel_options(staff.language),
        scoped=scoped(values),
    )


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
        values = form_values({"kind": kind, "id": new_id(kind, [r.id for r in doc.rules])})
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
        data = dump_doc(rules.document(session, found))
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
            hidden_conditions=has_hidden_conditions(rule),
        )


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
        values = settings_values(dump_doc(rules.document(session, found)))
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
        text = pretty(dump_doc(rules.document(session, found)))
        return _json_page(request, found, base_version=found.rule_version, text=text)


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
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than it goes
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
        "skus": split_list(form.get("red.skus", "")),
        "categories": split_list(form.get("red.categories", "")),
    }
    excluded = {k: v for k, v in excluded.items() if v}
    red.pop("excluded", None)
    if excluded:
        red["excluded"] = excluded
    for key, chosen in (
        ("stores", checked(form, "red.store.")),
        ("channels", [c for c in CHANNELS if form.get(f"red.channel.{c}")]),
    ):
        red.pop(key, None)
        if chosen:
            red[key] = chosen
    data["combine"] = blank(form.get("combine"))
    data["rounding"] = blank(form.get("rounding"))
    if "base_rates" in form:
        # A form from before the choice existed keeps the rule set's own.
        data["base_rates"] = blank(form.get("base_rates"))
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
    data = dump_doc(base_doc)
    ids = [r["id"] for r in data["rules"]]

    if action == "candidate":
        doc = parse_candidate(form.get("candidate", ""))
        return Candidate(doc, blank(form.get("change"))[:200])

    if action == "json":
        return _json_candidate(request, found, form, base_version, lang)
    if action == "settings":
        return _settings_candidate(request, staff, session, found, form, data, base_version)

    rule_id = blank(form.get("rule_id"))
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
    kind = blank(form.get("kind"))
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
        rule["id"] = new_id(kind, ids)
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
                hidden_conditions=has_hidden_conditions(rule),
            )
        ) from None
    name = rule["id"] if action == "add" else rule_id
    return Candidate(doc, _change_text(lang, action, name))


def parse_candidate(text: str) -> RuleSetDoc:
    """The candidate a preview page carried; a tampered one is a 422 page, never a 500."""
    try:
        return rules.validate_doc(json.loads(text))
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json.loads goes
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
    shift = read_shift(form)
    # The rule tests, priced under this candidate and under the rules in force.
    tests = rule_examples.run(session, found, proposal=candidate.doc, now=clock.now())
    report = None
    if not period_errors:
        report = what_if.simulate(
            session,
            found,
            candidate.doc,
            date_from=sim_from,
            date_to=sim_to,
            top=TOP_MEMBERS,
            shift_years=shift,
        )
    # The tick box shows when the period on the page moves total points beyond the threshold,
    # or when the publish's own check (the last 30 days, recomputed at publish) would refuse.
    shown = None
    if report is not None:
        shown = large_change.judge(
            report.current_points, report.proposed_points, report.date_from, report.date_to
        )
    if (
        report is not None
        and shift == 0
        and (sim_from, sim_to) == large_change.period(found, clock.now())
    ):
        enforced = shown
    else:
        enforced = large_change.large_change(session, found, candidate.doc, now=clock.now())
    large = enforced or shown
    return render(
        request,
        "rules/preview.html",
        status=422 if period_errors else status,
        section="rules",
        tz=prog.tz,
        prog=prog,
        change=candidate.change,
        candidate=json.dumps(dump_doc(candidate.doc), ensure_ascii=False, separators=(",", ":")),
        base_version=base_version,
        stale=base_version != found.rule_version,
        diff=doc_diff(current, candidate.doc, prog, lang, names),
        rows=rule_rows(candidate.doc, prog, lang, names),
        report=report,
        tests=tests,
        large=large,
        tier_names=names,
        sim_from=sim_from,
        sim_to=sim_to,
        sim_shift=shift,
        errors=period_errors,
        note=candidate.change if note is None else note,
        problem=problem,
        percent=percent_change,
    )


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
        found, _ = pick_program(session, blank(form.get("program")) or None)
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
    code = blank(form.get("program"))
    base = _version_int(form.get("base_version"))
    if not code or base is None:
        raise Invalid("program, base_version: missing", code="invalid_form")
    doc = parse_candidate(form.get("candidate", ""))
    confirmed = bool(form.get("confirm_large"))
    note = blank(form.get("note"))[:500] or None
    if form.get("large") and not confirmed:
        # The period on the page moved total points beyond the threshold (the browser asks
        # first; this is the same answer without it).
        return _unconfirmed(request, staff, code, doc, base, form, note)
    db = get_db(request)
    with db.unit_of_work() as session:
        found = get_program(session, code)
        try:
            # The service locks the program's row, then compares: two publishers cannot both
            # pass the check (the JSON API refuses a stale If-Match the same way). It also
            # replays the change itself: the page's `large` flag is never what lets it through.
            row = publishing.publish(
                session, found, doc, actor=staff.actor, now=clock.now(), note=note,
                expected_version=base, confirm=confirmed,
            )  # fmt: skip
        except ConfirmationRequired:
            session.rollback()
            return _unconfirmed(request, staff, code, doc, base, form, note)
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
                text=pretty(dump_doc(doc)),
                problems=[problem],
                status=422,
            )
        version = row.version
    return RedirectResponse(
        path_for(request, "rules_list", {"program": code, "done": "published", "version": version}),
        status_code=303,
    )


def _unconfirmed(
    request: Request,
    staff: Staff,
    code: str,
    doc: RuleSetDoc,
    base: int,
    form: Mapping[str, str],
    note: str | None,
) -> Response:
    """The preview again, with the tick box and why the publish stopped (409)."""
    with get_db(request).unit_of_work(readonly=True) as session:
        found = get_program(session, code)
        return _preview(
            request,
            staff,
            session,
            found,
            Candidate(doc, note or ""),
            base,
            {k: v for k, v in form.items() if k not in ("sim_from", "sim_to", "sim_shift")},
            note=note or "",
            problem=i18n.translate("rules.preview.confirm_needed", staff.language),
            status=409,
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
            text=pretty(dump_doc(doc)),
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
