"""Campaigns in the admin UI: the list, the editor (segment picker, arms), launch with a
confirmation of reach and budget, stop, and the results with intervals. The same services as
the API (patron.campaigns.service)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import select

from patron import clock
from patron.admin import context, program_context
from patron.admin.deps import Staff, form_data, get_db, require
from patron.admin.templating import path_for, render
from patron.campaigns import service
from patron.campaigns.schemas import CODE, CampaignIn
from patron.coupons.models import Reward
from patron.errors import Invalid, PatronError
from patron.rules.service import describe_errors
from patron.segments import service as segments

router = APIRouter()
CampaignCode = Path(pattern=CODE)
ARM_ROWS = 3


def _programs(session: Any, program: str | None) -> tuple[list[Any], Any]:
    programs = program_context.visible(context.programs(session))
    prog = next((p for p in programs if p.code == program), programs[0] if programs else None)
    return programs, prog


@router.get("/campaigns", name="campaigns_list")
def campaigns_list(
    request: Request,
    program: str | None = Query(None, max_length=40),
    staff: Staff = Depends(require("rules.view")),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        programs, prog = _programs(session, program)
        rows = service.list_campaigns(session, prog) if prog else []
        counts = {r.code: service.member_count(session, r) for r in rows}
        return render(
            request, "campaigns/list.html", tz=context.default_timezone(session),
            section="campaigns", programs=programs, prog=prog, rows=rows, counts=counts,
        )  # fmt: skip


def _blank() -> dict[str, Any]:
    return {
        "code": "", "name": "", "segment": "", "targeting": "snapshot", "holdout_pct": "10",
        "budget_points": "", "budget_coupons": "", "days": "28",
        "arms": [
            {"key": "a", "name": "", "share": "50", "kind": "coupon", "points": "", "reward": "",
             "rules": "", "message": ""},
            {"key": "b", "name": "", "share": "50", "kind": "points", "points": "500",
             "reward": "", "rules": "", "message": ""},
        ],
    }  # fmt: skip


def _values_of(row: Any) -> dict[str, Any]:
    days = ""
    if row.ends_at is not None and row.starts_at is not None:
        days = str(max((row.ends_at - row.starts_at).days, 1))
    return {
        "code": row.code, "name": row.name, "segment": row.segment, "targeting": row.targeting,
        "holdout_pct": str(row.holdout_pct), "days": days,
        "budget_points": "" if row.budget_points is None else str(row.budget_points),
        "budget_coupons": "" if row.budget_coupons is None else str(row.budget_coupons),
        "arms": [
            {"key": v["key"], "name": v.get("name", ""), "share": str(v["share"]),
             "kind": v["action"]["kind"], "points": str(v["action"].get("points") or ""),
             "reward": v["action"].get("reward") or "",
             "rules": json.dumps(v["action"]["rules"], ensure_ascii=False, indent=2)
             if v["action"].get("rules") else "",
             "message": "on" if v.get("message") else ""}
            for v in row.arms
        ],
    }  # fmt: skip


def _editor(
    request: Request, prog_code: str | None, *, campaign: str | None,
    values: dict[str, Any] | None = None, error: str | None = None, status: int = 200,
) -> Response:  # fmt: skip
    with get_db(request).unit_of_work(readonly=True) as session:
        programs, prog = _programs(session, prog_code)
        if prog is None:
            return RedirectResponse(path_for(request, "campaigns_list"), status_code=303)
        if values is None:
            values = _blank()
            if campaign is not None:
                values = _values_of(service.get_campaign(session, prog, campaign))
        arms = list(values["arms"])
        arms += [{"key": "", "name": "", "share": "", "kind": "none", "points": "", "reward": "",
                  "rules": "", "message": ""}] * (ARM_ROWS - len(arms))  # fmt: skip
        rewards = session.scalars(
            select(Reward)
            .where(Reward.program_id == prog.id, Reward.kind != "external")
            .order_by(Reward.code)
        ).all()
        return render(
            request, "campaigns/edit.html", status=status, section="campaigns",
            programs=programs, prog=prog, campaign=campaign, v=values, arms=arms,
            segments=segments.list_segments(session, prog), rewards=rewards, error=error,
        )  # fmt: skip


@router.get("/campaigns/new", name="campaigns_new")
def campaigns_new(
    request: Request,
    program: str | None = Query(None, max_length=40),
    staff: Staff = Depends(require("rules.manage")),
) -> Response:
    return _editor(request, program, campaign=None)


@router.get("/campaigns/{code}/edit", name="campaigns_edit")
def campaigns_edit(
    request: Request,
    code: str = CampaignCode,
    program: str | None = Query(None, max_length=40),
    staff: Staff = Depends(require("rules.view")),
) -> Response:
    return _editor(request, program, campaign=code)


def _form_values(form: dict[str, str]) -> dict[str, Any]:
    keys = ("code", "name", "segment", "targeting", "holdout_pct", "budget_points",
            "budget_coupons", "days")  # fmt: skip
    values: dict[str, Any] = {k: form.get(k, "").strip() for k in keys}
    values["arms"] = [
        {k: form.get(f"arm{i}_{k}", "").strip()
         for k in ("key", "name", "share", "kind", "points", "reward", "rules", "message")}
        for i in range(ARM_ROWS)
        if form.get(f"arm{i}_key", "").strip()
    ]  # fmt: skip
    return values


def _rules_json(text: str, key: str) -> Any:
    """A rules arm's earning rules as typed in the editor: a JSON list of rules (or one rule,
    or a rule set document with `rules`), in the rule set's own shape."""
    if not text.strip():
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Invalid(
            f"variant {key}: the rules are not valid JSON ({exc.msg}, line {exc.lineno})",
            code="invalid_rule_set",
        ) from None
    except (ValueError, RecursionError):  # not UTF-8 text, or nested beyond reason
        raise Invalid(
            f"variant {key}: the rules are not valid JSON", code="invalid_rule_set"
        ) from None
    if isinstance(data, dict):
        data = data["rules"] if isinstance(data.get("rules"), list) else [data]
    return data


