"""The segment tests' world (a bakery with tiers, purchases, consents and a redemption spread
over 200 days, built through the services), the API and admin fixtures, and
`@pytest.mark.sqlite_only` for tests whose outcome does not depend on the engine (bad input,
rendering): they run once, on SQLite."""

from __future__ import annotations

from datetime import timedelta

import pytest
from tests.admin.conftest import _cheap_argon2, seeded, staff
from tests.api.conftest import admin, pos, reader
from tests.factories import make_member, make_program
from tests.tiers._tier_helpers import adjust, buy, set_club

from patron.audit.service import CLI
from patron.members.models import Member
from patron.privacy import consents
from patron.rewards import catalog
from patron.rewards import redeem as redeeming
from patron.rewards.schemas import RewardCreate

__all__ = ["_cheap_argon2", "admin", "pos", "reader", "seeded", "staff"]


def days(n: int):
    return timedelta(days=n)


@pytest.fixture
def world(db, frozen) -> dict[str, int]:
    """Program bakery (stores mapo, gangnam; club tiers, immediate upgrade), at T0:

    - ada: gold since T0-100d (a mapo purchase then, nothing since), born in May; granted
      marketing e-mail at T0-50d, withdrew at T0-20d; attribute city=seoul
    - bo: gold since T0-100d, bought online at gangnam at T0-10d, redeemed americano at T0-5d
    - cy: silver since T0-90d (a mapo purchase then), born in May; city=busan
    - di: never bought (joined T0-200d)
    - ed: joined T0-5d, bought at mapo T0-1d
    """
    t0 = frozen
    with db.unit_of_work() as s:
        program = make_program(s, now=t0 - days(300), stores=("mapo", "gangnam"))
        set_club(s, program, now=t0 - days(300))
        old = t0 - days(200)
        ada = make_member(s, now=old, program=program, name="Ada", birthday="1990-05-04",
                          attributes={"city": "seoul"})  # fmt: skip
        bo = make_member(s, now=old, program=program, name="Bo", attributes={"city": "seoul"})
        cy = make_member(s, now=old, program=program, name="Cy", birthday="1985-05-30",
                         attributes={"city": "busan"})  # fmt: skip
        di = make_member(s, now=old, program=program, name="Di")
        ed = make_member(s, now=t0 - days(5), program=program, name="Ed")
        for who in (ada, bo):
            buy(s, program, who.id, 10000, now=t0 - days(100), store="mapo")
            adjust(s, program, who.id, 3000, now=t0 - days(100), qualifying=True)
        buy(s, program, cy.id, 10000, now=t0 - days(90), store="mapo")
        adjust(s, program, cy.id, 1000, now=t0 - days(90), qualifying=True)
        buy(s, program, bo.id, 20000, now=t0 - days(10), store="gangnam", channel="online")
        buy(s, program, ed.id, 5000, now=t0 - days(1), store="mapo")
        catalog.create_reward(
            s, program,
            RewardCreate.model_validate({"code": "americano", "kind": "goods", "names": {"en": "A"},
                                         "points_cost": 1500, "value": "1500", "valid_days": 30}),
            actor=CLI, now=t0 - days(300),
        )  # fmt: skip
        redeeming.redeem(
            s, program, "americano", member=s.get(Member, bo.id), quantity=1, store=None,
            channel="pos", actor=CLI, now=t0 - days(5),
        )  # fmt: skip
        for granted, at in ((True, t0 - days(50)), (False, t0 - days(20))):
            consents.record(
                s, program, s.get(Member, ada.id), ["marketing_email"], granted=granted,
                source="api", version=None, note=None, actor=CLI, now=at,
            )  # fmt: skip
        return {"program": program.id, "ada": ada.id, "bo": bo.id, "cy": cy.id, "di": di.id,
                "ed": ed.id}  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: engine-independent, run on SQLite only")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        engine = callspec.params.get("db") if callspec is not None else None
        if (item.get_closest_marker("sqlite_only") and engine == "postgresql") or (
            item.get_closest_marker("postgresql_only") and engine == "sqlite"
        ):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
