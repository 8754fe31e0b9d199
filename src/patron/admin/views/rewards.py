"""Rewards in the admin UI: the catalog, a reward's editor with its versions and stock, and
coupons found by code, cancelled or reissued with a reason.

- /rewards                          the program's catalog (rewards.view)
- /rewards/{code}/new?kind=         a new reward of one kind (rewards.manage)
- /rewards/{code}/{reward}          one reward: the editor (read-only without rewards.manage),
                                    its picture, stock with a restock/correct form, its versions
- /rewards/coupons?program=&code=   a coupon by its code, with its history; cancel or reissue it
                                    with a reason (coupons.view to look, coupons.manage to act)

Every change goes through patron.rewards (catalog.create_reward, update_reward, adjust_stock,
redeem.cancel, redeem.reissue) with the signed-in user as the actor, so versions, stock moves,
coupon history and the audit log name them. The Member 360° page lists a member's coupons with
the same cancel/reissue form (templates/rewards/_coupons.html), which posts here and comes back.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, get_args
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron import clock
from patron.admin import forms, i18n, member360
from patron.admin.deps import Staff, form_data, get_db, require
from patron.admin.program_context import Prog, pick_program, prog_of, store_codes, tier_names_of
from patron.admin.rules_ui.form import message_for
from patron.admin.service import actor_labels
from patron.admin.templating import path_for, render
from patron.audit import service as audit
from patron.coupons import codes, lookup
from patron.coupons.models import REWARD_KINDS, Reward, StockMove
from patron.errors import PatronError
from patron.ledger.views import valid_until
from patron.programs.schemas import CODE_PATTERN
from patron.programs.service import get_program
from patron.rewards import catalog, redeem
from patron.rewards import views as rewards_views
from patron.rewards.schemas import (
    LANGUAGES,
    CancelRequest,
    RedeemChannel,
    RewardCreate,
    RewardOut,
    RewardUpdate,
    StockChange,
)
from patron.segments.models import Segment

router = APIRouter()
ProgramCode = Path(pattern=CODE_PATTERN)
RewardCode = Path(pattern=CODE_PATTERN)

STATUSES = ("active", "paused", "archived")
CHANNELS: tuple[str, ...] = get_args(RedeemChannel)
ON_EXPIRY = ("forfeit", "refund")
ON_REFUND = ("restore", "keep")
MONEY_FIELDS = ("value", "discount", "cap", "min_spend", "gift_value")
DAY_FIELDS = ("valid_until", "available_from", "available_until")
FLAG_FIELDS = ("exclusive", "earn_on_discounted", "combine_with_points")
LIST_FIELDS = {
    "tiers": "tier.",
    "stores": "store.",
    "channels": "channel.",
    "segments": "segment.",
}

# What each kind's form shows, by the API's field names; a save changes only these, so a field
# set through the API that this kind's form does not show is never cleared by the form.
COMMON_FIELDS = frozenset(
    {
        "status", "names", "descriptions", "image_url", "points_cost", "tier_costs",
        "available_from", "available_until", "limit_per_day", "limit_per_month", "limit_ever",
        "tiers", "stores", "channels", "segments",
    }
)  # fmt: skip
COUPON_FIELDS = frozenset(
    {
        "min_spend", "valid_days", "valid_until", "on_expiry", "on_refund", "exclusive",
        "stack_group", "max_per_order", "earn_on_discounted", "combine_with_points",
    }
)  # fmt: skip
KIND_FIELDS: dict[str, frozenset[str]] = {
    "goods": frozenset({"value"}),
    "service": frozenset({"value"}),
    "free_product": frozenset({"value", "sku"}),
    "fixed_discount": frozenset({"value", "discount"}),
    "percent_discount": frozenset({"value", "percent", "cap"}),
    "gift_card": frozenset({"gift_value"}),
    "external": frozenset({"value"}),
}

NOTICES = frozenset({"created", "saved", "unchanged", "stock"})
COUPON_NOTICES = frozenset({"cancelled", "reissued"})
STOCK_MOVES = 10

# The catalog's refusals of a whole reward (catalog._check), by the start of their English
# detail: the form field at fault and the message that says what to do.
CHECKS = (
    ("give the reward a name", "names", "rewards.error.name"),
    ("a fixed_discount needs", "discount", "rewards.error.discount"),
    ("a percent_discount needs", "percent", "rewards.error.percent"),
    ("a free_product needs", "sku", "rewards.error.sku"),
    ("a gift_card needs", "gift_value", "rewards.error.gift_value"),
    ("say how long", "valid_days", "rewards.error.validity"),
    ("available_from must be before", "available_until", "rewards.error.window"),
)
COUPON_REFUSALS = frozenset(
    {"coupon_used", "coupon_cancelled", "coupon_expired", "coupon_refused", "coupon_foreign"}
)


def fields_for(kind: str) -> frozenset[str]:
    coupons = COUPON_FIELDS if kind not in redeem.NO_COUPON_KINDS else frozenset()
    return COMMON_FIELDS | KIND_FIELDS[kind] | coupons


# --- rows the pages show ----------------------------------------------------------------------


def image_preview(url: str | None) -> str | None:
    """The picture's address if the admin may load it: the pages load nothing from outside
    Patron (web.CSP), so only a path on this server is previewed; others are linked."""
    if url and url.startswith("/") and not url.startswith("//"):
        return url
    return None


@dataclass(frozen=True)
class RewardRow:
    code: str
    name: str
    kind: str
    status: str
    points_cost: int
    tier_prices: list[tuple[str, int]]  # (tier name, points)
    stock: int | None
    image_url: str | None
    preview: str | None


def _row(out: RewardOut, name: str, tier_names: Mapping[str, str]) -> RewardRow:
    # The program's tiers in their order, then any the program no longer has.
    order = [*tier_names, *sorted(set(out.tier_costs) - set(tier_names))]
    return RewardRow(
        code=out.code,
        name=name,
        kind=out.kind,
        status=out.status,
        points_cost=out.points_cost,
        tier_prices=[
            (tier_names.get(c, c), out.tier_costs[c]) for c in order if c in out.tier_costs
        ],
        stock=out.stock,
        image_url=out.image_url,
        preview=image_preview(out.image_url),
    )


@dataclass(frozen=True)
class VersionRow:
    version: int
    at: datetime
    actor: str
    changes: list[tuple[str, Any, Any]]  # (field label, before, after)


def _versions(session: Session, reward: Reward, lang: str) -> list[VersionRow]:
    """The reward's versions, newest first, each with what it changed from the one before."""
    saved = catalog.versions(session, reward)
    rows = []
    for i, version in enumerate(saved):
        older = saved[i + 1].document if i + 1 < len(saved) else {}
        before, after = audit.changes(older, version.document) if older else ({}, {})
        rows.append(
            VersionRow(
                version.version,
                version.created_at,
                version.actor,
                [(field_label(k, lang), before.get(k), after[k]) for k in after],
            )
        )
    return rows


