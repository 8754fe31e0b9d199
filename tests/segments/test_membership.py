"""Each condition, live and as of past dates, compiled to one query and run on SQLite and
PostgreSQL against a world built through the real services (conftest.world)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.segments.conftest import days

from patron.audit.service import CLI
from patron.errors import Invalid
from patron.programs.models import Program
from patron.segments import service
from patron.segments.definition import Definition
from patron.segments.models import SegmentSnapshotMember
from patron.segments.schemas import SegmentIn, SegmentUpdate


def d(cond: dict[str, Any]) -> Definition:
    return Definition.model_validate({"condition": cond})


def names(world: dict[str, int], ids) -> set[str]:
    by_id = {v: k for k, v in world.items() if k != "program"}
    return {by_id[i] for i in ids}


def members(db, world, cond: dict[str, Any], *, as_of=None, now) -> set[str]:
    with db.unit_of_work(readonly=True) as s:
        program = s.get(Program, world["program"])
        ids, _ = service.member_page(
            s, program, d(cond), as_of=as_of, now=now, cursor=None, limit=100
        )
        count = service.count(s, program, d(cond), as_of=as_of, now=now)
    assert count == len(ids)
    return names(world, ids)


GOLD_DORMANT_60 = {"type": "all", "of": [{"type": "tier", "tiers": ["gold"]},
                                         {"type": "dormant", "days": 60}]}  # fmt: skip
LIVE: list[tuple[dict[str, Any], set[str]]] = [
    ({"type": "tier", "tiers": ["gold"]}, {"ada", "bo"}),
    (GOLD_DORMANT_60, {"ada"}),
    ({"type": "dormant", "days": 60}, {"ada", "cy"}),
    ({"type": "dormant", "days": 60, "include_never": True}, {"ada", "cy", "di"}),
    ({"type": "not", "condition": {"type": "dormant", "days": 60}}, {"bo", "di", "ed"}),
    ({"type": "balance", "min": 3000}, {"ada"}),
    ({"type": "balance", "min": 1000, "max": 2500}, {"bo", "cy"}),
    ({"type": "balance", "max": 50}, {"di", "ed"}),
    ({"type": "activity", "metric": "visits", "days": 30, "min": 1}, {"bo", "ed"}),
    ({"type": "activity", "metric": "visits", "days": 30, "max": 0}, {"ada", "cy", "di"}),
    ({"type": "activity", "metric": "spend", "days": 30, "min": 10000}, {"bo"}),
    ({"type": "activity", "metric": "points_earned", "days": 120, "min": 100}, {"ada", "bo", "cy"}),
    ({"type": "activity", "metric": "points_spent", "days": 30, "min": 1}, {"bo"}),
    ({"type": "birthday", "months": [5]}, {"ada", "cy"}),
    ({"type": "joined", "days": 30}, {"ed"}),
    ({"type": "store", "stores": ["gangnam"]}, {"bo"}),
    ({"type": "store", "stores": ["mapo"], "days": 30}, {"ed"}),
    ({"type": "channel", "channels": ["online"]}, {"bo"}),
    ({"type": "attribute", "key": "city", "op": "eq", "values": ["seoul"]}, {"ada", "bo"}),
    ({"type": "attribute", "key": "city", "op": "ne", "values": ["seoul"]}, {"cy", "di", "ed"}),
    ({"type": "attribute", "key": "city", "op": "exists"}, {"ada", "bo", "cy"}),
    ({"type": "consent", "purpose": "marketing_email"}, set()),
    (
        {"type": "consent", "purpose": "marketing_email", "granted": False},
        {"ada", "bo", "cy", "di", "ed"},
    ),
    ({"type": "redeemed", "reward": "americano"}, {"bo"}),
    ({"type": "redeemed", "has": False}, {"ada", "cy", "di", "ed"}),
    ({"type": "any", "of": [{"type": "joined", "days": 30}, GOLD_DORMANT_60]}, {"ada", "ed"}),
]


def test_each_condition_live(db, world, frozen):
    for cond, expected in LIVE:
        assert members(db, world, cond, now=frozen) == expected, cond


def test_as_of_reads_history(db, world, frozen):
    t0 = frozen
    cases: list[tuple[dict[str, Any], Any, set[str]]] = [
        # 95 days ago ada and bo were gold already and had just bought: not dormant.
        (GOLD_DORMANT_60, t0 - days(95), set()),
        ({"type": "tier", "tiers": ["gold"]}, t0 - days(95), {"ada", "bo"}),
        ({"type": "tier", "tiers": ["gold", "silver"]}, t0 - days(101), set()),
        ({"type": "balance", "min": 1}, t0 - days(101), set()),
        ({"type": "balance", "min": 3000}, t0 - days(95), {"ada", "bo"}),
        # ed had not joined yet: not a member at all.
        ({"type": "balance", "max": 0}, t0 - days(95), {"cy", "di"}),
        ({"type": "consent", "purpose": "marketing_email"}, t0 - days(30), {"ada"}),
        ({"type": "redeemed"}, t0 - days(6), set()),
        # bo bought again at T0-10d: dormant then, not now.
        ({"type": "dormant", "days": 60}, t0 - days(30), {"ada", "bo", "cy"}),
    ]
    for cond, as_of, expected in cases:
        assert members(db, world, cond, as_of=as_of, now=t0) == expected, (cond, as_of)


def test_as_of_now_agrees_with_live(db, world, frozen):
    """The history-based evaluation and the live one (cached balances, current tier) agree."""
    for cond, expected in LIVE:
        assert members(db, world, cond, as_of=frozen, now=frozen) == expected, cond


def test_segments_nest_and_cycles_are_refused(db, world, frozen):
    with db.unit_of_work() as s:
        program = s.get(Program, world["program"])
        gold = {"type": "tier", "tiers": ["gold"]}
        service.create(s, program, SegmentIn(code="gold", name="Gold", definition=d(gold)),
                       actor=CLI, now=frozen)  # fmt: skip
        nested = {"type": "all", "of": [{"type": "segment", "segment": "gold"},
                                        {"type": "dormant", "days": 60}]}  # fmt: skip
        service.create(s, program, SegmentIn(code="gd", name="GD", definition=d(nested)),
                       actor=CLI, now=frozen)  # fmt: skip
    assert members(db, world, {"type": "segment", "segment": "gd"}, now=frozen) == {"ada"}
    with db.unit_of_work() as s:
        program = s.get(Program, world["program"])
        back = {"type": "any", "of": [gold, {"type": "segment", "segment": "gd"}]}
        with pytest.raises(Invalid) as cycle:
            service.update(s, program, "gold", SegmentUpdate(name="G", definition=d(back)),
                           actor=CLI, now=frozen)  # fmt: skip
        assert cycle.value.code == "segment_cycle"
        with pytest.raises(Invalid) as missing:
            service.check_references(s, program, d({"type": "store", "stores": ["nowhere"]}),
                                     own_code=None, now=frozen)  # fmt: skip
        assert missing.value.code == "unknown_reference"


def test_snapshot_materialises_the_members(db, world, frozen):
    with db.unit_of_work() as s:
        program = s.get(Program, world["program"])
        service.create(s, program, SegmentIn(code="gd", name="GD", definition=d(GOLD_DORMANT_60)),
                       actor=CLI, now=frozen)  # fmt: skip
        now_snap = service.take_snapshot(s, program, "gd", as_of=None, actor=CLI, now=frozen)
        past = service.take_snapshot(s, program, "gd", as_of=frozen - days(95), actor=CLI,
                                     now=frozen)  # fmt: skip
        ids = service.snapshot_members(s, now_snap, cursor=None, limit=10)[0]
        assert names(world, ids) == {"ada"} and now_snap.members == 1
        assert past.members == 0
        rows = s.query(SegmentSnapshotMember).filter_by(snapshot_id=now_snap.id).all()
        assert [(r.member_id, r.segment_id) for r in rows] == [(world["ada"], now_snap.segment_id)]


def test_memberships_of_a_batch_of_members_for_rule_conditions(db, world, frozen):
    with db.unit_of_work() as s:
        program = s.get(Program, world["program"])
        for code, cond in (("gd", GOLD_DORMANT_60), ("may", {"type": "birthday", "months": [5]})):
            service.create(s, program, SegmentIn(code=code, name=code, definition=d(cond)),
                           actor=CLI, now=frozen)  # fmt: skip
        ids = [world[n] for n in ("ada", "bo", "cy")]
        got = service.memberships(s, program, ["gd", "may"], ids, at=frozen)
        assert got == {world["ada"]: {"gd", "may"}, world["bo"]: set(), world["cy"]: {"may"}}
        with pytest.raises(Invalid):
            service.memberships(s, program, ["nope"], ids, at=frozen)
