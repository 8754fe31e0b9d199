"""The message action (issue 18): an arm with `message` sends each of its members one
campaign.offer event at launch (set-based, in the launch transaction), which the notify
dispatcher turns into a marketing e-mail for members who consented and nobody else."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from patron.audit.service import CLI
from patron.campaigns import service
from patron.campaigns.schemas import CampaignIn
from patron.config import Settings
from patron.delivery import dispatch, runner
from patron.events.models import Delivery, DomainEvent
from patron.experiments.models import CampaignMember
from patron.members import consent
from patron.members.models import Member
from patron.programs.models import Program
from tests.campaigns.conftest import ab_body
from tests.factories import make_member


def _body() -> dict:
    return ab_body(
        "spring-offer",
        name="Spring treats",
        variants=[
            {"key": "a", "name": "Quiet", "share": 50, "action": {"kind": "none"}},
            {"key": "b", "name": "Told", "share": 50, "message": True,
             "action": {"kind": "points", "points": 300}},
        ],
    )  # fmt: skip


def test_an_arm_with_a_message_tells_its_consenting_members(db, world, frozen, tmp_path: Path):
    now = frozen
    with db.unit_of_work() as s:
        program = s.get(Program, world["program"])
        row = service.create(s, program, CampaignIn.model_validate(_body()), actor=CLI, now=now)
        # Two members of arm b with an e-mail: one agreed to marketing, one did not.
        wanted: dict[bool, int] = {}
        for n in range(200):
            agrees = n % 2 == 0
            member = make_member(
                s, now=now, program=program, email=f"m{n}@example.com", language="en",
                attributes={"club": "yes"}, marketing_consent=agrees,
            )  # fmt: skip
            if service.arm_of(row, member.id) == "b" and agrees not in wanted:
                wanted[agrees] = member.id
            if len(wanted) == 2:
                break
        assert len(wanted) == 2
    with db.unit_of_work() as s:
        program = s.get(Program, world["program"])
        _row, given = service.launch(s, program, "spring-offer", actor=CLI, now=now)

    with db.unit_of_work(readonly=True) as s:
        arm_b = set(s.scalars(select(CampaignMember.member_id).where(CampaignMember.arm == "b")))
        events = s.scalars(select(DomainEvent).where(DomainEvent.kind == "campaign.offer")).all()
        assert {e.member_id for e in events} == arm_b and len(events) == len(arm_b)
        assert given.messages == len(arm_b)
        payload = next(e.payload for e in events if e.member_id == wanted[True])
        assert payload["campaign"] == "spring-offer" and payload["variant"] == "b"
        assert payload["offer"] == "points" and payload["points"] == 300
        assert payload["member_id"] == wanted[True]
        assert all(
            m.messaged_at is not None
            for m in s.scalars(select(CampaignMember).where(CampaignMember.arm == "b"))
        )

    # The run job sends nobody a second one.
    with db.unit_of_work() as s:
        service.run(s, s.get(Program, world["program"]), "spring-offer", actor=CLI, now=now)
    with db.unit_of_work(readonly=True) as s:
        again = s.scalars(select(DomainEvent.id).where(DomainEvent.kind == "campaign.offer"))
        assert len(again.all()) == len(arm_b)

    settings = Settings(
        email_channel="log", sms_channel="log", message_log=str(tmp_path / "messages.log")
    )
    dispatch.dispatch_pending(db, now=now, settings=settings)
    with db.unit_of_work(readonly=True) as s:
        rows = {
            d.member_id: d
            for d in s.scalars(select(Delivery).where(Delivery.event_kind == "campaign.offer"))
        }
        told, refused = rows[wanted[True]], rows[wanted[False]]
        assert told.status == "pending" and told.purpose == "marketing"
        assert told.subject == "Corner Bakery: Spring treats"
        assert "added 300 points to your account" in told.body
        assert refused.status == "skipped" and refused.skip_reason == "no_consent"
        told_id, refused_id, address = told.id, refused.id, told.recipient
    while runner.run_round(db, now=now, settings=settings).delivered:
        pass
    lines = (tmp_path / "messages.log").read_text(encoding="utf-8").splitlines()
    sent = [json.loads(line) for line in lines]
    offers = [m for m in sent if m.get("subject") == "Corner Bakery: Spring treats"]
    with db.unit_of_work(readonly=True) as s:
        agreed = {
            m.email
            for m in s.scalars(select(Member).where(Member.id.in_(arm_b)))
            if m.email and consent.current(s, m, "email")
        }
        withheld = s.get(Member, wanted[False]).email
    to = [m["to"] for m in offers]
    assert sorted(to) == sorted(agreed) and address in to and withheld not in to
    with db.unit_of_work(readonly=True) as s:
        assert s.get(Delivery, told_id).status == "delivered"
        assert s.get(Delivery, refused_id).status == "skipped"

    with db.unit_of_work(readonly=True) as s:
        program = s.get(Program, world["program"])
        out = service.results(s, program, service.get_campaign(s, program, "spring-offer"),
                              now=now)  # fmt: skip
    by_arm = {a.arm: a for a in out.arms}
    assert by_arm["b"].messages == len(arm_b) and by_arm["a"].messages == 0
