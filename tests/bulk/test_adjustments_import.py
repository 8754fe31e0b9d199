"""Bulk adjustments: a member, points, a reason and a key per row, through the ledger's adjust;
a key used before writes nothing; rows that cannot apply are reported alone."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from patron.audit.models import AuditRecord
from patron.bulk.models import AdjustmentKey
from patron.check import run_check
from patron.db.engine import Database
from patron.ledger.models import Account, Entry
from tests.bulk.conftest import errors_of, run_import, write_csv

MEMBERS = [
    ["C-1", "Kim", "010-1234-5678", "", "100"],
    ["C-2", "Lee", "010-2345-6789", "lee@example.com", "0"],
]
HEADER = ["member ref", "phone", "email", "card", "member id", "points", "reason", "key"]


def _members(db: Database, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "m.csv", ["ref", "name", "phone", "email", "balance"], MEMBERS)
    assert run_import(db, path).rows_failed == 0


def _balances(db: Database) -> dict[int, tuple[int, int]]:
    with db.unit_of_work(readonly=True) as session:
        return {a.member_id: (a.available, a.debt) for a in session.scalars(select(Account))}


def test_adjustments_apply_once_whatever_the_reruns(db: Database, bakery, tmp_path: Path):
    _members(db, tmp_path)
    rows = [
        ["C-1", "", "", "", "", "+50", "birthday goodwill", "k-1"],
        ["", "01023456789", "", "", "", "30", "missing stamps", "k-2"],
        ["", "", "LEE@example.com", "", "", "-10", "correction", "k-3"],
        ["C-1", "", "", "", "", "-120", "returned order", "k-4"],
    ]
    path = write_csv(tmp_path / "adj.csv", HEADER, rows)
    job = run_import(db, path, kind="adjustments", chunk_size=3)
    assert (job.rows_done, job.rows_failed, job.rows_skipped) == (4, 0, 0), errors_of(db, job.id)
    balances = _balances(db)
    assert sorted(balances.values()) == [(20, 0), (30, 0)]
    again = run_import(db, path, kind="adjustments")
    assert (again.rows_done, again.rows_skipped) == (0, 4)
    assert _balances(db) == balances
    with db.unit_of_work(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(AdjustmentKey)) == 4
        adjusts = session.scalars(select(Entry.points).where(Entry.reason == "returned order"))
        assert list(adjusts) == [-120]
        audited = session.scalars(
            select(AuditRecord).where(AuditRecord.action == "points.adjusted")
        ).all()
        assert len(audited) == 4 and audited[0].after["key"] == "k-1"
        assert run_check(session).ok, run_check(session).violations


def test_rows_that_cannot_apply_are_reported_alone(db: Database, bakery, tmp_path: Path):
    _members(db, tmp_path)
    rows = [
        ["C-1", "", "", "", "", "10", "fine", "a-1"],
        ["C-404", "", "", "", "", "10", "unknown member", "a-2"],
        ["", "", "", "", "abc", "10", "bad id", "a-3"],
        ["C-1", "", "", "", "", "0", "zero", "a-4"],
        ["C-1", "", "", "", "", "10", "", "a-5"],
        ["C-1", "", "", "", "", "10", "no key", ""],
        ["C-2", "", "", "", "", "5", "again", "a-1"],
        ["C-1", "010-1234-5678", "", "", "", "5", "two refs", "a-8"],
    ]
    path = write_csv(tmp_path / "adj.csv", HEADER, rows)
    job = run_import(db, path, kind="adjustments", chunk_size=4)
    assert (job.rows_done, job.rows_failed) == (1, 7)
    assert errors_of(db, job.id) == [
        (3, "external_ref", "member_not_found"),
        (4, "member_id", "member_not_found"),
        (5, "points", "invalid_points"),
        (6, "reason", "invalid_reason"),
        (7, "key", "missing_key"),
        (8, "key", "duplicate_in_file"),
        (9, None, "invalid_member_ref"),
    ]
