"""The `patron` command, driven through typer's CliRunner on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from patron import clock
from patron.auth.service import authenticate
from patron.cli import app
from patron.config import get_settings
from patron.db.engine import Database
from patron.errors import Unauthorized

KEY = re.compile(r"ptr_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    # The CLI writes --database-url into the environment; monkeypatch restores it afterwards.
    monkeypatch.setenv("PATRON_DATABASE_URL", "sqlite:///unused-by-these-tests.db")
    monkeypatch.setenv("COLUMNS", "200")  # rich must not wrap the printed API key
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def run(cli: CliRunner, db_url: str, *args: str, code: int = 0) -> str:
    result = cli.invoke(app, [*args, "--database-url", db_url])
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


def test_db_upgrade_creates_the_schema_on_a_new_sqlite_file(cli, tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    out = run(cli, url, "db", "upgrade")
    assert "schema up to date" in out
    engine = create_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"accounts", "lots", "entries", "movements", "purchases", "refunds"} <= tables
    assert "schema up to date" in run(cli, url, "db", "upgrade")  # idempotent


def test_the_demo_prints_the_address_the_server_listens_on(cli, tmp_path: Path, monkeypatch):
    # `patron serve --demo --port 8123` printed http://127.0.0.1:8000/m/bakery all the same.
    monkeypatch.setenv("PATRON_PORT", "8123")
    monkeypatch.setenv("PATRON_HOST", "0.0.0.0")  # every interface: shown as loopback
    get_settings.cache_clear()
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    run(cli, url, "db", "upgrade")
    out = run(cli, url, "demo", "--members", "3", "--days", "5")
    assert "member page: http://127.0.0.1:8123/m/bakery" in out
    assert "http://127.0.0.1:8123/m/bakery/join" in out
    assert ":8000" not in out
    # Fewer members than the demo's walk-through needs is a usage error, not a traceback.
    refused = cli.invoke(app, ["demo", "--members", "2", "--database-url", url])
    assert refused.exit_code == 2 and "greater than or equal to 3" in refused.output


def test_demo_check_expire_and_tampering(cli, db: Database, frozen):
    url = db.url
    assert "schema up to date" in run(cli, url, "db", "upgrade")
    out = run(cli, url, "demo", "--members", "5", "--days", "60")
    assert "demo loaded" in out and "5 members" in out
    assert "already has a program" in run(cli, url, "demo", "--members", "5", "--days", "60")
    assert "ledger consistent" in run(cli, url, "check")

    def expire_entries() -> int:
        with db.unit_of_work(readonly=True) as session:
            return session.execute(
                text("SELECT count(*) FROM entries WHERE kind = 'expire'")
            ).scalar_one()

    before = expire_entries()
    # A year and a half later every demo lot is past its date.
    dry = run(cli, url, "expire", "--dry-run", "--as-of", "2027-09-01T00:00:00+00:00")
    would = re.search(r"would expire (\d+) points in (\d+) lots \((\d+) accounts\)", dry)
    assert would is not None, dry
    points, lots, accounts = map(int, would.groups())
    assert points > 0 and lots > 0 and 1 <= accounts <= 5
    assert expire_entries() == before  # the dry run changed nothing

    # A real run in the future would expire points before their date: refused.
    out = run(cli, url, "expire", "--as-of", "2027-09-01T00:00:00+00:00", code=2)
    assert "in the future" in out
    assert expire_entries() == before

    clock.freeze(datetime(2027, 9, 1, tzinfo=UTC))
    done = run(cli, url, "expire", "--batch-size", "2")
    assert f"expired {points} points in {lots} lots ({accounts} accounts)" in done
    assert expire_entries() == before + lots
    again = run(cli, url, "expire")
    assert "expired 0 points in 0 lots" in again
    assert "ledger consistent" in run(cli, url, "check")

    with db.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE accounts SET available = available + 1 "
                "WHERE id = (SELECT min(id) FROM accounts)"
            )
        )
    out = run(cli, url, "check", code=1)
    assert "violation" in out and "account totals differ" in out


def test_apikey_create_prints_a_key_that_authenticates(cli, db: Database, frozen):
    out = run(cli, db.url, "apikey", "create", "--name", "x", "--scope", "pos")
    match = KEY.search(out)
    assert match is not None, out
    assert "not shown again" in out
    with db.unit_of_work(readonly=True) as session:
        actor = authenticate(session, match.group())
        assert actor.kind == "api_key" and actor.scopes == frozenset({"pos"})
        with pytest.raises(Unauthorized):
            authenticate(session, match.group()[:-1] + ("A" if match.group()[-1] != "A" else "B"))

    listed = run(cli, db.url, "apikey", "list")
    assert "x" in listed and "pos" in listed and match.group() not in listed
    key_id = re.search(r"API key (\d+)", out).group(1)
    assert f"API key {key_id} revoked" in run(cli, db.url, "apikey", "revoke", key_id)
    with db.unit_of_work(readonly=True) as session, pytest.raises(Unauthorized) as err:
        authenticate(session, match.group())
    assert err.value.code == "revoked_api_key"


def test_apikey_with_an_unknown_scope_fails_clearly(cli, db: Database, frozen):
    out = run(cli, db.url, "apikey", "create", "--name", "x", "--scope", "superuser", code=2)
    assert "invalid_scope" in out and "pos, read, admin" in out and "superuser" in out
    with db.unit_of_work(readonly=True) as session:
        assert session.execute(text("SELECT count(*) FROM api_keys")).scalar_one() == 0
