"""Rule sets over HTTP: CRUD, versions, diff, exact 422s, purchase explanations, what-if."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import TypeAdapter

from patron import clock
from patron.rules.model import Rule
from tests.api import conftest as api_fixtures
from tests.api.helpers import enroll

# The API tests' fixtures: headers per scope and the bakery program.
admin, pos, reader, bakery = (
    api_fixtures.admin,
    api_fixtures.pos,
    api_fixtures.reader,
    api_fixtures.bakery,
)
P = "/api/v1/programs/bakery"
BASE = {
    "id": "base",
    "kind": "base_rate",
    "mode": "per_full_unit",
    "points": 10,
    "per_amount": "1000",
    "rounding": "down",
}
CAKE = {
    "id": "cake-bonus",
    "kind": "product_bonus",
    "match": {"skus": ["CAKE"]},
    "points_per_unit": 200,
}
# S2-style weights and a December promotion on the bakery's base rate.
CLUB_RULES: dict[str, Any] = {
    "combine": "multiply",
    "rounding": "down",
    "rules": [
        BASE,
        {
            "id": "weekend",
            "name": "weekend",
            "kind": "time_weight",
            "days": ["sat", "sun"],
            "factor": "0.5",
        },
        {
            "id": "december",
            "name": "December promotion",
            "kind": "promotion",
            "factor": "2",
            "starts": "2026-12-01",
            "ends": "2026-12-31",
        },
    ],
}
RULE = TypeAdapter(Rule)


def stored(rule: dict[str, Any]) -> dict[str, Any]:
    """A rule as the stored document has it (defaults filled in, nothing None)."""
    return RULE.validate_python(rule).model_dump(mode="json", exclude_none=True)


# Saturday 12 December 2026, 14:00 in Seoul.
SATURDAY_IN_DECEMBER = datetime(2026, 12, 12, 5, 0, tzinfo=UTC)


@pytest.fixture
def kim(frozen, client, pos, bakery) -> dict[str, Any]:
    return enroll(client, pos, name="Kim Minji", phone="010-1234-5678", language="ko")


def current(client, headers) -> dict[str, Any]:
    response = client.get(f"{P}/rules", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def put_rules(client, headers, doc: dict[str, Any], **extra: Any):
    return client.put(f"{P}/rules", json={**doc, **extra}, headers=headers)


def sale(client, headers, external_id: str, amount: int, **extra: Any):
    body = {
        "external_id": external_id,
        "member": {"phone": "010-1234-5678"},
        "amount": amount,
        **extra,
    }
    return client.post(f"{P}/purchases", json=body, headers=headers)


def test_program_starts_with_its_base_rate_as_version_1(frozen, client, reader, bakery):
    body = current(client, reader)
    assert body["version"] == 1
    assert body["document"]["rules"] == [stored(BASE)]
    assert body["actor"] and body["created_at"].startswith("2026-03-02")


def test_rule_crud_makes_a_version_per_change(client, admin, reader, pos, kim):
    added = client.post(
        f"{P}/rules/items", json=CAKE, params={"note": "seasonal cake"}, headers=admin
    )
    assert added.status_code == 201, added.text
    assert added.json()["version"] == 2
    assert added.json()["note"] == "seasonal cake"
    assert [r["id"] for r in added.json()["document"]["rules"]] == ["base", "cake-bonus"]

    first = client.post(
        f"{P}/rules/items",
        params={"position": 0},
        headers=admin,
        json={"id": "gift-cards", "kind": "exclude", "match": {"categories": ["gift_card"]}},
    )
    assert first.status_code == 201, first.text
    assert first.json()["version"] == 3
    assert [r["id"] for r in first.json()["document"]["rules"]] == [
        "gift-cards",
        "base",
        "cake-bonus",
    ]

    changed = client.put(
        f"{P}/rules/items/cake-bonus", json={**CAKE, "points_per_unit": 300}, headers=admin
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["version"] == 4
    removed = client.delete(f"{P}/rules/items/gift-cards", headers=admin)
    assert removed.status_code == 200, removed.text
    assert removed.json()["version"] == 5
    assert current(client, reader)["document"]["rules"] == [
        stored(BASE),
        stored({**CAKE, "points_per_unit": 300}),
    ]

    versions = client.get(f"{P}/rules/versions", headers=reader).json()
    assert [v["version"] for v in versions] == [5, 4, 3, 2, 1]
    assert [v["current"] for v in versions] == [True, False, False, False, False]
    assert versions[3]["note"] == "seasonal cake"
    # An old version stays as it was.
    old = client.get(f"{P}/rules/versions/2", headers=reader).json()
    assert old["document"]["rules"] == [stored(BASE), stored(CAKE)]
    missing = client.get(f"{P}/rules/versions/9", headers=reader)
    assert (missing.status_code, missing.json()["error"]) == (404, "rule_version_not_found")

    diff = client.get(f"{P}/rules/diff", params={"from": 1, "to": 4}, headers=reader).json()
    assert (diff["from"], diff["to"]) == (1, 4)
    assert (diff["added"], diff["removed"], diff["changed"]) == (
        ["gift-cards", "cake-bonus"],
        [],
        [],
    )
    diff = client.get(f"{P}/rules/diff", params={"from": 2, "to": 5}, headers=reader).json()
    assert (diff["added"], diff["removed"], diff["changed"]) == ([], [], ["cake-bonus"])
    assert diff["rules"]["cake-bonus"]["from"]["points_per_unit"] == 200
    assert diff["rules"]["cake-bonus"]["to"]["points_per_unit"] == 300
    latest = client.get(f"{P}/rules/diff", headers=reader).json()
    assert (latest["from"], latest["to"], latest["removed"]) == (4, 5, ["gift-cards"])

    # An earn after the change records the new version and its breakdown.
    bought = sale(
        client, pos, "A-1", 25800, lines=[{"sku": "CAKE", "amount": 25800, "quantity": 1}]
    )
    assert bought.status_code == 201, bought.text
    [earn] = bought.json()["entries"]
    assert (earn["points"], earn["rule_version"]) == (250 + 300, 5)
    assert [(s["rule"], s["applied"]) for s in earn["breakdown"]] == [
        ("base", True),
        ("cake-bonus", True),
    ]
    history = client.get(f"{P}/members/{kim['id']}/entries", headers=reader).json()["items"]
    assert history[0]["rule_version"] == 5 and history[0]["breakdown"] == earn["breakdown"]


def test_put_publishes_a_whole_document(frozen, client, admin, reader, bakery):
    response = put_rules(client, admin, CLUB_RULES, note="club rules")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["version"], body["note"]) == (2, "club rules")
    assert body["actor"].startswith("api_key:")
    assert [r["id"] for r in body["document"]["rules"]] == ["base", "weekend", "december"]
    # A read is the publish's answer without its rule-test run (none saved here).
    assert body["tests"]["results"] == []
    assert current(client, reader) == {**body, "tests": None}
    # The program's earning setting follows the first base rate.
    program = client.get(P, headers=reader).json()
    assert program["rule_version"] == 2
    assert program["earning"]["mode"] == "per_full_unit"


def test_writes_need_admin_and_replay_with_an_idempotency_key(
    frozen, client, admin, pos, reader, bakery
):
    denied = client.post(f"{P}/rules/items", json=CAKE, headers=pos)
    assert (denied.status_code, denied.json()["error"]) == (403, "missing_scope")
    assert client.put(f"{P}/rules", json=CLUB_RULES, headers=reader).status_code == 403
    assert client.get(f"{P}/rules", headers=pos).status_code == 200

    headers = {**admin, "Idempotency-Key": "cake-1"}
    first = client.post(f"{P}/rules/items", json=CAKE, headers=headers)
    again = client.post(f"{P}/rules/items", json=CAKE, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    assert current(client, reader)["version"] == 2
    other = client.post(f"{P}/rules/items", json={**CAKE, "points_per_unit": 1}, headers=headers)
    assert (other.status_code, other.json()["error"]) == (409, "idempotency_conflict")


def _error(response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error"], body["detail"]


@pytest.mark.parametrize(
    ("rules", "where"),
    [
        (
            [BASE, {"id": "december", "kind": "promotion", "factor": "-2"}],
            "rules.1.factor: Input should be greater than or equal to 0",
        ),
        (
            [BASE, {**CAKE, "points_per_unt": 5}],
            "rules.1.points_per_unt: Extra inputs are not permitted",
        ),
        (
            [
                BASE,
                {
                    "id": "december",
                    "kind": "promotion",
                    "factor": "2",
                    "starts": "2026-12-31",
                    "ends": "2026-12-01",
                },
            ],
            "rules.1: ends (2026-12-01) is before starts (2026-12-31): the rule could never apply",
        ),
        ([BASE, CAKE, CAKE], "rules: rules[2].id 'cake-bonus' is used twice"),
        ([BASE, {"id": "x", "kind": "bonus"}], "rules.1: Input tag 'bonus' found using 'kind'"),
        ([{**BASE, "points": "ten"}], "rules.0.points: Input should be a valid integer"),
    ],
)
def test_a_malformed_document_gets_422_naming_the_field(
    frozen, client, admin, reader, bakery, rules, where
):
    status, code, detail = _error(put_rules(client, admin, {"rules": rules}))
    assert (status, code) == (422, "invalid_rule_set")
    assert detail.startswith(where), detail
    assert current(client, reader)["version"] == 1


def test_a_rule_for_an_unknown_store_is_refused(frozen, client, admin, reader, bakery):
    response = put_rules(client, admin, {"rules": [BASE, {**CAKE, "stores": ["gangnam"]}]})
    status, code, detail = _error(response)
    assert (status, code) == (422, "unknown_store")
    assert detail == "rules[1].stores: program bakery has no store 'gangnam'"
    ok = put_rules(client, admin, {"rules": [BASE, {**CAKE, "stores": ["mapo"]}]})
    assert ok.status_code == 200, ok.text


def test_single_rule_edits_name_the_field_too(frozen, client, admin, reader, bakery):
    status, code, detail = _error(
        client.post(f"{P}/rules/items", json={**CAKE, "points_per_unit": -1}, headers=admin)
    )
    assert (status, code) == (422, "invalid_rule_set")
    assert detail.startswith("points_per_unit: Input should be greater than or equal to 0")
    status, code, detail = _error(client.post(f"{P}/rules/items", json={"id": "x"}, headers=admin))
    assert (status, code) == (422, "invalid_rule_set")
    assert "discriminator 'kind'" in detail
    duplicate = client.post(f"{P}/rules/items", json={**CAKE, "id": "base"}, headers=admin)
    assert _error(duplicate)[:2] == (409, "duplicate_rule")
    # A second enabled rule for one event is caught on the whole document.
    event = {"id": "signup", "kind": "event", "event": "signup", "points": 500}
    assert client.post(f"{P}/rules/items", json=event, headers=admin).status_code == 201
    status, code, detail = _error(
        client.post(f"{P}/rules/items", json={**event, "id": "signup-2"}, headers=admin)
    )
    assert (status, code, detail) == (
        422,
        "invalid_rule_set",
        "rules: two enabled event rules for event 'signup'",
    )
    missing = client.put(f"{P}/rules/items/nope", json=CAKE, headers=admin)
    assert _error(missing)[:2] == (404, "rule_not_found")
    assert _error(client.delete(f"{P}/rules/items/nope", headers=admin))[:2] == (
        404,
        "rule_not_found",
    )
    bad_query = client.post(f"{P}/rules/items", json=CAKE, params={"position": -1}, headers=admin)
    assert _error(bad_query)[:2] == (422, "validation_error")
    assert current(client, reader)["version"] == 2
    assert _error(client.get("/api/v1/programs/nope/rules", headers=reader))[0] == 404


def test_diff_of_unknown_versions_is_404(frozen, client, reader, bakery):
    response = client.get(f"{P}/rules/diff", params={"from": 1, "to": 7}, headers=reader)
    assert _error(response)[:2] == (404, "rule_version_not_found")


def test_explanation_of_a_saturday_in_december(client, admin, pos, reader, kim):
    assert put_rules(client, admin, CLUB_RULES).status_code == 200
    clock.freeze(SATURDAY_IN_DECEMBER)
    bought = sale(client, pos, "D-1", 25800)
    assert bought.status_code == 201, bought.text
    [earn] = bought.json()["entries"]
    assert (earn["points"], earn["rule_version"]) == (250, 2)

    url = f"{P}/entries/{earn['id']}/explanation"
    en = client.get(url, params={"language": "en"}, headers=reader)
    assert en.status_code == 200, en.text
    body = en.json()
    assert (body["entry_id"], body["kind"], body["points"], body["rule_version"]) == (
        earn["id"],
        "earn",
        250,
        2,
    )
    assert body["language"] == "en"
    assert body["lines"] == [
        "25,800 KRW: 10 points for each full 1,000 = 250",
        "weekend ×0.5 = 125",
        "December promotion ×2 = 250",
        "Total: 250 points",
    ]
    assert body["text"] == (
        "25,800 KRW: 10 points for each full 1,000 = 250; weekend ×0.5 = 125; "
        "December promotion ×2 = 250; Total: 250 points"
    )
    # Default: the member's language (Kim reads Korean).
    ko = client.get(url, headers=pos).json()
    assert ko["language"] == "ko"
    assert ko["lines"][0] == "25,800 KRW: 1,000당 10포인트 = 250"
    assert ko["lines"][1] == "weekend 가중치 ×0.5 = 125"
    assert ko["lines"][2] == "December promotion ×2 = 250"
    assert ko["lines"][-1] == "합계: 250포인트"
    zh = client.get(url, params={"language": "zh"}, headers=reader).json()
    assert zh["lines"][0] == "25,800 KRW:每满 1,000 得 10 积分 = 250"
    assert zh["lines"][1:] == [
        "weekend 权重 ×0.5 = 125",
        "December promotion ×2 = 250",
        "合计:250 积分",
    ]
    # The same sale on a weekday in November: neither the weight nor the promotion applies.
    clock.freeze(datetime(2026, 11, 11, 5, 0, tzinfo=UTC))
    plain = sale(client, pos, "N-1", 25800).json()["entries"][0]
    words = client.get(
        f"{P}/entries/{plain['id']}/explanation", params={"language": "en"}, headers=reader
    ).json()
    assert words["lines"] == [
        "25,800 KRW: 10 points for each full 1,000 = 250",
        "Total: 250 points",
    ]


def test_explanation_of_entries_without_breakdown(client, admin, pos, reader, kim):
    given = client.post(
        f"{P}/adjustments",
        headers=admin,
        json={"member": {"id": kim["id"]}, "points": 1500, "reason": "welcome bonus"},
    )
    assert given.status_code == 201, given.text
    entry_id = given.json()["entry"]["id"]
    url = f"{P}/entries/{entry_id}/explanation"
    assert client.get(url, params={"language": "en"}, headers=reader).json()["text"] == (
        "1,500 points added by staff: welcome bonus"
    )
    ko = client.get(url, headers=reader).json()
    assert (ko["language"], ko["lines"]) == ("ko", ["직원이 1,500포인트 지급: welcome bonus"])
    assert client.get(url, params={"language": "zh"}, headers=reader).json()["text"] == (
        "工作人员增加 1,500 积分:welcome bonus"
    )

    spent = sale(client, pos, "S-1", 5000, points_to_spend=1000).json()["entries"][0]
    assert spent["kind"] == "redeem"
    words = client.get(
        f"{P}/entries/{spent['id']}/explanation", params={"language": "en"}, headers=reader
    ).json()
    assert words["text"] == "1,000 points used: paid ₩1,000 with points"
    assert words["rule_version"] is None

    missing = client.get(f"{P}/entries/999999/explanation", headers=reader)
    assert _error(missing)[:2] == (404, "entry_not_found")
    # An entry of another program is not found through this one.
    assert (
        client.post(
            "/api/v1/programs",
            headers=admin,
            json={
                "code": "cafe",
                "name": "Cafe",
                "currency": "KRW",
                "timezone": "Asia/Seoul",
                "point_value": "1",
                "earning": {
                    "mode": "per_full_unit",
                    "points": 1,
                    "per_amount": "100",
                    "rounding": "down",
                },
                "expiry": {"kind": "none"},
                "redemption": {"min_points": 0, "step": 1, "max_share": "1"},
                "negative_balance": "allow_debt",
            },
        ).status_code
        == 201
    )
    other = client.get(f"/api/v1/programs/cafe/entries/{entry_id}/explanation", headers=reader)
    assert _error(other)[:2] == (404, "entry_not_found")
    bad = client.get(url, params={"language": "fr"}, headers=reader)
    assert bad.status_code == 422


def test_openapi_declares_the_rule_errors(client):
    paths = client.get("/openapi.json").json()["paths"]
    put = paths["/api/v1/programs/{code}/rules"]["put"]["responses"]
    assert {"200", "404", "422"} <= set(put)
    assert "invalid" in put["422"]["description"]
    events = paths["/api/v1/programs/{code}/events"]["post"]["responses"]
    assert "member_blocked" in events["409"]["description"]
    explanation = paths["/api/v1/programs/{code}/entries/{entry_id}/explanation"]["get"]
    assert "404" in explanation["responses"]


def test_simulate_reports_in_json_and_csv(client, admin, pos, reader, kim):
    assert sale(client, pos, "A-1", 25800).status_code == 201
    proposed = {"rules": [BASE, {"id": "double", "kind": "promotion", "factor": "2"}]}
    body = {"rules": proposed, "from": "2026-03-01", "to": "2026-03-31", "top": 5}
    response = client.post(f"{P}/rules/simulate", json=body, headers=reader)
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["purchases"], report["actual_points"], report["proposed_points"]) == (
        1,
        250,
        500,
    )
    assert report["delta"] == 250
    assert [m["member_id"] for m in report["top_members"]] == [kim["id"]]

    as_csv = client.post(f"{P}/rules/simulate", params={"format": "csv"}, json=body, headers=admin)
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    assert len(rows) > 1

    assert client.post(f"{P}/rules/simulate", json=body, headers=pos).status_code == 403
    backwards = client.post(
        f"{P}/rules/simulate", headers=reader, json={**body, "from": "2026-04-01"}
    )
    assert _error(backwards)[:2] == (422, "invalid_range")
    bad = client.post(
        f"{P}/rules/simulate",
        headers=reader,
        json={**body, "rules": {"rules": [{**BASE, "points": -1}]}},
    )
    assert bad.status_code == 422
    assert "rules.rules.0" in bad.json()["detail"]


@pytest.mark.parametrize(
    "period",
    [("0001-01-01", "0001-01-02"), ("9999-12-30", "9999-12-31"), ("1899-12-31", "2026-01-01")],
)
def test_simulate_refuses_periods_outside_the_calendar_it_can_replay(client, reader, kim, period):
    body = {"rules": {"rules": [BASE]}, "from": period[0], "to": period[1]}
    response = client.post(f"{P}/rules/simulate", json=body, headers=reader)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
