"""The rule editor's segment field (issue 18 item 1): the program's segments as tick boxes, a
ticked one lands in `conditions.segments`, reads in words in the preview (ko/zh/en) and comes
back ticked when the rule is edited again; a rule set naming a segment the program lacks is
refused at publish from the JSON editor."""

from __future__ import annotations

import json

from patron import clock
from patron.admin.rules_ui.form import form_values, rule_from_form
from patron.admin.rules_ui.words import summary
from patron.programs.service import get_program
from patron.rules.model import RuleSetDoc
from patron.segments.models import Segment
from tests.admin.test_rules_form_expressive import form_of, published, web

__all__ = ["web"]
from tests.admin.test_rules_pages import SEEDED_VERSION, as_role, field_errors, hidden_fields


def _segments(db, *codes: str) -> None:
    with db.unit_of_work() as s:
        program = get_program(s, "bakery")
        for code in codes:
            s.add(
                Segment(
                    program_id=program.id,
                    code=code,
                    name=f"{code.title()} members",
                    definition={"condition": {"type": "tier", "tiers": ["gold"]}},
                    created_at=clock.now(),
                    updated_at=clock.now(),
                )
            )


def test_the_form_round_trips_a_segment_condition():
    rule = {
        "id": "dormant-gold",
        "kind": "order_bonus",
        "enabled": True,
        "points": 500,
        "conditions": {"segments": ["gold-dormant"], "attributes": {"city": "seoul"}},
    }
    values = form_values(rule)
    assert values["cond.segment.gold-dormant"] == "1"
    again = rule_from_form("order_bonus", values, rule)
    assert again["conditions"] == rule["conditions"]
    unticked = rule_from_form(
        "order_bonus", {k: v for k, v in values.items() if not k.startswith("cond.segment.")}, rule
    )
    assert unticked["conditions"] == {"attributes": {"city": "seoul"}}
    doc = RuleSetDoc.model_validate({"rules": [rule]})
    for lang, words in (
        ("en", "members in segment gold-dormant"),
        ("ko", "gold-dormant 세그먼트 회원"),
        ("zh", "分群 gold-dormant 的会员"),
    ):
        assert words in summary(doc.rules[0], "KRW", lang, {})


def test_a_marketer_ticks_a_segment_publishes_and_edits_again(web, db):
    _segments(db, "gold-dormant", "vip")
    token = as_role(web, "marketer")
    form = web.get("/admin/rules/new?program=bakery&kind=order_bonus")
    assert form.status_code == 200
    assert 'name="cond.segment.gold-dormant"' in form.text
    assert "Gold-Dormant members" in form.text and "Member segments" in form.text
    add = {
        "csrf_token": token,
        "program": "bakery",
        "base_version": str(SEEDED_VERSION),
        "action": "add",
        "kind": "order_bonus",
        "id": "come-back",
        "enabled": "1",
        "qualifying": "1",
        "points": "500",
        "cond.segment.gold-dormant": "1",
        "stop": "none",
    }
    preview = web.post("/admin/rules/preview", data=add)
    assert preview.status_code == 200, field_errors(preview.text)
    assert "members in segment gold-dormant" in preview.text
    web.post("/admin/rules/publish", data=hidden_fields(preview.text, "/admin/rules/publish"))
    assert published(db)["rules"][-1]["conditions"] == {"segments": ["gold-dormant"]}
    page = web.get("/admin/rules/items/come-back/edit")
    shown = form_of(page.text)
    assert shown["cond.segment.gold-dormant"] == "1"
    assert "cond.segment.vip" not in shown
    same = web.post("/admin/rules/preview", data={**shown, "csrf_token": token})
    assert "No differences." in same.text


def test_an_unknown_segment_from_the_json_editor_is_refused_at_publish(web, db):
    token = as_role(web, "marketer")
    doc = published(db)
    doc["rules"].append(
        {"id": "ghost", "kind": "order_bonus", "points": 5, "conditions": {"segments": ["nope"]}}
    )
    preview = web.post(
        "/admin/rules/preview",
        data={"csrf_token": token, "program": "bakery", "base_version": str(SEEDED_VERSION),
              "action": "json", "document": json.dumps(doc)},
    )  # fmt: skip
    assert preview.status_code == 200, field_errors(preview.text)
    refused = web.post(
        "/admin/rules/publish", data=hidden_fields(preview.text, "/admin/rules/publish")
    )
    assert refused.status_code == 422
    assert (
        "rules.1.conditions.segments: program bakery has no segment &#39;nope&#39;" in refused.text
    ) or "has no segment &#39;nope&#39;" in refused.text
    assert "ghost" not in [r["id"] for r in published(db)["rules"]]