def field_label(name: str, lang: str) -> str:
    key = f"rewards.field.{name}"
    return i18n.translate(key, lang) if i18n.has_message(key) else name


# --- the form ⇄ the API's fields ------------------------------------------------------------


@dataclass(frozen=True)
class Choices:
    """What the form offers to tick: the program's tiers, stores and segments, and any the
    reward still names that the program no longer has (listed so they can be unticked)."""

    tiers: list[tuple[str, str]]
    stores: list[tuple[str, str]]
    channels: list[tuple[str, str]]
    segments: list[tuple[str, str]]


def _choices(session: Session, prog: Prog, lang: str, out: RewardOut | None) -> Choices:
    tiers = list(tier_names_of(session, prog.id, lang).items())
    stores = store_codes(session, prog.id)
    segments = [
        (code, name or code)
        for code, name in session.execute(
            select(Segment.code, Segment.name)
            .where(Segment.program_id == prog.id)
            .order_by(Segment.code)
        )
    ]
    if out is not None:
        tiers += [
            (c, c) for c in sorted(set(out.tiers) | set(out.tier_costs)) if c not in dict(tiers)
        ]
        stores += [(c, c) for c in out.stores if c not in dict(stores)]
        segments += [(c, c) for c in out.segments if c not in dict(segments)]
    channels = [(c, i18n.translate(f"rewards.channel.{c}", lang)) for c in CHANNELS]
    return Choices(tiers, stores, channels, segments)


def _amount_text(value: Decimal | None) -> str:
    return "" if value is None else format(value.normalize(), "f")


def _count_text(value: int | None) -> str:
    return "" if value is None else str(value)


