"""Set-up for the bulk tests: the bakery program with the S2 club's tiers, files to import."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from patron import clock
from patron.audit.service import CLI
from patron.bulk import service
from patron.db.engine import Database
from patron.programs.models import Program
from tests.factories import make_program
from tests.tiers._tier_helpers import set_club


@pytest.fixture
def bakery(db: Database, frozen) -> Program:
    with db.unit_of_work() as session:
        program = make_program(session, now=frozen)
        set_club(session, program, now=frozen)
        return program


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_xlsx(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(list(header))
    for row in rows:
        sheet.append(list(row))
    book.save(path)
    return path


def run_import(
    db: Database,
    path: Path,
    *,
    kind: str = "members",
    program: str = "bakery",
    mapping: dict[str, str] | None = None,
    dry_run: bool = False,
    chunk_size: int = 3,
) -> service.JobView:
    job = service.create_job(
        db, kind=kind, program=program, path=path, mapping=mapping, dry_run=dry_run, actor=CLI
    )
    return service.run_job(db, job.id, path, actor=CLI, chunk_size=chunk_size)


def errors_of(db: Database, job_id: int) -> list[tuple[int, str | None, str]]:
    with db.unit_of_work(readonly=True) as session:
        return [(e.row, e.column, e.code) for e in service.job_errors(session, job_id)]


def now() -> Any:
    return clock.now()


@pytest.fixture
def sdb(tmp_path: Path, sqlite_template: Path):
    """SQLite only, for what does not depend on the engine (file reading, mapping, reports)."""
    import shutil

    path = tmp_path / "patron.db"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    yield database
    database.dispose()


@pytest.fixture
def sbakery(sdb: Database, frozen) -> Program:
    with sdb.unit_of_work() as session:
        program = make_program(session, now=frozen)
        set_club(session, program, now=frozen)
        return program
