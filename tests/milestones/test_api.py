"""The milestones API: validation (422 with the field), conflicts (409), scopes, achievers per
goal, a member's progress, and the audit trail of every change."""

from __future__ import annotations

from sqlalchemy import select

from patron import clock
from patron.audit.models import AuditRecord
from tests.milestones.conftest import P, buy, goal, run, seoul

NAMES = {"ko": "단골손님", "zh": "常客", "en": "Regular"}


def test_define_validate_change_archive(db, client, admin, reader, pos, kim, lee):
    clock.freeze(seoul(2026, 3, 10, 12, 0))
    bad = [
        ({"kind": "streak", "target": 3, "window": "month"}, "window"),
        ({"kind": "visits", "target": 3, "repeat": True}, "repeat"),
        ({"kind": "visits", "target": 0}, "target"),
        ({"kind": "visits", "target": 3, "window": "rolling"}, "window_days"),
        ({"kind": "stores", "target": 2}, "target"),
        ({"kind": "visits", "target": 3, "nope": 1}, "nope"),
    ]
    for fields, word in bad:
        response = client.post(f"{P}/milestones", json={"code": "x", "names": NAMES, **fields},
                               headers=admin)  # fmt: skip
        assert response.status_code == 422, fields
        assert response.json()["error"] == "validation_error" and word in response.json()["detail"]
    no_name = client.post(f"{P}/milestones", json={"code": "x", "kind": "visits", "target": 1,
                          "names": {}}, headers=admin)  # fmt: skip
    assert no_name.status_code == 422
    unknown = client.post(f"{P}/milestones", json={"code": "x", "kind": "stores", "names": NAMES,
                          "stores": ["nowhere"]}, headers=admin)  # fmt: skip
    assert (unknown.status_code, unknown.json()["error"]) == (422, "unknown_store")
    no_reward = client.post(f"{P}/milestones", json={"code": "x", "kind": "visits", "target": 1,
                            "names": NAMES, "reward": "nope"}, headers=admin)  # fmt: skip
    assert (no_reward.status_code, no_reward.json()["error"]) == (422, "unknown_reward")
    # Read keys read; only admin keys change.
    denied = client.post(f"{P}/milestones", json={"code": "x", "kind": "visits", "target": 1,
                         "names": NAMES}, headers=reader)  # fmt: skip
    assert denied.status_code == 403

    body = {"code": "two-visits", "kind": "visits", "target": 2, "names": NAMES, "points": 50}
    assert client.post(f"{P}/milestones", json=body, headers=admin).status_code == 201
    again = client.post(f"{P}/milestones", json=body, headers=admin)
    assert (again.status_code, again.json()["error"]) == (409, "milestone_exists")
    # Before anyone achieved it, the goal itself may change.
    body["target"] = 1
    assert client.put(f"{P}/milestones/two-visits", json=body, headers=admin).status_code == 200
    buy(client, pos, "010-1234-5678", "K1", seoul(2026, 3, 9, 12, 0))
    assert run(client, admin) == {"two-visits": {"ever": 1}}
    listed = client.get(f"{P}/milestones", headers=reader).json()
    assert [(m["code"], m["target"], m["achievers"], m["version"]) for m in listed] == [
        ("two-visits", 1, 1, 2)
    ]
    changed = client.put(f"{P}/milestones/two-visits", json={**body, "target": 5}, headers=admin)
    assert (changed.status_code, changed.json()["error"]) == (409, "milestone_achieved")
    reworded = {**body, "names": {**NAMES, "en": "First visit"}, "points": 60}
    ok = client.put(f"{P}/milestones/two-visits", json=reworded, headers=admin)
    assert ok.status_code == 200 and ok.json()["names"]["en"] == "First visit"
    mismatch = client.put(f"{P}/milestones/two-visits", json={**body, "code": "other"},
                          headers=admin)  # fmt: skip
    assert (mismatch.status_code, mismatch.json()["error"]) == (422, "code_mismatch")
    assert client.get(f"{P}/milestones/nope", headers=reader).json()["error"] == (
        "milestone_not_found"
    )
    assert client.post(f"{P}/milestones/run?milestone=nope", headers=admin).status_code == 404

    # Progress: names in the asked language; an archived goal stays as her badge only.
    progress = client.get(f"{P}/members/{kim['id']}/milestones?lang=zh", headers=reader).json()
    assert [(i["name"], i["achieved"], i["value"]) for i in progress["items"]] == [
        ("常客", True, 1)
    ]
    archived = client.delete(f"{P}/milestones/two-visits", headers=admin)
    assert archived.json()["status"] == "archived"
    assert run(client, admin) == {}
    assert [i["code"] for i in client.get(f"{P}/members/{kim['id']}/milestones",
            headers=pos).json()["items"]] == ["two-visits"]  # fmt: skip
    assert client.get(f"{P}/members/{lee['id']}/milestones", headers=reader).json()["items"] == []
    missing = client.get(f"{P}/members/999999/milestones", headers=reader)
    assert (missing.status_code, missing.json()["error"]) == (404, "account_not_found")
    assert (
        client.get(f"{P}/members/{kim['id']}/milestones?lang=fr", headers=reader).status_code == 422
    )

    with db.unit_of_work(readonly=True) as session:
        actions = session.scalars(
            select(AuditRecord.action)
            .where(AuditRecord.subject_type == "milestone")
            .order_by(AuditRecord.id)
        ).all()
    assert actions == ["milestone.created", "milestone.changed", "milestone.awarded",
                       "milestone.changed", "milestone.archived"]  # fmt: skip


def test_coupon_reward(db, client, admin, reader, pos, kim):
    clock.freeze(seoul(2026, 3, 10, 12, 0))
    reward = {"code": "free-coffee", "names": {"ko": "커피", "en": "Coffee"},
              "kind": "free_product", "sku": "coffee", "points_cost": 0, "valid_days": 30}  # fmt: skip
    made = client.post(f"{P}/rewards", json=reward, headers=admin)
    assert made.status_code == 201, made.text
    goal(client, admin, code="first-visit", kind="visits", target=1, reward="free-coffee")
    buy(client, pos, "010-1234-5678", "K1", seoul(2026, 3, 9, 12, 0))
    assert run(client, admin) == {"first-visit": {"ever": 1}}
    coupons = client.get(f"{P}/coupons?member={kim['id']}", headers=reader)
    assert coupons.status_code == 200, coupons.text
    assert [(c["reward"], c["campaign"]) for c in coupons.json()] == [
        ("free-coffee", "milestone:first-visit")
    ]
    assert run(client, admin) == {"first-visit": {"ever": 0}}
    assert len(client.get(f"{P}/coupons?member={kim['id']}", headers=reader).json()) == 1
