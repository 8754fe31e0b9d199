"""Tier reads: progress, near-miss and what-if, through HTTP and the CLI, on SQLite and PostgreSQL.

The club is seed S2: five tiers on points earned per calendar half-year, in Asia/Seoul. Tiers
and policies are written straight to the tables (the setup API is tested with the write side);
activity goes through the real purchase service.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from patron import clock
from patron.audit.service import CLI
from patron.config import get_settings
from patron.db.engine import Database
from patron.ledger.models import Account
from patron.members.schemas import MemberRef
from patron.programs.models import Program
from patron.sales import purchases
from patron.sales.schemas import PurchaseRequest
from patron.tiers.models import TierDefinition, TierPolicy
from tests.conftest import auth
from tests.factories import SHANGHAI, make_member, make_program

SEOUL = ZoneInfo("Asia/Seoul")
NAMES = {
    "member": ("Member", "일반", "普通"),
    "silver": ("Silver", "실버", "银卡"),
    "gold": ("Gold", "골드", "金卡"),
    "vip": ("VIP", "VIP", "贵宾"),
    "vvip": ("VVIP", "VVIP", "至尊"),
}
FIVE_TIERS = [
    ("member", 0, "1"),
    ("silver", 1000, "1.2"),
    ("gold", 3000, "1.5"),
    ("vip", 6000, "2"),
    ("vvip", 10000, "3"),
]


def seoul(*args: int) -> datetime:
    """A local Seoul wall-clock time, as UTC."""
    return datetime(*args, tzinfo=SEOUL).astimezone(UTC)  # type: ignore[misc]


def set_up_tiers(
    session: Session,
    program: Program,
    *,
    now: datetime,
    metric: str = "points",
    window: str = "half_year",
    tiers: list[tuple[str, int, str]] = FIVE_TIERS,
) -> None:
    # Upgrades at the next period: purchases here never move a tier (nor its multiplier).
    session.add(
        TierPolicy(
            program_id=program.id,
            metric=metric,
            window=window,
            rolling_months=12,
            upgrade="next_period",
            downgrade="one_level",
            grace_periods=1,
            manual="keep",
            updated_at=now,
        )
    )
    for rank, (code, threshold, multiplier) in enumerate(tiers):
        en, ko, zh = NAMES.get(code, (code.title(), code, code))
        session.add(
            TierDefinition(
                program_id=program.id,
                code=code,
                names={"en": en, "ko": ko, "zh": zh},
                rank=rank,
                threshold=threshold,
                multiplier=Decimal(multiplier),
                extra_expiry_months=rank * 6,
                benefits=[f"{rank * 5}% off"] if rank else [],
            )
        )
    session.flush()


def buy(
    session: Session, program: Program, member_id: int, amount: str | int, at: datetime, ext: str
) -> None:
    purchases.purchase(
        session,
        program,
        PurchaseRequest(
            external_id=ext,
            member=MemberRef(id=member_id),
            amount=Decimal(str(amount)),
            occurred_at=at,
        ),
        actor=CLI,
        now=at,
    )


def make_qualifying(session: Session) -> None:
    # Independent of whether earn entries mark their points as qualifying yet.
    session.execute(text("UPDATE entries SET qualifying = points WHERE kind = 'earn'"))


def set_tier(
    session: Session, program: Program, member_id: int, tier: str | None, **extra: Any
) -> None:
    session.execute(
        update(Account)
        .where(Account.program_id == program.id, Account.member_id == member_id)
        .values(tier=tier, **extra)
    )


@pytest.fixture
def club(db: Database, frozen: datetime) -> dict[str, int]:
    """The bakery (10 points per 1,000 KRW) as the S2 club, with five members.

    points in 2025H1 / 2025H2 (last window) / 2026H1 so far (now: 2 March 2026), and tier today:
      minji  (A)      -  / 3,100 / 2,800   silver   a few points short of gold now
      junho  (B)  4,000  / 2,500 / 1,500   gold     needs 1,500 by 30 June to keep gold
      seoyeon (C)     -  /12,000 /10,500   vvip     at the top
      idle   (D)      -  /     - /     -   (none)   never bought; name tries a formula
      jiho   (E)    200  /   900 /   950   member   50 short of silver
    """
    with db.unit_of_work() as session:
        bakery = make_program(session, now=seoul(2025, 1, 1, 0, 0))
        set_up_tiers(session, bakery, now=frozen)
        people = {
            "minji": make_member(
                session, now=frozen, program=bakery, name="Kim Minji", phone="010-1234-5678"
            ),
            "junho": make_member(session, now=frozen, program=bakery, name="Lee Junho"),
            "seoyeon": make_member(session, now=frozen, program=bakery, name="Park Seoyeon"),
            "idle": make_member(session, now=frozen, program=bakery, name='=HYPERLINK("x")'),
            "jiho": make_member(session, now=frozen, program=bakery, name="Choi Jiho"),
        }
        ids = {key: m.id for key, m in people.items()}
        for member, amount, at in [
            ("junho", 400_000, seoul(2025, 5, 20, 18, 0)),
            ("jiho", 20_000, seoul(2025, 3, 1, 10, 0)),
            ("minji", 310_000, seoul(2025, 10, 15, 13, 0)),
            ("junho", 250_000, seoul(2025, 11, 3, 9, 30)),
            ("seoyeon", 1_200_000, seoul(2025, 12, 24, 20, 0)),
            # The last minute of 2025H2 in Seoul (14:59 UTC): still the last window.
            ("jiho", 90_000, seoul(2025, 12, 31, 23, 59)),
            # The first instant of 2026H1 in Seoul (15:00 UTC on 31 December): the current one.
            ("minji", 80_000, seoul(2026, 1, 1, 0, 0)),
            ("minji", 200_000, seoul(2026, 2, 14, 19, 0)),
            ("junho", 150_000, seoul(2026, 2, 1, 12, 0)),
            ("seoyeon", 1_050_000, seoul(2026, 1, 20, 15, 0)),
            ("jiho", 95_000, seoul(2026, 3, 2, 11, 0)),
        ]:
            buy(session, bakery, ids[member], amount, at, f"{member}-{at:%Y%m%d%H%M}")
        make_qualifying(session)
        set_tier(
            session,
            bakery,
            ids["minji"],
            "silver",
            tier_since=seoul(2025, 7, 1, 0, 0),
            tier_valid_until=seoul(2026, 7, 1, 0, 0),
        )
        set_tier(session, bakery, ids["junho"], "gold")
        set_tier(session, bakery, ids["seoyeon"], "vvip")
        set_tier(session, bakery, ids["jiho"], "member")
    return ids


@pytest.fixture
def reader(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["read"])


def tier_of(client, headers, member_id: int, program: str = "bakery") -> dict[str, Any]:
    response = client.get(f"/api/v1/programs/{program}/members/{member_id}/tier", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def near_miss(client, headers, **params: Any) -> dict[str, Any]:
    response = client.get("/api/v1/programs/bakery/tiers/near-miss", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def short_list(report: dict[str, Any]) -> list[tuple[int, str, int, str]]:
    return [
        (r["member_id"], r["target_tier"], r["short_by"], r["short_by_percent"])
        for r in report["rows"]
    ]


def parse_csv(body: bytes) -> list[dict[str, str]]:
    assert body.startswith("\ufeff".encode())
    return list(csv.DictReader(io.StringIO(body.decode("utf-8").removeprefix("\ufeff"))))


# --- progress ---------------------------------------------------------------------------------


def test_progress_of_a_member_a_few_points_short(client, keys, club):
    out = tier_of(client, auth(keys["pos"]), club["minji"])
    assert out["metric"] == "points" and out["unit"] == "points"
    assert out["tier"] == {
        "code": "silver",
        "names": {"en": "Silver", "ko": "실버", "zh": "银卡"},
        "rank": 1,
        "threshold": 1000,
        "multiplier": "1.2",
        "extra_expiry_months": 6,
        "expiry": None,  # the program's policy
        "benefits": ["5% off"],
    }
    assert out["tier_code"] == "silver"
    assert out["since"] == "2025-06-30T15:00:00Z"
    assert out["valid_until"] == "2026-06-30T15:00:00Z"
    assert (out["manual"], out["manual_until"]) == (False, None)
    assert out["window"] == {
        "kind": "half_year",
        "key": "2026H1",
        "start": "2025-12-31T15:00:00Z",
        "end": "2026-06-30T15:00:00Z",
        "last_day": "2026-06-30",
    }
    # 80,000 at 00:00 on 1 January (Seoul) counts; 310,000 in October 2025 does not.
    assert out["value"] == 2800 and out["value_money"] is None
    assert out["next_tier"]["code"] == "gold"
    assert (out["to_next"], out["at_top"], out["to_keep"]) == (200, False, 0)
    assert out["projected_tier"]["code"] == "silver"


def test_progress_to_keep_to_the_top_and_with_no_tier(client, keys, club):
    reader = auth(keys["read"])
    gold = tier_of(client, reader, club["junho"])
    # Earning silver numbers as a gold member: the next goal is above gold, and 1,500 more by
    # 30 June keeps gold.
    assert (gold["value"], gold["tier"]["code"], gold["projected_tier"]["code"]) == (
        1500,
        "gold",
        "silver",
    )
    assert (gold["next_tier"]["code"], gold["to_next"], gold["to_keep"]) == ("vip", 4500, 1500)

    top = tier_of(client, reader, club["seoyeon"])
    assert (top["value"], top["next_tier"], top["at_top"], top["to_next"], top["to_keep"]) == (
        10500,
        None,
        True,
        0,
        0,
    )
    assert top["projected_tier"]["code"] == "vvip"

    idle = tier_of(client, reader, club["idle"])
    assert (idle["tier"], idle["tier_code"], idle["value"]) == (None, None, 0)
    assert idle["projected_tier"]["code"] == "member"
    assert (idle["next_tier"]["code"], idle["to_next"], idle["to_keep"]) == ("silver", 1000, 0)


def test_progress_shows_a_manual_tier(client, keys, club, db: Database):
    with db.unit_of_work() as session:
        bakery = session.scalars(select(Program)).one()
        set_tier(
            session,
            bakery,
            club["minji"],
            "gold",
            tier_manual=True,
            tier_manual_until=seoul(2026, 7, 1, 0, 0),
        )
    out = tier_of(client, auth(keys["read"]), club["minji"])
    assert (out["tier"]["code"], out["manual"], out["manual_until"]) == (
        "gold",
        True,
        "2026-06-30T15:00:00Z",
    )
    # Appealed into gold at 2,800: 200 more by 30 June keeps it on the numbers alone.
    assert (out["to_keep"], out["next_tier"]["code"], out["to_next"]) == (200, "vip", 3200)


def test_the_last_minute_of_30_june_in_seoul(client, keys, db: Database, frozen):
    """Seed S2's member a few points short, and the window edge at 23:59 on 30 June in Seoul."""
    with db.unit_of_work() as session:
        bakery = make_program(session, now=frozen)
        set_up_tiers(session, bakery, now=frozen)
        member = make_member(session, now=frozen, program=bakery, name="Han Sora").id
        buy(session, bakery, member, 70_000, seoul(2026, 6, 1, 12, 0), "S-1")
        buy(session, bakery, member, 29_000, seoul(2026, 6, 30, 23, 59), "S-2")
        make_qualifying(session)
        set_tier(session, bakery, member, "member")
    reader = auth(keys["read"])

    clock.freeze(seoul(2026, 6, 30, 23, 59, 59))
    before = tier_of(client, reader, member)
    assert (before["window"]["key"], before["window"]["last_day"]) == ("2026H1", "2026-06-30")
    assert (before["value"], before["next_tier"]["code"], before["to_next"]) == (990, "silver", 10)

    clock.freeze(seoul(2026, 7, 1, 0, 0))  # 15:00 UTC on 30 June
    after = tier_of(client, reader, member)
    assert after["window"] == {
        "kind": "half_year",
        "key": "2026H2",
        "start": "2026-06-30T15:00:00Z",
        "end": "2026-12-31T15:00:00Z",
        "last_day": "2026-12-31",
    }
    assert (after["value"], after["to_next"]) == (0, 1000)
    last = near_miss(client, reader, window="last", within=10)
    assert last["window"]["key"] == "2026H1"
    assert short_list(last) == [(member, "silver", 10, "1.00")]
    assert near_miss(client, reader, window="current", within=10)["rows"] == []

    with db.unit_of_work() as session:
        bakery = session.scalars(select(Program)).one()
        buy(session, bakery, member, 10_000, seoul(2026, 7, 1, 0, 0, 30), "S-3")
        make_qualifying(session)
    assert tier_of(client, reader, member)["value"] == 100


