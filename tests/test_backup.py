"""`patron backup` / `patron restore` on SQLite and PostgreSQL: a backup taken while a till keeps
selling restores into a fresh database that passes `patron check` and reproduces the manifest,
which in turn equals the source as of the backup. Every refusal exits 2 with a message."""

from __future__ import annotations

import json
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from patron import backup as service
from patron import clock, demo
from patron.audit.service import CLI
from patron.check import run_check
from patron.cli import app
from patron.config import get_settings
from patron.db.engine import Database, normalise_url
from patron.ledger.models import Entry, Purchase
from patron.members.models import Member
from patron.members.schemas import MemberRef
from patron.programs.models import Program
from patron.programs.service import get_program
from patron.sales import purchases
from patron.sales.schemas import PurchaseRequest
from tests.conftest import T0


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    # The CLI writes --database-url into the environment; monkeypatch restores it afterwards.
    monkeypatch.setenv("PATRON_DATABASE_URL", "sqlite:///unused-by-these-tests.db")
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def invoke(cli: CliRunner, *args: str, code: int = 0) -> str:
    result = cli.invoke(app, list(args))
    assert result.exit_code == code, (result.output, result.exception)
    assert "Traceback" not in result.output
    return result.output


@pytest.fixture
def bakery(db: Database, frozen) -> Database:
    """The demo's bakery, small: ten members and a month of sales, refunds and rewards."""
    demo.load(db, now=clock.now(), members_count=10, days=30)
    return db


@pytest.fixture
def fresh_url(db: Database, tmp_path: Path) -> Iterator[str]:
    """An empty database on the same engine (and server) as `db`."""
    if db.dialect == "sqlite":
        yield f"sqlite:///{tmp_path / 'restored.db'}"
        return
    import psycopg

    admin = db.url.replace("postgresql+psycopg://", "postgresql://")
    base, _, _ = admin.rpartition("/")
    name = f"patron_restore_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Till(threading.Thread):
    """Records purchases through the sales service on its own engine until stopped; remembers
    the order ids it committed, in commit order."""

    def __init__(self, url: str, member_ids: list[int]) -> None:
        super().__init__(daemon=True)
        self.db = Database(url, pool_size=2)
        self.member_ids = member_ids
        self.committed: list[str] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        n = 0
        try:
            while not self.stop.is_set():
                external_id = f"T-{n:05d}"
                with self.db.unit_of_work() as session:
                    program = get_program(session, "bakery")
                    purchases.purchase(
                        session,
                        program,
                        PurchaseRequest(
                            external_id=external_id,
                            member=MemberRef(id=self.member_ids[n % len(self.member_ids)]),
                            amount=4500 + 500 * (n % 7),
                        ),
                        actor=CLI,
                        now=clock.now(),
                    )
                self.committed.append(external_id)
                n += 1
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.db.dispose()

    def wait_for(self, count: int, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.committed) < count:
            assert self.error is None, self.error
            assert time.monotonic() < deadline, f"the till made {len(self.committed)} sales"
            time.sleep(0.005)


def totals_of(url: str) -> tuple[dict[str, dict[str, int]], list[str], list[str], int]:
    """(program totals, checker violations, till order ids, last entry id) of a database."""
    engine = create_engine(normalise_url(url), poolclass=NullPool)
    try:
        with Session(engine) as session:
            report = run_check(session)
            till = sorted(
                session.scalars(
                    select(Purchase.external_id).where(Purchase.external_id.like("T-%"))
                )
            )
            last = session.scalar(select(func.max(Entry.id))) or 0
            return service.program_totals(session), report.violations, till, last
    finally:
        engine.dispose()


