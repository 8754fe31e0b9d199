"""Member import: CSV and XLSX, mapping, normalisation, opening balances as lots with their own
expiry through the ledger, tier at import, duplicates, dry run, resume after a crash."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from patron.audit.service import CLI
from patron.bulk import service, writers
from patron.bulk.models import BulkJob, MemberImportRef
from patron.check import run_check
from patron.db.engine import Database
from patron.events.models import DomainEvent
from patron.ledger.models import Account, Entry, Lot
from patron.members.models import ConsentRecord, Member
from patron.tiers.models import TierChange
from tests.bulk.conftest import errors_of, run_import, write_csv, write_xlsx

HEADER = [
    "Customer ID",
    "Name",
    "Mobile",
    "E-mail",
    "Birthday",
    "Joined",
    "Consent",
    "Tier",
    "Balance",
    "Balance expiry",
    "attributes.store",
]
ROWS = [
    [
        "C-1",
        "김민지",
        "010-1234-5678",
        "MinJi@Example.com",
        "1990-05-01",
        "2019-03-01",
        "yes",
        "gold",
        "1,500",
        "2026-06-30",
        "mapo",
    ],
    ["C-2", "이서준", "01098765432", "", "", "", "no", "", "200", "", ""],
    [
        "C-3",
        "Wang Fang",
        "+86 138 0013 8000",
        "fang@example.cn",
        "",
        "",
        "",
        "silver",
        "0",
        "",
        "pudong",
    ],
    [
        "C-4",
        "Park Jisoo",
        "",
        "jisoo@example.com",
        "",
        "2020-01-15 10:30",
        "",
        "",
        "75",
        "2027-12-31",
        "",
    ],
]
SEOUL_MIDNIGHT_1_JULY = datetime(2026, 6, 30, 15, 0, tzinfo=UTC)


def test_a_csv_becomes_members_accounts_lots_and_tiers_through_the_ledger(
    db: Database, bakery, tmp_path: Path
):
    path = write_csv(tmp_path / "members.csv", HEADER, ROWS)
    job = run_import(db, path, chunk_size=3)
    assert (job.status, job.rows_done, job.rows_failed, job.chunks_done) == ("done", 4, 0, 2)
    with db.unit_of_work(readonly=True) as session:
        members = {m.name: m for m in session.scalars(select(Member))}
        minji = members["김민지"]
        assert minji.phone == "+821012345678"
        assert minji.email == "minji@example.com"
        assert minji.birthday.isoformat() == "1990-05-01"
        assert minji.created_at == datetime(2019, 2, 28, 15, 0, tzinfo=UTC)  # joined, in Seoul
        assert minji.attributes == {"store": "mapo"}
        assert minji.marketing_consent is True
        assert members["이서준"].phone == "+821098765432"
        assert members["Wang Fang"].phone == "+8613800138000"
        accounts = {a.member_id: a for a in session.scalars(select(Account))}
        assert accounts[minji.id].available == 1500
        assert accounts[minji.id].adjusted == 1500
        assert accounts[minji.id].tier == "gold"
        assert accounts[members["Wang Fang"].id].tier == "silver"
        assert accounts[members["이서준"].id].tier is None
        lot = session.scalars(select(Lot).where(Lot.account_id == accounts[minji.id].id)).one()
        # Valid through 30 June in Seoul: the lot's own date, not the program's 12 months.
        assert (lot.points, lot.remaining, lot.expires_at) == (1500, 1500, SEOUL_MIDNIGHT_1_JULY)
        jisoo = session.scalars(
            select(Lot).where(Lot.account_id == accounts[members["Park Jisoo"].id].id)
        ).one()
        assert jisoo.expires_at == datetime(2027, 12, 31, 15, 0, tzinfo=UTC)
        # No date: the program's policy (12 months), lengthened by nothing (no tier).
        seojun = session.scalars(
            select(Lot).where(Lot.account_id == accounts[members["이서준"].id].id)
        ).one()
        assert seojun.expires_at == datetime(2027, 3, 2, 15, 0, tzinfo=UTC)
        entries = list(session.scalars(select(Entry).order_by(Entry.id)))
        assert [e.kind for e in entries] == ["adjust"] * 3  # no lot for a zero balance
        assert all("opening balance" in (e.reason or "") for e in entries)
        changes = list(session.scalars(select(TierChange).order_by(TierChange.id)))
        assert [(c.to_tier, c.reason) for c in changes] == [
            ("gold", "import"),
            ("silver", "import"),
        ]
        kinds = session.scalars(select(DomainEvent.kind)).all()
        assert kinds.count("member.enrolled") == 4
        assert kinds.count("points.adjusted") == 3
        assert kinds.count("tier.changed") == 2
        # Each names the job, so integrations hear of it and no member is messaged.
        payloads = session.scalars(select(DomainEvent.payload)).all()
        assert {p.get("import_job") for p in payloads} == {job.id}
        consents = session.scalars(select(ConsentRecord).order_by(ConsentRecord.id)).all()
        assert {(c.member_id, c.granted, c.source) for c in consents} == {
            (minji.id, True, "import"),
            (members["이서준"].id, False, "import"),
        }
        assert run_check(session).ok, run_check(session).violations
        refs = dict(
            session.execute(select(MemberImportRef.external_ref, MemberImportRef.member_id)).all()
        )
        assert refs["C-1"] == minji.id


def test_running_the_same_file_again_writes_nothing_twice(db: Database, bakery, tmp_path: Path):
    path = write_csv(tmp_path / "members.csv", HEADER, ROWS)
    run_import(db, path)
    again = run_import(db, path)
    assert (again.rows_done, again.rows_skipped, again.rows_failed) == (0, 4, 0)
    with db.unit_of_work(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Member)) == 4
        assert session.scalar(select(func.count()).select_from(Lot)) == 3


def test_a_crash_mid_file_is_resumed_after_the_last_committed_chunk(
    db: Database, bakery, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    rows = [
        [f"R-{i}", f"Member {i}", f"010-5555-{i:04d}", "", "", "", "", "", str(i), "", ""]
        for i in range(1, 11)
    ]
    path = write_csv(tmp_path / "big.csv", HEADER, rows)
    real = writers.write_members
    calls = {"n": 0}

    def crash_on_third(session, *args, **kwargs):
        calls["n"] += 1
        out = real(session, *args, **kwargs)
        if calls["n"] == 3:
            raise RuntimeError("power cut")  # after the chunk's rows went in, before commit
        return out

    monkeypatch.setattr(writers, "write_members", crash_on_third)
    job = service.create_job(db, kind="members", program="bakery", path=path, actor=CLI)
    with pytest.raises(RuntimeError):
        service.run_job(db, job.id, path, actor=CLI, chunk_size=4)
    with db.unit_of_work(readonly=True) as session:
        stopped = session.get(BulkJob, job.id)
        assert stopped is not None
        assert (stopped.status, stopped.last_row, stopped.rows_done) == ("failed", 9, 8)
        assert session.scalar(select(func.count()).select_from(Member)) == 8
    monkeypatch.setattr(writers, "write_members", real)
    done = service.run_job(db, job.id, path, actor=CLI, chunk_size=4)
    assert (done.status, done.rows_done, done.rows_skipped, done.rows_failed) == ("done", 10, 0, 0)
    with db.unit_of_work(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Member)) == 10
        assert session.scalar(select(func.sum(Account.available))) == sum(range(1, 11))
        assert run_check(session).ok
    with pytest.raises(Exception, match="done"):
        service.run_job(db, job.id, path, actor=CLI)


def test_duplicates_in_the_file_and_against_members_are_reported_not_imported(
    sdb: Database, sbakery, tmp_path: Path
):
    write_csv(tmp_path / "first.csv", ["ref", "name", "phone"], [["X-1", "Old", "010-2222-3333"]])
    run_import(sdb, tmp_path / "first.csv")
    rows = [
        ["A-1", "Kim", "010-1111-2222", "kim@example.com"],
        ["A-2", "Kim again", "01011112222", ""],  # the same phone, spelt otherwise
        ["A-3", "Lee", "", "KIM@example.com"],  # the same e-mail
        ["A-1", "Kim thrice", "010-9999-8888", ""],  # the same ref
        ["A-5", "Choi", "010 2222 3333", ""],  # a member's phone already
    ]
    path = write_csv(tmp_path / "dups.csv", ["ref", "name", "phone", "email"], rows)
    job = run_import(sdb, path)
    assert (job.rows_done, job.rows_failed) == (1, 4)
    assert errors_of(sdb, job.id) == [
        (3, "phone", "duplicate_in_file"),
        (4, "email", "duplicate_in_file"),
        (5, "external_ref", "duplicate_in_file"),
        (6, "phone", "duplicate_phone"),
    ]


def test_a_dry_run_reports_every_bad_row_and_writes_no_member(
    sdb: Database, sbakery, tmp_path: Path
):
    header = ["id", "name", "phone", "email", "birthday", "consent", "balance", "tier", "expiry"]
    fixed = [
        ["B-1", "", "010-1234-5678", "ok@example.com", "", "", "", "", ""],
        ["B-2", "Bad phone", "12", "", "", "", "", "", ""],
        ["B-3", "Bad mail", "", "not-an-email", "", "", "", "", ""],
        ["B-4", "Bad tier", "", "t@example.com", "", "", "", "emerald", ""],
        ["B-5", "Old points", "", "o@example.com", "", "", "100", "", "2025-12-31"],
        ["B-6", "Bad number", "", "n@example.com", "", "", "ten", "", ""],
        ["B-7", "Fine?", "", "fine@example.com", "1990-02-31", "maybe", "", "", ""],
        ["", "Nobody", "", "", "", "", "", "", ""],
        ["B-9", "Good", "010-4444-5555", "good@example.com", "1991-01-01", "y", "10", "gold", ""],
    ]
    path = write_csv(tmp_path / "check.csv", header, fixed)
    job = run_import(sdb, path, mapping={"id": "external_ref"}, dry_run=True)
    assert job.dry_run and job.status == "done"
    assert (job.rows_done, job.rows_failed) == (1, 8)
    assert errors_of(sdb, job.id) == [
        (2, "name", "missing_name"),
        (3, "phone", "invalid_phone"),
        (4, "email", "invalid_email"),
        (5, "tier", "unknown_tier"),
        (6, "expiry", "expiry_in_past"),
        (7, "balance", "invalid_balance"),
        (8, "birthday", "invalid_birthday"),
        (8, "consent", "invalid_consent"),
        (9, None, "missing_identity"),
    ]
    with sdb.unit_of_work(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Member)) == 0
        assert session.scalar(select(func.count()).select_from(Account)) == 0
        csv_text = "".join(service.errors_csv(session, job.id))
    assert csv_text.splitlines()[0] == "row,column,code,message"
    assert "invalid_phone" in csv_text


def test_an_xlsx_with_a_mapping_imports_like_a_csv(sdb: Database, sbakery, tmp_path: Path):
    header = ["Member No", "Full name", "Handphone", "Points", "Points valid until", "Grade", "VIP"]
    rows = [
        ["M-1", "Han Yuna", "010-3333-4444", 300, datetime(2026, 9, 30), "bronze", "yes"],
        ["M-2", "Seo Jin", 1055556666, 0, None, None, None],
    ]
    path = write_xlsx(tmp_path / "export.xlsx", header, rows)
    job = run_import(
        sdb,
        path,
        mapping={
            "Handphone": "phone",
            "Points valid until": "opening_balance_expiry",
            "VIP": "attributes.vip",
        },
    )
    assert (job.rows_done, job.rows_failed) == (2, 0), errors_of(sdb, job.id)
    with sdb.unit_of_work(readonly=True) as session:
        members = {m.name: m for m in session.scalars(select(Member))}
        assert members["Han Yuna"].attributes == {"vip": "yes"}
        assert members["Seo Jin"].phone == "+821055556666"  # a number cell lost its 0
        lot = session.scalars(select(Lot)).one()
        assert (lot.points, lot.expires_at) == (300, datetime(2026, 9, 30, 15, 0, tzinfo=UTC))
        account = session.scalars(
            select(Account).where(Account.member_id == members["Han Yuna"].id)
        ).one()
        assert account.tier == "bronze"
        assert run_check(session).ok


def test_migrated_members_get_no_message_while_webhooks_hear_of_them(
    db: Database, bakery, tmp_path: Path
):
    from patron.config import get_settings
    from patron.delivery.dispatch import dispatch_pending
    from patron.events.models import Delivery
    from patron.notify import settings as notify_settings

    with db.unit_of_work(readonly=True) as session:
        wanted = notify_settings.load(session, bakery.id)
    # Welcome, adjustment and tier messages are on by default: a member would hear of each.
    assert all(wanted.event(k).enabled for k in ("member.enrolled", "points.adjusted"))
    run_import(db, write_csv(tmp_path / "members.csv", HEADER, ROWS))
    dispatch_pending(db, now=datetime(2026, 3, 3, tzinfo=UTC), settings=get_settings())
    with db.unit_of_work(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0
        assert (
            session.scalar(
                select(func.count())
                .select_from(DomainEvent)
                .where(DomainEvent.dispatched.is_(False))
            )
            == 0
        )


def test_a_large_chunk_stores_what_small_chunks_store(db: Database, bakery, tmp_path: Path):
    """More than four rows a table go as one JSON document per table on PostgreSQL (decision
    0033), fewer as VALUES: the same members written both ways read back the same, JSON nulls
    included (a jsonb null, not SQL NULL, as before)."""

    def copy(tag: str) -> list[list[str]]:
        out = []
        for n in range(3):
            for i, row in enumerate(ROWS):
                phone = f"010-{7000 + n * 10 + i:04d}-{1000 if tag == 'a' else 2000:04d}"
                email = f"{tag}{n}{i}@example.com" if row[3] else ""
                out.append([f"{tag}-{n}-{row[0]}", row[1], phone, email, *row[4:]])
        return out

    big = run_import(db, write_csv(tmp_path / "a.csv", HEADER, copy("a")), chunk_size=50)
    small = run_import(db, write_csv(tmp_path / "b.csv", HEADER, copy("b")), chunk_size=1)
    assert (big.rows_done, big.chunks_done, small.rows_done) == (12, 1, 12)

    def seen(session, tag: str) -> list[tuple]:
        refs = dict(
            session.execute(select(MemberImportRef.member_id, MemberImportRef.external_ref)).all()
        )
        out = []
        rows = session.execute(
            select(Member, Account)
            .join(Account, Account.member_id == Member.id)
            .order_by(Member.id)
        ).all()
        for member, account in rows:
            if not refs[member.id].startswith(tag + "-"):
                continue
            lots = session.execute(
                select(Lot.points, Lot.remaining, Lot.expires_at, Lot.pending).where(
                    Lot.account_id == account.id
                )
            ).all()
            entries = session.execute(
                select(Entry.kind, Entry.points, Entry.breakdown, Entry.details, Entry.actor).where(
                    Entry.account_id == account.id
                )
            ).all()
            events = session.scalars(
                select(DomainEvent.payload)
                .where(DomainEvent.member_id == member.id)
                .order_by(DomainEvent.id)
            ).all()
            payloads = [
                {
                    k: re.sub(r"import job \d+", "import job N", v) if k == "reason" else v
                    for k, v in p.items()
                    if k not in ("member_id", "account_id", "entry_id", "import_job")
                }
                for p in events
            ]
            out.append(
                (
                    refs[member.id][2:],
                    member.name,
                    member.attributes,
                    account.tier,
                    account.available,
                    lots,
                    entries,
                    payloads,
                )
            )
        return out

    with db.unit_of_work(readonly=True) as session:
        assert seen(session, "a") == seen(session, "b")
        # A jsonb null stays the JSON value null on both paths (never SQL NULL).
        assert (
            session.scalar(select(func.count()).select_from(Entry).where(Entry.breakdown.is_(None)))
            == 0
        )
        assert run_check(session).ok
