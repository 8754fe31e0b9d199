"""S2 end to end through the HTTP API: a five-tier club on half-year points, a member ten points
short who appeals, the evaluation at the 1 July boundary in Seoul, and next period's downgrades."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from patron import clock
from tests.conftest import auth
from tests.factories import BAKERY
from tests.tiers._tier_helpers import CLUB_TIERS

P = "/api/v1/programs/club"
SEOUL_0630_2359 = datetime(2026, 6, 30, 14, 59, tzinfo=UTC)
SEOUL_0701_0000 = datetime(2026, 6, 30, 15, 0, tzinfo=UTC)


def _sale(client, pos, member_id: int, ext: str, amount: int, at: datetime) -> dict:
    clock.freeze(at)
    response = client.post(
        f"{P}/purchases",
        headers=pos,
        json={
            "external_id": ext,
            "member": {"id": member_id},
            "amount": str(amount),
            "occurred_at": at.isoformat(),
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


def _history(client, reader, member_id: int) -> list[tuple]:
    rows = client.get(f"{P}/members/{member_id}/tier-history", headers=reader).json()
    return [(r["from_tier"], r["to_tier"], r["reason"]) for r in rows]


def test_the_s2_club_through_a_year(client, keys):
    admin, pos, reader = auth(keys["admin"]), auth(keys["pos"]), auth(keys["read"])
    clock.freeze(datetime(2026, 1, 1, 0, 0, tzinfo=UTC))
    club = {**BAKERY, "code": "club", "name": "Golf & Spa Club"}
    assert client.post("/api/v1/programs", json=club, headers=admin).status_code == 201
    setup = {
        "policy": {
            "metric": "points",
            "window": "half_year",
            "upgrade": "immediate",
            "downgrade": "one_level",
            "manual": "keep",
        },
        "tiers": CLUB_TIERS,
    }
    assert client.put(f"{P}/tiers", json=setup, headers=admin).status_code == 200
    ids = {}
    for name in ("appellant", "regular", "newcomer"):
        response = client.post(
            "/api/v1/members", json={"name": name, "program": "club"}, headers=pos
        )
        ids[name] = response.json()["id"]

    # H1: the appellant collects 2,995 points (silver ×1.5 from her second visit on), the last
    # 495 at 23:59 on 30 June in Seoul.
    _sale(client, pos, ids["appellant"], "A-1", 100_000, datetime(2026, 2, 1, 3, tzinfo=UTC))
    _sale(client, pos, ids["appellant"], "A-2", 100_000, datetime(2026, 4, 1, 3, tzinfo=UTC))
    _sale(client, pos, ids["regular"], "R-1", 650_000, datetime(2026, 3, 2, 3, tzinfo=UTC))
    clock.freeze(SEOUL_0630_2359)
    progress = client.get(f"{P}/members/{ids['appellant']}/tier", headers=reader).json()
    assert (progress["tier"]["code"], progress["value"], progress["to_next"]) == (
        "silver",
        2500,
        500,
    )
    assert (
        _sale(client, pos, ids["appellant"], "A-3", 33_000, SEOUL_0630_2359)["points_earned"] == 495
    )
    # Midnight in Seoul: this one already belongs to H2.
    _sale(client, pos, ids["newcomer"], "N-1", 50_000, SEOUL_0701_0000)

    clock.freeze(datetime(2026, 7, 1, 3, 0, tzinfo=UTC))
    assert _history(client, reader, ids["regular"]) == [(None, "platinum", "upgrade")]
    # The appellant is five points short of gold in the window that just ended.
    near = client.get(
        f"{P}/tiers/near-miss",
        headers=reader,
        params={"window": "last", "within": 50, "format": "csv"},
    )
    assert near.status_code == 200, near.text
    rows = list(csv.DictReader(io.StringIO(near.content.decode("utf-8-sig"))))
    assert [(int(r["member_id"]), r["target_tier"], r["short_by"]) for r in rows] == [
        (ids["appellant"], "gold", "5")
    ]

    # The agent handles the appeal: gold until the end of the year, with the reason kept.
    appeal = client.post(
        f"{P}/members/{ids['appellant']}/tier",
        headers=admin,
        json={
            "tier": "gold",
            "until": "2026-12-31",
            "reason": "5 points short; weekend weighting disputed",
        },
    )
    assert appeal.status_code == 200, appeal.text
    audit = client.get(
        "/api/v1/audit", params={"action": "tier.changed_manually"}, headers=admin
    ).json()
    assert audit[0]["after"]["tier"] == "gold"

    h1 = client.post(f"{P}/tiers/evaluate", json={"as_of": "2026-07-01"}, headers=admin).json()
    assert h1["period"] == "2026H1" and h1["kept_manual"] == 1
    again = client.post(f"{P}/tiers/evaluate", json={"as_of": "2026-07-01"}, headers=admin)
    assert again.json()["already_done"]

    # H2: nobody but the newcomer buys anything. On 1 January, one level down at most.
    clock.freeze(datetime(2027, 1, 2, 3, 0, tzinfo=UTC))
    h2 = client.post(f"{P}/tiers/evaluate", json={"as_of": "2027-01-01"}, headers=admin).json()
    assert h2["period"] == "2026H2"
    assert h2["moves"] == {"platinum→gold": 1, "gold→silver": 1}
    assert _history(client, reader, ids["regular"]) == [
        (None, "platinum", "upgrade"),
        ("platinum", "gold", "period_evaluation"),
    ]
    assert _history(client, reader, ids["appellant"]) == [
        (None, "silver", "upgrade"),
        ("silver", "gold", "manual"),
        ("gold", "silver", "manual_ended"),
    ]
    assert _history(client, reader, ids["newcomer"]) == [(None, "bronze", "upgrade")]
