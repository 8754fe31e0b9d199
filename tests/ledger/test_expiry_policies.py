"""Expiry policies (issue 16 item 5): N days after earning, and a tier's own policy.

`days` counts local calendar days in the program's timezone (LESSONS.md: server-vs-local
timezone moved expiry by a day), so the edges are tested in Seoul and New York across month
ends and both DST changes. Over HTTP, on both engines: the program is configured through the
API, purchases write lots whose `expires_at` follows the policy of the member's tier at earning
time, the job expires them later, and the checker (`GET /check`, `patron check`) finds the
ledger consistent afterwards (FloCafe #78: only remainders expire).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from patron import clock
from patron.cli import app as cli_app
from patron.config import get_settings
from patron.ledger.expiry import ExpiryRule, expires_at
from patron.programs.schemas import ExpiryPolicy
from tests.api.helpers import enroll
from tests.conftest import T0
from tests.factories import BAKERY

P = "/api/v1/programs/bakery"
SEOUL = "Asia/Seoul"
NEW_YORK = "America/New_York"


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _days(earned: str, days: int, tz: str, *, extra: int = 0) -> datetime | None:
    return expires_at(
        _utc(earned), kind="days", months=0, days=days, extra_months=extra, timezone=tz
    )


# --- expires_at for `days` ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "earned, days, tz, expected",
    [
        # 23:59 on 30 June in Seoul is 30 June, not 1 July: valid through 1 July.
        ("2027-06-30T23:59:00+09:00", 1, SEOUL, "2027-07-01T15:00:00+00:00"),
        # 00:00 on 1 July in Seoul (15:00 UTC on 30 June) already belongs to 1 July.
        ("2027-07-01T00:00:00+09:00", 1, SEOUL, "2027-07-02T15:00:00+00:00"),
        # Month ends: 31 January + 30 days is 2 March (28-day February), 1 March in a leap year.
        ("2027-01-31T10:00:00+09:00", 30, SEOUL, "2027-03-02T15:00:00+00:00"),
        ("2028-01-31T10:00:00+09:00", 30, SEOUL, "2028-03-01T15:00:00+00:00"),
        ("2026-11-23T07:11:00+09:00", 90, SEOUL, "2027-02-21T15:00:00+00:00"),  # the docs' row
        # New York, spring forward (14 March 2027): 23:30 EST on the 13th is the 13th; valid
        # through the 14th, the midnight that ends it is EDT (UTC-4).
        ("2027-03-13T23:30:00-05:00", 1, NEW_YORK, "2027-03-15T04:00:00+00:00"),
        ("2027-03-10T12:00:00-05:00", 7, NEW_YORK, "2027-03-18T04:00:00+00:00"),
        # Fall back (7 November 2027): earned under EDT, the end is midnight EST (UTC-5).
        ("2027-11-06T12:00:00-04:00", 1, NEW_YORK, "2027-11-08T05:00:00+00:00"),
        ("2027-10-31T23:59:00-04:00", 7, NEW_YORK, "2027-11-08T05:00:00+00:00"),
        # 22:00 on 31 December in New York is already 1 January in UTC: the local day counts.
        ("2027-12-31T22:00:00-05:00", 1, NEW_YORK, "2028-01-02T05:00:00+00:00"),
        ("2027-01-31T20:00:00-05:00", 28, NEW_YORK, "2027-03-01T05:00:00+00:00"),
    ],
)
def test_days_are_local_days(earned, days, tz, expected):
    assert _days(earned, days, tz) == _utc(expected)


@pytest.mark.parametrize(
    "earned, days, extra, expected",
    [
        # 1 March + 30 days = 31 March, + 2 months = 31 May.
        ("2027-03-01T12:00:00+09:00", 30, 2, "2027-05-31T15:00:00+00:00"),
        # 1 December + 30 days = 31 December, + 2 months = 29 February 2028 (the month's end).
        ("2027-12-01T12:00:00+09:00", 30, 2, "2028-02-29T15:00:00+00:00"),
    ],
)
def test_a_tiers_extra_months_come_after_the_days(earned, days, extra, expected):
    assert _days(earned, days, SEOUL, extra=extra) == _utc(expected)


@given(
    earned=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2090, 12, 31), timezones=st.just(UTC)
    ),
    days=st.integers(min_value=1, max_value=3650),
    tz=st.sampled_from([SEOUL, NEW_YORK]),
)
def test_days_always_end_at_the_local_midnight_n_plus_one_days_on(earned, days, tz):
    end = _days(earned.isoformat(), days, tz)
    assert end is not None
    local_end = end.astimezone(ZoneInfo(tz))
    assert (local_end.hour, local_end.minute, local_end.second) == (0, 0, 0)
    local_day = earned.astimezone(ZoneInfo(tz)).date()
    assert local_end.date() - local_day == timedelta(days=days + 1)


def test_month_policies_add_extra_months_to_n():
    earned = _utc("2027-01-31T12:00:00+09:00")
    one = expires_at(earned, kind="months", months=1, timezone=SEOUL)
    same = expires_at(earned, kind="months", months=0, extra_months=1, timezone=SEOUL)
    assert one == same == _utc("2027-03-01T00:00:00+09:00")  # through 28 February
    assert expires_at(earned, kind="none", months=0, extra_months=6, timezone=SEOUL) is None


def test_an_expiry_rule_is_expires_at_with_its_fields():
    rule = ExpiryRule("days", months=0, days=10, extra_months=2)
    assert rule.expires_at(T0, SEOUL) == _days(T0.isoformat(), 10, SEOUL, extra=2)
    assert ExpiryRule("none", extra_months=6).expires_at(T0, SEOUL) is None


@pytest.mark.parametrize(
    "data, words",
    [
        ({"kind": "days"}, "expiry.days (1 to 3650) is required when kind is 'days'"),
        ({"kind": "months", "days": 30}, "expiry.days applies only when kind is 'days'"),
        ({"kind": "none", "days": 30}, "expiry.days applies only when kind is 'days'"),
        ({"kind": "days", "days": 0}, "greater than or equal to 1"),
        ({"kind": "days", "days": 3651}, "less than or equal to 3650"),
    ],
)
def test_the_policy_schema_says_what_is_wrong(data, words):
    with pytest.raises(ValidationError) as caught:
        ExpiryPolicy.model_validate(data)
    assert words in str(caught.value)


# --- over HTTP, on both engines ----------------------------------------------------------------


@pytest.fixture
def admin(keys) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys['admin']}"}


@pytest.fixture
def pos(keys) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys['pos']}"}


def _program(client, admin, **changes: Any) -> dict[str, Any]:
    response = client.post("/api/v1/programs", json={**BAKERY, **changes}, headers=admin)
    assert response.status_code == 201, response.text
    store = client.post(f"{P}/stores", json={"code": "mapo", "name": "Mapo"}, headers=admin)
    assert store.status_code == 201, store.text
    return response.json()


def _sale(client, pos, member_id: int, ext: str, amount: int, **extra: Any) -> dict[str, Any]:
    body = {"external_id": ext, "member": {"id": member_id}, "amount": amount, **extra}
    response = client.post(f"{P}/purchases", json=body, headers=pos)
    assert response.status_code == 201, response.text
    return response.json()


def _lots(client, pos, member_id: int) -> list[tuple[int, int, bool, str | None]]:
    response = client.get(f"{P}/members/{member_id}/lots", headers=pos)
    assert response.status_code == 200, response.text
    lots = sorted(response.json(), key=lambda x: x["id"])  # in the order they were earned
    return [(x["points"], x["remaining"], x["pending"], x["expires_at"]) for x in lots]


def _totals(client, pos, member_id: int) -> dict[str, int]:
    response = client.get(f"{P}/members/{member_id}/account", headers=pos)
    assert response.status_code == 200, response.text
    return response.json()["totals"]


def _expire(client, admin, at: datetime) -> dict[str, Any]:
    clock.freeze(at)
    response = client.post("/api/v1/expire", json={}, headers=admin)
    assert response.status_code == 200, response.text
    return response.json()


def _check_ok(client, admin) -> None:
    report = client.get("/api/v1/check", headers=admin).json()
    assert report["ok"] is True and report["violations"] == [], report


# T0 is 12:00 on Monday 2 March 2026 in Seoul.
def _seoul_midnight(day: date) -> str:
    return (
        datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(SEOUL))
        .astimezone(UTC)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
    )


def test_days_policy_from_api_to_expiry(client, admin, pos, frozen, db):
    program = _program(client, admin, expiry={"kind": "days", "days": 30})
    assert program["expiry"] == {"kind": "days", "months": 12, "days": 30}
    assert client.get(P, headers=admin).json()["expiry"]["days"] == 30
    kim = enroll(client, pos)["id"]

    _sale(client, pos, kim, "D-1", 25800)  # 250 points on 2 March
    clock.freeze(T0 + timedelta(days=10))
    _sale(client, pos, kim, "D-2", 11000)  # 110 points on 12 March
    # Valid through 1 April and 11 April (local days), over at the midnight that ends them.
    first, second = _seoul_midnight(date(2026, 4, 2)), _seoul_midnight(date(2026, 4, 12))
    assert first == "2026-04-01T15:00:00Z"
    assert _lots(client, pos, kim) == [(250, 250, False, first), (110, 110, False, second)]

    one_second_early = _utc(first.replace("Z", "+00:00")) - timedelta(seconds=1)
    assert _expire(client, admin, one_second_early)["lots"] == 0
    report = _expire(client, admin, _utc(first.replace("Z", "+00:00")))
    assert (report["lots"], report["points"]) == (1, 250)
    totals = _totals(client, pos, kim)
    assert (totals["balance"], totals["expired"], totals["earned"]) == (110, 250, 360)
    _check_ok(client, admin)

    report = _expire(client, admin, datetime(2026, 5, 1, tzinfo=UTC))
    assert (report["lots"], report["points"]) == (1, 110)
    assert _totals(client, pos, kim)["balance"] == 0
    _check_ok(client, admin)


def test_switching_to_days_applies_to_points_earned_from_then_on(client, admin, pos, frozen, db):
    _program(client, admin)
    kim = enroll(client, pos)["id"]
    _sale(client, pos, kim, "M-1", 10000)  # 12 months: through 2 March 2027
    changed = client.patch(P, json={"expiry": {"kind": "days", "days": 7}}, headers=admin)
    assert changed.status_code == 200, changed.text
    assert changed.json()["expiry"] == {"kind": "days", "months": 12, "days": 7}
    _sale(client, pos, kim, "D-1", 20000)  # 7 days: through 9 March 2026
    assert _lots(client, pos, kim) == [
        (100, 100, False, _seoul_midnight(date(2027, 3, 3))),
        (200, 200, False, _seoul_midnight(date(2026, 3, 10))),
    ]
    back = client.patch(P, json={"expiry": {"kind": "months", "months": 12}}, headers=admin)
    assert back.json()["expiry"] == {"kind": "months", "months": 12, "days": None}


@pytest.mark.parametrize(
    "expiry, detail",
    [
        ({"kind": "days"}, "expiry.days (1 to 3650) is required when kind is 'days'"),
        ({"kind": "days", "days": 0}, "greater than or equal to 1"),
        ({"kind": "days", "days": 3651}, "less than or equal to 3650"),
        ({"kind": "days", "days": "soon"}, "valid integer"),
        ({"kind": "months", "months": 6, "days": 10}, "applies only when kind is 'days'"),
        ({"kind": "weeks", "months": 6}, "'days' or 'rolling'"),
    ],
)
def test_bad_expiry_is_422_with_a_clear_detail(client, admin, frozen, db, expiry, detail):
    created = client.post("/api/v1/programs", json={**BAKERY, "expiry": expiry}, headers=admin)
    assert created.status_code == 422, created.text
    body = created.json()
    assert body["error"] == "validation_error", body
    assert body["detail"].startswith("expiry") and detail in body["detail"], body
    assert client.get(P, headers=admin).status_code == 404
    _program(client, admin)
    patched = client.patch(P, json={"expiry": expiry}, headers=admin)
    assert patched.status_code == 422 and detail in patched.json()["detail"], patched.text
    assert client.get(P, headers=admin).json()["expiry"] == {
        "kind": "months",
        "months": 12,
        "days": None,
    }


GOLD_DAYS = 10


def _tiers(client, admin, *, gold_expiry: dict[str, Any] | None, extra: int = 0):
    setup = {
        "policy": {"metric": "points", "window": "lifetime"},
        "tiers": [
            {"code": "base", "names": {"en": "Base"}, "threshold": 0},
            {
                "code": "gold",
                "names": {"en": "Gold"},
                "threshold": 100,
                "extra_expiry_months": extra,
                "expiry": gold_expiry,
            },
        ],
    }
    return client.put(f"{P}/tiers", json=setup, headers=admin)


def test_a_tiers_own_policy_from_api_to_expiry(client, admin, pos, frozen, db):
    _program(client, admin)  # 12 months
    saved = _tiers(client, admin, gold_expiry={"kind": "days", "days": GOLD_DAYS}, extra=1)
    assert saved.status_code == 200, saved.text
    gold = saved.json()["tiers"][1]
    assert (gold["expiry"], gold["extra_expiry_months"]) == (
        {"kind": "days", "months": 12, "days": GOLD_DAYS},
        1,
    )
    assert saved.json()["tiers"][0]["expiry"] is None
    assert client.get(f"{P}/tiers", headers=admin).json()["tiers"][1] == gold
    kim = enroll(client, pos)["id"]

    # Earned before the upgrade: the program's 12 months. The sale lifts Kim to gold.
    _sale(client, pos, kim, "T-1", 25800)
    # Earned in gold: 10 days (through 12 March), then 1 extra month (through 12 April).
    _sale(client, pos, kim, "T-2", 11000)
    gold_end = _seoul_midnight(date(2026, 4, 13))
    assert _lots(client, pos, kim) == [
        (250, 250, False, _seoul_midnight(date(2026, 3, 3) + timedelta(days=365))),
        (110, 110, False, gold_end),
    ]
    report = _expire(client, admin, _utc(gold_end.replace("Z", "+00:00")))
    assert (report["lots"], report["points"]) == (1, 110)
    totals = _totals(client, pos, kim)
    assert (totals["balance"], totals["expired"]) == (250, 110)
    _check_ok(client, admin)


def test_a_tier_that_never_expires_ignores_its_extra_months(client, admin, pos, frozen, db):
    _program(client, admin, expiry={"kind": "days", "days": 5})
    assert _tiers(client, admin, gold_expiry={"kind": "none"}, extra=3).status_code == 200
    kim = enroll(client, pos)["id"]
    _sale(client, pos, kim, "N-1", 25800)  # in no tier yet: the program's 5 days
    _sale(client, pos, kim, "N-2", 11000)  # in gold: never
    assert _lots(client, pos, kim) == [
        (250, 250, False, _seoul_midnight(date(2026, 3, 8))),
        (110, 110, False, None),
    ]
    _expire(client, admin, datetime(2030, 1, 1, tzinfo=UTC))
    assert _totals(client, pos, kim)["balance"] == 110
    _check_ok(client, admin)


@pytest.mark.parametrize(
    "expiry, field, detail",
    [
        ({"kind": "days"}, "tiers.1.expiry", "required when kind is 'days'"),
        ({"kind": "months", "months": 0}, "tiers.1.expiry", "at least 1"),
        ({"kind": "days", "days": 9999}, "tiers.1.expiry.days", "less than or equal to 3650"),
    ],
)
def test_a_bad_tier_policy_is_422(client, admin, frozen, db, expiry, field, detail):
    _program(client, admin)
    response = _tiers(client, admin, gold_expiry=expiry)
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"] and detail in response.json()["detail"]
    assert client.get(f"{P}/tiers", headers=admin).json()["tiers"] == []


def test_pending_points_expire_on_their_earn_time_rule(client, admin, pos, frozen, db):
    # Held back 14 days but valid only 7: the lot expires while still pending.
    _program(client, admin, expiry={"kind": "days", "days": 7}, pending_days=14)
    kim = enroll(client, pos)["id"]
    _sale(client, pos, kim, "P-1", 25800)
    end = _seoul_midnight(date(2026, 3, 10))
    assert _lots(client, pos, kim) == [(250, 250, True, end)]
    assert _totals(client, pos, kim)["pending"] == 250
    report = _expire(client, admin, _utc(end.replace("Z", "+00:00")) + timedelta(days=30))
    assert (report["lots"], report["points"]) == (1, 250)
    totals = _totals(client, pos, kim)
    assert (totals["pending"], totals["available"], totals["expired"]) == (0, 0, 250)
    _check_ok(client, admin)


def test_a_refund_gives_back_to_an_expired_lot_which_expires_again(client, admin, pos, frozen, db):
    _program(client, admin, expiry={"kind": "days", "days": 30})
    kim = enroll(client, pos)["id"]
    _sale(client, pos, kim, "R-1", 120000)  # 1,200 points through 1 April
    clock.freeze(T0 + timedelta(days=20))
    _sale(client, pos, kim, "R-2", 10000, points_to_spend=1000)  # from R-1's lot; earns 90
    _expire(client, admin, datetime(2026, 4, 15, tzinfo=UTC))  # R-1's last 200 expire
    assert _totals(client, pos, kim)["expired"] == 200
    refunded = client.post(
        f"{P}/purchases/R-2/refunds", json={"refund_id": "RF-1", "full": True}, headers=pos
    )
    assert refunded.status_code == 201, refunded.text
    # The 1,000 go back to R-1's lot, past its date: they expire again at once; the 90 R-2
    # earned are taken back from its own lot, still valid.
    totals = _totals(client, pos, kim)
    assert (totals["balance"], totals["expired"], totals["redeemed"]) == (0, 1200, 0)
    assert _lots(client, pos, kim) == []  # no open lot left
    _check_ok(client, admin)


def test_patron_check_after_expiring_under_each_policy(client, admin, pos, frozen, db, monkeypatch):
    """`patron expire` then `patron check` on the command line, after lots of three policies."""
    _program(client, admin, expiry={"kind": "days", "days": 3})
    _tiers(client, admin, gold_expiry={"kind": "end_of_month", "months": 0}, extra=1)
    kim, lee = enroll(client, pos)["id"], enroll(client, pos)["id"]
    _sale(client, pos, kim, "C-1", 25800)  # days: through 5 March
    _sale(client, pos, kim, "C-2", 25800, points_to_spend=0)  # gold: end of April
    _sale(client, pos, lee, "C-3", 5000)  # days
    client.patch(P, json={"expiry": {"kind": "end_of_year", "months": 0}}, headers=admin)
    _sale(client, pos, lee, "C-4", 5000)  # end of 2026
    runner = CliRunner()
    # The CLI writes --database-url into the environment: monkeypatch restores it afterwards.
    monkeypatch.setenv("PATRON_DATABASE_URL", db.url)
    clock.freeze(datetime(2027, 2, 1, tzinfo=UTC))
    get_settings.cache_clear()
    try:
        done = runner.invoke(cli_app, ["expire", "--database-url", db.url])
        assert done.exit_code == 0, done.output
        assert "expired 600 points in 4 lots (2 accounts)" in done.output
        checked = runner.invoke(cli_app, ["check", "--database-url", db.url])
        assert checked.exit_code == 0 and "ledger consistent" in checked.output, checked.output
    finally:
        get_settings.cache_clear()
    assert _totals(client, pos, kim)["balance"] == _totals(client, pos, lee)["balance"] == 0
