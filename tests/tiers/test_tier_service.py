"""Qualifying points, immediate upgrades, tier benefits and manual changes, on both engines."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from patron.audit.models import AuditRecord
from patron.audit.service import CLI
from patron.check import run_check
from patron.db.engine import Database
from patron.earning.events import record_event
from patron.errors import Invalid
from patron.events.models import DomainEvent
from patron.ledger.models import Entry, Lot
from patron.members.schemas import MemberRef
from patron.rules import publishing
from patron.rules.events import EventRequest
from patron.rules.explain import explain
from patron.tiers import service
from patron.tiers.metrics import metric_values
from patron.tiers.periods import window_at
from patron.tiers.schemas import ManualTierRequest
from tests.factories import make_member, make_program
from tests.tiers._tier_helpers import H2_START, account, adjust, buy, changes, refund, set_club


def _qualifying(session, program, member_id: int) -> int:
    acc = account(session, program, member_id)
    return int(
        session.scalar(
            select(func.coalesce(func.sum(Entry.qualifying), 0)).where(Entry.account_id == acc.id)
        )
        or 0
    )


@pytest.fixture
def club(db: Database, frozen: datetime):
    with db.unit_of_work() as session:
        program = make_program(session, now=frozen)
        set_club(session, program, now=frozen)
        member = make_member(session, now=frozen, program=program)
        return program.code, member.id


def _program(session, code="bakery"):
    from patron.programs.service import get_program

    return get_program(session, code)


# --- qualifying points ----------------------------------------------------------------------


def test_an_earn_qualifies_and_a_refund_takes_its_share_back_exactly(db, club, frozen):
    _code, member_id = club
    with db.unit_of_work() as session:
        program = _program(session)
        buy(session, program, member_id, 25_800, now=frozen, external_id="A-1")  # 250 points
        assert _qualifying(session, program, member_id) == 250
        # Three partial refunds by amount add up to the whole: 250 back, to the point.
        refund(session, program, "A-1", now=frozen, amount=10_000)
        assert _qualifying(session, program, member_id) == 250 - 97  # 250 × 10,000 / 25,800
        refund(session, program, "A-1", now=frozen, amount=5_800)
        refund(session, program, "A-1", now=frozen, full=True)
        assert _qualifying(session, program, member_id) == 0
        assert run_check(session).ok


def test_a_refund_of_expired_points_still_takes_the_qualifying_points_back(db, club, frozen):
    _code, member_id = club
    with db.unit_of_work() as session:
        program = _program(session)
        buy(session, program, member_id, 25_800, now=frozen, external_id="A-1")
        assert _qualifying(session, program, member_id) == 250
    later = frozen + timedelta(days=400)  # the points expired unspent
    with db.unit_of_work() as session:
        program = _program(session)
        refund(session, program, "A-1", now=later, full=True)
        assert _qualifying(session, program, member_id) == 0
        assert run_check(session).ok


def test_points_from_a_non_qualifying_promotion_and_bonus_do_not_count(db, club, frozen):
    _code, member_id = club
    with db.unit_of_work() as session:
        program = _program(session)
        publishing.add_rule(
            session,
            program,
            {"id": "double", "kind": "promotion", "factor": "2", "qualifying": False},
            actor=CLI,
            now=frozen,
        )
        publishing.add_rule(
            session,
            program,
            {"id": "big-order", "kind": "order_bonus", "points": 50, "qualifying": False},
            actor=CLI,
            now=frozen,
        )
        publishing.add_rule(
            session,
            program,
            {
                "id": "welcome",
                "kind": "event",
                "event": "signup",
                "points": 300,
                "qualifying": False,
            },
            actor=CLI,
            now=frozen,
        )
        out = buy(session, program, member_id, 10_000, now=frozen, external_id="A-1")
        assert out["points_earned"] == 100 * 2 + 50
        assert _qualifying(session, program, member_id) == 100
        record_event(
            session,
            program,
            EventRequest(member=MemberRef(id=member_id), event="signup"),
            actor=CLI,
            now=frozen,
        )
        assert _qualifying(session, program, member_id) == 100
        refund(session, program, "A-1", now=frozen, amount=5_000)  # half: 50 of 100 back
        assert _qualifying(session, program, member_id) == 50


def test_only_adjustments_marked_qualifying_count(db, club, frozen):
    _code, member_id = club
    with db.unit_of_work() as session:
        program = _program(session)
        buy(session, program, member_id, 10_000, now=frozen)
        adjust(session, program, member_id, 300, now=frozen)
        assert _qualifying(session, program, member_id) == 100
        adjust(session, program, member_id, 500, now=frozen, qualifying=True)
        assert _qualifying(session, program, member_id) == 600
        adjust(session, program, member_id, -200, now=frozen, qualifying=True)
        assert _qualifying(session, program, member_id) == 400
        adjust(session, program, member_id, -100, now=frozen)
        assert _qualifying(session, program, member_id) == 400
        assert run_check(session).ok


# --- immediate upgrades ---------------------------------------------------------------------


def test_the_purchase_that_crosses_the_threshold_upgrades_at_once(db, club, frozen):
    _code, member_id = club
    with db.unit_of_work() as session:
        program = _program(session)
        buy(session, program, member_id, 60_000, now=frozen)  # 600: the entry tier
        assert account(session, program, member_id).tier == "bronze"
        buy(session, program, member_id, 39_000, now=frozen)  # 990: a few points short
        assert account(session, program, member_id).tier == "bronze"
        buy(session, program, member_id, 1_000, now=frozen)  # 1,000: silver
        acc = account(session, program, member_id)
        assert acc.tier == "silver"
        # Held through the next half-year: until 00:00 on 1 January 2027 in Seoul.
        assert acc.tier_valid_until == datetime(2026, 12, 31, 15, 0, tzinfo=UTC)
        history = changes(session, program, member_id)
        assert [(c.from_tier, c.to_tier, c.reason, c.metric_value, c.period) for c in history] == [
            (None, "bronze", "upgrade", 600, "2026H1"),
            ("bronze", "silver", "upgrade", 1000, "2026H1"),
        ]
        events = session.scalars(
            select(DomainEvent).where(DomainEvent.kind == "tier.changed").order_by(DomainEvent.id)
        ).all()
        assert [(e.kind, e.payload["to"]) for e in events] == [
            ("tier.changed", "bronze"),
            ("tier.changed", "silver"),
        ]
        assert (
            session.scalar(
                select(func.count())
                .select_from(AuditRecord)
                .where(AuditRecord.action == "tier.changed")
            )
            == 2
        )


def test_balance_does_not_qualify_only_points_earned_in_the_window(db, club, frozen):
    _code, member_id = club
    with db.unit_of_work() as session:
        program = _program(session)
        # 5,000 points added by staff (not qualifying): a big balance, no tier.
        buy(session, program, member_id, 1_000, now=frozen)
        adjust(session, program, member_id, 5_000, now=frozen)
        assert account(session, program, member_id).tier == "bronze"


def test_a_qualifying_adjustment_or_event_can_upgrade(db, club, frozen):
    _code, member_id = club
    with db.unit_of_work() as session:
        program = _program(session)
        buy(session, program, member_id, 1_000, now=frozen)
        adjust(session, program, member_id, 995, now=frozen, qualifying=True)
        assert account(session, program, member_id).tier == "silver"
        publishing.add_rule(
            session,
            program,
            {"id": "review", "kind": "event", "event": "review", "points": 2000},
            actor=CLI,
            now=frozen,
        )
        record_event(
            session,
            program,
            EventRequest(member=MemberRef(id=member_id), event="review"),
            actor=CLI,
            now=frozen,
        )
        assert account(session, program, member_id).tier == "gold"


def test_no_upgrade_before_the_evaluation_with_next_period(db, frozen):
    with db.unit_of_work() as session:
        program = make_program(session, now=frozen)
        set_club(session, program, now=frozen, upgrade="next_period")
        member = make_member(session, now=frozen, program=program)
        buy(session, program, member.id, 500_000, now=frozen)
        acc = account(session, program, member.id)
        assert acc.tier is None and changes(session, program, member.id) == []


def test_a_program_without_tiers_is_untouched(db, frozen):
    with db.unit_of_work() as session:
        program = make_program(session, now=frozen)
        member = make_member(session, now=frozen, program=program)
        buy(session, program, member.id, 500_000, now=frozen)
        assert account(session, program, member.id).tier is None
        assert (
            session.scalar(
                select(func.count())
                .select_from(DomainEvent)
                .where(DomainEvent.kind == "tier.changed")
            )
            == 0
        )


def test_23_59_on_30_june_in_seoul_counts_in_h1_and_midnight_in_h2(db, club, frozen):
    _code, member_id = club
    last_minute = H2_START - timedelta(minutes=1)  # 23:59 on 30 June, Seoul
    with db.unit_of_work() as session:
        program = _program(session)
        buy(session, program, member_id, 60_000, now=last_minute)
        buy(session, program, member_id, 60_000, now=H2_START)  # 00:00 on 1 July, Seoul
        # 600 + 600 would make silver in one window; split across two it does not.
        assert account(session, program, member_id).tier == "bronze"
        acc = account(session, program, member_id)
        h1 = window_at("half_year", last_minute, "Asia/Seoul")
        h2 = window_at("half_year", H2_START, "Asia/Seoul")
        assert (h1.key, h2.key) == ("2026H1", "2026H2")
        assert metric_values(session, program_id=program.id, metric="points", window=h1) == {
            acc.id: 600
        }
        assert metric_values(session, program_id=program.id, metric="points", window=h2) == {
            acc.id: 600
        }


# --- tier benefits ----------------------------------------------------------------------------


def test_the_tier_multiplier_applies_to_the_next_purchase_and_shows_in_the_breakdown(
    db, club, frozen
):
    _code, member_id = club
    with db.unit_of_work() as session:
        program = _program(session)
        first = buy(session, program, member_id, 100_000, now=frozen)  # 1,000: silver now
        assert first["points_earned"] == 1000  # the crossing purchase earns at the old tier
        out = buy(session, program, member_id, 10_000, now=frozen)
        assert out["points_earned"] == 150
        step = next(s for s in out["entries"][0]["breakdown"] if s["rule"] == "tier:silver")
        assert step["kind"] == "tier_benefit" and step["factor"] == "1.5"
        assert step["tier"] == "silver"
        explained = explain(out["entries"][0]["breakdown"], 150)
        assert "silver tier ×1.5" in explained


def test_a_tier_multiplier_rule_in_the_rule_set_wins_over_the_tier_definition(db, club, frozen):
    _code, member_id = club
    with db.unit_of_work() as session:
        program = _program(session)
        publishing.add_rule(
            session,
            program,
            {"id": "tiers", "kind": "tier_multiplier", "factors": {"silver": "1.2"}},
            actor=CLI,
            now=frozen,
        )
        buy(session, program, member_id, 100_000, now=frozen)
        out = buy(session, program, member_id, 10_000, now=frozen)
        assert out["points_earned"] == 120
        assert not any(s["kind"] == "tier_benefit" for s in out["entries"][0]["breakdown"])


def test_a_gold_member_s_points_last_longer(db, club, frozen):
    _code, member_id = club
    with db.unit_of_work() as session:
        program = _program(session)
        buy(session, program, member_id, 300_000, now=frozen)  # gold
        out = buy(session, program, member_id, 10_000, now=frozen)
        lot = session.get(Lot, session.get(Entry, out["entries"][0]["id"]).lot_id)
        # 12 months + 6 for gold: valid through 2 September 2027 in Seoul.
        assert lot.expires_at == datetime(2027, 9, 2, 15, 0, tzinfo=UTC)


# --- manual changes -------------------------------------------------------------------------


def test_a_manual_change_needs_a_known_tier_and_a_future_end_and_is_audited(db, club, frozen):
    _code, member_id = club
    with db.unit_of_work() as session:
        program = _program(session)
        buy(session, program, member_id, 99_000, now=frozen)  # 990: ten points short
        with pytest.raises(Invalid) as unknown:
            service.set_manual(
                session,
                program,
                member_id,
                ManualTierRequest(tier="ruby", reason="appeal"),
                actor=CLI,
                now=frozen,
            )
        assert unknown.value.code == "unknown_tier"
        with pytest.raises(Invalid) as past:
            service.set_manual(
                session,
                program,
                member_id,
                ManualTierRequest(tier="silver", reason="appeal", until=date(2026, 3, 1)),
                actor=CLI,
                now=frozen,
            )
        assert past.value.code == "until_in_past"
        out = service.set_manual(
            session,
            program,
            member_id,
            ManualTierRequest(
                tier="silver", reason="appeal: 10 points short", until=date(2026, 12, 31)
            ),
            actor=CLI,
            now=frozen,
        )
        assert out.tier == "silver" and out.manual
        assert out.manual_until == datetime(2026, 12, 31, 15, 0, tzinfo=UTC)
        last = changes(session, program, member_id)[-1]
        assert (last.reason, last.note, last.actor) == ("manual", "appeal: 10 points short", "cli")
        record = session.scalars(
            select(AuditRecord).where(AuditRecord.action == "tier.changed_manually")
        ).one()
        assert record.before == {"tier": "bronze", "manual": False, "manual_until": None}
        assert record.after["tier"] == "silver"
