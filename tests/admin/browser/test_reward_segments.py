"""A reward limited to a segment, in a real browser: a marketer ticks the segment on the
americano's form, saves a new version, and the reward's page says who may redeem it; the
refusal then holds for a member outside the segment (issue 18 item 1)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from patron import clock
from patron.audit.service import CLI
from patron.coupons.models import Reward
from patron.errors import NotEligible
from patron.members.models import Member
from patron.programs.service import get_program
from patron.rewards import catalog, redeem
from patron.rewards.schemas import RewardCreate
from patron.segments import service as segments
from patron.segments.schemas import SegmentIn
from tests.ledger._helpers import adjust
from tests.rewards.conftest import AMERICANO

pytestmark = pytest.mark.browser


@pytest.fixture
def americano(db, seeded) -> None:
    """The americano for everyone, and two segments: by city (nobody lives in Jeju) and by joining date."""
    with db.unit_of_work() as s:
        program = get_program(s, "bakery")
        catalog.create_reward(
            s, program, RewardCreate.model_validate(AMERICANO), actor=CLI, now=clock.now()
        )
        for code, name, condition in (
            ("jeju", "Jeju islanders",
             {"type": "attribute", "key": "city", "op": "eq", "values": ["jeju"]}),
            ("recent", "Joined lately", {"type": "joined", "days": 3650}),
        ):  # fmt: skip
            body = {"code": code, "name": name, "definition": {"condition": condition}}
            segments.create(s, program, SegmentIn.model_validate(body), actor=CLI,
                            now=clock.now())  # fmt: skip
        adjust(s, program, seeded.member_id, 5_000, now=clock.now())


def test_a_marketer_limits_a_reward_to_a_segment(page, db, staff, seeded, americano, sign_in_as,
                                                 shot):  # fmt: skip
    sign_in_as("marketer")
    page.goto("/admin/rewards/bakery/americano")
    expect(page.get_by_test_id("reward-segments")).to_have_count(0)
    page.get_by_text("Who, where and how").click()
    group = page.get_by_role("group", name="Member segments")
    expect(group).to_contain_text("The member must be in at least one ticked segment")
    group.get_by_label("Jeju islanders").check()
    shot(page, "reward-segments")
    page.get_by_role("button", name="Save as a new version").click()

    expect(page.get_by_role("status")).to_have_text("Saved as version 2.")
    expect(page.get_by_test_id("reward-segments")).to_have_text(
        "Only for members of: Jeju islanders"
    )
    # The group opens by itself now that a segment is ticked.
    ticked = page.get_by_role("group", name="Member segments").get_by_label("Jeju islanders")
    expect(ticked).to_be_visible()
    expect(ticked).to_be_checked()
    with db.unit_of_work(readonly=True) as s:
        saved = s.scalars(select(Reward).where(Reward.code == "americano")).one()
        assert saved.segments == ["jeju"] and saved.version == 2
    # 김민지 does not live in Jeju: the catalog's refusal now holds for her.
    with db.unit_of_work() as s, pytest.raises(NotEligible) as refused:
        redeem.redeem(
            s, get_program(s, "bakery"), "americano", member=s.get(Member, seeded.member_id),
            quantity=1, store=None, channel="pos", actor=CLI, now=clock.now(),
        )  # fmt: skip
    assert refused.value.code == "segment_not_eligible"