def _last_day_text(value: datetime | None, tz: ZoneInfo) -> str:
    """An exclusive end (the midnight after the last day) as the last day, YYYY-MM-DD."""
    return valid_until(value, tz).isoformat() if value is not None else ""


def form_values(out: RewardOut, tz: ZoneInfo) -> dict[str, Any]:
    """A saved reward as the form's fields (text as typed, ticks as booleans)."""
    v: dict[str, Any] = {
        "status": out.status,
        "image_url": out.image_url or "",
        "points_cost": str(out.points_cost),
        "sku": out.sku or "",
        "stack_group": out.stack_group or "",
        "percent": _amount_text(out.percent),
        "on_expiry": out.on_expiry,
        "on_refund": out.on_refund,
        "available_from": i18n.iso_date(out.available_from, tz),
        "available_until": _last_day_text(out.available_until, tz),
        "valid_until": _last_day_text(out.valid_until, tz),
    }
    for code in LANGUAGES:
        v[f"name_{code}"] = out.names.get(code, "")
        v[f"description_{code}"] = out.descriptions.get(code, "")
    for code, price in out.tier_costs.items():
        v[f"price.{code}"] = str(price)
    for name in MONEY_FIELDS:
        v[name] = _amount_text(getattr(out, name))
    for name in ("valid_days", "limit_per_day", "limit_per_month", "limit_ever", "max_per_order"):
        v[name] = _count_text(getattr(out, name))
    for name in FLAG_FIELDS:
        v[name] = bool(getattr(out, name))
    for name, prefix in LIST_FIELDS.items():
        for code in getattr(out, name):
            v[prefix + code] = True
    return v


def blank_values() -> dict[str, Any]:
    """A new reward's form: the catalog's defaults."""
    return {
        "status": "active",
        "on_expiry": "forfeit",
        "on_refund": "restore",
        "max_per_order": "1",
        "combine_with_points": True,
    }


def posted_values(form: Mapping[str, str], choices: Choices) -> dict[str, Any]:
    """The posted form as the form's fields; ticks only for what the form offered."""
    v: dict[str, Any] = {}
    for key in (
        "code", "status", "image_url", "points_cost", "sku", "stack_group", "percent",
        "on_expiry", "on_refund", "stock", "valid_days", "limit_per_day", "limit_per_month",
        "limit_ever", "max_per_order", *MONEY_FIELDS, *DAY_FIELDS,
    ):  # fmt: skip
        v[key] = (form.get(key) or "").strip()
    for code in LANGUAGES:
        v[f"name_{code}"] = (form.get(f"name_{code}") or "").strip()
        v[f"description_{code}"] = (form.get(f"description_{code}") or "").strip()
    for code, _name in choices.tiers:
        v[f"price.{code}"] = (form.get(f"price.{code}") or "").strip()
    for name in FLAG_FIELDS:
        v[name] = form.get(name) == "1"
    for name, prefix in LIST_FIELDS.items():
        for code, _label in getattr(choices, name):
            v[prefix + code] = form.get(prefix + code) == "1"
    return v


