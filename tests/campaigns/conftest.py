"""The campaign tests' world: the bakery with a coupon reward (pastry) and a segment `club`
(attribute club=yes) of N members, built through the services before T0."""

from __future__ import annotations

from datetime import timedelta

import pytest

from patron.audit.service import CLI
from patron.rewards import catalog
from patron.rewards.schemas import RewardCreate
from patron.segments import service as segments
from patron.segments.schemas import SegmentIn
from tests.admin.conftest import _cheap_argon2, seeded, staff
from tests.api.conftest import admin, pos, reader
from tests.factories import make_member, make_program

__all__ = ["_cheap_argon2", "admin", "pos", "reader", "seeded", "staff"]

N = 80


def ab_body(code: str = "winback", **over) -> dict:
    body = {
        "code": code,
        "name": "Win back",
        "segment": "club",
        "holdout_pct": 10,
        "variants": [
            {"key": "a", "name": "Coupon", "share": 50,
             "action": {"kind": "coupon", "reward": "pastry"}},
            {"key": "b", "name": "Bonus", "share": 50, "action": {"kind": "points", "points": 500}},
        ],
    }  # fmt: skip
    body.update(over)
    return body


@pytest.fixture
def world(db, frozen) -> dict[str, int]:
    t0 = frozen
    old = t0 - timedelta(days=200)
    with db.unit_of_work() as s:
        program = make_program(s, now=old)
        catalog.create_reward(
            s, program,
            RewardCreate.model_validate({"code": "pastry", "kind": "goods", "names": {"en": "P"},
                                         "points_cost": 1000, "value": "3000", "valid_days": 30}),
            actor=CLI, now=old,
        )  # fmt: skip
        ids = [
            make_member(s, now=old, program=program, attributes={"club": "yes"}).id
            for _ in range(N)
        ]
        make_member(s, now=old, program=program)  # not in the segment
        segments.create(
            s, program,
            SegmentIn.model_validate({"code": "club", "name": "Club", "definition": {
                "condition": {"type": "attribute", "key": "club", "op": "eq", "values": ["yes"]}}}),
            actor=CLI, now=old,
        )  # fmt: skip
        return {"program": program.id, "first": ids[0], "last": ids[-1]}


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
