"""The campaign API on both engines: create, list, get, reach, launch, stop, results, the
declared errors and scopes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.campaigns.conftest import N, ab_body

P = "/api/v1/programs/bakery/campaigns"


def test_create_launch_and_read_results(client, world, admin, reader, frozen):
    assert client.post(P, json=ab_body(), headers=reader).status_code == 403
    created = client.post(P, json=ab_body(), headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "draft" and created.json()["members"] == 0
    assert client.post(P, json=ab_body(), headers=admin).json()["error"] == "campaign_exists"
    assert [c["code"] for c in client.get(P, headers=reader).json()] == ["winback"]

    reach = client.get(f"{P}/winback/reach", headers=reader).json()
    assert reach["members"] == N and sum(reach["arms"].values()) == N
    assert reach["points_needed"] == 500 * reach["arms"]["b"]

    launched = client.post(f"{P}/winback/launch", headers=admin)
    assert launched.status_code == 200, launched.text
    body = launched.json()
    assert body["status"] == "running" and body["members"] == N
    assert body["points_given"] == reach["points_needed"]
    assert body["coupons_given"] == reach["arms"]["a"]
    again = client.post(f"{P}/winback/launch", headers=admin)
    assert again.status_code == 409 and again.json()["error"] == "campaign_state"
    changed = client.put(f"{P}/winback", json=ab_body(name="Other"), headers=admin)
    assert changed.status_code == 409 and changed.json()["error"] == "campaign_state"

    results = client.get(f"{P}/winback/results", params={"lang": "ko"}, headers=reader)
    assert results.status_code == 200, results.text
    out = results.json()
    assert [a["arm"] for a in out["arms"]] == ["control", "a", "b"]
    assert sum(a["members"] for a in out["arms"]) == N
    assert out["uplifts"][0]["verdict"].endswith("아직 데이터가 충분하지 않습니다")

    stopped = client.post(f"{P}/winback/stop", headers=admin)
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    assert client.post(f"{P}/winback/stop", headers=admin).status_code == 409
    after = client.get(f"{P}/winback/results", params={"period": "after"}, headers=reader)
    assert after.status_code == 200 and after.json()["period"] == "after"


def test_refusals_are_declared_errors(client, world, admin, frozen):
    missing = client.post(P, json=ab_body(segment="nope"), headers=admin)
    assert missing.status_code == 404 and missing.json()["error"] == "segment_not_found"
    bad_reward = ab_body()
    bad_reward["variants"][0]["action"]["reward"] = "nope"
    r = client.post(P, json=bad_reward, headers=admin)
    assert r.status_code == 422 and r.json()["error"] == "unknown_reference"
    shares = ab_body()
    shares["variants"][0]["share"] = 60
    assert client.post(P, json=shares, headers=admin).status_code == 422
    control = ab_body()
    control["variants"][0]["key"] = "control"
    assert client.post(P, json=control, headers=admin).status_code == 422
    nope = client.get(f"{P}/nope/results", headers=admin)
    assert nope.status_code == 404 and nope.json()["error"] == "campaign_not_found"
    assert client.get(f"{P}/nope/results", params={"period": "x"}, headers=admin).status_code == 422
    # A campaign that starts later is scheduled, not given yet.
    later = ab_body(code="later", starts_at=(frozen + timedelta(days=3)).isoformat())
    assert client.post(P, json=later, headers=admin).status_code == 201
    out = client.post(f"{P}/later/launch", headers=admin).json()
    assert out["status"] == "scheduled" and out["members"] == 0
    res = client.get(f"{P}/later/results", headers=admin).json()
    assert res["window_from"] is None


@pytest.mark.sqlite_only
def test_openapi_declares_the_errors(client):
    spec = client.get("/openapi.json").json()
    launch = spec["paths"]["/api/v1/programs/{code}/campaigns/{campaign}/launch"]["post"]
    assert {"401", "403", "404", "409", "422"} <= set(launch["responses"])