def test_spend_progress_in_money_with_two_decimals(client, keys, db: Database, frozen):
    with db.unit_of_work() as session:
        shop = make_program(session, now=frozen, base=SHANGHAI, stores=())
        set_up_tiers(
            session,
            shop,
            now=frozen,
            metric="spend",
            window="year",
            tiers=[("regular", 0, "1"), ("silver", 50_000, "1.5"), ("gold", 200_000, "2")],
        )
        member = make_member(session, now=frozen, program=shop, name="王芳").id
        buy(session, shop, member, "123.45", frozen, "SH-1")
        set_tier(session, shop, member, "regular")
    reader = auth(keys["read"])
    out = tier_of(client, reader, member, program="shanghai")
    assert (out["metric"], out["unit"], out["window"]["key"]) == ("spend", "CNY", "2026")
    assert (out["value"], out["value_money"]) == (12345, "123.45")
    assert (out["to_next"], out["to_next_money"]) == (37655, "376.55")
    assert (out["to_keep"], out["to_keep_money"]) == (0, "0.00")

    response = client.get(
        "/api/v1/programs/shanghai/tiers/near-miss",
        headers=reader,
        params={"within_percent": "75.31", "format": "csv"},
    )
    assert response.status_code == 200, response.text
    assert parse_csv(response.content) == [
        {
            "member_id": str(member),
            "name": "王芳",
            "phone": "",
            "current_tier": "regular",
            "window": "2026",
            "unit": "CNY",
            "value": "123.45",
            "target_tier": "silver",
            "threshold": "500.00",
            "short_by": "376.55",
            "short_by_percent": "75.31",
        }
    ]
    # 376.55 of 500.00 is exactly 75.31 %: one hundredth less leaves the member off.
    response = client.get(
        "/api/v1/programs/shanghai/tiers/near-miss",
        headers=reader,
        params={"within_percent": "75.30"},
    )
    assert response.json()["rows"] == []