def test_backup_while_a_till_sells_restores_whole_and_checks_clean(
    bakery: Database, fresh_url: str, tmp_path: Path, cli: CliRunner
):
    with bakery.unit_of_work(readonly=True) as session:
        member_ids = list(session.scalars(select(Member.id).order_by(Member.id)))
    clock.freeze(clock.now() + timedelta(hours=3))
    till = Till(bakery.url, member_ids)
    till.start()
    steps: list[str] = []
    wal_bytes: list[int] = []

    def progress(step: str) -> None:
        # Sales commit between every step: before the copy (on SQLite into the -wal file, until
        # a checkpoint), after the exported snapshot (PostgreSQL: before pg_dump has read it) and
        # after the copy. Only those before the snapshot belong in the backup.
        till.wait_for(len(till.committed) + 3)
        if not steps and bakery.dialect == "sqlite":
            wal = Path(str(bakery.engine.url.database) + "-wal")
            wal_bytes.append(wal.stat().st_size)
        steps.append(step)

    target = tmp_path / "patron.backup"
    try:
        till.wait_for(3)
        manifest = service.backup(bakery.url, target, progress=progress)
        till.wait_for(len(till.committed) + 3)
    finally:
        till.stop.set()
        till.join(10)
    assert till.error is None

    # The manifest describes the copy: the demo, plus the till's sales up to some point.
    assert manifest.engine == bakery.dialect
    assert manifest.check_ok is True and manifest.violations == []
    assert set(manifest.programs) == {"bakery"}
    assert manifest.programs["bakery"]["accounts"] == 10  # days=30: no win-back cohort
    assert json.loads(service.manifest_path(target).read_text())["sha256"] == manifest.sha256

    output = invoke(cli, "restore", "--from", str(target), "--database", fresh_url)
    assert "restore verified" in output and "ledger consistent" in output

    restored, violations, till_rows, last_entry = totals_of(fresh_url)
    assert violations == []
    assert restored == manifest.programs
    # The backup holds a prefix of the till's sales in commit order: some, never all.
    assert 3 <= len(till_rows) < len(till.committed)
    assert till_rows == till.committed[: len(till_rows)]
    assert manifest.tables["purchases"] == manifest.programs["bakery"]["purchases"]
    assert len(steps) >= 3
    if bakery.dialect == "sqlite":
        assert wal_bytes[0] > 0  # WAL mode with a live -wal file, as under a running server

    # The source as of the backup: the entries up to the backup's last one (append-only, and
    # the one till commits them in id order) sum to the manifest's figures.
    source = create_engine(normalise_url(bakery.url), poolclass=NullPool)
    try:
        with Session(source) as session:
            row = session.execute(
                select(func.count(), func.sum(Entry.points))
                .join(Program, Program.id == Entry.program_id)
                .where(Program.code == "bakery", Entry.id <= last_entry)
            ).one()
            later = session.scalar(
                select(func.count()).select_from(Entry).where(Entry.id > last_entry)
            )
    finally:
        source.dispose()
    assert (row[0], row[1]) == (
        manifest.programs["bakery"]["entries"],
        manifest.programs["bakery"]["points_net"],
    )
    assert later and later > 0  # the source moved on after the backup


def test_restore_refuses_a_target_with_tables_or_missing(db: Database, tmp_path: Path, cli):
    target = tmp_path / "b.backup"
    invoke(cli, "backup", "--database", db.url, "--to", str(target))
    # The source itself: migrated, so it has tables.
    output = invoke(cli, "restore", "--from", str(target), "--database", db.url, code=2)
    assert "target_not_empty" in output and "--force" in output
    if db.dialect == "postgresql":
        missing = db.url.rpartition("/")[0] + f"/patron_missing_{secrets.token_hex(4)}"
        output = invoke(cli, "restore", "--from", str(target), "--database", missing, code=2)
        assert "cannot_connect" in output and "does not exist" in output


