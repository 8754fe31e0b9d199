"""Rolling expiry in the two readers that used to read the stored lot date (issue 16 item 5):
the totals a sale answers with (`sales.snapshot`, `expiring_30_days`) and the expiring-points
reminder (`notify.jobs.run_expiring`). Both show the rolling date, not the lot's own one, on
both engines; a member who stays away is still reminded at the lot's own date.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from patron import clock
from patron.notify import jobs
from tests.api.helpers import enroll
from tests.ledger.test_expiry_rolling import _end_of, _lots, _program, _sale, _totals, _z
from tests.notify.test_jobs import events_of

SEOUL = ZoneInfo("Asia/Seoul")


@pytest.fixture
def admin(keys) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys['admin']}"}


@pytest.fixture
def pos(keys) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys['pos']}"}


def _at(day: date) -> datetime:
    """Noon in Seoul on `day`, in UTC."""
    return datetime(day.year, day.month, day.day, 12, tzinfo=SEOUL).astimezone(UTC)


def _kim_and_lee(client, admin, pos, **program: Any) -> tuple[int, int]:
    """Rolling 6 months. 2 March 2026: Kim earns 250 and Lee 100 (own dates 2 September);
    10 June: Kim earns 110 more, so all of Kim's points roll to 10 December."""
    _program(client, admin, expiry={"kind": "rolling", "months": 6}, **program)
    kim, lee = enroll(client, pos)["id"], enroll(client, pos)["id"]
    _sale(client, pos, kim, "R-1", 25800)
    _sale(client, pos, lee, "R-2", 10000)
    clock.freeze(_at(date(2026, 6, 10)))
    _sale(client, pos, kim, "R-3", 11000)
    return kim, lee


def test_a_sales_answer_counts_what_expires_at_the_rolling_date(client, admin, pos, frozen, db):
    kim, lee = _kim_and_lee(client, admin, pos)
    sept, dec = _end_of(date(2026, 9, 2)), _end_of(date(2026, 12, 10))
    # The first lot's stored date is still 2 September (nothing rewrote it); Kim's points are
    # valid through 10 December.
    clock.freeze(_at(date(2026, 8, 20)))
    assert _lots(client, pos, kim) == [(250, _z(dec)), (110, _z(dec))]

    # A sale that earns nothing is no activity: Kim's answer shows nothing expiring within
    # 30 days (the stored 2 September would say 250), Lee's the 100 of 2 September.
    small = _sale(client, pos, kim, "R-4", 500)
    assert small["points_earned"] == 0
    assert small["totals"]["expiring_30_days"] == 0 == _totals(client, pos, kim)["expiring_30_days"]
    quiet = _sale(client, pos, lee, "R-5", 500)
    assert (
        quiet["totals"]["expiring_30_days"] == 100 == _totals(client, pos, lee)["expiring_30_days"]
    )
    assert _lots(client, pos, lee) == [(100, _z(sept))]

    # Lee earns: this sale is the activity that moves the 100 to 20 February 2027.
    back = _sale(client, pos, lee, "R-6", 5000)
    assert back["points_earned"] == 50
    assert back["totals"]["expiring_30_days"] == 0 == _totals(client, pos, lee)["expiring_30_days"]

    # 20 November: Kim's 360 expire on 10 December, inside the window, both in a sale's answer
    # and on the account (the lot whose own date passed counts at the rolling date).
    clock.freeze(_at(date(2026, 11, 20)))
    late = _sale(client, pos, kim, "R-7", 500)
    assert (
        late["totals"]["expiring_30_days"] == 360 == _totals(client, pos, kim)["expiring_30_days"]
    )


def test_the_reminder_names_the_rolling_date(client, admin, pos, frozen, db):
    kim, lee = _kim_and_lee(client, admin, pos)
    # The reminder's date is the local day the points are gone (the midnight after the last
    # valid day). 20 August, a 30-day window: Lee (away since March) is reminded of
    # 2 September's end; Kim, whose
    # first lot's stored date is also 2 September, is not: his points last until 10 December.
    run = jobs.run_expiring(db, "bakery", now=_at(date(2026, 8, 20)))
    got = [(e["_member"], e["expiry_date"], e["points"]) for e in events_of(db, "points.expiring")]
    assert got == [(lee, "2026-09-03", 100)]
    assert (run.considered, run.events) == (1, 1)

    # 20 November (the expiry job has not run: Kim's first lot still has its own date, now
    # past): Kim is reminded of all 360 points on 10 December, the rolling date.
    jobs.run_expiring(db, "bakery", now=_at(date(2026, 11, 20)))
    kims = [e for e in events_of(db, "points.expiring") if e["_member"] == kim]
    assert [(e["expiry_date"], e["points"]) for e in kims] == [("2026-12-11", 360)]
    assert kims[0]["expires_at"] == _end_of(date(2026, 12, 10)).isoformat()


def test_a_tiers_own_rolling_policy_is_the_one_reminded(client, admin, pos, frozen, db):
    """The program keeps 12 months; gold rolls 30 days. A gold member's lots of 1 June (own
    date 1 July) and 15 June are reminded together on 15 July; the first lot (earned in March
    under 12 months, own date March 2027) keeps its later date."""
    _program(client, admin, expiry={"kind": "months", "months": 12})
    setup = {
        "policy": {"metric": "points", "window": "lifetime"},
        "tiers": [
            {"code": "base", "names": {"en": "Base"}, "threshold": 0},
            {
                "code": "gold",
                "names": {"en": "Gold"},
                "threshold": 100,
                "expiry": {"kind": "rolling", "months": 0, "days": 30},
            },
        ],
    }
    saved = client.put("/api/v1/programs/bakery/tiers", json=setup, headers=admin)
    assert saved.status_code == 200, saved.text
    kim = enroll(client, pos)["id"]
    _sale(client, pos, kim, "G-1", 25800)  # 250 points under base; lifts Kim to gold
    clock.freeze(_at(date(2026, 6, 1)))
    _sale(client, pos, kim, "G-2", 10000)  # 100 points, own date 1 July
    clock.freeze(_at(date(2026, 6, 15)))
    _sale(client, pos, kim, "G-3", 5000)  # 50 points: everything rolls to 15 July
    assert [at for _, at in _lots(client, pos, kim)] == [
        _z(_end_of(date(2027, 3, 2))),
        _z(_end_of(date(2026, 7, 15))),
        _z(_end_of(date(2026, 7, 15))),
    ]
    jobs.run_expiring(db, "bakery", now=_at(date(2026, 6, 20)))
    got = [(e["expiry_date"], e["points"]) for e in events_of(db, "points.expiring")]
    assert got == [("2026-07-16", 150)]
    clock.freeze(_at(date(2026, 6, 20)))
    assert _totals(client, pos, kim)["expiring_30_days"] == 150
    answer = _sale(client, pos, kim, "G-4", 500)  # no points: no activity
    assert answer["totals"]["expiring_30_days"] == 150