# --- near-miss --------------------------------------------------------------------------------


def test_near_miss_in_the_current_window_by_points(client, keys, club):
    reader = auth(keys["read"])
    report = near_miss(client, reader, within=200)
    assert (report["window"]["key"], report["metric"], report["count"]) == ("2026H1", "points", 2)
    assert short_list(report) == [
        (club["jiho"], "silver", 50, "5.00"),
        (club["minji"], "gold", 200, "6.67"),
    ]
    minji = report["rows"][1]
    assert minji == {
        "member_id": club["minji"],
        "name": "Kim Minji",
        "phone": "+821012345678",
        "current_tier": "silver",
        "value": 2800,
        "value_money": None,
        "target_tier": "gold",
        "threshold": 3000,
        "threshold_money": None,
        "short_by": 200,
        "short_by_money": None,
        "short_by_percent": "6.67",
    }
    assert short_list(near_miss(client, reader, within=199)) == [
        (club["jiho"], "silver", 50, "5.00")
    ]
    # Members who never bought are 1,000 short of silver: on the list once the bound reaches it.
    assert short_list(near_miss(client, reader, within=1000)) == [
        (club["jiho"], "silver", 50, "5.00"),
        (club["minji"], "gold", 200, "6.67"),
        (club["idle"], "silver", 1000, "100.00"),
    ]
    # A gold member with silver numbers is measured against gold (the tier above silver).
    assert short_list(near_miss(client, reader, within=1500))[2] == (
        club["junho"],
        "gold",
        1500,
        "50.00",
    )


