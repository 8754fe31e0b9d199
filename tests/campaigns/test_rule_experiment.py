"""Rule experiments (issue 18): a member in variant B earns by the program's rules plus B's rules
while the campaign runs, the breakdown and explanation name the campaign and variant, control
and other arms earn by the plain rules, nobody after the end; the rules' cost per arm."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select

from patron.audit.service import CLI
from patron.campaigns import service
from patron.campaigns.schemas import CampaignIn
from patron.experiments.models import CampaignMember
from patron.ledger.models import Entry
from patron.programs.models import Program
from patron.rules import explain
from tests.campaigns.conftest import ab_body
from tests.tiers._tier_helpers import buy

P = "/api/v1/programs/bakery/campaigns"
BONUS = {"id": "winback-bonus", "name": "Winback bonus", "kind": "order_bonus", "points": 500}


def rule_body(**over: Any) -> dict[str, Any]:
    body = ab_body(
        "winback-ab",
        variants=[
            {"key": "a", "name": "A", "share": 50, "action": {"kind": "none"}},
            {"key": "b", "name": "B", "share": 50,
             "action": {"kind": "rules", "rules": [BONUS]}},
        ],
    )  # fmt: skip
    body.update(over)
    return body


def _arms(db) -> dict[str, list[int]]:
    with db.unit_of_work(readonly=True) as s:
        out: dict[str, list[int]] = {}
        for m, arm in s.execute(select(CampaignMember.member_id, CampaignMember.arm)):
            out.setdefault(arm, []).append(m)
        return {k: sorted(v) for k, v in out.items()}


def _buy(db, world, member_id: int, now, amount: int = 10_000) -> dict[str, Any]:
    with db.unit_of_work() as s:
        return buy(s, s.get(Program, world["program"]), member_id, amount, now=now)


def _earn_steps(db, entry_id: int) -> list[dict[str, Any]]:
    with db.unit_of_work(readonly=True) as s:
        entry = s.get(Entry, entry_id)
        assert entry is not None
        return list(entry.breakdown or [])


def _launch(db, world, now, body: dict[str, Any]) -> None:
    with db.unit_of_work() as s:
        program = s.get(Program, world["program"])
        service.create(s, program, CampaignIn.model_validate(body), actor=CLI, now=now)
    with db.unit_of_work() as s:
        service.launch(s, s.get(Program, world["program"]), body["code"], actor=CLI, now=now)


def test_variant_b_earns_its_rules_while_the_campaign_runs(db, world, frozen):
    now = frozen
    _launch(db, world, now, rule_body(ends_at=(now + timedelta(days=7)).isoformat()))
    arms = _arms(db)
    b, a, control = arms["b"][0], arms["a"][0], arms["control"][0]

    plain = _buy(db, world, control, now + timedelta(hours=1))
    in_a = _buy(db, world, a, now + timedelta(hours=1))
    in_b = _buy(db, world, b, now + timedelta(hours=1))
    assert plain["points_earned"] > 0
    assert in_a["points_earned"] == plain["points_earned"]
    assert in_b["points_earned"] == plain["points_earned"] + 500

    earn = next(e for e in in_b["entries"] if e["kind"] == "earn")
    steps = _earn_steps(db, earn["id"])
    [bonus] = [st for st in steps if st["rule"] == "winback-bonus"]
    assert bonus["applied"] and bonus["added"] == 500
    assert (bonus["campaign"], bonus["variant"], bonus["variant_name"]) == ("winback-ab", "b", "B")
    assert not any("campaign" in st for st in steps if st["rule"] != "winback-bonus")
    words = explain.explain(steps, in_b["points_earned"], "en")
    assert "winback-ab · variant B: Winback bonus" in words
    assert "winback-ab · B안:" in explain.explain(steps, in_b["points_earned"], "ko")
    assert "winback-ab · 方案 B:" in explain.explain(steps, in_b["points_earned"], "zh")
    control_earn = next(e for e in plain["entries"] if e["kind"] == "earn")
    assert not any(st.get("campaign") for st in _earn_steps(db, control_earn["id"]))

    # Past its end nobody earns the rules, even before the job marks the campaign ended.
    after = _buy(db, world, b, now + timedelta(days=7, hours=1))
    assert after["points_earned"] == plain["points_earned"]
    with db.unit_of_work() as s:
        service.run(s, s.get(Program, world["program"]), "winback-ab", actor=CLI,
                    now=now + timedelta(days=7, hours=2))  # fmt: skip
    again = _buy(db, world, b, now + timedelta(days=7, hours=3))
    assert again["points_earned"] == plain["points_earned"]

    # The rules' cost per arm: the 500 of the one sale in the window, in B only.
    with db.unit_of_work(readonly=True) as s:
        program = s.get(Program, world["program"])
        row = service.get_campaign(s, program, "winback-ab")
        out = service.results(s, program, row, now=now + timedelta(days=8))
    by_arm = {a.arm: a for a in out.arms}
    assert by_arm["b"].rule_points == 500 and by_arm["b"].action == "rules"
    assert by_arm["a"].rule_points == 0 and by_arm["control"].rule_points == 0
    assert by_arm["b"].points_cost == plain["points_earned"] + 500
    assert by_arm["control"].points_cost == plain["points_earned"]
    assert by_arm["b"].reached == by_arm["b"].members  # reached at assignment


def test_a_stopped_rule_campaign_stops_earning_at_once(db, world, frozen):
    now = frozen
    _launch(db, world, now, rule_body())
    b = _arms(db)["b"][0]
    first = _buy(db, world, b, now + timedelta(hours=1))
    with db.unit_of_work() as s:
        service.stop(s, s.get(Program, world["program"]), "winback-ab", actor=CLI,
                     now=now + timedelta(hours=2))  # fmt: skip
    second = _buy(db, world, b, now + timedelta(hours=3))
    assert first["points_earned"] == second["points_earned"] + 500


def test_one_arms_query_per_sale_and_none_without_a_rule_campaign(db, world, frozen):
    now = frozen
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        if "campaign_members" in statement:
            seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        _buy(db, world, world["first"], now)
        assert seen == []  # no rule campaign: not a single read
        _launch(db, world, now, rule_body())
        seen.clear()
        _buy(db, world, world["first"], now + timedelta(hours=1))
        reads = [q for q in seen if q.lstrip().upper().startswith("SELECT")]
        assert len(reads) == 1
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


@pytest.mark.parametrize(
    ("rule", "code"),
    [
        ({"id": "x", "kind": "order_bonus", "points": -5}, "invalid_rule_set"),
        ({"id": "x", "kind": "order_bonus", "points": 5, "bogus": 1}, "invalid_rule_set"),
        ({"id": "x", "kind": "event", "event": "signup", "points": 5}, "invalid_rule_set"),
        ({"id": "x", "kind": "promotion", "bonus_points": 5, "budget_points": 100},
         "invalid_rule_set"),
        ({"id": "x", "kind": "order_bonus", "points": 5, "stores": ["nowhere"]}, "unknown_store"),
        ({"id": "x", "kind": "order_bonus", "points": 5, "conditions": {"segments": ["nope"]}},
         "unknown_segment"),
        ({"id": "base", "kind": "order_bonus", "points": 5}, "invalid_rule_set"),  # id taken
    ],
)  # fmt: skip
def test_rules_are_checked_as_the_rule_editor_checks_them(client, world, admin, rule, code):
    body = rule_body()
    body["variants"][1]["action"]["rules"] = [rule]
    r = client.post(P, json=body, headers=admin)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == code


def test_the_api_takes_and_shows_a_rule_experiment(client, world, admin, reader, frozen):
    created = client.post(P, json=rule_body(), headers=admin)
    assert created.status_code == 201, created.text
    [_, b] = created.json()["variants"]
    assert b["action"]["kind"] == "rules" and b["action"]["rules"][0]["id"] == "winback-bonus"
    assert client.post(f"{P}/winback-ab/launch", headers=admin).status_code == 200
    results = client.get(f"{P}/winback-ab/results", headers=reader).json()
    assert {a["arm"]: a["rule_points"] for a in results["arms"]} == {"control": 0, "a": 0, "b": 0}
    spec = client.get("/openapi.json").json()["components"]["schemas"]
    action = spec.get("Action-Input") or spec["Action"]
    assert "rules" in action["properties"] and "rules" in action["properties"]["kind"]["enum"]
    assert "rule_points" in spec["ArmResult"]["properties"]
