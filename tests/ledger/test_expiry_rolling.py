"""Rolling expiry (issue 16 item 5): every activity moves all the open lots of the account to N
after the latest activity.

The arithmetic is pure (`ledger.expiry`, `ledger.rolling.effective`); over HTTP, on both engines,
the test clock moves between sales, spends and runs of the job: lots whose own date passed are
kept while the member is active (the job moves them, `settle_due` before a sale does too),
expire together in one entry once the member has been away for N, readers show the effective
date, and `patron check` holds (docs/concepts.md, "Rolling expiry").
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from patron import clock
from patron.ledger.expiry import ExpiryRule, add_months
from patron.ledger.rolling import effective
from patron.programs.schemas import ExpiryPolicy
from tests.api.helpers import enroll
from tests.conftest import T0
from tests.factories import BAKERY

P = "/api/v1/programs/bakery"
SEOUL = ZoneInfo("Asia/Seoul")


def _end_of(day: date) -> datetime:
    """The instant a last valid local day `day` ends (Seoul midnight, in UTC)."""
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), SEOUL).astimezone(UTC)


def _z(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- engine ------------------------------------------------------------------------------------


@given(
    earned=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1)),
    later=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=2000)),
    months=st.integers(1, 60),
    extra=st.integers(0, 24),
)
def test_a_later_activity_never_moves_the_rolling_date_back(earned, later, months, extra):
    """N after the latest activity: monotone in the activity, and at least each lot's own date
    (a lot written under the same rule, earned no later than the latest activity)."""
    rule = ExpiryRule("rolling", months, 0, extra)
    at = earned.replace(tzinfo=UTC)
    own = rule.expires_at(at, "Asia/Seoul")
    rolled = rule.expires_at(at + later, "Asia/Seoul")
    assert own is not None and rolled is not None and own <= rolled
    assert effective(own, rolled) == rolled
    assert rule.expires_at(at, "Asia/Seoul") == ExpiryRule("months", months, 0, extra).expires_at(
        at, "Asia/Seoul"
    )


@given(days=st.integers(1, 3650), earned=st.dates(date(2020, 1, 1), date(2035, 1, 1)))
def test_rolling_in_days_counts_local_days(days, earned):
    at = datetime(earned.year, earned.month, earned.day, 23, 30, tzinfo=SEOUL)
    rule = ExpiryRule("rolling", 12, days, 0)
    assert rule.expires_at(at, "Asia/Seoul") == _end_of(earned + timedelta(days=days))
    with_extra = ExpiryRule("rolling", 12, days, 2).expires_at(at, "Asia/Seoul")
    assert with_extra == _end_of(add_months(earned + timedelta(days=days), 2))


def test_effective_keeps_no_expiry_and_later_own_dates():
    rolled = datetime(2027, 1, 1, tzinfo=UTC)
    assert effective(None, rolled) is None  # a lot that never expires stays so
    assert effective(rolled + timedelta(days=1), rolled) == rolled + timedelta(days=1)
    assert effective(rolled - timedelta(days=1), None) == rolled - timedelta(days=1)


@pytest.mark.parametrize(
    "data, words",
    [
        ({"kind": "rolling", "months": 0}, "at least 1 when kind is 'rolling'"),
        ({"kind": "months", "days": 30}, "applies only when kind is 'days' or 'rolling'"),
    ],
)
def test_the_rolling_schema_says_what_is_wrong(data, words):
    with pytest.raises(ValidationError) as caught:
        ExpiryPolicy.model_validate(data)
    assert words in str(caught.value)
    assert ExpiryPolicy.model_validate({"kind": "rolling", "months": 0, "days": 90}).days == 90


# --- over HTTP, on both engines ----------------------------------------------------------------


@pytest.fixture
def admin(keys) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys['admin']}"}


@pytest.fixture
def pos(keys) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys['pos']}"}


def _program(client, admin, **changes: Any) -> dict[str, Any]:
    body = {**BAKERY, "redemption": {"min_points": 0}, **changes}
    response = client.post("/api/v1/programs", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


def _sale(client, pos, member_id: int, ext: str, amount: int, **extra: Any) -> dict[str, Any]:
    body = {"external_id": ext, "member": {"id": member_id}, "amount": amount, **extra}
    response = client.post(f"{P}/purchases", json=body, headers=pos)
    assert response.status_code == 201, response.text
    return response.json()


def _lots(client, pos, member_id: int) -> list[tuple[int, str | None]]:
    response = client.get(f"{P}/members/{member_id}/lots", headers=pos)
    assert response.status_code == 200, response.text
    return [
        (x["remaining"], x["expires_at"]) for x in sorted(response.json(), key=lambda x: x["id"])
    ]


def _totals(client, pos, member_id: int) -> dict[str, int]:
    response = client.get(f"{P}/members/{member_id}/account", headers=pos)
    assert response.status_code == 200, response.text
    return response.json()["totals"]


def _expire(client, admin, at: datetime, **body: Any) -> dict[str, Any]:
    clock.freeze(at)
    response = client.post("/api/v1/expire", json=body, headers=admin)
    assert response.status_code == 200, response.text
    return response.json()


def _check_ok(client, admin) -> None:
    report = client.get("/api/v1/check", headers=admin).json()
    assert report["ok"] is True and report["violations"] == [], report


def _expire_entries(client, pos, member_id: int) -> list[tuple[int, str]]:
    response = client.get(f"{P}/members/{member_id}/entries", headers=pos)
    assert response.status_code == 200, response.text
    return [
        (e["points"], e["occurred_at"]) for e in response.json()["items"] if e["kind"] == "expire"
    ]


def test_the_worked_example(client, admin, pos, frozen, db):
    """docs/concepts.md "Rolling expiry": 6 months after the latest sale, in Seoul."""
    program = _program(client, admin, expiry={"kind": "rolling", "months": 6})
    assert program["expiry"] == {"kind": "rolling", "months": 6, "days": None}
    kim, lee = enroll(client, pos)["id"], enroll(client, pos)["id"]

    _sale(client, pos, kim, "R-1", 25800)  # 2 March 2026: 250 points, through 2 September
    _sale(client, pos, lee, "R-2", 10000)  # Lee: 100 points, then never comes back
    sept = _end_of(date(2026, 9, 2))
    assert _lots(client, pos, kim) == [(250, _z(sept))]

    clock.freeze(datetime(2026, 6, 10, 3, 0, tzinfo=UTC))
    _sale(client, pos, kim, "R-3", 11000)  # 10 June: 110 points; everything through 10 Dec
    dec = _end_of(date(2026, 12, 10))
    assert _lots(client, pos, kim) == [(250, _z(dec)), (110, _z(dec))]
    # 15 August: the first lot's own date (2 September) is near, but nothing expires soon.
    clock.freeze(datetime(2026, 8, 15, 3, 0, tzinfo=UTC))
    assert _totals(client, pos, kim)["expiring_30_days"] == 0  # the member page's figure

    # 5 September: the job expires Lee's lot and keeps (moves) Kim's.
    dry = _expire(client, admin, datetime(2026, 9, 5, tzinfo=UTC), dry_run=True)
    assert (dry["lots"], dry["points"], dry["accounts"], dry["rolled_lots"]) == (1, 100, 1, 1)
    report = _expire(client, admin, datetime(2026, 9, 5, tzinfo=UTC))
    assert (report["lots"], report["points"], report["accounts"]) == (1, 100, 1)
    assert (report["rolled_lots"], report["rolled_accounts"]) == (1, 1)
    assert _totals(client, pos, kim)["balance"] == 360
    _check_ok(client, admin)

    # 1 November: spending is activity too — everything through 1 May 2027.
    clock.freeze(datetime(2026, 11, 1, 2, 0, tzinfo=UTC))
    _sale(client, pos, kim, "R-4", 5000, points_to_spend=100)
    may = _end_of(date(2027, 5, 1))
    assert {at for _, at in _lots(client, pos, kim)} == {_z(may)}
    # A refund is not activity: the date stays.
    clock.freeze(datetime(2026, 11, 20, 2, 0, tzinfo=UTC))
    refund = client.post(
        f"{P}/purchases/R-3/refunds", json={"refund_id": "F-1", "amount": 1000}, headers=pos
    )
    assert refund.status_code == 201, refund.text
    assert {at for _, at in _lots(client, pos, kim)} == {_z(may)}

    assert _expire(client, admin, may - timedelta(seconds=1))["lots"] == 0
    balance = _totals(client, pos, kim)["balance"]
    clock.freeze(may - timedelta(days=20))
    assert _totals(client, pos, kim)["expiring_30_days"] == balance
    report = _expire(client, admin, may)
    assert report["points"] == balance > 0
    assert _expire_entries(client, pos, kim) == [(-balance, _z(may))]  # one entry, at the date
    assert _totals(client, pos, kim)["balance"] == 0
    _check_ok(client, admin)


def test_a_sale_after_the_own_date_keeps_the_points_without_the_job(client, admin, pos, frozen, db):
    """`settle_due` before a sale moves the lots (no job run): the sale can spend them."""
    _program(client, admin, expiry={"kind": "rolling", "months": 0, "days": 30})
    kim = enroll(client, pos)["id"]
    _sale(client, pos, kim, "S-1", 25800)  # 250 points through 1 April
    clock.freeze(T0 + timedelta(days=20))
    _sale(client, pos, kim, "S-2", 1000)  # 10 points; all through 21 April
    clock.freeze(T0 + timedelta(days=45))  # past the first lot's own date, within 30 days
    assert _totals(client, pos, kim)["available"] == 260
    spent = _sale(client, pos, kim, "S-3", 30000, points_to_spend=250)
    assert spent["points_spent"] == 250, spent
    _check_ok(client, admin)
    # 30 days after S-3 everything left is gone, dated at the rolled instant.
    last = _end_of((T0 + timedelta(days=45)).astimezone(SEOUL).date() + timedelta(days=30))
    assert _totals(client, pos, kim)["balance"] > 0
    clock.freeze(last)
    assert _totals(client, pos, kim)["balance"] == 0  # read as expired before the job runs
    report = _expire(client, admin, last)
    assert report["lots"] >= 1 and report["rolled_lots"] == 0
    _check_ok(client, admin)


def test_a_tiers_rolling_policy_and_pending_points(client, admin, pos, frozen, db):
    """Gold rolls (its own policy) while the program keeps 12 months; pending lots roll too."""
    _program(client, admin, expiry={"kind": "months", "months": 12}, pending_days=14)
    setup = {
        "policy": {"metric": "points", "window": "lifetime"},
        "tiers": [
            {"code": "base", "names": {"en": "Base"}, "threshold": 0},
            {
                "code": "gold",
                "names": {"en": "Gold"},
                "threshold": 100,
                "expiry": {"kind": "rolling", "months": 0, "days": 10},
            },
        ],
    }
    saved = client.put(f"{P}/tiers", json=setup, headers=admin)
    assert saved.status_code == 200, saved.text
    assert saved.json()["tiers"][1]["expiry"] == {"kind": "rolling", "months": 0, "days": 10}
    kim, lee = enroll(client, pos)["id"], enroll(client, pos)["id"]
    _sale(client, pos, kim, "G-1", 25800)  # base: 12 months; lifts Kim to gold
    _sale(client, pos, lee, "G-2", 5000)  # Lee stays base: 12 months
    clock.freeze(T0 + timedelta(days=3))
    _sale(client, pos, kim, "G-3", 11000)  # gold: 10 days after 5 March, pending 14 days
    rolled = _end_of(date(2026, 3, 15))
    # Kim's first lot keeps its later own date (rolling never shortens); the new one rolls.
    assert [at for _, at in _lots(client, pos, kim)] == [
        _z(_end_of(date(2027, 3, 2))),
        _z(rolled),
    ]
    report = _expire(client, admin, rolled)
    # The pending lot expired while pending (it never became spendable); Lee untouched.
    assert (report["lots"], report["points"]) == (1, 110)
    totals = _totals(client, pos, kim)
    assert (totals["pending"], totals["available"], totals["expired"]) == (250, 0, 110)
    assert _totals(client, pos, lee)["pending"] == 50
    _check_ok(client, admin)


def test_a_late_offline_sale_counts_as_of_when_it_happened(client, admin, pos, frozen, db):
    _program(client, admin, expiry={"kind": "rolling", "months": 1})
    kim = enroll(client, pos)["id"]
    clock.freeze(T0 + timedelta(days=20))  # 22 March
    _sale(client, pos, kim, "L-1", 10000)  # through 22 April
    # Synced on 25 March, happened on 5 March: older than the latest activity, moves nothing.
    clock.freeze(T0 + timedelta(days=23))
    _sale(client, pos, kim, "L-2", 10000, occurred_at="2026-03-05T10:00:00+09:00")
    april = _end_of(date(2026, 4, 22))
    assert {at for _, at in _lots(client, pos, kim)} == {_z(april)}
    report = _expire(client, admin, april)
    assert (report["lots"], report["points"]) == (2, 200)
    assert _expire_entries(client, pos, kim) == [(-200, _z(april))]
    _check_ok(client, admin)


@pytest.mark.parametrize(
    "expiry, detail",
    [
        ({"kind": "rolling", "months": 0}, "at least 1 when kind is 'rolling'"),
        ({"kind": "rolling", "days": 0}, "greater than or equal to 1"),
        ({"kind": "end_of_month", "days": 5}, "applies only when kind is 'days' or 'rolling'"),
    ],
)
def test_a_bad_rolling_policy_is_422(client, admin, frozen, db, expiry, detail):
    created = client.post("/api/v1/programs", json={**BAKERY, "expiry": expiry}, headers=admin)
    assert created.status_code == 422, created.text
    body = created.json()
    assert body["error"] == "validation_error" and detail in body["detail"], body


def test_the_job_rolls_and_expires_chunk_by_chunk(client, admin, pos, frozen, db):
    """One account per chunk (batch_size 1): active members keep everything, inactive ones lose
    all their lots in one entry each at their rolling date; a second run does nothing."""
    from patron.ledger import jobs as ledger_jobs

    _program(client, admin, expiry={"kind": "rolling", "months": 0, "days": 10})
    members = [enroll(client, pos)["id"] for _ in range(4)]
    for i, member in enumerate(members):
        _sale(client, pos, member, f"J-{i}-a", 10000)  # 2 March: through 12 March
        _sale(client, pos, member, f"J-{i}-b", 20000)
    clock.freeze(T0 + timedelta(days=8))
    for member in members[:2]:  # 10 March: these two stay active (through 20 March)
        _sale(client, pos, member, f"J-{member}-c", 5000)
    at = _end_of(date(2026, 3, 13))
    preview = ledger_jobs.run_expiry(db, at, batch_size=1, dry_run=True)
    report = ledger_jobs.run_expiry(db, at, batch_size=1)
    assert (report.lots, report.points, report.accounts, report.entries) == (4, 600, 2, 2)
    assert (report.rolled_lots, report.rolled_accounts) == (4, 2)
    assert (preview.lots, preview.points, preview.accounts) == (4, 600, 2)
    assert ledger_jobs.run_expiry(db, at, batch_size=1).lots == 0
    for member in members[2:]:
        assert _expire_entries(client, pos, member) == [(-300, _z(_end_of(date(2026, 3, 12))))]
    for member in members[:2]:
        assert {at for _, at in _lots(client, pos, member)} == {_z(_end_of(date(2026, 3, 20)))}
    _check_ok(client, admin)


def test_points_given_back_to_an_expired_lot_expire_again_despite_activity(
    client, admin, pos, frozen, db
):
    """A refunded redemption gives points back to a lot that already expired: they expire again
    at once, and a later activity does not bring them back (a lot that expired keeps its date,
    its expire entry is dated at it: `rolling.never_expired`); `patron check` holds."""
    _program(client, admin, expiry={"kind": "rolling", "months": 1})
    kim = enroll(client, pos)["id"]
    _sale(client, pos, kim, "B-1", 25800)  # 250 points, 2 March
    clock.freeze(T0 + timedelta(days=8))  # 10 March: spends 100 of them; through 10 April
    _sale(client, pos, kim, "B-2", 5000, points_to_spend=100)
    april = _end_of(date(2026, 4, 10))
    report = _expire(client, admin, april + timedelta(days=1))
    assert report["rolled_lots"] == 0 and _totals(client, pos, kim)["balance"] == 0
    clock.freeze(april + timedelta(days=5))
    refund = client.post(
        f"{P}/purchases/B-2/refunds", json={"refund_id": "F-1", "amount": 5000}, headers=pos
    )
    assert refund.status_code == 201, refund.text
    assert refund.json()["points_restored"] == 100
    clock.freeze(april + timedelta(days=10))
    new = _sale(client, pos, kim, "B-3", 10000)  # activity again: 100 new points
    totals = _totals(client, pos, kim)
    assert totals["balance"] == new["points_earned"] == 100
    assert [p for p, _ in _expire_entries(client, pos, kim)].count(-100) == 1
    _check_ok(client, admin)