def _body(values: dict[str, Any], now: datetime) -> CampaignIn:
    def number(text: str) -> int | str | None:
        return None if text == "" else int(text) if text.lstrip("-").isdigit() else text

    days = number(values["days"])
    variants = []
    for a in values["arms"]:
        action: dict[str, Any] = {"kind": a["kind"] or "none"}
        if action["kind"] == "points":
            action["points"] = number(a["points"])
        if action["kind"] == "coupon":
            action["reward"] = a["reward"] or None
        if action["kind"] == "rules":
            action["rules"] = _rules_json(a.get("rules", ""), a["key"])
        variants.append({"key": a["key"], "name": a["name"], "share": number(a["share"]),
                         "action": action, "message": a.get("message") == "on"})  # fmt: skip
    return CampaignIn.model_validate(
        {
            "code": values["code"], "name": values["name"], "segment": values["segment"],
            "targeting": values["targeting"] or "snapshot",
            "holdout_pct": number(values["holdout_pct"]) or 0,
            "budget_points": number(values["budget_points"]),
            "budget_coupons": number(values["budget_coupons"]),
            "ends_at": (now + timedelta(days=days)).isoformat()
            if isinstance(days, int) and 0 < days <= 3650 else None,
            "variants": variants,
        }
    )  # fmt: skip


