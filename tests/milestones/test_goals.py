"""Each kind of goal against hand-computed expectations, with purchases on both sides of month
boundaries in the program's timezone (Asia/Seoul, UTC+9): the evaluation job awards once, with
its points through the ledger and one milestone.achieved event per achievement."""

from __future__ import annotations

from sqlalchemy import func, select

from patron import clock
from patron.events.models import DomainEvent
from patron.milestones.models import MilestoneAchievement
from tests.milestones.conftest import P, buy, goal, run, seoul

KIM, LEE = "010-1234-5678", "010-2222-3333"


def _progress(client, reader, member_id: int, lang: str = "en") -> dict[str, dict]:
    response = client.get(f"{P}/members/{member_id}/milestones?lang={lang}", headers=reader)
    assert response.status_code == 200, response.text
    return {i["code"]: i for i in response.json()["items"]}


def _balance(client, reader, member_id: int) -> int:
    return client.get(f"{P}/members/{member_id}/account", headers=reader).json()["totals"][
        "balance"
    ]


def test_visits_in_a_calendar_month_repeat_monthly(db, client, pos, admin, reader, kim, lee):
    clock.freeze(seoul(2026, 4, 1, 0, 30))  # 30 minutes into April in Seoul (still 31 March UTC)
    goal(client, admin, code="three-visits", kind="visits", target=3, window="month",
         repeat=True, points=100)  # fmt: skip
    # Kim: 23:30 on 28 Feb (February), then 00:10 on 1 March — 28 February in UTC — 5 March and
    # 23:59 on 31 March (14:59 UTC): three visits in March in Seoul, two in UTC.
    for ref, at in [("K1", seoul(2026, 2, 28, 23, 30)), ("K2", seoul(2026, 3, 1, 0, 10)),
                    ("K3", seoul(2026, 3, 5, 12, 0)), ("K4", seoul(2026, 3, 31, 23, 59))]:  # fmt: skip
        buy(client, pos, KIM, ref, at)
    # Lee: two visits in March, one on 1 April: three in no single month.
    for ref, at in [("L1", seoul(2026, 3, 2, 9, 0)), ("L2", seoul(2026, 3, 20, 9, 0)),
                    ("L3", seoul(2026, 4, 1, 0, 5))]:  # fmt: skip
        buy(client, pos, LEE, ref, at, amount=5000)
    kim_before = _balance(client, reader, kim["id"])

    assert run(client, admin) == {"three-visits": {"2026-03": 1, "2026-04": 0}}
    assert run(client, admin) == {"three-visits": {"2026-03": 0, "2026-04": 0}}  # once
    assert _balance(client, reader, kim["id"]) == kim_before + 100
    with db.unit_of_work(readonly=True) as session:
        rows = session.execute(
            select(MilestoneAchievement.member_id, MilestoneAchievement.period,
                   MilestoneAchievement.value, MilestoneAchievement.points)
        ).all()  # fmt: skip
        assert rows == [(kim["id"], "2026-03", 3, 100)]
        events = session.scalars(
            select(DomainEvent).where(DomainEvent.kind == "milestone.achieved")
        ).all()
        assert [(e.member_id, e.payload["milestone"], e.payload["period"], e.payload["value"],
                 e.payload["target"], e.payload["points"]) for e in events] == [
            (kim["id"], "three-visits", "2026-03", 3, 3, 100)
        ]  # fmt: skip
        adjusts = session.scalar(
            select(func.count()).where(DomainEvent.kind == "points.adjusted",
                                       DomainEvent.member_id == kim["id"])
        )  # fmt: skip
        assert adjusts == 1

    # April so far: Lee has one visit (00:05 on 1 April), Kim none; Kim's March badge shows.
    lee_goal = _progress(client, reader, lee["id"], "zh")["three-visits"]
    assert (lee_goal["period"], lee_goal["value"], lee_goal["target"], lee_goal["percent"]) == (
        "2026-04",
        1,
        3,
        33,
    )
    assert not lee_goal["achieved"] and lee_goal["times"] == 0
    kim_goal = _progress(client, reader, kim["id"])["three-visits"]
    assert (kim_goal["value"], kim_goal["achieved"], kim_goal["times"]) == (0, False, 1)

    # May: the worker's run (once per hour) sees April's three visits of Lee (a new period).
    clock.freeze(seoul(2026, 5, 1, 8, 0))
    for ref, at in [("L4", seoul(2026, 4, 10, 9, 0)), ("L5", seoul(2026, 4, 30, 23, 50))]:
        buy(client, pos, LEE, ref, at, amount=5000)
    from patron.milestones.jobs import run_due

    assert [i.achieved for r in run_due(db, now=clock.now()) for i in r.items] == [1, 0]
    assert run_due(db, now=clock.now()) == []  # this hour's run is done
    assert _progress(client, reader, lee["id"])["three-visits"]["times"] == 1


