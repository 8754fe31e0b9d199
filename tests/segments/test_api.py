"""The segment API: CRUD, preview while editing, count, members as of a date, snapshots,
scopes and declared errors."""

from __future__ import annotations

import pytest
from tests.segments.conftest import days

P = "/api/v1/programs/bakery/segments"
GOLD_DORMANT = {
    "type": "all",
    "of": [{"type": "tier", "tiers": ["gold"]}, {"type": "dormant", "days": 60}],
}


def test_build_count_and_snapshot_a_segment(client, world, admin, reader, pos, frozen):
    preview = client.post(
        f"{P}/preview", json={"definition": {"condition": GOLD_DORMANT}, "sample": 5},
        headers=reader,
    )  # fmt: skip
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert body["count"] == 1 and [m["name"] for m in body["sample"]] == ["Ada"]
    assert body["sample"][0]["tier"] == "gold" and body["sample"][0]["balance"] == 3100

    seg = {"code": "gold-dormant", "name": "Gold, dormant 60 days",
           "definition": {"condition": GOLD_DORMANT}}  # fmt: skip
    assert client.post(P, json=seg, headers=reader).status_code == 403
    created = client.post(P, json=seg, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1
    assert client.post(P, json=seg, headers=admin).json()["error"] == "segment_exists"
    assert [s["code"] for s in client.get(P, headers=reader).json()["items"]] == ["gold-dormant"]

    count = client.get(f"{P}/gold-dormant/count", headers=reader)
    assert count.json()["count"] == 1
    then = (frozen - days(30)).isoformat()
    page = client.get(f"{P}/gold-dormant/members", params={"as_of": then}, headers=reader)
    assert page.status_code == 200, page.text
    assert page.json()["items"] == [world["ada"], world["bo"]]
    one = client.get(f"{P}/gold-dormant/members", params={"as_of": then, "limit": 1},
                     headers=reader).json()  # fmt: skip
    assert one["items"] == [world["ada"]] and one["next_cursor"] == world["ada"]

    snap = client.post(f"{P}/gold-dormant/snapshots", json={"as_of": then}, headers=admin)
    assert snap.status_code == 201, snap.text
    assert snap.json()["members"] == 2
    sid = snap.json()["id"]
    listed = client.get(f"{P}/gold-dormant/snapshots/{sid}/members", headers=reader).json()
    assert listed["items"] == [world["ada"], world["bo"]]

    changed = client.put(
        f"{P}/gold-dormant",
        json={"name": "Gold", "definition": {"condition": {"type": "tier", "tiers": ["gold"]}}},
        headers=admin,
    )
    assert changed.status_code == 200 and changed.json()["version"] == 2
    assert client.get(f"{P}/gold-dormant/count", headers=reader).json()["count"] == 2
    # The snapshot keeps its members and the version it was taken from.
    old = client.get(f"{P}/gold-dormant/snapshots", headers=reader).json()["items"][0]
    assert old["segment_version"] == 1 and old["members"] == 2

    user = {
        "code": "uses",
        "name": "Uses it",
        "definition": {"condition": {"type": "segment", "segment": "gold-dormant"}},
    }
    assert client.post(P, json=user, headers=admin).status_code == 201
    blocked = client.delete(f"{P}/gold-dormant", headers=admin)
    assert blocked.status_code == 409 and blocked.json()["error"] == "segment_in_use"
    assert client.delete(f"{P}/uses", headers=admin).status_code == 204
    assert client.delete(f"{P}/gold-dormant", headers=admin).status_code == 204
    assert client.get(f"{P}/gold-dormant", headers=reader).json()["error"] == "segment_not_found"


BAD = [
    ({"type": "tier"}, "tiers"),
    ({"type": "balance"}, "give min, max or both"),
    ({"type": "balance", "min": 5, "max": 1}, "min must not exceed max"),
    ({"type": "activity", "metric": "mood", "days": 3, "min": 1}, "metric"),
    ({"type": "activity", "metric": "visits", "days": 0, "min": 1}, "days"),
    ({"type": "birthday", "months": [13]}, "months"),
    ({"type": "attribute", "key": "city", "op": "eq", "values": []}, "exactly one value"),
    ({"type": "consent", "purpose": "telepathy"}, "purpose"),
    ({"type": "whatever"}, "type"),
    ({"type": "all", "of": []}, "of"),
    ({"type": "tier", "tiers": ["gold"], "extra": 1}, "extra"),
]


@pytest.mark.sqlite_only
def test_bad_definitions_are_422_naming_the_field(client, world, reader, admin, frozen):
    for cond, word in BAD:
        answer = client.post(f"{P}/preview", json={"definition": {"condition": cond}},
                             headers=reader)  # fmt: skip
        assert answer.status_code == 422, (cond, answer.text)
        assert answer.json()["error"] and word in answer.json()["detail"], (cond, answer.text)
    for cond, error in (
        ({"type": "tier", "tiers": ["tin"]}, "unknown_reference"),
        ({"type": "redeemed", "reward": "caviar"}, "unknown_reference"),
        ({"type": "segment", "segment": "nope"}, "unknown_segment"),
    ):
        answer = client.post(f"{P}/preview", json={"definition": {"condition": cond}},
                             headers=reader)  # fmt: skip
        assert answer.status_code == 422 and answer.json()["error"] == error, answer.text
    own = {"code": "loop", "name": "L",
           "definition": {"condition": {"type": "segment", "segment": "loop"}}}  # fmt: skip
    assert client.post(P, json=own, headers=admin).json()["error"] == "segment_cycle"
    seg = {
        "code": "g",
        "name": "G",
        "definition": {"condition": {"type": "tier", "tiers": ["gold"]}},
    }
    assert client.post(P, json=seg, headers=admin).status_code == 201
    future = (frozen + days(1)).isoformat()
    answer = client.get(f"{P}/g/count", params={"as_of": future}, headers=reader)
    assert answer.status_code == 422 and answer.json()["error"] == "as_of_in_future"
    naive = client.get(f"{P}/g/count", params={"as_of": "2026-01-01T00:00:00"}, headers=reader)
    assert naive.status_code == 422
    assert client.get(f"{P}/g/count", headers={"X-API-Key": "nope"}).status_code == 401