@router.post("/campaigns/save", name="campaigns_save")
def campaigns_save(
    request: Request,
    staff: Staff = Depends(require("rules.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    prog_code = form.get("program", "")
    existing = form.get("campaign") or None
    values = _form_values(form)
    now = clock.now()
    try:
        body = _body(values, now)
        with get_db(request).unit_of_work() as session:
            prog = program_context.visible_program(session, prog_code)
            if existing is None:
                service.create(session, prog, body, actor=staff.actor, now=now)
            else:
                service.replace(session, prog, existing, body, actor=staff.actor, now=now)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = f"{where}: {first['msg']}" if where else str(first["msg"])
        if "rules" in first["loc"]:  # as the rule editor words it
            message = describe_errors(exc.errors())
        return _editor(request, prog_code, campaign=existing, values=values, error=message,
                       status=422)  # fmt: skip
    except PatronError as exc:
        return _editor(request, prog_code, campaign=existing, values=values, error=exc.detail,
                       status=exc.status if exc.status in (404, 409, 422) else 422)  # fmt: skip
    target = path_for(request, "campaigns_launch", {"program": prog_code}, code=body.code)
    return RedirectResponse(target, status_code=303)


@router.get("/campaigns/{code}/launch", name="campaigns_launch")
def campaigns_launch_page(
    request: Request,
    code: str = CampaignCode,
    program: str | None = Query(None, max_length=40),
    staff: Staff = Depends(require("rules.view")),
) -> Response:
    """The confirmation: who the campaign reaches now, per arm, and what it costs."""
    with get_db(request).unit_of_work(readonly=True) as session:
        programs, prog = _programs(session, program)
        row = service.get_campaign(session, prog, code)
        reach = service.reach(session, prog, row, now=clock.now()) if row.status == "draft" \
            else None  # fmt: skip
        return render(
            request, "campaigns/launch.html", section="campaigns", programs=programs, prog=prog,
            row=row, reach=reach, members=service.member_count(session, row),
            variants=service.variants(row),
        )  # fmt: skip


@router.post("/campaigns/{code}/launch", name="campaigns_launch_do")
def campaigns_launch(
    request: Request,
    code: str = CampaignCode,
    staff: Staff = Depends(require("rules.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    prog_code = form.get("program", "")
    with get_db(request).unit_of_work() as session:
        prog = program_context.visible_program(session, prog_code)
        service.launch(session, prog, code, actor=staff.actor, now=clock.now())
    target = path_for(request, "campaigns_results", {"program": prog_code, "done": "launched"},
                      code=code)  # fmt: skip
    return RedirectResponse(target, status_code=303)


@router.post("/campaigns/{code}/stop", name="campaigns_stop")
def campaigns_stop(
    request: Request,
    code: str = CampaignCode,
    staff: Staff = Depends(require("rules.manage")),
    form: dict[str, str] = Depends(form_data),
) -> Response:
    prog_code = form.get("program", "")
    with get_db(request).unit_of_work() as session:
        prog = program_context.visible_program(session, prog_code)
        service.stop(session, prog, code, actor=staff.actor, now=clock.now())
    target = path_for(request, "campaigns_results", {"program": prog_code, "done": "stopped"},
                      code=code)  # fmt: skip
    return RedirectResponse(target, status_code=303)


def forest(uplifts: list[Any]) -> dict[str, Any]:
    """The interval chart's scale: every relative uplift's interval on one axis (in %)."""
    shown = [u for u in uplifts if u.lo is not None and u.unit == "%"]
    edge = max([abs(u.lo) for u in shown] + [abs(u.hi) for u in shown] + [0.1]) * 100
    edge = float(int(edge / 10) + 1) * 10
    return {"rows": shown, "edge": edge}


@router.get("/campaigns/{code}/results", name="campaigns_results")
def campaigns_results(
    request: Request,
    code: str = CampaignCode,
    program: str | None = Query(None, max_length=40),
    period: str = Query("during", pattern="^(during|after)$"),
    staff: Staff = Depends(require("rules.view")),
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        programs, prog = _programs(session, program)
        row = service.get_campaign(session, prog, code)
        out = service.results(session, prog, row, period=period, language=staff.language,
                              now=clock.now())  # fmt: skip
        return render(
            request, "campaigns/results.html", tz=context.default_timezone(session),
            section="campaigns", programs=programs, prog=prog, row=row, out=out,
            period=period, chart=forest(out.uplifts),
        )  # fmt: skip
