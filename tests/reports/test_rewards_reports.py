"""The rewards reports with every figure worked out by hand: redemptions per period (the Seoul
month boundary), cancellations netted out when they happen, a reissue that is not one, stock,
coupons outstanding as of a date (a gift card's balance then), breakage before and after the
expiry job, the coupons line of the liability; the API with CSV, and the CLI."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from patron import clock
from patron.audit.service import CLI
from patron.config import get_settings
from patron.coupons import lookup
from patron.coupons import use as coupon_use
from patron.coupons.models import Coupon
from patron.coupons.schemas import UseRequest
from patron.db.engine import Database
from patron.errors import Invalid
from patron.members.models import Member
from patron.programs.service import get_program
from patron.reports import finance, period, rewards
from patron.reports.common import day_range
from patron.rewards import catalog, jobs, redeem
from patron.rewards.schemas import RewardCreate
from tests.admin.helpers import STAFF, create_staff, sign_in
from tests.conftest import auth
from tests.factories import make_member, make_program
from tests.tiers._tier_helpers import account, adjust, set_club

URL = "/api/v1/programs/bakery"

AMERICANO: dict[str, Any] = {
    "code": "americano",
    "kind": "goods",
    "names": {"ko": "아메리카노 무료", "en": "Free americano"},
    "points_cost": 1500,
    "tier_costs": {"gold": 1200},
    "value": "1500",
    "stock": 10,
    "valid_days": 30,
}
FIVE_OFF: dict[str, Any] = {
    "code": "five-off",
    "kind": "fixed_discount",
    "names": {"ko": "5,000원 할인", "en": "5,000 KRW off"},
    "points_cost": 4000,
    "value": "5000",
    "discount": "5000",
    "valid_days": 30,
}
GIFT: dict[str, Any] = {
    "code": "gift",
    "kind": "gift_card",
    "names": {"ko": "기프트카드 1만원"},  # no English name: files fall back to Korean
    "points_cost": 8000,
    "gift_value": "10000",
    "valid_days": 60,
}


def utc(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


# Seoul is UTC+9 all year.
JUNE_30_2359 = utc(6, 30, 14, 59)  # 23:59 on 30 June in Seoul
JULY_1_0000 = utc(6, 30, 15)  # 00:00 on 1 July in Seoul


@dataclass
class Story:
    alice: int  # gold
    bob: int
    bob_tier: str | None
    codes: dict[str, str]


def _member(session: Any, member_id: int) -> Member:
    found = session.get(Member, member_id)
    assert found is not None
    return found


def _redeem(db: Database, reward: str, member_id: int, *, quantity: int, store: str | None, now):
    clock.freeze(now)
    with db.unit_of_work() as s:
        program = get_program(s, "bakery")
        _r, issued, _a = redeem.redeem(
            s,
            program,
            reward,
            member=_member(s, member_id),
            quantity=quantity,
            store=store,
            channel="pos",
            actor=CLI,
            now=now,
        )
        return [c.code for c in issued]


def _cancel(db: Database, code: str, *, now: datetime) -> None:
    clock.freeze(now)
    with db.unit_of_work() as s:
        program = get_program(s, "bakery")
        coupon = lookup.find_coupon(s, program, code)
        redeem.cancel(s, program, coupon, reason="changed her mind", actor=CLI, now=now)


def _use(db: Database, code: str, *, now: datetime, **basket: Any) -> None:
    clock.freeze(now)
    with db.unit_of_work() as s:
        req = UseRequest.model_validate({"order": f"o-{code[:6]}-{now:%d}", **basket})
        coupon_use.use(s, get_program(s, "bakery"), code, req, actor=CLI, now=now)


def build(db: Database) -> Story:
    """June–September 2026 at the bakery, through the real services:

    30 Jun 23:59  alice (gold) redeems 2 americanos at mapo: 2,400 points, cost 3,000
    1 Jul 00:00   bob redeems 1 americano at gangnam: 1,500 points, cost 1,500
    1 Jul 12:00   alice redeems 5,000 off (no store): 4,000 points, cost 5,000
    2 Jul 12:00   bob redeems a 10,000 gift card at mapo: 8,000 points
    3 Jul 12:00   alice cancels one americano: 1,200 points and a unit back
    4 Jul 12:00   bob uses his americano at gangnam
    5 Jul 12:00   bob spends 3,000 of the gift card (7,000 left)
    6 Jul 12:00   alice's other americano is reissued (lost): not a cancellation
    31 Jul 00:00  the reissued americano expires (valid 30 days from 30 Jun)
    1 Aug 00:00   5,000 off expires;  1 Sep 00:00  the gift card expires with 7,000 on it
    """
    start = utc(6, 1, 3)
    clock.freeze(start)
    with db.unit_of_work() as s:
        program = make_program(s, now=start, stores=("mapo", "gangnam"))
        set_club(s, program, now=start)
        alice = make_member(s, now=start, program=program, name="Alice").id
        bob = make_member(s, now=start, program=program, name="Bob").id
        adjust(s, program, alice, 3_000, now=start, qualifying=True)  # gold at 3,000
        adjust(s, program, alice, 7_000, now=start)
        adjust(s, program, bob, 20_000, now=start)
        for body in (AMERICANO, FIVE_OFF, GIFT):
            catalog.create_reward(
                s, program, RewardCreate.model_validate(body), actor=CLI, now=start
            )
        assert account(s, program, alice).tier == "gold"
        bob_tier = account(s, program, bob).tier
        assert bob_tier != "gold"

    codes: dict[str, str] = {}
    codes["a1"], codes["a2"] = _redeem(
        db, "americano", alice, quantity=2, store="mapo", now=JUNE_30_2359
    )
    [codes["b1"]] = _redeem(db, "americano", bob, quantity=1, store="gangnam", now=JULY_1_0000)
    [codes["five"]] = _redeem(db, "five-off", alice, quantity=1, store=None, now=utc(7, 1, 3))
    [codes["gift"]] = _redeem(db, "gift", bob, quantity=1, store="mapo", now=utc(7, 2, 3))
    _cancel(db, codes["a1"], now=utc(7, 3, 3))
    _use(db, codes["b1"], now=utc(7, 4, 3), amount="4500", store="gangnam")
    _use(db, codes["gift"], now=utc(7, 5, 3), amount="3000", gift_amount="3000", store="mapo")
    clock.freeze(utc(7, 6, 3))
    with db.unit_of_work() as s:
        program = get_program(s, "bakery")
        old = lookup.find_coupon(s, program, codes["a2"])
        codes["a2new"] = redeem.reissue(
            s, program, old, reason="lost", actor=CLI, now=utc(7, 6, 3)
        ).code
    return Story(alice, bob, bob_tier, codes)


@pytest.fixture
def story(db: Database) -> Story:
    return build(db)


def _range(session: Any, first: date, last: date):
    return day_range(get_program(session, "bakery"), first=first, last=last, now=clock.now())


def _figures(row: Any) -> tuple[int, ...]:
    return (
        row.redemptions,
        row.units,
        row.points,
        int(row.value),
        row.cancelled_units,
        row.cancelled_points,
        int(row.cancelled_value),
        row.net_units,
        row.net_points,
        int(row.net_value),
    )


def test_redemptions_per_month_store_and_tier(db: Database, story: Story) -> None:
    clock.freeze(utc(8, 2, 3))
    with db.unit_of_work(readonly=True) as s:
        program = get_program(s, "bakery")
        rng = _range(s, date(2026, 6, 1), date(2026, 7, 31))
        out = rewards.redemptions_report(
            s, program, rng, now=clock.now(), granularity="month", group_by="store"
        )
        by_tier = rewards.redemptions_report(
            s, program, rng, now=clock.now(), granularity="month", group_by="tier"
        )
    rows = {(r.period, r.reward, r.group): _figures(r) for r in out.rows}
    assert rows == {
        # 23:59 on 30 June in Seoul is June (14:59 UTC).
        ("2026-06", "americano", "mapo"): (1, 2, 2400, 3000, 0, 0, 0, 2, 2400, 3000),
        # The cancellation on 3 July is netted out in July, under the redemption's store.
        ("2026-07", "americano", "mapo"): (0, 0, 0, 0, 1, 1200, 1500, -1, -1200, -1500),
        ("2026-07", "americano", "gangnam"): (1, 1, 1500, 1500, 0, 0, 0, 1, 1500, 1500),
        ("2026-07", "five-off", None): (1, 1, 4000, 5000, 0, 0, 0, 1, 4000, 5000),
        ("2026-07", "gift", "mapo"): (1, 1, 8000, 10000, 0, 0, 0, 1, 8000, 10000),
    }
    assert [r.period for r in out.rows][:1] == ["2026-06"]
    assert _figures(out.totals) == (4, 5, 15900, 19500, 1, 1200, 1500, 4, 14700, 18000)
    assert out.totals.net_value == Decimal("18000")
    by_reward = {r.reward: (r.names, r.kind, r.net_units, int(r.net_value)) for r in out.by_reward}
    assert by_reward == {
        "americano": (AMERICANO["names"], "goods", 2, 3000),
        "five-off": (FIVE_OFF["names"], "fixed_discount", 1, 5000),
        "gift": (GIFT["names"], "gift_card", 1, 10000),
    }
    tiers = {(r.period, r.reward, r.group): (r.units, r.cancelled_units) for r in by_tier.rows}
    assert tiers == {
        ("2026-06", "americano", "gold"): (2, 0),
        ("2026-07", "americano", "gold"): (0, 1),
        ("2026-07", "americano", story.bob_tier): (1, 0),
        ("2026-07", "five-off", "gold"): (1, 0),
        ("2026-07", "gift", story.bob_tier): (1, 0),
    }


def test_the_seoul_day_boundary_and_the_points_agree_with_the_period_report(
    db: Database, story: Story
) -> None:
    clock.freeze(utc(8, 2, 3))
    with db.unit_of_work(readonly=True) as s:
        program = get_program(s, "bakery")
        rng = _range(s, date(2026, 6, 30), date(2026, 7, 1))
        days = rewards.redemptions_report(s, program, rng, now=clock.now())
        assert {(r.period, r.reward): r.units for r in days.rows} == {
            ("2026-06-30", "americano"): 2,
            ("2026-07-01", "americano"): 1,  # 00:00 on 1 July
            ("2026-07-01", "five-off"): 1,
        }
        # Only July 1: nothing from 30 June's last minute.
        july_first = rewards.redemptions_report(
            s, program, _range(s, date(2026, 7, 1), date(2026, 7, 1)), now=clock.now()
        )
        assert july_first.totals.units == 2 and july_first.totals.points == 5500

        # Rewards are the only way points were spent: each day's net points equal the period
        # report's net redeemed (a cancellation's points come back in a reverse entry that day).
        rng = _range(s, date(2026, 6, 1), date(2026, 7, 31))
        ours = rewards.redemptions_report(s, program, rng, now=clock.now())
        theirs = period.period_report(s, program, rng, now=clock.now())
    per_day: dict[str, int] = {}
    for row in ours.rows:
        per_day[row.period] = per_day.get(row.period, 0) + row.net_points
    assert per_day == {r.period: r.net_redeemed for r in theirs.rows if r.net_redeemed}
    assert per_day["2026-07-03"] == -1200
    assert ours.totals.net_points == theirs.totals.net_redeemed == 14700


def test_stock_left_and_its_moves(db: Database, story: Story) -> None:
    clock.freeze(utc(7, 10, 3))
    with db.unit_of_work(readonly=True) as s:
        program = get_program(s, "bakery")
        every = rewards.stock_report(s, program, None, now=clock.now())
        july = rewards.stock_report(
            s, program, _range(s, date(2026, 7, 1), date(2026, 7, 31)), now=clock.now()
        )
    rows = {r.reward: r for r in every.rows}
    americano = rows["americano"]
    # 10 on hand, 2 + 1 redeemed, 1 back from the cancellation; the reissue moves nothing.
    assert (americano.tracked, americano.stock_left) == (True, 8)
    assert (americano.opening, americano.restocked, americano.redeemed) == (0, 10, 3)
    assert (americano.returned, americano.corrected, americano.closing) == (1, 0, 8)
    assert (rows["five-off"].tracked, rows["five-off"].stock_left, rows["five-off"].closing) == (
        False,
        None,
        0,
    )
    in_july = {r.reward: r for r in july.rows}["americano"]
    # Opening on 1 July (Seoul): 10 − the two units of 30 June 23:59.
    assert (in_july.opening, in_july.restocked, in_july.redeemed, in_july.returned) == (8, 0, 1, 1)
    assert in_july.closing == 8


def _outstanding(db: Database, as_of: date) -> tuple[dict[str, tuple[int, int, int]], Any]:
    with db.unit_of_work(readonly=True) as s:
        report = rewards.coupons_report(s, get_program(s, "bakery"), as_of=as_of, now=clock.now())
    return {r.reward: (r.coupons, r.points, int(r.value)) for r in report.rows}, report


def test_coupons_outstanding_as_of_a_date_and_in_the_liability(db: Database, story: Story) -> None:
    clock.freeze(utc(8, 2, 3))
    # End of 30 June: alice's two americanos; bob's (00:00 on 1 July) not yet.
    rows, report = _outstanding(db, date(2026, 6, 30))
    assert rows == {"americano": (2, 2400, 3000)}
    # End of 4 July: one americano cancelled (3 Jul), bob's used (4 Jul 12:00); the gift card
    # still holds its 10,000 (spent from on 5 July).
    rows, report = _outstanding(db, date(2026, 7, 4))
    assert rows == {
        "americano": (1, 1200, 1500),
        "five-off": (1, 4000, 5000),
        "gift": (1, 8000, 10000),
    }
    # End of 5 July: the gift card is worth its 7,000 left.
    rows, report = _outstanding(db, date(2026, 7, 5))
    assert rows["gift"] == (1, 8000, 7000)
    assert (report.coupons, report.points, report.value) == (3, 13200, Decimal("13500"))
    # After the reissue: still one americano (the new code), not two nor none.
    rows, _ = _outstanding(db, date(2026, 7, 6))
    assert rows["americano"] == (1, 1200, 1500)
    # End of 30 July: the reissued americano is valid through 30 July (30 days from 30 June),
    # so it is open at the end of that day and gone at the end of the next.
    assert _outstanding(db, date(2026, 7, 30))[0]["americano"] == (1, 1200, 1500)
    rows, report = _outstanding(db, date(2026, 7, 31))
    assert rows == {"five-off": (1, 4000, 5000), "gift": (1, 8000, 7000)}
    rows, report = _outstanding(db, date(2026, 8, 1))
    assert rows == {"gift": (1, 8000, 7000)}

    with db.unit_of_work(readonly=True) as s:
        program = get_program(s, "bakery")
        owed = finance.liability(s, program, as_of=date(2026, 7, 5), now=clock.now())
    # Points: alice 10,000 − 2,400 − 4,000 + 1,200; bob 20,000 − 1,500 − 8,000.
    assert owed.outstanding_points == 4800 + 10500
    assert owed.outstanding_value == Decimal("15300")
    assert owed.coupons_outstanding == 3
    assert owed.coupons_outstanding_value == Decimal("13500")
    assert owed.total_liability_value == Decimal("28800")

    with db.unit_of_work(readonly=True) as s, pytest.raises(Invalid) as refused:
        rewards.coupons_report(s, get_program(s, "bakery"), as_of=date(2026, 8, 3), now=clock.now())
    assert refused.value.code == "as_of_in_future"


def _breakage(db: Database, first: date, last: date) -> tuple[dict[str, tuple], tuple]:
    with db.unit_of_work(readonly=True) as s:
        out = rewards.breakage_report(
            s, get_program(s, "bakery"), _range(s, first, last), now=clock.now()
        )

    def row(r: Any) -> tuple:
        figures = (r.expired, r.expired_points, int(r.expired_value), r.used, int(r.used_value))
        return (*figures, r.breakage_rate)

    return {r.reward: row(r) for r in out.rows}, row(out.totals)


def test_coupon_breakage_before_and_after_the_expiry_job(db: Database, story: Story) -> None:
    july, august = (date(2026, 7, 1), date(2026, 7, 31)), (date(2026, 8, 1), date(2026, 8, 31))
    clock.freeze(utc(9, 2, 3))
    # The expiry job has not run: coupons past their date count as expired all the same.
    before = (_breakage(db, *july), _breakage(db, *august))
    rows, totals = before[0]
    # July: the reissued americano expired at 00:00 on 31 July; bob's was used on 4 July.
    assert rows == {"americano": (1, 1200, 1500, 1, 1500, Decimal("0.5"))}
    assert totals == (1, 1200, 1500, 1, 1500, Decimal("0.5"))
    rows, totals = before[1]
    # August: 5,000 off (00:00 on 1 August) and the gift card with 7,000 left (1 September is
    # outside) — so only 5,000 off.
    assert rows == {"five-off": (1, 4000, 5000, 0, 0, Decimal("1"))}
    rows, totals = _breakage(db, date(2026, 8, 1), date(2026, 9, 1))
    assert rows["gift"] == (1, 8000, 7000, 0, 0, Decimal("1"))
    assert totals == (2, 12000, 12000, 0, 0, Decimal("1"))

    done = jobs.expire_coupons(db, clock.now())
    assert done.coupons == 3
    assert (_breakage(db, *july), _breakage(db, *august)) == before
    with db.unit_of_work(readonly=True) as s:
        program = get_program(s, "bakery")
        assert s.query(Coupon).filter(Coupon.status == "expired").count() == 3
        stock = {r.reward: r for r in rewards.stock_report(s, program, None, now=clock.now()).rows}
        assert (stock["americano"].returned, stock["americano"].stock_left) == (2, 9)
        # A day's figures do not move when the job writes what already happened.
        owed = finance.liability(s, program, as_of=date(2026, 8, 1), now=clock.now())
        assert (owed.coupons_outstanding, owed.coupons_outstanding_value) == (1, Decimal("7000"))


# --- through HTTP and the CLI -------------------------------------------------------------------


def _csv(body: bytes) -> list[list[str]]:
    text = body.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))


def test_rewards_reports_through_the_api(client, db: Database, story: Story, keys) -> None:
    clock.freeze(utc(8, 2, 3))
    reader = auth(keys["read"])
    query = {"from": "2026-06-01", "to": "2026-07-31", "granularity": "month", "group_by": "store"}
    answer = client.get(f"{URL}/reports/rewards", params=query, headers=reader)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["from"], body["to"], body["currency"]) == ("2026-06-01", "2026-07-31", "KRW")
    assert body["totals"]["net_value"] == "18000" and body["totals"]["units"] == 5

    answer = client.get(f"{URL}/reports/rewards", params={**query, "format": "csv"}, headers=reader)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert (
        'filename="bakery-rewards-2026-06-01-2026-07-31.csv"'
        in (answer.headers["content-disposition"])
    )
    rows = _csv(answer.content)
    assert rows[0] == ["# rewards"]
    header = rows[1]
    assert header[:5] == ["period", "from", "to", "reward", "store"]
    table = [dict(zip(header, r, strict=True)) for r in rows[2:] if r and r[0][:1] in "2t"]
    june = next(r for r in table if r["period"] == "2026-06")
    assert (june["reward"], june["store"], june["units"], june["value"]) == (
        "americano",
        "mapo",
        "2",
        "3000",
    )
    five_off = next(r for r in table if r["reward"] == "five-off")
    assert five_off["store"] == "(none)"
    total = next(r for r in table if r["period"] == "total")
    assert (total["net_units"], total["net_points"], total["net_value"]) == ("4", "14700", "18000")
    by_reward = rows[rows.index(["# by reward"]) + 1 :]
    assert by_reward[0][:3] == ["reward", "name", "kind"]
    assert by_reward[3][:3] == ["gift", "기프트카드 1만원", "gift_card"]

    book = client.get(f"{URL}/reports/rewards", params={**query, "format": "xlsx"}, headers=reader)
    sheets = load_workbook(io.BytesIO(book.content))
    assert sheets.sheetnames == ["Rewards", "By reward"]
    last = list(sheets["Rewards"].iter_rows(values_only=True))[-1]
    assert last[0] == "Total" and last[-1] == 18000  # a number, not text

    coupons_csv = client.get(
        f"{URL}/reports/coupons", params={"as_of": "2026-07-05", "format": "csv"}, headers=reader
    )
    assert coupons_csv.status_code == 200, coupons_csv.text
    lines = _csv(coupons_csv.content)
    assert lines[0] == ["reward", "name", "kind", "coupons", "points", "value"]
    assert lines[-1] == ["total", "", "", "3", "13200", "13500"]

    owed = client.get(f"{URL}/reports/liability", params={"as_of": "2026-07-05"}, headers=reader)
    assert owed.status_code == 200, owed.text
    assert (owed.json()["coupons_outstanding_value"], owed.json()["total_liability_value"]) == (
        "13500",
        "28800",
    )
    owed_csv = _csv(
        client.get(
            f"{URL}/reports/liability",
            params={"as_of": "2026-07-05", "format": "csv"},
            headers=reader,
        ).content
    )
    assert ["total_liability_value", "28800"] in owed_csv

    stock = client.get(f"{URL}/reports/rewards/stock", headers=reader)
    assert stock.status_code == 200, stock.text
    assert stock.json()["from"] is None
    assert {r["reward"]: r["stock_left"] for r in stock.json()["rows"]} == {
        "americano": 8,
        "five-off": None,
        "gift": None,
    }
    breakage = client.get(
        f"{URL}/reports/coupons/breakage", params={"month": "2026-07"}, headers=reader
    )
    assert breakage.status_code == 200, breakage.text
    assert breakage.json()["totals"]["breakage_rate"] == "0.5000"

    # Refusals: 422 naming the field, 404 for an unknown program, never a 500.
    future = client.get(f"{URL}/reports/coupons", params={"as_of": "2026-08-03"}, headers=reader)
    assert future.status_code == 422 and future.json()["error"] == "as_of_in_future"
    backwards = client.get(
        f"{URL}/reports/rewards", params={"from": "2026-07-02", "to": "2026-07-01"}, headers=reader
    )
    assert backwards.status_code == 422 and backwards.json()["error"] == "invalid_range"
    bad = client.get(f"{URL}/reports/rewards", params={"group_by": "colour"}, headers=reader)
    assert bad.status_code == 422
    missing = client.get("/api/v1/programs/nowhere/reports/coupons/breakage", headers=reader)
    assert missing.status_code == 404
    assert client.get(f"{URL}/reports/coupons").status_code == 401

    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/programs/{code}/reports/rewards",
        "/api/v1/programs/{code}/reports/rewards/stock",
        "/api/v1/programs/{code}/reports/coupons",
        "/api/v1/programs/{code}/reports/coupons/breakage",
    ):
        assert {"200", "404", "422"} <= set(paths[path]["get"]["responses"]), path


def test_rewards_reports_on_the_command_line(
    db: Database, story: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    from patron.cli import app, console

    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr(console, "width", 250)
    get_settings.cache_clear()
    clock.freeze(utc(8, 2, 3))
    cli = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = cli.invoke(app, ["report", *args, "--database-url", db.url])
        assert result.exit_code == code, (result.output, result.exception)
        return result.output

    base = ["--program", "bakery"]
    months = ["--from", "2026-06-01", "--to", "2026-07-31", "--granularity", "month"]
    table = run("rewards", *base, *months)
    assert "americano" in table and "18,000" in table
    data = json.loads(run("coupons", *base, "--as-of", "2026-07-05", "--format", "json"))
    assert (data["coupons"], data["value"]) == (3, "13500")
    out = run("coupons-breakage", *base, "--month", "2026-07", "--format", "csv")
    assert list(csv.reader(io.StringIO(out)))[-1][-1] == "0.5000"
    assert "americano" in run("rewards-stock", *base)
    assert "as_of_in_future" in run("coupons", *base, "--as-of", "2030-01-01", code=2)
    get_settings.cache_clear()


def test_the_admin_dashboard_and_liability_page_show_rewards(
    client, db: Database, story: Story
) -> None:
    def shown(page: str, name: str) -> str:
        found = re.search(rf'data-testid="{name}">([^<]*)<', page)
        assert found, f"no {name} on the page"
        return html.unescape(found.group(1))

    clock.freeze(utc(7, 10, 3))
    create_staff(db, now=clock.now())
    sign_in(client, STAFF["owner"][0])
    page = client.get("/admin/reports").text
    # July: americano 1 − 1 cancelled, 5,000 off, the gift card; open today: 1 + 1 + 1.
    assert shown(page, "rewards-units") == "2"
    assert shown(page, "rewards-cost") == "₩15,000"
    assert (shown(page, "coupons-outstanding"), shown(page, "coupons-value")) == ("3", "₩13,500")
    assert "Free americano" in page and "기프트카드 1만원" in page

    page = client.get("/admin/reports/liability?as_of=2026-07-05").text
    assert shown(page, "total-liability") == "₩28,800"
