"""Group commit (patron.ledger.till_route.GroupCommit): concurrent sales of one worker share a
transaction and a commit, and each still gets exactly the answer it would get alone."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.api.helpers import enroll

P = "/api/v1/programs/bakery"


@pytest.fixture
def grouped(db) -> Any:
    """The app with group commit on, whatever the engine."""
    from patron.app import create_app

    app = create_app(db=db, group_commit=True)
    assert app.state.group_commit is not None
    return app


def sale(external_id: str, phone: str, amount: int = 25800) -> dict[str, Any]:
    return {"external_id": external_id, "member": {"phone": phone}, "amount": amount}


def post_all(app: Any, headers: dict[str, str], bodies: list[Any]) -> list[httpx.Response]:
    """The requests sent at once, on an event loop of their own in a thread of its own (the
    browser tests leave one running in the main thread of their pytest worker)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _post_all(app, headers, bodies)).result()


async def _post_all(app: Any, headers: dict[str, str], bodies: list[Any]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://till") as client:
        # The first request authenticates the key (the framework's path); the rest go direct.
        await client.get(f"{P}/members", headers=headers)
        return list(
            await asyncio.gather(
                *(client.post(f"{P}/purchases", json=b, headers=headers) for b in bodies)
            )
        )


PHONES = [f"010-2000-{i:04d}" for i in range(8)]


@pytest.fixture
def members(client, pos, bakery, frozen) -> list[dict[str, Any]]:
    return [enroll(client, pos, name=f"Member {i}", phone=p) for i, p in enumerate(PHONES)]


def test_concurrent_sales_share_commits_and_all_count(grouped, client, pos, reader, admin, members):
    app = grouped
    bodies = [sale(f"G-{i}", PHONES[i % len(PHONES)], 1000 * (1 + i % 5)) for i in range(60)]
    answers = post_all(app, pos, bodies)

    assert [a.status_code for a in answers] == [201] * 60
    groups = app.state.group_commit
    assert groups.sales == 60
    assert groups.groups < 60, "every sale was committed alone: nothing was grouped"
    for member_no, member in enumerate(members):
        mine = [b for i, b in enumerate(bodies) if i % len(PHONES) == member_no]
        expected = sum(10 * (b["amount"] // 1000) for b in mine)
        account = client.get(f"{P}/members/{member['id']}/account", headers=reader).json()
        assert account["totals"]["balance"] == expected
        assert account["totals"]["earned"] == expected
    report = client.get("/api/v1/check", headers=admin).json()
    assert report["ok"] is True, report["violations"]


def test_a_failing_sale_in_a_group_harms_no_other(grouped, client, pos, reader, members):
    app = grouped
    client.post(f"{P}/purchases", json=sale("D-0", PHONES[0]), headers=pos)
    bodies: list[Any] = []
    for i in range(30):
        if i % 3 == 0:
            bodies.append(sale(f"F-{i}", "010-9999-0000"))  # nobody: 404
        elif i % 3 == 1:
            bodies.append(sale("D-0", PHONES[0], 999_000))  # order recorded with other details
        else:
            bodies.append(sale(f"F-{i}", PHONES[1]))
    answers = post_all(app, pos, bodies)

    codes = [(a.status_code, a.json().get("error")) for a in answers]
    for i, code in enumerate(codes):
        if i % 3 == 0:
            assert code == (404, "member_not_found"), (i, answers[i].text)
        elif i % 3 == 1:
            assert code == (409, "duplicate_order"), (i, answers[i].text)
        else:
            assert code == (201, None), (i, answers[i].text)
    groups = app.state.group_commit
    assert groups.groups < groups.sales == 30
    assert groups.retried >= 1  # groups with a failing sale ran again sale by sale
    kim = client.get(f"{P}/members/{members[1]['id']}/account", headers=reader).json()
    assert kim["totals"]["balance"] == 10 * 250  # the ten good sales, each 250 points
    entries = client.get(f"{P}/members/{members[1]['id']}/entries", headers=reader).json()
    assert len(entries["items"]) == 10


def test_replays_inside_one_group_record_one_sale(grouped, client, pos, reader, members):
    app = grouped
    bodies = [sale("R-1", PHONES[2])] * 12
    answers = post_all(app, pos, bodies)
    assert {a.status_code for a in answers} == {201}
    first = answers[0].json()
    assert all(a.json() == first for a in answers)  # every replay is the first answer
    entries = client.get(f"{P}/members/{members[2]['id']}/entries", headers=reader).json()
    assert len(entries["items"]) == 1


def test_concurrent_spends_in_groups_never_spend_a_point_twice(
    grouped, client, admin, pos, reader, members
):
    app = grouped
    grant = client.post(
        f"{P}/adjustments",
        json={"member": {"phone": PHONES[3]}, "points": 10_000, "reason": "opening balance"},
        headers=admin,
    )
    assert grant.status_code == 201, grant.text
    bodies = [{**sale(f"S-{i}", PHONES[3], 1000), "points_to_spend": 1000} for i in range(40)]
    answers = post_all(app, pos, bodies)

    accepted = [a for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code != 201]
    assert len(accepted) == 10  # 10,000 points buy exactly ten 1,000-point redemptions
    assert {(a.status_code, a.json()["error"]) for a in refused} == {(409, "insufficient_points")}
    account = client.get(f"{P}/members/{members[3]['id']}/account", headers=reader).json()
    assert account["totals"]["redeemed"] == 10_000
    report = client.get("/api/v1/check", headers=admin).json()
    assert report["ok"] is True, report["violations"]
