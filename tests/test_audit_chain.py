"""The tamper-evident audit log (patron.audit.chain): seal, verify, and every way to tamper.

Tampering is done the way an intruder with database access would: raw SQL on audit_log and
audit_seals, behind the application's back."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from sqlalchemy import select, text
from typer.testing import CliRunner

from patron import clock
from patron.audit import chain
from patron.audit import service as audit
from patron.audit.models import AuditRecord, AuditSeal
from patron.audit.service import CLI, SYSTEM
from patron.cli import app as cli_app
from patron.config import get_settings
from patron.db.engine import Database
from tests.admin.conftest import _cheap_argon2  # noqa: F401 - a fixture
from tests.admin.helpers import create_staff, sign_in
from tests.conftest import T0, auth
from tests.factories import make_program

OLD = T0 - timedelta(minutes=5)


def write(db: Database, count: int, *, at: datetime = OLD, program_id: int | None = None) -> None:
    with db.unit_of_work() as session:
        for n in range(count):
            audit.record(
                session,
                actor=CLI if n % 2 else SYSTEM,
                action="points.adjusted",
                subject_type="member",
                subject_id=n,
                at=at + timedelta(milliseconds=n),
                program_id=program_id,
                before={"balance": n, "note": "김민지 ☕"},
                after={"balance": n + 10, "nested": {"b": [1, 2.5, None], "a": "1.10"}},
            )


def seal(db: Database, *, block_size: int = 10) -> chain.SealReport:
    return chain.seal_pending(db, now=T0, block_size=block_size)


def check(db: Database, **kwargs) -> chain.VerifyReport:
    with db.unit_of_work(readonly=True) as session:
        return chain.verify(session, **kwargs)


def raw(db: Database, sql: str, **params) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(sql), params)


def kinds(report: chain.VerifyReport) -> list[tuple[str, int | None, int | None]]:
    return [(f.kind, f.seal_seq, f.record_id) for f in report.findings]


# --- canonical serialisation -------------------------------------------------------------------


def test_the_canonical_form_is_stable_sorted_and_exact():
    row = SimpleNamespace(
        id=7,
        at=datetime(2026, 3, 2, 3, 0, 0, 5, tzinfo=UTC),
        actor="cli",
        action="points.adjusted",
        subject_type="member",
        subject_id="3",
        program_id=None,
        before={"z": 1, "a": Decimal("1.10")},
        after=None,
    )
    out = chain.canonical(row).decode()
    assert out == (
        '{"action":"points.adjusted","actor":"cli","after":null,'
        '"at":"2026-03-02T03:00:00.000005Z","before":{"a":"1.10","z":1},"id":7,'
        '"program_id":null,"subject_id":"3","subject_type":"member"}'
    )
    # Key order in the JSON columns does not matter; every column does.
    same = SimpleNamespace(**{**vars(row), "before": {"a": Decimal("1.10"), "z": 1}})
    assert chain.record_digest(same) == chain.record_digest(row)
    other = SimpleNamespace(**{**vars(row), "subject_id": "4"})
    assert chain.record_digest(other) != chain.record_digest(row)


# --- seal and verify ---------------------------------------------------------------------------


def test_sealed_records_verify_and_sealing_again_adds_nothing(db, frozen):
    write(db, 25)
    first = seal(db)
    assert (first.seals, first.records, first.head_seq) == (3, 25, 3)
    again = seal(db)
    assert (again.seals, again.records, again.head_hash) == (0, 0, first.head_hash)
    report = check(db)
    assert report.ok, report.findings
    assert (report.seals, report.sealed_records, report.unsealed_records) == (3, 25, 0)
    assert report.head_hash == first.head_hash
    assert report.verified_up_to == OLD + timedelta(milliseconds=24)
    with db.unit_of_work(readonly=True) as session:
        seals = session.execute(select(AuditSeal).order_by(AuditSeal.seq)).scalars().all()
        assert [(s.from_id, s.to_id, s.record_count) for s in seals] == [
            (0, 10, 10),
            (10, 20, 10),
            (20, 25, 5),
        ]
        assert seals[0].prev_hash == chain.GENESIS
        assert [s.prev_hash for s in seals[1:]] == [s.hash for s in seals[:-1]]


def test_recent_records_are_not_yet_sealed_and_that_is_not_tampering(db, frozen):
    write(db, 4)
    write(db, 3, at=T0 - timedelta(seconds=1))  # younger than the grace period
    assert seal(db).records == 4
    report = check(db)
    assert report.ok
    assert (report.sealed_records, report.unsealed_records, report.first_unsealed_id) == (4, 3, 5)
    clock.freeze(T0 + timedelta(minutes=1))
    assert chain.seal_pending(db, now=clock.now()).records == 3
    assert check(db).unsealed_records == 0


def test_an_edited_record_is_reported_with_its_seal(db, frozen):
    write(db, 25)
    seal(db)
    raw(db, "UPDATE audit_log SET actor = 'user:99' WHERE id = 14")
    report = check(db)
    assert not report.ok
    assert kinds(report) == [("edited", 2, 14)]
    assert report.first_record == 14


def test_an_edited_json_value_is_reported(db, frozen):
    write(db, 5)
    seal(db)
    with db.unit_of_work() as session:
        row = session.get(AuditRecord, 3)
        assert row is not None
        row.after = {**(row.after or {}), "balance": 1_000_000}
    assert kinds(check(db)) == [("edited", 1, 3)]


def test_a_deleted_record_is_reported(db, frozen):
    write(db, 25)
    seal(db)
    raw(db, "DELETE FROM audit_log WHERE id = 21")
    assert kinds(check(db)) == [("deleted", 3, 21)]


def test_a_forged_record_inside_a_sealed_range_is_reported(db, frozen):
    write(db, 12)
    raw(db, "DELETE FROM audit_log WHERE id = 5")  # a gap before sealing (a rolled-back id)
    seal(db)
    assert check(db).ok
    with db.unit_of_work() as session:
        session.add(
            AuditRecord(
                id=5,
                at=OLD,
                actor="cli",
                action="points.adjusted",
                subject_type="member",
                subject_id="1",
                program_id=None,
                before=None,
                after={"balance": 50_000},
            )
        )
    assert kinds(check(db)) == [("inserted", 1, 5)]


def test_an_edited_seal_or_a_removed_seal_breaks_the_chain(db, frozen):
    write(db, 25)
    seal(db)
    raw(db, "UPDATE audit_seals SET record_count = 9 WHERE seq = 2")
    assert ("seal_altered", 2, None) in kinds(check(db))
    raw(db, "UPDATE audit_seals SET record_count = 10 WHERE seq = 2")
    assert check(db).ok
    raw(db, "DELETE FROM audit_seals WHERE seq = 2")
    found = kinds(check(db))
    assert ("chain_broken", 3, None) in found
    # The records of the missing seal's range are no longer covered by any seal.
    assert [f for f in found if f[0] == "inserted"] == [("inserted", 3, n) for n in range(11, 21)]


def test_a_resealed_chain_passes_alone_but_not_against_the_recorded_head(db, frozen):
    write(db, 25)
    head = seal(db).head_hash
    assert check(db, expect_head=head).expected_head_seq == 3
    # An intruder edits a record, drops every seal and seals again: a consistent new chain.
    raw(db, "UPDATE audit_log SET actor = 'user:99' WHERE id = 14")
    raw(db, "DELETE FROM audit_seals")
    seal(db)
    assert check(db).ok
    report = check(db, expect_head=head)
    assert [f.kind for f in report.findings] == ["head_missing"]
    # A head recorded earlier stays valid while the chain grows.
    write(db, 3)
    later = seal(db)
    assert later.head_seq == 4
    assert check(db, expect_head=head).ok is False
    assert check(db, expect_head=later.head_hash).ok


def test_program_filter_counts_and_reports_only_that_program(db, frozen):
    with db.unit_of_work() as session:
        bakery = make_program(session, now=OLD).id
        other = make_program(session, code="cafe", now=OLD).id
    write(db, 6, program_id=bakery)
    write(db, 4, program_id=other)
    seal(db, block_size=4)
    raw(db, "DELETE FROM audit_log WHERE program_id = :p AND subject_id = '2'", p=other)
    with db.unit_of_work(readonly=True) as session:
        expected = len(
            session.scalars(select(AuditRecord.id).where(AuditRecord.program_id == bakery)).all()
        )
    mine = check(db, program_id=bakery)
    assert mine.ok and mine.sealed_records == expected >= 6
    theirs = check(db, program_id=other)
    assert [f.kind for f in theirs.findings] == ["deleted"]


def test_the_admin_page_only_checks_the_newest_seals(db, frozen):
    write(db, 30)
    seal(db, block_size=5)  # six seals
    raw(db, "UPDATE audit_log SET actor = 'x' WHERE id = 2")  # in seal 1
    with db.unit_of_work(readonly=True) as session:
        tail = chain.verify(session, last_seals=2)
    assert tail.ok and tail.seals == 2 and tail.checked_from_seq == 5
    raw(db, "UPDATE audit_log SET actor = 'x' WHERE id = 28")  # in seal 6
    with db.unit_of_work(readonly=True) as session:
        assert kinds(chain.verify(session, last_seals=2)) == [("edited", 6, 28)]


# --- concurrency -------------------------------------------------------------------------------


@pytest.mark.postgresql_only
def test_concurrent_sealers_build_one_linear_chain(db):
    now = datetime.now(UTC)
    with db.unit_of_work() as session:
        for n in range(300):
            audit.record(
                session,
                actor=SYSTEM,
                action="points.adjusted",
                subject_type="member",
                subject_id=n,
                at=now - timedelta(minutes=1),
                after={"n": n},
            )
    sealers = 4
    barrier = threading.Barrier(sealers)
    reports: list[chain.SealReport] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            reports.append(chain.seal_pending(db, now=now, block_size=7))
        except BaseException as exc:  # pragma: no cover - shown by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(sealers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sum(r.records for r in reports) == 300  # every record sealed exactly once
    assert sum(r.retries for r in reports) > 0  # they did race for the same places
    with db.unit_of_work(readonly=True) as session:
        seals = session.execute(
            select(AuditSeal.seq, AuditSeal.prev_hash, AuditSeal.hash, AuditSeal.from_id)
            .add_columns(AuditSeal.to_id)
            .order_by(AuditSeal.seq)
        ).all()
    assert [s.seq for s in seals] == list(range(1, len(seals) + 1))
    assert [s.prev_hash for s in seals] == [chain.GENESIS] + [s.hash for s in seals[:-1]]
    assert [s.from_id for s in seals[1:]] == [s.to_id for s in seals[:-1]]
    report = check(db)
    assert report.ok and report.sealed_records == 300


@pytest.mark.postgresql_only
def test_an_open_transaction_holds_sealing_back_until_it_commits(db):
    """A transaction that took an id and has not committed yet: later ids that are visible
    must not be sealed past it, or its record would look inserted into a sealed range."""
    now = datetime.now(UTC)
    slow = db.unit_of_work()
    session = slow.__enter__()
    audit.record(
        session,
        actor=SYSTEM,
        action="slow.write",
        subject_type="member",
        subject_id=1,
        at=now - timedelta(minutes=1),
    )
    session.flush()  # id 1 taken, not committed
    try:
        write(db, 3, at=now - timedelta(minutes=1))  # ids 2..4, committed
        held = chain.seal_pending(db, now=now + timedelta(minutes=1), settle_timeout=0.2)
        assert (held.records, held.held_back) == (0, True)
    finally:
        slow.__exit__(None, None, None)
    assert chain.seal_pending(db, now=now + timedelta(minutes=1)).records == 4
    assert check(db).ok


# --- the command line ----------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("PATRON_DATABASE_URL", "sqlite:///unused-by-these-tests.db")
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def run(cli: CliRunner, db: Database, *args: str, code: int = 0) -> str:
    result = cli.invoke(cli_app, [*args, "--database-url", db.url])
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


def test_the_cli_seals_verifies_and_exits_1_on_tampering(db, frozen, cli):
    write(db, 12)
    out = run(cli, db, "audit", "seal")
    assert "sealed 12 records in 1 blocks" in out
    head = check(db).head_hash
    assert head in out
    out = run(cli, db, "audit", "verify", "--expect-head", head)
    assert "audit chain intact" in out and "12 records" in out
    run(cli, db, "audit", "verify", "--program", "nope", code=2)
    raw(db, "DELETE FROM audit_log WHERE id = 7")
    out = run(cli, db, "audit", "verify", code=1)
    assert "TAMPERED" in out and "deleted (seal #1, record 7)" in out
    raw(db, "DELETE FROM audit_seals")
    run(cli, db, "audit", "seal")
    assert "head_missing" in run(cli, db, "audit", "verify", "--expect-head", head, code=1)


# --- the API and the admin page ------------------------------------------------------------------


def test_the_api_reports_the_chain_to_admin_keys_only(db, frozen, client, keys):
    write(db, 12)  # after the keys fixture's own three records (at T0)
    chain.seal_pending(db, now=T0 + timedelta(minutes=1))
    write(db, 2, at=T0 + timedelta(minutes=1))
    ok = client.get("/api/v1/audit/verify", headers=auth(keys["admin"]))
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["ok"] is True and body["sealed_records"] == 15
    assert body["unsealed_records"] == 2 and body["findings"] == []
    raw(db, "UPDATE audit_log SET action = 'nothing.happened' WHERE id = 4")
    body = client.get("/api/v1/audit/verify", headers=auth(keys["admin"])).json()
    assert body["ok"] is False and body["first_tampered_record"] == 4
    assert body["findings"] == [
        {
            "kind": "edited",
            "seal": 1,
            "record_id": 4,
            "program_id": None,
            "detail": "differs from when sealed",
        }
    ]
    missing = client.get("/api/v1/audit/verify?program=nope", headers=auth(keys["admin"]))
    assert (missing.status_code, missing.json()["error"]) == (404, "program_not_found")
    bad = client.get("/api/v1/audit/verify?expect_head=zz", headers=auth(keys["admin"]))
    assert bad.status_code == 422
    assert client.get("/api/v1/audit/verify", headers=auth(keys["read"])).status_code == 403
    paths = client.get("/openapi.json").json()["paths"]
    assert {"200", "404"} <= set(paths["/api/v1/audit/verify"]["get"]["responses"])


@pytest.mark.usefixtures("_cheap_argon2")
def test_the_admin_page_shows_the_chain_state(db, frozen, client):
    write(db, 5)
    create_staff(db, now=OLD)
    token = sign_in(client, "owner@demo.patron")
    page = client.get("/admin/audit")
    assert 'data-chain="unsealed"' in page.text
    chain.seal_pending(db, now=T0 + timedelta(minutes=1))
    page = client.get("/admin/audit")
    assert 'data-chain="verified"' in page.text and "Chain verified up to" in page.text
    raw(db, "UPDATE audit_log SET actor = 'x' WHERE id = 3")
    page = client.get("/admin/audit")
    assert 'data-chain="tampered"' in page.text and "Tampered at record 3." in page.text
    client.post("/admin/account/language", data={"csrf_token": token, "language": "ko"})
    assert "기록 3에서 변조가 감지되었습니다." in client.get("/admin/audit").text
    client.post("/admin/account/language", data={"csrf_token": token, "language": "zh"})
    assert "记录 3 处检测到篡改。" in client.get("/admin/audit").text