def test_stores_streak_spend_points_and_rolling(db, client, pos, admin, reader, kim, lee):
    clock.freeze(seoul(2026, 3, 10, 12, 0))
    for code in ("hongdae", "gangnam"):
        assert client.post(f"{P}/stores", json={"code": code, "name": code},
                           headers=admin).status_code == 201  # fmt: skip
    goal(client, admin, code="every-store", kind="stores")  # mapo, hongdae, gangnam
    goal(client, admin, code="two-stores", kind="stores", stores=["mapo", "hongdae"])
    goal(client, admin, code="three-in-a-row", kind="streak", target=3, points=300)
    goal(client, admin, code="big-spender", kind="spend", target=50000)
    goal(client, admin, code="points-700", kind="points", target=700)
    goal(client, admin, code="two-in-30-days", kind="visits", target=2, window="rolling",
         window_days=30)  # fmt: skip
    # Kim: January at Mapo, 23:30 on 28 Feb at Hongdae (February in Seoul), 00:10 on 1 March at
    # Gangnam (28 February in UTC): local months Jan, Feb, Mar in a row — only two in UTC.
    buy(client, pos, KIM, "K1", seoul(2026, 1, 15, 12, 0))
    buy(client, pos, KIM, "K2", seoul(2026, 2, 28, 23, 30), store="hongdae")
    buy(client, pos, KIM, "K3", seoul(2026, 3, 1, 0, 10), store="gangnam")
    # Lee: January and March (a gap), Mapo and Hongdae only, 10,000 won each.
    buy(client, pos, LEE, "L1", seoul(2026, 1, 20, 12, 0), amount=10000)
    buy(client, pos, LEE, "L2", seoul(2026, 3, 2, 12, 0), store="hongdae", amount=10000)

    got = run(client, admin)
    # Kim: 3 stores; 3 months in a row; 77,400 won; 3 × 250 = 750 points; 2 visits since
    # 8 February. Lee: 2 stores (mapo, hongdae), 1 month in a row, 20,000 won, 200 points,
    # 1 visit in the last 30 days.
    assert got == {"every-store": {"ever": 1}, "two-stores": {"ever": 2},
                   "three-in-a-row": {"ever": 1}, "big-spender": {"ever": 1},
                   "points-700": {"ever": 1}, "two-in-30-days": {"ever": 1}}  # fmt: skip
    kim_p, lee_p = _progress(client, reader, kim["id"]), _progress(client, reader, lee["id"])
    assert {c: (i["value"], i["target"], i["achieved"]) for c, i in kim_p.items()} == {
        "every-store": (3, 3, True), "two-stores": (2, 2, True), "three-in-a-row": (3, 3, True),
        "big-spender": (77400, 50000, True), "points-700": (750, 700, True),
        "two-in-30-days": (2, 2, True),
    }  # fmt: skip
    assert {c: (i["value"], i["achieved"]) for c, i in lee_p.items()} == {
        "every-store": (2, False), "two-stores": (2, True), "three-in-a-row": (1, False),
        "big-spender": (20000, False), "points-700": (200, False), "two-in-30-days": (1, False),
    }  # fmt: skip
    # A refund of the whole January sale: Kim's streak figure drops, her badge stays (once).
    refund = client.post(f"{P}/purchases/K1/refunds", json={"refund_id": "R1",
                         "amount": 25800}, headers=pos)  # fmt: skip
    assert refund.status_code in (200, 201), refund.text
    assert _progress(client, reader, kim["id"])["three-in-a-row"]["value"] == 2
    assert all(n == 0 for periods in run(client, admin).values() for n in periods.values())
    assert _progress(client, reader, kim["id"])["three-in-a-row"]["achieved"] is True