def test_near_miss_by_percent_is_exact_at_the_bound(client, keys, club):
    reader = auth(keys["read"])
    assert short_list(near_miss(client, reader, within_percent=5)) == [
        (club["jiho"], "silver", 50, "5.00")
    ]  # 50 of 1,000 is exactly 5 %
    assert short_list(near_miss(client, reader, within_percent="6.66")) == [
        (club["jiho"], "silver", 50, "5.00")
    ]
    assert [r[0] for r in short_list(near_miss(client, reader, within_percent="6.67"))] == [
        club["jiho"],
        club["minji"],
    ]  # 200 of 3,000 = 6.666… %
    assert near_miss(client, reader, within_percent="4.99")["rows"] == []
    # Either bound is enough.
    assert [r[0] for r in short_list(near_miss(client, reader, within=0, within_percent=5))] == [
        club["jiho"]
    ]
    assert [
        r[0] for r in short_list(near_miss(client, reader, within=200, within_percent="0"))
    ] == [club["jiho"], club["minji"]]


def test_near_miss_in_the_last_window_as_csv(client, keys, club):
    reader = auth(keys["read"])
    response = client.get(
        "/api/v1/programs/bakery/tiers/near-miss",
        headers=reader,
        params={"window": "last", "within": 500, "format": "csv"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="bakery-near-miss-2025H2.csv"' in response.headers["content-disposition"]
    rows = parse_csv(response.content)
    # jiho's 900 include the purchase at 23:59 on 31 December (Seoul).
    assert rows == [
        {
            "member_id": str(club["jiho"]),
            "name": "Choi Jiho",
            "phone": "",
            "current_tier": "member",
            "window": "2025H2",
            "unit": "points",
            "value": "900",
            "target_tier": "silver",
            "threshold": "1000",
            "short_by": "100",
            "short_by_percent": "10.00",
        },
        {
            "member_id": str(club["junho"]),
            "name": "Lee Junho",
            "phone": "",
            "current_tier": "gold",
            "window": "2025H2",
            "unit": "points",
            "value": "2500",
            "target_tier": "gold",
            "threshold": "3000",
            "short_by": "500",
            "short_by_percent": "16.67",
        },
    ]
    by_percent = client.get(
        "/api/v1/programs/bakery/tiers/near-miss",
        headers=reader,
        params={"window": "last", "within_percent": 50, "format": "csv"},
    )
    rows = parse_csv(by_percent.content)
    # minji: 3,100 earned gold, 2,900 short of VIP (48.33 %); the idle member is 100 % short.
    assert [
        (r["member_id"], r["target_tier"], r["short_by"], r["short_by_percent"]) for r in rows
    ] == [
        (str(club["jiho"]), "silver", "100", "10.00"),
        (str(club["junho"]), "gold", "500", "16.67"),
        (str(club["minji"]), "vip", "2900", "48.33"),
    ]

    everyone = parse_csv(
        client.get(
            "/api/v1/programs/bakery/tiers/near-miss",
            headers=reader,
            params={"window": "last", "within": 1000, "format": "csv"},
        ).content
    )
    idle = next(r for r in everyone if r["member_id"] == str(club["idle"]))
    assert idle["name"] == '\'=HYPERLINK("x")'  # never a live formula in a spreadsheet
    assert (idle["value"], idle["short_by"], idle["current_tier"]) == ("0", "1000", "")


def test_near_miss_validation_scope_and_missing_setup(client, keys, club, db: Database, frozen):
    reader = auth(keys["read"])
    url = "/api/v1/programs/bakery/tiers/near-miss"
    for params in (
        {"window": "previous", "within": 10},
        {"within": -1},
        {"within_percent": -1},
        {"within_percent": 101},
        {"within": "ten"},
        {"within": 10, "format": "xlsx"},
    ):
        response = client.get(url, headers=reader, params=params)
        assert (response.status_code, response.json()["error"]) == (422, "validation_error"), params
    response = client.get(url, headers=reader)
    assert (response.status_code, response.json()["error"]) == (422, "near_miss_bound_missing")
    response = client.get(url, headers=auth(keys["pos"]), params={"within": 10})
    assert (response.status_code, response.json()["error"]) == (403, "missing_scope")
    assert client.get(url, headers=auth(keys["admin"]), params={"within": 10}).status_code == 200

    with db.unit_of_work() as session:
        make_program(session, now=frozen, code="plain", stores=())
    response = client.get(
        "/api/v1/programs/plain/tiers/near-miss", headers=reader, params={"within": 10}
    )
    assert (response.status_code, response.json()["error"]) == (404, "tiers_not_configured")
    response = client.get(
        "/api/v1/programs/nowhere/tiers/near-miss", headers=reader, params={"within": 10}
    )
    assert response.status_code == 404


def test_progress_not_found(client, keys, club, db: Database, frozen):
    reader = auth(keys["read"])
    with db.unit_of_work() as session:
        plain = make_program(session, now=frozen, code="plain", stores=())
        member = make_member(session, now=frozen, program=plain, name="Yoon Hana").id
    response = client.get(f"/api/v1/programs/plain/members/{member}/tier", headers=reader)
    assert (response.status_code, response.json()["error"]) == (404, "tiers_not_configured")
    # Enrolled in plain, not in the bakery.
    response = client.get(f"/api/v1/programs/bakery/members/{member}/tier", headers=reader)
    assert (response.status_code, response.json()["error"]) == (404, "account_not_found")
    response = client.get("/api/v1/programs/bakery/members/999999/tier", headers=reader)
    assert (response.status_code, response.json()["error"]) == (404, "account_not_found")
    response = client.get("/api/v1/programs/bakery/members/0/tier", headers=reader)
    assert response.status_code == 422


# --- what-if ----------------------------------------------------------------------------------


def what_if(client, headers, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/v1/programs/bakery/tiers/what-if", headers=headers, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def counts(out: dict[str, Any]) -> list[tuple[str, int, int, int]]:
    return [(r["tier"], r["today"], r["proposed"], r["change"]) for r in out["rows"]]


def test_what_if_lower_thresholds_on_the_last_window(client, keys, club):
    out = what_if(client, auth(keys["read"]), {"thresholds": {"silver": 800, "gold": 2500}})
    assert (out["window"]["key"], out["metric"], out["members"]) == ("2025H2", "points", 5)
    # 2025H2: minji 3,100 → gold, junho 2,500 → gold, seoyeon → vvip, jiho 900 → silver.
    assert counts(out) == [
        ("member", 2, 1, -1),
        ("silver", 1, 1, 0),
        ("gold", 1, 2, 1),
        ("vip", 0, 0, 0),
        ("vvip", 1, 1, 0),
    ]
    assert (out["moved_up"], out["moved_down"], out["unchanged"]) == (2, 0, 3)
    silver = out["rows"][1]
    assert (silver["threshold_today"], silver["threshold_proposed"], silver["names"]["ko"]) == (
        1000,
        800,
        "실버",
    )


def test_what_if_higher_thresholds_move_members_down(client, keys, club):
    out = what_if(client, auth(keys["admin"]), {"thresholds": {"gold": 3200, "vvip": 13000}})
    assert counts(out) == [
        ("member", 2, 2, 0),
        ("silver", 1, 2, 1),
        ("gold", 1, 0, -1),
        ("vip", 0, 1, 1),
        ("vvip", 1, 0, -1),
    ]
    assert (out["moved_up"], out["moved_down"], out["unchanged"]) == (0, 2, 3)


def test_what_if_another_window_and_metric(client, keys, club):
    reader = auth(keys["read"])
    year = what_if(client, reader, {"thresholds": {}, "window": "year"})
    # 2025: minji 3,100 gold, junho 6,500 vip, seoyeon 12,000 vvip, jiho 1,100 silver.
    assert year["window"] == {
        "kind": "year",
        "key": "2025",
        "start": "2024-12-31T15:00:00Z",
        "end": "2025-12-31T15:00:00Z",
        "last_day": "2025-12-31",
    }
    assert counts(year) == [
        ("member", 2, 1, -1),
        ("silver", 1, 1, 0),
        ("gold", 1, 1, 0),
        ("vip", 0, 1, 1),
        ("vvip", 1, 1, 0),
    ]
    assert (year["moved_up"], year["moved_down"]) == (3, 0)

    spend = what_if(
        client,
        reader,
        {
            "metric": "spend",
            "thresholds": {"silver": 100_000, "gold": 300_000, "vip": 600_000, "vvip": 1_000_000},
        },
    )
    assert (spend["metric"], spend["unit"]) == ("spend", "KRW")
    # Same counts as today, different people: minji up to gold, junho down to silver.
    assert counts(spend) == [
        ("member", 2, 2, 0),
        ("silver", 1, 1, 0),
        ("gold", 1, 1, 0),
        ("vip", 0, 0, 0),
        ("vvip", 1, 1, 0),
    ]
    assert (spend["moved_up"], spend["moved_down"], spend["unchanged"]) == (1, 1, 3)


def test_what_if_rejects_bad_proposals(client, keys, club, db: Database, frozen):
    reader = auth(keys["read"])
    url = "/api/v1/programs/bakery/tiers/what-if"
    for body, code in [
        ({"thresholds": {"platinum": 5000}}, "unknown_tier"),
        ({"thresholds": {"silver": 5000}}, "thresholds_not_ordered"),
        ({"thresholds": {"member": 10}}, "thresholds_not_ordered"),
        ({"thresholds": {"silver": -1}}, "validation_error"),
        ({"thresholds": {"vvip": 10**16}}, "validation_error"),
        ({"metric": "visits", "thresholds": {"silver": 5}}, "thresholds_incomplete"),
        ({"thresholds": {"silver": 800}, "window": "month"}, "validation_error"),
        ({"thresholds": {"silver": 800}, "extra": 1}, "validation_error"),
        ({"thresholds": {"silver": "many"}}, "validation_error"),
        ({}, "validation_error"),
    ]:
        response = client.post(url, headers=reader, json=body)
        assert (response.status_code, response.json()["error"]) == (422, code), body
    assert client.post(url, headers=auth(keys["pos"]), json={"thresholds": {}}).status_code == 403
    with db.unit_of_work() as session:
        make_program(session, now=frozen, code="plain", stores=())
    response = client.post(
        "/api/v1/programs/plain/tiers/what-if", headers=reader, json={"thresholds": {}}
    )
    assert (response.status_code, response.json()["error"]) == (404, "tiers_not_configured")


# --- CLI --------------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    from patron.cli import console

    monkeypatch.setenv("PATRON_DATABASE_URL", "sqlite:///unused-by-these-tests.db")
    monkeypatch.setattr(console, "_width", 200)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def run(cli: CliRunner, db: Database, *args: str, code: int = 0) -> str:
    from patron.cli import app

    result = cli.invoke(app, ["tiers", *args, "--database-url", db.url])
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


def test_cli_near_miss_what_if_and_progress(cli, db: Database, club, tmp_path: Path):
    out = tmp_path / "near.csv"
    run(
        cli,
        db,
        "near-miss",
        "--program",
        "bakery",
        "--window",
        "last",
        "--within",
        "500",
        "--format",
        "csv",
        "--output",
        str(out),
    )
    rows = parse_csv(out.read_bytes())
    assert [(r["member_id"], r["short_by"]) for r in rows] == [
        (str(club["jiho"]), "100"),
        (str(club["junho"]), "500"),
    ]
    printed = run(cli, db, "near-miss", "--program", "bakery", "--within-percent", "6.67")
    assert "Kim Minji" in printed and "Choi Jiho" in printed and "2 member(s)" in printed
    as_csv = run(cli, db, "near-miss", "--program", "bakery", "--within", "50", "--format", "csv")
    assert next(csv.DictReader(io.StringIO(as_csv)))["name"] == "Choi Jiho"

    shown = run(
        cli,
        db,
        "what-if",
        "--program",
        "bakery",
        "--threshold",
        "silver=800",
        "--threshold",
        "gold=2500",
    )
    assert "2025H2" in shown and "5 member(s): 2 would move up, 0 down, 3 unchanged" in shown
    assert "invalid_threshold" in run(
        cli, db, "what-if", "--program", "bakery", "--threshold", "silver", code=2
    )
    assert "unknown_tier" in run(
        cli,
        db,
        "what-if",
        "--program",
        "bakery",
        "--threshold",
        "gold=1",
        "--threshold",
        "iron=5",
        code=2,
    )

    progress = run(cli, db, "progress", "--program", "bakery", "--member", str(club["minji"]))
    assert "tier silver" in progress and "2,800 points so far" in progress
    assert "to reach gold: 200 points more" in progress
    top = run(cli, db, "progress", "--program", "bakery", "--member", str(club["seoyeon"]))
    assert "at the top tier" in top
    assert "near_miss_bound_missing" in run(cli, db, "near-miss", "--program", "bakery", code=2)
