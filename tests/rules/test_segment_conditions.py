"""Segments as a rule condition (issue 18 item 1): `conditions.segments: ["code", ...]` holds
when the member is in at least one of the listed segments, as a live membership at the time of
the sale. The engine's semantics, what a rule set reads (once per sale, nothing without such a
rule), the API on both engines, the what-if and rule tests, and the words of a skip."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patron import clock
from patron.errors import Invalid
from patron.rules import publishing
from patron.rules import service as rules_service
from patron.rules.engine import MemberContext, Order, evaluate
from patron.rules.explain import skip_reason
from patron.rules.model import RuleSetDoc
from tests.api import conftest as api_fixtures
from tests.api.helpers import enroll
from tests.perf.test_earn_path import statements
from tests.rules.test_rules_cli import cli, program

__all__ = ["cli", "program", "statements"]
admin, pos, reader, bakery = (
    api_fixtures.admin,
    api_fixtures.pos,
    api_fixtures.reader,
    api_fixtures.bakery,
)

BASE = {"id": "base", "kind": "base_rate", "points": 10, "per_amount": "1000"}
CODES = ("gold-dormant", "vip", "new", "seoul")
AT = datetime.fromisoformat("2026-03-04T12:00:00+09:00")


def _doc(*rules: dict[str, Any]) -> RuleSetDoc:
    return RuleSetDoc.model_validate({"rules": [BASE, *rules]})


def _order(total: int = 25800) -> Order:
    return Order(currency="KRW", total=Decimal(total), occurred_at=AT, timezone="Asia/Seoul")


def bonus(segments: list[str], points: int = 500, rule_id: str = "seg") -> dict[str, Any]:
    return {
        "id": rule_id,
        "kind": "order_bonus",
        "points": points,
        "conditions": {"segments": segments},
    }


# --- the engine -------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    named=st.lists(st.sampled_from(CODES), min_size=1, max_size=4, unique=True),
    member=st.frozensets(st.sampled_from(CODES)),
    factor=st.sampled_from(["1", "1.5", "2"]),
    total=st.integers(min_value=0, max_value=500_000),
)
def test_a_segment_condition_is_the_rule_or_no_rule(named, member, factor, total):
    """A rule with a segment condition gives what the same rule without the condition gives
    when the member is in one of the segments, and what the rule set without it gives when she
    is in none; the skip names the segments."""
    promo = {"id": "promo", "kind": "promotion", "factor": factor, "bonus_points": 100}
    with_cond = _doc({**promo, "conditions": {"segments": named}})
    without = _doc(promo)
    dropped = _doc()
    context = MemberContext(segments=member)
    got = evaluate(with_cond, _order(total), context)
    if member & set(named):
        assert got.points == evaluate(without, _order(total), context).points
    else:
        assert got.points == evaluate(dropped, _order(total), context).points
        [skipped] = [s for s in got.steps if s["rule"] == "promo"]
        assert skipped["applied"] is False
        assert skipped["segments"] == ", ".join(named)
        assert skipped["condition"] == ("segments" if len(named) == 1 else "segments_any")


def test_the_skip_reads_in_ko_zh_and_en():
    steps = evaluate(_doc(bonus(["gold-dormant"])), _order(), MemberContext()).steps
    [step] = [s for s in steps if s["rule"] == "seg"]
    assert step["reason"] == "not in segment gold-dormant"
    assert skip_reason(step, "en") == "not in segment gold-dormant"
    assert skip_reason(step, "ko") == "gold-dormant 세그먼트에 속하지 않음"
    assert skip_reason(step, "zh") == "不属于分群 gold-dormant"
    steps = evaluate(_doc(bonus(["vip", "new"])), _order(), MemberContext()).steps
    [step] = [s for s in steps if s["rule"] == "seg"]
    assert skip_reason(step, "en") == "not in any of segments vip, new"
    assert skip_reason(step, "ko") == "vip, new 세그먼트 중 어디에도 속하지 않음"
    assert skip_reason(step, "zh") == "不属于分群 vip, new 中的任何一个"


def test_needs_names_each_segment_once_and_nothing_without_segment_rules():
    assert rules_service.needs(_doc()).segments == ()
    assert rules_service.needs(_doc({"id": "x", **bonus(["vip"])})).segments == ("vip",)
    doc = _doc(
        bonus(["vip", "new"], rule_id="a"),
        bonus(["vip"], rule_id="b"),
        {**bonus(["seoul"], rule_id="c"), "enabled": False},
        {"id": "ev", "kind": "event", "event": "review", "points": 5,
         "conditions": {"segments": ["gold-dormant"]}},
    )  # fmt: skip
    assert rules_service.needs(doc).segments == ("gold-dormant", "new", "vip")


@pytest.mark.parametrize(
    "segments, detail",
    [
        ([], "rules.1.conditions.segments: List should have at least 1 item"),
        (["Gold Dormant"], "rules.1.conditions.segments.0: String should match"),
    ],
)
def test_bad_segment_lists_are_refused(segments, detail):
    with pytest.raises(Invalid) as refused:
        rules_service.validate_doc({"rules": [BASE, bonus(segments)]})
    assert str(getattr(refused.value, "detail", "")).startswith(detail)


# --- over HTTP, on SQLite and PostgreSQL ------------------------------------------------------

P = "/api/v1/programs/bakery"
LEE, PARK = "010-2222-3333", "010-4444-5555"


def _segment(client, headers, code: str, condition: dict[str, Any]) -> None:
    body = {"code": code, "name": code.title(), "definition": {"condition": condition}}
    created = client.post(f"{P}/segments", json=body, headers=headers)
    assert created.status_code == 201, created.text


def _publish(client, headers, *rules: dict[str, Any]) -> Any:
    return client.put(f"{P}/rules", json={"rules": [BASE, *rules]}, headers=headers)


def _buy(client, headers, phone: str, external_id: str) -> dict[str, Any]:
    body = {"external_id": external_id, "member": {"phone": phone}, "amount": 25800}
    response = client.post(f"{P}/purchases", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _step(answer: dict[str, Any], rule: str) -> dict[str, Any]:
    [earn] = [e for e in answer["entries"] if e["kind"] == "earn"]
    [found] = [s for s in earn["breakdown"] if s["rule"] == rule]
    return dict(found)


SEOUL = {"type": "attribute", "key": "city", "values": ["seoul"]}
NEVER_BOUGHT = {"type": "dormant", "days": 30, "include_never": True}


def test_a_member_in_the_segment_earns_and_one_outside_does_not(
    frozen, client, admin, pos, reader, bakery
):
    enroll(client, pos, name="Lee", phone=LEE, attributes={"city": "seoul"}, language="ko")
    enroll(client, pos, name="Park", phone=PARK, attributes={"city": "busan"})
    _segment(client, admin, "seoul", SEOUL)
    _segment(client, admin, "vip", {"type": "attribute", "key": "vip", "op": "exists"})
    published = _publish(client, admin, bonus(["vip", "seoul"], rule_id="seoul-bonus"))
    assert published.status_code == 200, published.text
    inside = _buy(client, pos, LEE, "S-1")
    assert inside["points_earned"] == 250 + 500
    assert _step(inside, "seoul-bonus")["applied"] is True
    outside = _buy(client, pos, PARK, "S-2")
    assert outside["points_earned"] == 250
    missed = _step(outside, "seoul-bonus")
    assert missed["applied"] is False
    assert missed["reason"] == "not in any of segments vip, seoul"
    # Park's explanation, in Korean with the skipped rules, says why in words.
    entry = next(e for e in outside["entries"] if e["kind"] == "earn")
    words = client.get(
        f"{P}/entries/{entry['id']}/explanation",
        params={"language": "ko", "skipped": "true"},
        headers=reader,
    )
    assert words.status_code == 200, words.text
    assert any(
        "vip, seoul 세그먼트 중 어디에도 속하지 않음" in line for line in words.json()["lines"]
    )


def test_membership_is_live_at_the_time_of_the_sale(frozen, client, admin, pos, bakery):
    """A come-back bonus for members with no purchase in 30 days: the first sale earns it, the
    next one (the first now recorded) does not, and 31 days later it does again."""
    enroll(client, pos, name="Lee", phone=LEE)
    _segment(client, admin, "lapsed", NEVER_BOUGHT)
    assert _publish(client, admin, bonus(["lapsed"], 300, "come-back")).status_code == 200
    assert _buy(client, pos, LEE, "L-1")["points_earned"] == 250 + 300
    again = _buy(client, pos, LEE, "L-2")
    assert again["points_earned"] == 250
    assert _step(again, "come-back")["reason"] == "not in segment lapsed"
    clock.freeze(frozen + timedelta(days=31))
    assert _buy(client, pos, LEE, "L-3")["points_earned"] == 250 + 300


def test_an_unknown_segment_is_refused_at_publish_and_a_named_one_cannot_go(
    frozen, client, admin, pos, bakery
):
    refused = _publish(client, admin, bonus(["nobody"]))
    assert refused.status_code == 422
    assert refused.json() == {
        "error": "unknown_segment",
        "detail": "rules[1].conditions.segments: program bakery has no segment 'nobody'",
    }
    _segment(client, admin, "seoul", SEOUL)
    assert _publish(client, admin, bonus(["seoul"], rule_id="seoul-bonus")).status_code == 200
    gone = client.delete(f"{P}/segments/seoul", headers=admin)
    assert gone.status_code == 409
    assert gone.json()["error"] == "segment_in_use"
    assert "seoul-bonus" in gone.json()["detail"]
    assert _publish(client, admin).status_code == 200
    assert client.delete(f"{P}/segments/seoul", headers=admin).status_code == 204


def test_the_what_if_and_rule_tests_read_segments_the_same_way(frozen, client, admin, pos, bakery):
    """Replaying the unchanged rule set gives the recorded points (memberships as of just
    before each sale); a rule test says which segments the member is in."""
    enroll(client, pos, name="Lee", phone=LEE, attributes={"city": "seoul"})
    enroll(client, pos, name="Park", phone=PARK, attributes={"city": "busan"})
    _segment(client, admin, "lapsed", NEVER_BOUGHT)
    _segment(client, admin, "seoul", SEOUL)
    rule_set = [bonus(["lapsed"], 300, "come-back"), bonus(["seoul"], 70, "seoul-bonus")]
    assert _publish(client, admin, *rule_set).status_code == 200
    recorded = 0
    for n, phone in enumerate((LEE, PARK, LEE, PARK, LEE), start=1):
        clock.freeze(frozen + timedelta(minutes=n))  # a minute apart, as at a real till
        recorded += _buy(client, pos, phone, f"W-{n}")["points_earned"]
    assert recorded == 5 * 250 + 2 * 300 + 3 * 70
    day = frozen.date().isoformat()
    what_if = client.post(
        f"{P}/rules/simulate",
        json={"rules": {"rules": [BASE, *rule_set]}, "from": day, "to": day},
        headers=admin,
    )
    assert what_if.status_code == 200, what_if.text
    report = what_if.json()
    assert report["actual_points"] == report["current_points"] == recorded
    assert report["proposed_points"] == recorded
    dropped = client.post(
        f"{P}/rules/simulate",
        json={"rules": {"rules": [BASE, rule_set[1]]}, "from": day, "to": day},
        headers=admin,
    ).json()
    assert dropped["proposed_points"] == recorded - 2 * 300

    def example(segments: list[str]) -> dict[str, Any]:
        return {"sale": {"amount": 25800}, "member": {"segments": segments},
                "expected_points": 250 + 70}  # fmt: skip

    for name, segments in (("in", ["seoul"]), ("out", [])):
        saved = client.put(f"{P}/rules/examples/{name}", json=example(segments), headers=admin)
        assert saved.status_code in (200, 201), saved.text
    assert client.get(f"{P}/rules/examples/in", headers=admin).json()["member"]["segments"] == [
        "seoul"
    ]
    ran = client.post(f"{P}/rules/examples/run", headers=admin)
    assert ran.status_code == 200, ran.text
    results = {r["name"]: r for r in ran.json()["results"]}
    assert results["in"]["passed"] is True
    assert results["out"]["passed"] is False and results["out"]["points"] == 250


def test_a_sale_reads_memberships_once_however_many_rules_name_segments(db, frozen, statements):
    """Three rules naming three segments cost the sale the statements one rule naming one
    segment costs: memberships are read once per sale, in one query for all of them."""
    from patron.audit.service import CLI
    from patron.programs import service as programs
    from patron.sales import purchases
    from patron.sales.schemas import PurchaseRequest
    from patron.segments.models import Segment
    from tests.factories import make_member, make_program

    def costs(code: str, rule_set: list[dict[str, Any]]) -> int:
        with db.unit_of_work() as s:
            program = make_program(s, now=frozen, code=code)
            for seg in ("a", "b", "c"):
                s.add(Segment(program_id=program.id, code=seg, name=seg, created_at=frozen,
                              updated_at=frozen, definition={"condition": SEOUL}))  # fmt: skip
            s.flush()
            publishing.publish(s, program, _doc(*rule_set), actor=CLI, now=frozen)
            member = make_member(s, now=frozen, program=program, attributes={"city": "seoul"})
            member_id = member.id
        counted = 0
        for n in range(2):
            body = {"member": {"id": member_id}, "amount": "13000", "external_id": f"{code}{n}"}
            statements.clear()
            with db.unit_of_work() as session:
                purchases.purchase(
                    session,
                    programs.get_program(session, code),
                    PurchaseRequest.model_validate(body),
                    actor=CLI,
                    now=frozen,
                )
            counted = len(statements)
        return counted

    one = costs("one", [bonus(["a"], rule_id="x")])
    three = costs(
        "three",
        [bonus(["a"], rule_id="x"), bonus(["b"], rule_id="y"), bonus(["c", "a"], rule_id="z")],
    )
    assert one == three > 0


def test_cli_import_checks_and_export_keeps_segment_conditions(cli, db, program, tmp_path):
    """`patron rules import` refuses an unknown segment and keeps a known one; export gives
    the condition back as imported (the shape campaigns publish)."""
    import json

    from tests.rules.test_rules_cli import current, run

    source = tmp_path / "segments.json"
    source.write_text(json.dumps({"rules": [BASE, bonus(["gold-dormant"])]}), encoding="utf-8")
    refused = run(cli, db, "import", "--program", "bakery", str(source), code=2)
    assert "has no segment 'gold-dormant'" in refused
    with db.unit_of_work() as s:
        from patron.programs.service import get_program
        from patron.segments.models import Segment

        s.add(Segment(program_id=get_program(s, "bakery").id, code="gold-dormant", name="G",
                      definition={"condition": NEVER_BOUGHT}, created_at=clock.now(),
                      updated_at=clock.now()))  # fmt: skip
    assert "published" in run(cli, db, "import", "--program", "bakery", str(source))
    exported = json.loads(run(cli, db, "export", "--program", "bakery"))
    assert exported["rules"][1]["conditions"] == {"segments": ["gold-dormant"]}
    assert current(db)[1]["rules"][1]["conditions"] == {"segments": ["gold-dormant"]}
