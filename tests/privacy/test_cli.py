"""`patron privacy …` with typer's CliRunner: export, erase, holds, requests, consent CSV and
consent text versions."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from patron.audit.models import AuditRecord
from patron.cli import app
from patron.members.models import Member
from tests.admin.helpers import Seeded

runner = CliRunner()


@pytest.fixture
def url(db, seeded: Seeded, monkeypatch) -> str:
    from patron.config import get_settings

    address = db.engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("PATRON_DATABASE_URL", address)
    get_settings.cache_clear()
    yield address
    get_settings.cache_clear()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["privacy", *args])
    return result.exit_code, result.output


def test_export_writes_the_zip_and_is_audited(db, url, seeded, tmp_path: Path):
    target = tmp_path / "kim.zip"
    code, out = run("export", "010-1234-5678", "--to", str(target))
    assert code == 0, out
    archive = zipfile.ZipFile(target)
    assert json.loads(archive.read("profile.json"))["id"] == seeded.member_id
    assert json.loads(archive.read("manifest.json"))["source"] == "cli"
    with db.unit_of_work(readonly=True) as s:
        assert s.scalar(select(AuditRecord.actor).where(AuditRecord.action == "privacy.exported"))
    assert run("export", "no-such-member", "--to", str(target))[0] == 2


def test_hold_blocks_erase_then_release_and_erase(db, url, seeded):
    code, out = run("hold", str(seeded.member_id), "--reason", "court order 12")
    assert code == 0, out
    code, out = run("erase", "BKR100000", "--program", "bakery", "--yes")
    assert code == 2 and "legal_hold" in out
    with db.unit_of_work(readonly=True) as s:
        member = s.get(Member, seeded.member_id)
        assert member is not None and member.status == "active"
    assert run("release", str(seeded.member_id), "1", "--reason", "")[0] == 2
    code, out = run("release", str(seeded.member_id), "1", "--reason", "order lifted")
    assert code == 0, out
    code, out = run("erase", "minji@example.com", "--program", "bakery", "--yes")
    assert code == 0, out
    assert "erased" in out
    with db.unit_of_work(readonly=True) as s:
        member = s.get(Member, seeded.member_id)
        assert member is not None and (member.status, member.email) == ("erased", None)
    # Her old card no longer finds her.
    assert run("export", "BKR100000", "--to", "/dev/null")[0] == 2


@pytest.mark.sqlite_only
def test_consent_csv_and_versions(db, url, seeded, tmp_path: Path):
    code, out = run("consent-version", "bakery", "profiling", "2026-12")
    assert code == 0, out
    assert run("consent-version", "bakery", "astrology", "1")[0] == 2
    assert run("consent-version", "nope", "profiling", "1")[0] == 2
    from patron import clock
    from patron.audit.service import CLI
    from patron.privacy import consents
    from patron.programs.service import get_program

    with db.unit_of_work() as s:
        member = s.get(Member, seeded.member_id)
        assert member is not None
        consents.record(
            s, get_program(s, "bakery"), member, ["profiling"], granted=True, source="till",
            version=None, note="secret note", actor=CLI, now=clock.now(),
        )  # fmt: skip
    target = tmp_path / "consents.csv"
    code, out = run("consents", "bakery", "--to", str(target))
    assert code == 0, out
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert {"member_id": str(seeded.member_id), "purpose": "profiling", "granted": "true",
            "version": "2026-12", "source": "till"}.items() <= rows[-1].items()  # fmt: skip
    assert "secret note" not in target.read_text()
    code, out = run("consents", "bakery")
    assert code == 0 and out.startswith("member_id,purpose")
    code, out = run("requests", "--program", "bakery")
    assert code == 0 and "0 open erasure request(s)" in out
