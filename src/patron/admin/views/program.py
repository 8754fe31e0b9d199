"""Program setup: the program's settings, a new program, its stores, and the sales channels.

The forms are validated with the API's own schemas (ProgramUpdate, ProgramCreate and their
nested policies, StoreCreate) and saved by the API's services (setup.service for a program and
its rule set, programs.service for its stores), with the signed-in user as the actor, so the
audit log names them. A refused form comes back with status 422 and each message under its
field; a saved one redirects (303) with a notice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from patron import clock
from patron.admin import forms, i18n, program_context, setup_service
from patron.admin.deps import Staff, form_data, get_db, require
from patron.admin.service import actor_labels
from patron.admin.templating import path_for, render
from patron.errors import PatronError
from patron.money import MINOR_UNITS, minor_unit
from patron.portal import signup
from patron.programs import branding
from patron.programs import service as programs
from patron.programs.models import Program
from patron.programs.schemas import (
    CODE_PATTERN,
    EarningRate,
    ExpiryPolicy,
    ProgramCreate,
    ProgramOut,
    ProgramUpdate,
    RedemptionPolicy,
    StoreCreate,
)
from patron.setup import service as setup

router = APIRouter()
ProgramCode = Path(pattern=CODE_PATTERN)
StoreCode = Path(pattern=CODE_PATTERN)

# The sales channels a purchase can name (patron.ledger.schemas.Channel): fixed, not configured.
CHANNELS = ("pos", "online", "app")
EARN_MODES = ("per_full_unit", "proportional")
ROUNDINGS = ("down", "half_up", "up")
EXPIRY_KINDS = ("months", "days", "rolling", "end_of_month", "end_of_year", "none")
NEGATIVE_BALANCE = ("allow_debt", "write_off")
NOTICES = frozenset({"saved", "unchanged", "created", "store_added", "store_saved", "store_off"})
NOTICES_STORE = frozenset({"store_on"})

# The settings form is flat; the schemas nest three policies. flat field -> (policy, its field).
NESTED: dict[str, tuple[type[BaseModel], dict[str, str]]] = {
    "earning": (
        EarningRate,
        {
            "mode": "earn_mode",
            "points": "earn_points",
            "per_amount": "earn_per_amount",
            "rounding": "earn_rounding",
        },
    ),
    "expiry": (
        ExpiryPolicy,
        {"kind": "expiry_kind", "months": "expiry_months", "days": "expiry_days"},
    ),
    "redemption": (
        RedemptionPolicy,
        {"min_points": "redeem_min_points", "step": "redeem_step", "max_share": "redeem_max_share"},
    ),
}
TOP_FIELDS = (
    "name",
    "timezone",
    "country",
    "point_value",
    "earn_on_redeemed",
    "pending_days",
    "negative_balance",
)
CREATE_FIELDS = ("code", "currency")
FIELDS = (
    *CREATE_FIELDS,
    *TOP_FIELDS,
    *(flat for _, names in NESTED.values() for flat in names.values()),
)
# Filled in every time (expiry_months only for the month-based kinds, expiry_days for "days").
REQUIRED = (
    "name",
    "timezone",
    "point_value",
    "earn_points",
    "earn_per_amount",
    "pending_days",
    "redeem_min_points",
    "redeem_step",
    "redeem_max_share",
)
# A wrong value in these fields gets a message that says what is allowed.
FIELD_MESSAGES = {
    "code": "program.error.code",
    "country": "program.error.country",
    "timezone": "program.error.timezone",
    "point_value": "program.error.point_value",
    "earn_points": "program.error.earn_points",
    "earn_per_amount": "program.error.amount",
    "expiry_months": "program.error.expiry_months",
    "expiry_days": "program.error.expiry_days",
    "pending_days": "program.error.pending_days",
    "redeem_min_points": "program.error.min_points",
    "redeem_step": "program.error.step",
    "redeem_max_share": "program.error.max_share",
}


@lru_cache(maxsize=1)
def timezones() -> tuple[str, ...]:
    """The IANA zones a program can use: Region/City names and UTC (no legacy aliases)."""
    return tuple(sorted(z for z in available_timezones() if "/" in z and not z.startswith("Etc/")))


def timezone_options(current: str) -> list[str]:
    zones = ["UTC", *timezones()]
    return zones if current in zones or not current else [current, *zones]


def plain(value: Decimal) -> str:
    """A Decimal as people type it: 1, 0.01, 50 (never 5E+1 or 1.000000)."""
    return format(value.normalize(), "f")


def share_percent(share: Decimal) -> str:
    return plain(share * 100)


def form_values(p: ProgramOut) -> dict[str, Any]:
    """A program's settings as the form's flat fields."""
    return {
        "code": p.code,
        "currency": p.currency,
        "name": p.name,
        "timezone": p.timezone,
        "country": p.country,
        "point_value": plain(p.point_value),
        "earn_mode": p.earning.mode,
        "earn_points": str(p.earning.points),
        "earn_per_amount": plain(p.earning.per_amount),
        "earn_rounding": p.earning.rounding,
        "earn_on_redeemed": p.earn_on_redeemed,
        "expiry_kind": p.expiry.kind,
        "expiry_months": str(p.expiry.months),
        "expiry_days": str(p.expiry.days) if p.expiry.days is not None else "",
        "pending_days": str(p.pending_days),
        "redeem_min_points": str(p.redemption.min_points),
        "redeem_step": str(p.redemption.step),
        "redeem_max_share": share_percent(p.redemption.max_share),
        "negative_balance": p.negative_balance,
    }


NEW_PROGRAM: dict[str, Any] = {
    "code": "",
    "currency": "KRW",
    "name": "",
    "timezone": "Asia/Seoul",
    "country": "",
    "point_value": "1",
    "earn_mode": "per_full_unit",
    "earn_points": "10",
    "earn_per_amount": "1000",
    "earn_rounding": "down",
    "earn_on_redeemed": False,
    "expiry_kind": "months",
    "expiry_months": "12",
    "expiry_days": "",
    "pending_days": "0",
    "redeem_min_points": "0",
    "redeem_step": "1",
    "redeem_max_share": "100",
    "negative_balance": "allow_debt",
}


def posted_values(form: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {name: form.get(name, "").strip() for name in FIELDS}
    values["earn_on_redeemed"] = form.get("earn_on_redeemed") == "1"
    values["code"] = values["code"].lower()
    values["currency"] = values["currency"].upper()
    values["country"] = values["country"].upper()
    return values


NESTED_FALLBACK = {"earning": forms.FORM, "expiry": "expiry_months", "redemption": forms.FORM}


def _collect(
    exc: ValidationError, lang: str, names: dict[str, str], errors: forms.Errors, fallback: str
) -> None:
    """A (sub)model's validation errors onto the flat fields, keeping each field's first one.
    A field with a FIELD_MESSAGES entry says what is allowed instead of the generic message."""
    kinds: dict[str, str] = {}
    for err in exc.errors():
        loc = err.get("loc") or ()
        kinds.setdefault(str(loc[0]) if loc else forms.FORM, str(err.get("type", "")))
    for field, message in forms.from_validation(exc, lang).items():
        flat = names.get(field, fallback)
        key = FIELD_MESSAGES.get(flat)
        if key is not None and kinds.get(field) != "missing":
            message = i18n.translate(key, lang)
        errors.setdefault(flat, message)


def parse_program_form(
    values: dict[str, Any], lang: str, *, create: bool
) -> tuple[ProgramCreate | ProgramUpdate | None, forms.Errors]:
    """The flat form -> the API's schema (nested policies), or {field: message} for every
    problem at once."""
    required = (*REQUIRED, *CREATE_FIELDS) if create else (*REQUIRED, "country")
    errors = forms.required(values, required, lang)
    rolling_in_days = values["expiry_kind"] == "rolling" and values["expiry_days"]
    if (values["expiry_kind"] in ("none", "days") or rolling_in_days) and not values[
        "expiry_months"
    ]:
        values["expiry_months"] = "0"  # months mean nothing for these kinds
    elif not values["expiry_months"]:
        errors["expiry_months"] = i18n.translate("form.error.required", lang)
    if values["expiry_kind"] == "days" and not values["expiry_days"]:
        errors["expiry_days"] = i18n.translate("form.error.required", lang)
    top = (*CREATE_FIELDS, *TOP_FIELDS) if create else TOP_FIELDS
    payload: dict[str, Any] = {name: values[name] for name in top if values[name] != ""}
    for key, (model, names) in NESTED.items():
        raw: dict[str, Any] = {}
        complete = True
        for field, flat in names.items():
            if flat in errors:
                complete = False
                continue
            text = values[flat]
            if flat == "expiry_days" and (
                not text or values["expiry_kind"] not in ("days", "rolling")
            ):
                continue  # days count for "days" and "rolling" only: a leftover is no error
            if flat == "redeem_max_share":
                # Shown as a percentage; the schema takes a share (50 % -> 0.5).
                try:
                    raw[field] = Decimal(text) / 100
                except InvalidOperation:
                    errors[flat] = i18n.translate(FIELD_MESSAGES[flat], lang)
                    complete = False
                    continue
            else:
                raw[field] = text
        try:
            policy = model.model_validate(raw)
        except ValidationError as exc:
            fallback = NESTED_FALLBACK[key]
            if key == "expiry" and (values["expiry_kind"] == "days" or rolling_in_days):
                fallback = "expiry_days"  # the policy's own check: no N for the days kind
            _collect(exc, lang, names, errors, fallback)
            continue
        if complete:
            payload[key] = policy
    parsed: ProgramCreate | ProgramUpdate | None = None
    try:
        parsed = (ProgramCreate if create else ProgramUpdate).model_validate(payload)
    except ValidationError as exc:
        names = {**{f: f for f in FIELDS}, **{k: k for k in NESTED}}
        _collect(exc, lang, names, errors, forms.FORM)
    # "earning is missing" and the like: the policy's own fields already say what is wrong.
    for key in NESTED:
        errors.pop(key, None)
    if parsed is None and not errors:
        errors[forms.FORM] = i18n.translate("form.error.invalid", lang)
    return (None, errors) if errors else (parsed, {})


def _service_errors(exc: PatronError, lang: str, currency: str) -> forms.Errors:
    if exc.code == "invalid_amount":
        return {
            "earn_per_amount": i18n.translate(
                "program.error.amount_decimals",
                lang,
                currency=currency,
                places=minor_unit(currency),
            )
        }
    if exc.code == "duplicate_program":
        return {"code": i18n.translate("program.error.duplicate_program", lang)}
    return forms.from_error(exc, lang, FIELDS)


# --- pages ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProgramChoice:
    code: str
    name: str


def _choices(session) -> list[ProgramChoice]:
    return [
        ProgramChoice(p.code, p.name)
        for p in program_context.visible(programs.list_programs(session))
    ]


def _pick(session, code: str | None) -> Program | None:
    if code:
        return program_context.visible_program(session, code)
    found = program_context.visible(programs.list_programs(session))
    return found[0] if found else None


def _settings_page(
    request: Request,
    staff: Staff,
    code: str | None,
    *,
    values: dict[str, Any] | None = None,
    errors: forms.Errors | None = None,
    status: int = 200,
) -> Response:
    done = request.query_params.get("done")
    with get_db(request).unit_of_work(readonly=True) as session:
        program = _pick(session, code)
        if program is None:
            return render(request, "program/empty.html", section="program")
        out = programs.to_out(program)
        v = values or form_values(out)
        changes = setup_service.recent_changes(
            session, subject_type="program", subject_id=program.code, action="program.", limit=10
        )
        labels = actor_labels(session, [c.actor for c in changes])
        return render(
            request,
            "program/settings.html",
            status=status,
            tz=ZoneInfo(out.timezone),
            section="program",
            program=out,
            choices=_choices(session),
            v=v,
            errors=errors or {},
            done=done if done in NOTICES else None,
            changes=changes,
            labels=labels,
            options=_options(staff.language, v["timezone"]),
            stores_count=len(programs.list_stores(session, program)),
        )


def _options(lang: str, timezone: str) -> dict[str, Any]:
    def pairs(prefix: str, codes: tuple[str, ...]) -> list[tuple[str, str]]:
        return [(c, i18n.translate(f"{prefix}.{c}", lang)) for c in codes]

    return {
        "earn_mode": pairs("program.earn_mode", EARN_MODES),
        "earn_rounding": pairs("program.rounding", ROUNDINGS),
        "expiry_kind": pairs("program.expiry_kind", EXPIRY_KINDS),
        "negative_balance": pairs("program.negative_balance", NEGATIVE_BALANCE),
        "currency": [(c, c) for c in sorted(MINOR_UNITS)],
        "timezone": [(z, z) for z in timezone_options(timezone)],
    }


@router.get("/program", name="program_settings")
def program_settings(
    request: Request,
    program: str | None = Query(None, max_length=40, pattern=CODE_PATTERN),
    staff: Staff = Depends(require("program.view")),
) -> Response:
    return _settings_page(request, staff, program)


@router.post("/program/{code}/settings", name="program_save")
def program_save(
    request: Request,
    code: str = ProgramCode,
    staff: Staff = Depends(require("program.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    lang = staff.language
    values = posted_values(form)
    data, errors = parse_program_form(values, lang, create=False)
    if not isinstance(data, ProgramUpdate):
        return _settings_page(request, staff, code, values=values, errors=errors, status=422)
    changed = False
    try:
        with get_db(request).unit_of_work() as session:
            program = programs.get_program(session, code)
            before = program.updated_at
            setup.update_program(
                session,
                program,
                data,
                actor=staff.actor,
                now=clock.now(),
            )
            changed = program.updated_at != before
            currency = program.currency
    except PatronError as exc:
        if exc.status == 404:
            raise
        with get_db(request).unit_of_work(readonly=True) as session:
            currency = programs.get_program(session, code).currency
        errors = _service_errors(exc, lang, currency)
        return _settings_page(request, staff, code, values=values, errors=errors, status=422)
    done = "saved" if changed else "unchanged"
    return RedirectResponse(
        path_for(request, "program_settings", {"program": code, "done": done}), status_code=303
    )


# --- a new program ----------------------------------------------------------------------------


def _new_page(
    request: Request,
    staff: Staff,
    *,
    values: dict[str, Any] | None = None,
    errors: forms.Errors | None = None,
    status: int = 200,
) -> Response:
    v = values or dict(NEW_PROGRAM)
    return render(
        request,
        "program/new.html",
        status=status,
        section="program",
        v=v,
        errors=errors or {},
        options=_options(staff.language, v["timezone"]),
    )


@router.get("/program/new", name="program_new")
def program_new(request: Request, staff: Staff = Depends(require("program.manage"))) -> Response:
    return _new_page(request, staff)


@router.post("/program/new", name="program_create")
def program_create(
    request: Request,
    staff: Staff = Depends(require("program.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    lang = staff.language
    values = posted_values(form)
    data, errors = parse_program_form(values, lang, create=True)
    if not isinstance(data, ProgramCreate):
        return _new_page(request, staff, values=values, errors=errors, status=422)
    try:
        with get_db(request).unit_of_work() as session:
            program = setup.create_program(session, data, actor=staff.actor, now=clock.now())
            code = program.code
    except PatronError as exc:
        errors = _service_errors(exc, lang, values["currency"] or "KRW")
        return _new_page(request, staff, values=values, errors=errors, status=422)
    return RedirectResponse(
        path_for(request, "program_settings", {"program": code, "done": "created"}),
        status_code=303,
    )


# --- stores and channels ----------------------------------------------------------------------


def _stores_page(
    request: Request,
    staff: Staff,
    code: str,
    *,
    values: dict[str, str] | None = None,
    errors: forms.Errors | None = None,
    status: int = 200,
) -> Response:
    done = request.query_params.get("done")
    store_code = request.query_params.get("store", "")
    with get_db(request).unit_of_work(readonly=True) as session:
        program = programs.get_program(session, code)
        stores = programs.list_stores(session, program)
        return render(
            request,
            "program/stores.html",
            status=status,
            tz=ZoneInfo(program.timezone),
            section="program",
            program=programs.to_out(program),
            choices=_choices(session),
            stores=stores,
            channels=CHANNELS,
            v=values or {"code": "", "name": ""},
            errors=errors or {},
            done=done if done in NOTICES | NOTICES_STORE else None,
            done_store=store_code[:40],
        )


@router.get("/program/{code}/stores", name="program_stores")
def program_stores(
    request: Request, code: str = ProgramCode, staff: Staff = Depends(require("program.view"))
) -> Response:
    return _stores_page(request, staff, code)


STORE_FIELDS = ("code", "name")


@router.post("/program/{code}/stores", name="store_create")
def store_create(
    request: Request,
    code: str = ProgramCode,
    staff: Staff = Depends(require("program.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    lang = staff.language
    values = {"code": form.get("code", "").strip().lower(), "name": form.get("name", "").strip()}
    errors = forms.required(values, STORE_FIELDS, lang)
    data = None
    if not errors:
        try:
            data = StoreCreate.model_validate(values)
        except ValidationError as exc:
            errors = forms.from_validation(exc, lang, STORE_FIELDS)
            if "code" in errors:
                errors["code"] = i18n.translate("program.error.code", lang)
    if data is None:
        return _stores_page(request, staff, code, values=values, errors=errors, status=422)
    try:
        with get_db(request).unit_of_work() as session:
            programs.create_store(
                session,
                programs.get_program(session, code),
                data,
                actor=staff.actor,
                now=clock.now(),
            )
    except PatronError as exc:
        if exc.status == 404:
            raise
        if exc.code == "duplicate_store":
            errors = {"code": i18n.translate("program.error.duplicate_store", lang)}
        else:
            errors = forms.from_error(exc, lang, STORE_FIELDS)
        return _stores_page(request, staff, code, values=values, errors=errors, status=422)
    return RedirectResponse(
        path_for(request, "program_stores", {"done": "store_added", "store": data.code}, code=code)
        + "#stores",
        status_code=303,
    )


def _store_page(
    request: Request,
    code: str,
    store_code: str,
    *,
    values: dict[str, str] | None = None,
    errors: forms.Errors | None = None,
    status: int = 200,
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        program = programs.get_program(session, code)
        store = programs.get_store(session, program, store_code)
        changes = setup_service.recent_changes(
            session, subject_type="store", subject_id=f"{program.code}/{store.code}", limit=10
        )
        return render(
            request,
            "program/store.html",
            status=status,
            tz=ZoneInfo(program.timezone),
            section="program",
            program=programs.to_out(program),
            store=store,
            v=values or {"name": store.name},
            errors=errors or {},
            changes=changes,
            labels=actor_labels(session, [c.actor for c in changes]),
        )


@router.get("/program/{code}/stores/{store_code}", name="store_edit")
def store_edit(
    request: Request,
    code: str = ProgramCode,
    store_code: str = StoreCode,
    staff: Staff = Depends(require("program.manage")),
) -> Response:
    return _store_page(request, code, store_code)


@router.post("/program/{code}/stores/{store_code}", name="store_save")
def store_save(
    request: Request,
    code: str = ProgramCode,
    store_code: str = StoreCode,
    staff: Staff = Depends(require("program.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    lang = staff.language
    values = {"name": form.get("name", "").strip()}
    errors = forms.required(values, ("name",), lang)
    if not errors:
        try:
            StoreCreate(code=store_code, name=values["name"])
        except ValidationError as exc:
            errors = forms.from_validation(exc, lang, STORE_FIELDS)
    if errors:
        return _store_page(request, code, store_code, values=values, errors=errors, status=422)
    try:
        with get_db(request).unit_of_work() as session:
            program = programs.get_program(session, code)
            setup_service.rename_store(
                session,
                program,
                programs.get_store(session, program, store_code),
                name=values["name"],
                actor=staff.actor,
                now=clock.now(),
            )
    except PatronError as exc:
        if exc.status == 404:
            raise
        errors = forms.from_error(exc, lang, STORE_FIELDS)
        return _store_page(request, code, store_code, values=values, errors=errors, status=422)
    return RedirectResponse(
        path_for(request, "program_stores", {"done": "store_saved", "store": store_code}, code=code)
        + "#stores",
        status_code=303,
    )


@router.post("/program/{code}/stores/{store_code}/active", name="store_active")
def store_active(
    request: Request,
    code: str = ProgramCode,
    store_code: str = StoreCode,
    staff: Staff = Depends(require("program.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    active = form.get("active") == "1"
    with get_db(request).unit_of_work() as session:
        program = programs.get_program(session, code)
        setup_service.set_store_active(
            session,
            program,
            programs.get_store(session, program, store_code),
            active=active,
            actor=staff.actor,
            now=clock.now(),
        )
    done = "store_on" if active else "store_off"
    return RedirectResponse(
        path_for(request, "program_stores", {"done": done, "store": store_code}, code=code)
        + "#stores",
        status_code=303,
    )


# --- branding ---------------------------------------------------------------------------------

BRANDING_COLOURS = ("primary_color", "accent_color", "card_background", "card_text")
BRANDING_FIELDS = ("name_ko", "name_zh", "name_en", "logo_url", *BRANDING_COLOURS)
BRANDING_NOTICES = frozenset({"saved", "unchanged"})


def branding_values(b: branding.Branding) -> dict[str, str]:
    return {
        "name_ko": b.display_name.ko,
        "name_zh": b.display_name.zh,
        "name_en": b.display_name.en,
        "logo_url": b.logo_url or "",
        **{name: getattr(b, name) for name in BRANDING_COLOURS},
    }


def parse_branding_form(
    form: dict[str, str], lang: str
) -> tuple[branding.Branding | None, dict[str, str], forms.Errors]:
    """The posted form -> a Branding, or {field: message} for each wrong field."""
    values = {name: form.get(name, "").strip() for name in BRANDING_FIELDS}
    payload = {
        "display_name": {code: values[f"name_{code}"] for code in branding.LANGUAGES},
        "logo_url": values["logo_url"] or None,
        **{name: values[name] for name in BRANDING_COLOURS},
    }
    try:
        return branding.Branding.model_validate(payload), values, {}
    except ValidationError as exc:
        errors: forms.Errors = {}
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc") or ()]
            if loc[:1] == ["display_name"] and len(loc) > 1:
                errors.setdefault(
                    f"name_{loc[1]}", i18n.translate("program.branding.error.name", lang)
                )
            elif loc and loc[0] in BRANDING_COLOURS:
                errors.setdefault(loc[0], i18n.translate("program.branding.error.colour", lang))
            elif loc and loc[0] == "logo_url":
                errors.setdefault("logo_url", i18n.translate("program.branding.error.logo", lang))
            else:
                errors.setdefault(forms.FORM, i18n.translate("form.error.invalid", lang))
        return None, values, errors


def _preview_context(values: dict[str, str], program_name: str, lang: str) -> dict[str, Any]:
    """What the card preview shows: the typed colours where they are valid (defaults where not)
    and the contrast warnings for them."""
    defaults = branding.Branding()
    colours = {
        name: values[name].lower()
        if branding.HEX.match(values.get(name, ""))
        else getattr(defaults, name)
        for name in BRANDING_COLOURS
    }
    shown = defaults.model_copy(update=colours)
    name = values.get(f"name_{lang}") or values.get("name_en") or program_name
    logo = values.get("logo_url", "")
    try:
        logo_ok = bool(logo) and branding.Branding(logo_url=logo).logo_url is not None
    except ValidationError:
        logo_ok = False
    return {
        "preview": {**colours, "name": name, "logo_url": logo if logo_ok else None},
        "warnings": branding.contrast_warnings(shown),
    }


def _tab_page(
    request: Request,
    session: Session,
    program: Program,
    template: str,
    *,
    audit_prefix: str,
    notices: frozenset[str],
    values: Mapping[str, Any],
    errors: forms.Errors | None,
    status: int,
    **context: Any,
) -> Response:
    """A settings tab of the program (branding, sign-up): the form with its values and errors,
    the notice the last save left in the address, and who changed it lately."""
    done = request.query_params.get("done")
    changes = setup_service.recent_changes(
        session, subject_type="program", subject_id=program.code, action=audit_prefix, limit=10
    )
    return render(
        request,
        template,
        status=status,
        tz=ZoneInfo(program.timezone),
        section="program",
        program=programs.to_out(program),
        choices=_choices(session),
        v=values,
        errors=errors or {},
        done=done if done in notices else None,
        changes=changes,
        labels=actor_labels(session, [c.actor for c in changes]),
        **context,
    )


def _branding_page(
    request: Request,
    staff: Staff,
    code: str,
    *,
    values: dict[str, str] | None = None,
    errors: forms.Errors | None = None,
    status: int = 200,
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        program = programs.get_program(session, code)
        v = values or branding_values(branding.get(session, program))
        return _tab_page(
            request, session, program, "program/branding.html",
            audit_prefix="program.branding.", notices=BRANDING_NOTICES, values=v,
            errors=errors, status=status, **_preview_context(v, program.name, staff.language),
        )  # fmt: skip


@router.get("/program/{code}/branding", name="program_branding")
def program_branding(
    request: Request, code: str = ProgramCode, staff: Staff = Depends(require("program.view"))
) -> Response:
    return _branding_page(request, staff, code)


@router.post("/program/{code}/branding/preview", name="program_branding_preview")
def program_branding_preview(
    request: Request,
    code: str = ProgramCode,
    staff: Staff = Depends(require("program.view")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    """The card preview and contrast warnings for the colours being typed (an htmx fragment)."""
    with get_db(request).unit_of_work(readonly=True) as session:
        program = programs.get_program(session, code)
        name = program.name
    _data, values, _errors = parse_branding_form(form, staff.language)
    return render(
        request,
        "program/_branding_preview.html",
        **_preview_context(values, name, staff.language),
    )


@router.post("/program/{code}/branding", name="program_branding_save")
def program_branding_save(
    request: Request,
    code: str = ProgramCode,
    staff: Staff = Depends(require("program.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    data, values, errors = parse_branding_form(form, staff.language)
    if data is None:
        return _branding_page(request, staff, code, values=values, errors=errors, status=422)
    with get_db(request).unit_of_work() as session:
        program = programs.get_program(session, code)
        before = branding.get(session, program)
        branding.save(session, program, data, actor=staff.actor, now=clock.now())
        done = "unchanged" if before == data else "saved"
    return RedirectResponse(
        path_for(request, "program_branding", {"done": done}, code=code), status_code=303
    )


# --- self sign-up on the member page ----------------------------------------------------------

SIGNUP_MODES = ("off", "optional", "required")
SIGNUP_NOTICES = frozenset({"saved", "unchanged"})


def signup_values(s: signup.SignupSettings) -> dict[str, Any]:
    return {
        "enabled": s.enabled,
        **{f"field_{name}": getattr(s.fields, name) for name in signup.OPTIONAL_FIELDS},
        "verify_with": s.verify_with,
        "consent_email": s.consents.email,
        "consent_sms": s.consents.sms,
        "terms_url": s.terms_url or "",
    }


def parse_signup_form(
    form: dict[str, str], lang: str
) -> tuple[signup.SignupSettings | None, dict[str, Any], forms.Errors]:
    """The posted form -> SignupSettings, or {field: message} for each wrong field."""
    values: dict[str, Any] = {
        "enabled": form.get("enabled") == "1",
        **{
            f"field_{name}": form.get(f"field_{name}", "off").strip()
            for name in signup.OPTIONAL_FIELDS
        },
        "verify_with": form.get("verify_with", "").strip(),
        "consent_email": form.get("consent_email") == "1",
        "consent_sms": form.get("consent_sms") == "1",
        "terms_url": form.get("terms_url", "").strip()[:500],
    }
    errors: forms.Errors = {}
    for name in signup.OPTIONAL_FIELDS:
        if values[f"field_{name}"] not in SIGNUP_MODES:
            errors[f"field_{name}"] = i18n.translate("form.error.invalid", lang)
    if values["field_email"] == "off" and values["field_phone"] == "off":
        errors["field_email"] = i18n.translate("program.signup.error.contact", lang)
    verify_field = f"field_{values['verify_with']}"
    if values["verify_with"] not in ("email", "phone"):
        errors["verify_with"] = i18n.translate("form.error.invalid", lang)
    elif values.get(verify_field) != "required":
        errors["verify_with"] = i18n.translate("program.signup.error.verify_with", lang)
    payload = {
        "enabled": values["enabled"],
        "fields": {name: values[f"field_{name}"] for name in signup.OPTIONAL_FIELDS},
        "verify_with": values["verify_with"],
        "consents": {"email": values["consent_email"], "sms": values["consent_sms"]},
        "terms_url": values["terms_url"] or None,
    }
    try:
        parsed = signup.SignupSettings.model_validate(payload)
    except ValidationError as exc:
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc") or ()]
            if loc[:1] == ["terms_url"]:
                errors.setdefault(
                    "terms_url", i18n.translate("program.signup.error.terms_url", lang)
                )
        if not errors:
            errors[forms.FORM] = i18n.translate("form.error.invalid", lang)
        return None, values, errors
    return (None, values, errors) if errors else (parsed, values, {})


def _signup_page(
    request: Request,
    staff: Staff,
    code: str,
    *,
    values: dict[str, Any] | None = None,
    errors: forms.Errors | None = None,
    status: int = 200,
) -> Response:
    lang = staff.language
    with get_db(request).unit_of_work(readonly=True) as session:
        program = programs.get_program(session, code)
        v = values or signup_values(signup.get(session, program))
        return _tab_page(
            request, session, program, "program/signup.html",
            audit_prefix="program.signup.", notices=SIGNUP_NOTICES, values=v, errors=errors,
            status=status,
            modes=[(m, i18n.translate(f"program.signup.mode.{m}", lang)) for m in SIGNUP_MODES],
            verify_options=[
                (f, i18n.translate(f"program.signup.verify.{f}", lang)) for f in ("email", "phone")
            ],
            join_url=signup.portal_url(program.code) + "join",
        )  # fmt: skip


@router.get("/program/{code}/signup", name="program_signup")
def program_signup(
    request: Request, code: str = ProgramCode, staff: Staff = Depends(require("program.view"))
) -> Response:
    return _signup_page(request, staff, code)


@router.post("/program/{code}/signup", name="program_signup_save")
def program_signup_save(
    request: Request,
    code: str = ProgramCode,
    staff: Staff = Depends(require("program.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    data, values, errors = parse_signup_form(form, staff.language)
    if data is None:
        return _signup_page(request, staff, code, values=values, errors=errors, status=422)
    with get_db(request).unit_of_work() as session:
        program = programs.get_program(session, code)
        before = signup.get(session, program)
        signup.save(session, program, data, actor=staff.actor, now=clock.now())
        done = "unchanged" if before == data else "saved"
    return RedirectResponse(
        path_for(request, "program_signup", {"done": done}, code=code), status_code=303
    )
