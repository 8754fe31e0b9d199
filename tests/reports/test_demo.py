"""The bakery demo (a smaller one: 15 members, 120 days): every report equals raw SQL sums."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import text

from patron import clock, demo
from patron.db.engine import Database
from patron.programs.service import get_program
from patron.reports import dashboard, finance, members, period, promotions, rollup
from patron.reports.common import day_range, day_start
from tests.reports import _oracle

NOW = datetime(2026, 3, 2, 3, tzinfo=UTC)


def test_demo_reports_equal_the_raw_sums(db: Database) -> None:
    clock.freeze(NOW)
    demo.load(db, now=NOW, members_count=15, days=120)
    with db.unit_of_work(readonly=True) as session:
        top = rollup.freshness(session).max_entry_id
    rollup.refresh(db, now=NOW, limit=top * 2 // 3, chunk=max(1, top // 5))

    _oracle.assert_reports_match(db, "bakery", date(2025, 10, 1), date(2026, 3, 31))
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, "bakery")
        raw = {
            kind: int(points)
            for kind, points in session.execute(
                text("SELECT kind, SUM(points) FROM entries WHERE program_id = :p GROUP BY kind"),
                {"p": program.id},
            )
        }
        sales = session.execute(
            text(
                "SELECT COUNT(*), COALESCE(SUM(amount_minor), 0) FROM purchases "
                "WHERE program_id = :p AND (earn_entry_id IS NOT NULL "
                "OR redeem_entry_id IS NOT NULL)"
            ),
            {"p": program.id},
        ).one()
        rng = day_range(program, first=date(2025, 10, 1), last=date(2026, 3, 2), now=NOW)
        report = period.period_report(session, program, rng, now=NOW, granularity="month")
        t = report.totals
        assert t.earned - t.reversed + t.restored - t.redeemed == (
            raw.get("earn", 0) + raw.get("reverse", 0) + raw.get("redeem", 0)
        )
        assert (t.earned, -t.redeemed, -t.expired) == (
            raw.get("earn", 0),
            raw.get("redeem", 0),
            raw.get("expire", 0),
        )
        assert (t.purchases, int(t.sales)) == (sales[0], sales[1])

        owed = finance.liability(session, program, as_of=date(2026, 3, 2), now=NOW)
        assert owed.outstanding_points == sum(raw.values())  # the demo ran the expiry job
        balances = session.execute(
            text("SELECT SUM(available + pending - debt) FROM accounts WHERE program_id = :p"),
            {"p": program.id},
        ).scalar_one()
        assert owed.outstanding_points == balances

        rules = promotions.promotions_report(session, program, rng, now=NOW)
        assert sum(r.points for r in rules.rows) == rules.earned == raw["earn"]
        assert {r.rule for r in rules.rows} >= {"base"}

        people = members.members_report(session, program, rng, now=NOW)
        active = session.execute(
            text(
                "SELECT COUNT(DISTINCT account_id) FROM purchases WHERE program_id = :p "
                "AND occurred_at >= :since AND occurred_at < :end"
            ),
            {
                "p": program.id,
                "since": day_start(program, date(2026, 3, 3) - timedelta(days=90)),
                "end": day_start(program, date(2026, 3, 3)),
            },
        ).scalar_one()
        assert (people.members, people.active) == (15, active)
        tiers_now = dict(
            session.execute(
                text(
                    "SELECT COALESCE(tier, ''), COUNT(*) FROM accounts WHERE program_id = :p "
                    "GROUP BY 1"
                ),
                {"p": program.id},
            ).all()
        )
        shown = {t.tier or "": t.members for t in people.tier_distribution if t.members}
        assert shown == tiers_now  # the history as of today is today's tier

        board = dashboard.dashboard(session, program, now=NOW, days=30)
        assert board.outstanding_points == owed.outstanding_points
        assert board.members == 15 and len(board.series) == 30
        assert sum(p.net for p in board.series) == sum(
            r.net
            for r in period.period_report(
                session,
                program,
                day_range(program, first=date(2026, 2, 1), last=date(2026, 3, 2), now=NOW),
                now=NOW,
            ).rows
        )