@pytest.fixture(scope="module")
def small_backup(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Path:
    """A SQLite backup of a tiny demo (three members, ten days), made once for this module."""
    folder = tmp_path_factory.mktemp("small")
    source = folder / "source.db"
    shutil.copy(sqlite_template, source)
    database = Database(f"sqlite:///{source}")
    demo.load(database, now=T0, members_count=3, days=10)
    database.dispose()
    service.backup(f"sqlite:///{source}", folder / "patron.backup")
    return folder / "patron.backup"


@pytest.fixture
def sqlite_backup(small_backup: Path, tmp_path: Path) -> Path:
    """This test's own copy of the small backup and its manifest (tests damage them)."""
    target = tmp_path / small_backup.name
    shutil.copy(small_backup, target)
    shutil.copy(service.manifest_path(small_backup), service.manifest_path(target))
    return target


def test_restore_force_replaces_a_sqlite_database(
    sqlite_backup: Path, tmp_path: Path, cli, sqlite_template: Path
):
    other = tmp_path / "other.db"
    shutil.copy(sqlite_template, other)  # migrated: it has tables, so it is not empty
    url = f"sqlite:///{other}"
    output = invoke(cli, "restore", "--from", str(sqlite_backup), "--database", url, code=2)
    assert "target_not_empty" in output
    output = invoke(cli, "restore", "--from", str(sqlite_backup), "--database", url, "--force")
    assert "restore verified" in output
    manifest = service.Manifest.read(service.manifest_path(sqlite_backup))
    assert totals_of(url)[0] == manifest.programs
    assert manifest.programs["bakery"]["accounts"] == 3


def test_restore_exits_1_when_the_totals_differ_from_the_manifest(
    sqlite_backup: Path, tmp_path: Path, cli
):
    path = service.manifest_path(sqlite_backup)
    data = json.loads(path.read_text())
    data["programs"]["bakery"]["available"] += 10
    path.write_text(json.dumps(data))
    output = invoke(
        cli,
        "restore",
        "--from",
        str(sqlite_backup),
        "--database",
        f"sqlite:///{tmp_path / 'r.db'}",
        code=1,
    )
    assert "program bakery available" in output and "differ" in output


def test_a_damaged_backup_is_refused(sqlite_backup: Path, tmp_path: Path, cli):
    with sqlite_backup.open("r+b") as fh:
        fh.seek(4096)
        fh.write(b"\xff" * 16)
    output = invoke(
        cli,
        "restore",
        "--from",
        str(sqlite_backup),
        "--database",
        f"sqlite:///{tmp_path / 'r.db'}",
        code=2,
    )
    assert "bad_manifest" in output and "SHA-256" in output
    assert not (tmp_path / "r.db").exists()


def test_restore_errors_exit_2(sqlite_backup: Path, tmp_path: Path, cli):
    fresh = f"sqlite:///{tmp_path / 'r.db'}"
    output = invoke(cli, "restore", "--from", str(tmp_path / "nope"), "--database", fresh, code=2)
    assert "not_found" in output and "no backup file" in output
    # The wrong engine is refused before any connection is tried.
    output = invoke(
        cli,
        "restore",
        "--from",
        str(sqlite_backup),
        "--database",
        "postgresql://nobody@127.0.0.1:1/none",
        code=2,
    )
    assert "wrong_engine" in output and "sqlite backup and the target is postgresql" in output
    lone = tmp_path / "lone.db"
    lone.write_bytes(sqlite_backup.read_bytes())
    output = invoke(cli, "restore", "--from", str(lone), "--database", fresh, code=2)
    assert "no manifest" in output


def test_backup_errors_exit_2(sqlite_backup: Path, tmp_path: Path, cli, monkeypatch):
    output = invoke(
        cli,
        "backup",
        "--database",
        f"sqlite:///{tmp_path / 'missing.db'}",
        "--to",
        str(tmp_path / "x"),
        code=2,
    )
    assert "no SQLite database" in output
    output = invoke(
        cli,
        "backup",
        "--database",
        f"sqlite:///{tmp_path / 'source.db'}",
        "--to",
        str(sqlite_backup),
        code=2,
    )
    assert "backup_exists" in output
    output = invoke(
        cli,
        "backup",
        "--database",
        "mysql://u@localhost/patron",
        "--to",
        str(tmp_path / "y"),
        code=2,
    )
    assert "wrong_engine" in output
    # No pg_dump anywhere: a clear message before anything connects.
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(service.glob, "glob", lambda pattern: [])
    output = invoke(
        cli,
        "backup",
        "--database",
        "postgresql://nobody@127.0.0.1:1/none",
        "--to",
        str(tmp_path / "z"),
        code=2,
    )
    assert "tool_missing" in output and "pg_dump" in output
    assert not list(tmp_path.glob("z*")) and not list(tmp_path.glob("x*"))