def _day_start(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def to_fields(
    v: Mapping[str, Any], fields: Iterable[str], choices: Choices, tz: ZoneInfo, lang: str
) -> tuple[dict[str, Any], forms.Errors]:
    """The form's fields -> the API's fields (blank is None), and the dates it cannot read.

    Dates are local days of the program: available from the start of the first, until the end
    of the last; coupons valid through the end of `valid_until`."""
    out: dict[str, Any] = {}
    errors: forms.Errors = {}
    for name in fields:
        if name in ("names", "descriptions"):
            prefix = "name_" if name == "names" else "description_"
            out[name] = {c: v[prefix + c] for c in LANGUAGES if v.get(prefix + c)}
        elif name == "tier_costs":
            out[name] = {c: v[f"price.{c}"] for c, _n in choices.tiers if v.get(f"price.{c}")}
        elif name in LIST_FIELDS:
            offered = getattr(choices, name)
            out[name] = sorted(c for c, _label in offered if v.get(LIST_FIELDS[name] + c))
        elif name in FLAG_FIELDS:
            out[name] = bool(v.get(name))
        elif name in DAY_FIELDS:
            try:
                day = forms.optional_date(v.get(name))
                if day is None:
                    out[name] = None
                elif name == "available_from":
                    out[name] = _day_start(day, tz)
                else:
                    out[name] = _day_start(day + timedelta(days=1), tz)
            except (forms.BadDate, OverflowError):
                errors[name] = i18n.translate("form.error.date", lang)
        else:
            out[name] = v.get(name) or None
    return out, errors


def _field_of(loc: tuple[Any, ...]) -> str:
    if not loc:
        return forms.FORM
    head = str(loc[0])
    if head == "tier_costs" and len(loc) > 1:
        return f"price.{loc[1]}"
    return head


def validation_errors(exc: ValidationError, lang: str) -> forms.Errors:
    """pydantic's refusals under their fields, in the user's language."""
    errors: forms.Errors = {}
    for err in exc.errors():
        field = _field_of(tuple(err.get("loc") or ()))
        kind = err.get("type")
        ctx = err.get("ctx") or {}
        if kind == "string_pattern_mismatch" and field == "image_url":
            message = i18n.translate("rewards.error.image_url", lang)
        elif kind == "decimal_max_places":
            message = i18n.translate("rewards.error.places", lang, n=ctx.get("decimal_places", ""))
        elif kind == "value_error" and field == "delta":
            message = i18n.translate("rewards.error.delta_zero", lang)
        elif kind == "value_error" and (check := _check_of(str(err.get("msg", "")))):
            field, key = check
            message = i18n.translate(key, lang)
        elif kind == "value_error" and field in ("names", "descriptions"):
            message = i18n.translate("rewards.error.texts", lang)
        elif kind == "value_error" and field == "tier_costs":
            message = i18n.translate("rewards.error.price", lang)
        else:
            message = message_for(err, lang)
        errors.setdefault(field, message)
    return errors


def _check_of(text: str) -> tuple[str, str] | None:
    """The field and message of one of the catalog's refusals (CHECKS), by its English text."""
    text = text.removeprefix("Value error, ")
    return next(((field, key) for start, field, key in CHECKS if text.startswith(start)), None)


def service_errors(exc: PatronError, lang: str, currency: str) -> forms.Errors:
    """The catalog's refusals under the field they are about."""
    if exc.code == "reward_exists":
        return {"code": i18n.translate("rewards.error.code_taken", lang)}
    if exc.code == "unknown_store":
        return {"stores": i18n.translate("rewards.error.unknown_store", lang)}
    if exc.code == "unknown_segment":
        return {"segments": i18n.translate("rewards.error.unknown_segment", lang)}
    if exc.code == "invalid_amount":
        field, _sep, _rest = exc.detail.partition(": ")
        return {field: i18n.translate("rewards.error.amount", lang, currency=currency)}
    if exc.code == "invalid_reward" and (check := _check_of(exc.detail)):
        field, key = check
        return {field: i18n.translate(key, lang)}
    return forms.from_error(exc, lang, ("tiers", "stores"))


def _required(v: Mapping[str, Any], fields: Collection[str], lang: str) -> forms.Errors:
    errors = forms.required(v, [f for f in fields if f in ("code", "points_cost")], lang)
    if "names" in fields and not any(v.get(f"name_{c}") for c in LANGUAGES):
        errors["names"] = i18n.translate("rewards.error.name", lang)
    return errors


# --- the catalog ------------------------------------------------------------------------------


@router.get("/rewards", name="rewards_list")
def rewards_list(
    request: Request,
    program: str | None = Query(None, max_length=40, pattern=CODE_PATTERN),
    staff: Staff = Depends(require("rewards.view")),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        found, choices = pick_program(session, program)
        if found is None:
            return render(request, "rewards/none.html", section="rewards")
        prog = prog_of(found)
        tier_names = tier_names_of(session, prog.id, staff.language)
        rows = [
            _row(catalog.out(r, prog.currency), catalog.name_in(r, staff.language), tier_names)
            for r in catalog.list_rewards(session, found)
        ]
    return render(
        request,
        "rewards/list.html",
        tz=prog.tz,
        section="rewards",
        prog=prog,
        programs=choices,
        rows=rows,
        kinds=[(k, i18n.translate(f"rewards.kind.{k}", staff.language)) for k in REWARD_KINDS],
    )


# --- a new reward -----------------------------------------------------------------------------


def _new_page(
    request: Request,
    staff: Staff,
    code: str,
    kind: str,
    *,
    values: dict[str, Any] | None = None,
    errors: forms.Errors | None = None,
    status: int = 200,
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        prog = prog_of(get_program(session, code))
        choices = _choices(session, prog, staff.language, None)
    return render(
        request,
        "rewards/new.html",
        status=status,
        tz=prog.tz,
        section="rewards",
        prog=prog,
        kind=kind,
        kinds=[(k, i18n.translate(f"rewards.kind.{k}", staff.language)) for k in REWARD_KINDS],
        fields=fields_for(kind),
        choices=choices,
        v=values or blank_values(),
        errors=errors or {},
        preview=image_preview((values or {}).get("image_url")),
    )


def _kind(text: str | None) -> str:
    return text if text in REWARD_KINDS else REWARD_KINDS[0]


@router.get("/rewards/{code}/new", name="reward_new")
def reward_new(
    request: Request,
    code: str = ProgramCode,
    kind: str | None = Query(None, max_length=20),
    staff: Staff = Depends(require("rewards.manage")),
) -> Response:
    return _new_page(request, staff, code, _kind(kind))


@router.post("/rewards/{code}/new", name="reward_create")
def reward_create(
    request: Request,
    code: str = ProgramCode,
    staff: Staff = Depends(require("rewards.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    lang = staff.language
    kind = _kind(form.get("kind"))
    fields = fields_for(kind)
    with get_db(request).unit_of_work(readonly=True) as session:
        prog = prog_of(get_program(session, code))
        choices = _choices(session, prog, lang, None)
    values = posted_values(form, choices)
    doc, errors = to_fields(values, fields, choices, prog.tz, lang)
    errors = _required(values, ("code", *fields), lang) | errors
    data = None
    try:
        data = RewardCreate.model_validate(
            {**doc, "code": values["code"], "kind": kind, "stock": values["stock"] or None}
        )
    except ValidationError as exc:
        errors = validation_errors(exc, lang) | errors
    if errors or data is None:
        return _new_page(request, staff, code, kind, values=values, errors=errors, status=422)
    try:
        with get_db(request).unit_of_work() as session:
            program = get_program(session, code)
            catalog.create_reward(session, program, data, actor=staff.actor, now=clock.now())
    except PatronError as exc:
        if exc.status == 404:
            raise
        errors = service_errors(exc, lang, prog.currency)
        return _new_page(request, staff, code, kind, values=values, errors=errors, status=422)
    target = path_for(request, "reward_detail", {"done": "created"}, code=code, reward=data.code)
    return RedirectResponse(target, status_code=303)


# --- one reward -------------------------------------------------------------------------------


def _detail_page(
    request: Request,
    staff: Staff,
    code: str,
    reward_code: str,
    *,
    values: dict[str, Any] | None = None,
    errors: forms.Errors | None = None,
    stock_values: dict[str, str] | None = None,
    stock_errors: forms.Errors | None = None,
    status: int = 200,
) -> Response:
    done = request.query_params.get("done")
    lang = staff.language
    with get_db(request).unit_of_work(readonly=True) as session:
        program = get_program(session, code)
        prog = prog_of(program)
        reward = catalog.get_reward(session, program, reward_code)
        out = catalog.out(reward, prog.currency)
        versions = _versions(session, reward, lang)
        moves = list(
            session.scalars(
                select(StockMove)
                .where(StockMove.reward_id == reward.id)
                .order_by(StockMove.id.desc())
                .limit(STOCK_MOVES)
            )
        )
        labels = actor_labels(session, [v.actor for v in versions] + [m.actor for m in moves])
        choices = _choices(session, prog, lang, out)
        tier_names = tier_names_of(session, prog.id, lang)
        return render(
            request,
            "rewards/detail.html",
            status=status,
            tz=prog.tz,
            section="rewards",
            prog=prog,
            reward=out,
            row=_row(out, catalog.name_in(reward, lang), tier_names),
            kind=out.kind,
            fields=fields_for(out.kind),
            choices=choices,
            v=values or form_values(out, prog.tz),
            errors=errors or {},
            stock_v=stock_values or {},
            stock_errors=stock_errors or {},
            versions=versions,
            moves=moves,
            labels=labels,
            manage=staff.can("rewards.manage"),
            done=done if done in NOTICES else None,
        )


@router.get("/rewards/{code}/{reward}", name="reward_detail")
def reward_detail(
    request: Request,
    code: str = ProgramCode,
    reward: str = RewardCode,
    staff: Staff = Depends(require("rewards.view")),
) -> Response:
    return _detail_page(request, staff, code, reward)


class _Outdated(Exception):
    """The reward was saved by someone else after the form was opened."""

    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


@router.post("/rewards/{code}/{reward}", name="reward_save")
def reward_save(
    request: Request,
    code: str = ProgramCode,
    reward: str = RewardCode,
    staff: Staff = Depends(require("rewards.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    lang = staff.language
    with get_db(request).unit_of_work(readonly=True) as session:
        program = get_program(session, code)
        prog = prog_of(program)
        shown = catalog.out(catalog.get_reward(session, program, reward), prog.currency)
        choices = _choices(session, prog, lang, shown)
    fields = fields_for(shown.kind)
    values = posted_values(form, choices)

    def again(errors: forms.Errors, status: int = 422) -> Response:
        return _detail_page(
            request, staff, code, reward, values=values, errors=errors, status=status
        )

    doc, errors = to_fields(values, fields, choices, prog.tz, lang)
    errors = _required(values, fields, lang) | errors
    try:
        RewardUpdate.model_validate(doc)
    except ValidationError as exc:
        errors = validation_errors(exc, lang) | errors
    if errors:
        return again(errors)
    try:
        with get_db(request).unit_of_work() as session:
            program = get_program(session, code)
            row = catalog.get_reward(session, program, reward, lock=True)
            if form.get("version") != str(row.version):
                raise _Outdated(row.version)
            # Only what the user changed: a value the form shows differently from how it is
            # stored (a valid_until at 15:00 shown as its day) is left as it is.
            before, _ = to_fields(form_values(catalog.out(row, prog.currency), prog.tz),
                                  fields, choices, prog.tz, lang)  # fmt: skip
            changed = {k: doc[k] for k in fields if doc[k] != before.get(k)}
            version = row.version
            if changed:
                catalog.update_reward(
                    session, program, row, RewardUpdate.model_validate(changed),
                    actor=staff.actor, now=clock.now(),
                )  # fmt: skip
            saved = row.version != version
    except _Outdated as exc:
        message = i18n.translate("rewards.error.outdated", lang, version=exc.version)
        return again({forms.FORM: message}, status=409)
    except PatronError as exc:
        if exc.status == 404:
            raise
        return again(service_errors(exc, lang, prog.currency))
    done = "saved" if saved else "unchanged"
    target = path_for(request, "reward_detail", {"done": done}, code=code, reward=reward)
    return RedirectResponse(target, status_code=303)


@router.post("/rewards/{code}/{reward}/stock", name="reward_stock")
def reward_stock(
    request: Request,
    code: str = ProgramCode,
    reward: str = RewardCode,
    staff: Staff = Depends(require("rewards.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    lang = staff.language
    values = {"delta": (form.get("delta") or "").strip(), "note": (form.get("note") or "").strip()}

    def again(errors: forms.Errors) -> Response:
        return _detail_page(
            request, staff, code, reward, stock_values=values, stock_errors=errors, status=422
        )

    errors = forms.required(values, ("delta",), lang)
    if errors:
        return again(errors)
    try:
        change = StockChange.model_validate(
            {"delta": values["delta"], "note": values["note"] or None}
        )
    except ValidationError as exc:
        return again(validation_errors(exc, lang))
    try:
        with get_db(request).unit_of_work() as session:
            program = get_program(session, code)
            row = catalog.get_reward(session, program, reward, lock=True)
            catalog.adjust_stock(
                session, program, row, change.delta, actor=staff.actor, now=clock.now(),
                note=change.note,
            )  # fmt: skip
    except PatronError as exc:
        if exc.status == 404:
            raise
        key = f"rewards.error.{exc.code}"
        message = i18n.translate(key, lang) if i18n.has_message(key) else exc.detail
        return again({"delta": message})
    target = path_for(request, "reward_detail", {"done": "stock"}, code=code, reward=reward)
    return RedirectResponse(target + "#stock", status_code=303)


# --- coupons ----------------------------------------------------------------------------------


def _coupon_page(
    request: Request,
    staff: Staff,
    program_code: str | None,
    typed: str,
    *,
    values: dict[str, str] | None = None,
    errors: forms.Errors | None = None,
    status: int = 200,
) -> Response:
    lang = staff.language
    done = request.query_params.get("done")
    returned = forms.optional_int(request.query_params.get("returned"), low=0, high=10**12)
    expired = forms.optional_int(request.query_params.get("expired"), low=1, high=10**12)
    search_errors: forms.Errors = {}
    with get_db(request).unit_of_work(readonly=True) as session:
        found, programs = pick_program(session, program_code)
        if found is None:
            return render(request, "rewards/none.html", section="rewards")
        prog = prog_of(found)
        detail = row = None
        labels: dict[str, str] = {}
        if typed:
            try:
                coupon = lookup.find_coupon(session, found, typed)
            except PatronError as exc:
                if exc.code not in ("coupon_not_found", "coupon_foreign"):
                    raise
                search_errors["code"] = i18n.translate(f"rewards.error.{exc.code}", lang)
            else:
                detail = rewards_views.coupon_detail(session, found, coupon)
                [row] = member360.coupon_rows(session, found, [coupon], lang=lang, now=clock.now())
                labels = actor_labels(session, [e.actor for e in detail.history])
        return render(
            request,
            "rewards/coupons.html",
            status=status,
            tz=prog.tz,
            section="rewards",
            prog=prog,
            programs=programs,
            typed=typed,
            search_errors=search_errors,
            detail=detail,
            row=row,
            labels=labels,
            v=values or {},
            errors=errors or {},
            done=done if done in COUPON_NOTICES else None,
            returned=returned,
            expired=expired,
        )


@router.get("/rewards/coupons", name="coupons_search")
def coupons_search(
    request: Request,
    program: str | None = Query(None, max_length=40, pattern=CODE_PATTERN),
    code: str = Query("", max_length=80),
    staff: Staff = Depends(require("coupons.view")),
) -> Response:
    return _coupon_page(request, staff, program, code.strip())


def _coupon_action(
    request: Request, staff: Staff, code: str, form: Mapping[str, str], action: str
) -> Response:
    """Cancel or reissue the posted coupon with the posted reason; back to where the form was
    (the coupon's page, or the member's with ?coupon_done=)."""
    lang = staff.language
    coupon_code = (form.get("coupon") or "").strip()[:80]
    values = {"reason": (form.get("reason") or "").strip(), "back": form.get("back", "")}

    def again(errors: forms.Errors, status: int) -> Response:
        return _coupon_page(
            request, staff, code, coupon_code, values=values, errors=errors, status=status
        )

    try:
        reason = CancelRequest.model_validate({"reason": values["reason"]}).reason
    except ValidationError as exc:
        return again(forms.from_validation(exc, lang, ("reason",)), 422)
    returned: int | None = None
    expired: int | None = None
    member_id: int | None = None
    shown_code = coupon_code
    try:
        with get_db(request).unit_of_work() as session:
            program = get_program(session, code)
            coupon = lookup.find_coupon(session, program, coupon_code)
            now = clock.now()
            if action == "cancel":
                gave = redeem.cancel(
                    session, program, coupon, reason=reason, actor=staff.actor, now=now
                )
                returned, expired = gave.points_returned, gave.points_expired_again
                shown = coupon
            else:
                shown = redeem.reissue(
                    session, program, coupon, reason=reason, actor=staff.actor, now=now
                )
            member_id, shown_code = coupon.member_id, codes.display(shown.code)
    except PatronError as exc:
        if exc.code not in COUPON_REFUSALS:
            raise
        return again({forms.FORM: i18n.translate(f"rewards.error.{exc.code}", lang)}, 409)
    done = "cancelled" if action == "cancel" else "reissued"
    if values["back"] == "member" and member_id is not None:
        target = path_for(
            request, "member_detail", {"program": code, "coupon_done": done}, member_id=member_id
        )
        return RedirectResponse(target + "#coupons", status_code=303)
    query = {
        "program": code, "code": shown_code, "done": done, "returned": returned,
        "expired": expired or None,
    }  # fmt: skip
    return RedirectResponse(path_for(request, "coupons_search", query), status_code=303)


@router.post("/rewards/coupons/{code}/cancel", name="coupon_cancel")
def coupon_cancel(
    request: Request,
    code: str = ProgramCode,
    staff: Staff = Depends(require("coupons.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    return _coupon_action(request, staff, code, form, "cancel")


@router.post("/rewards/coupons/{code}/reissue", name="coupon_reissue")
def coupon_reissue(
    request: Request,
    code: str = ProgramCode,
    staff: Staff = Depends(require("coupons.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    return _coupon_action(request, staff, code, form, "reissue")
