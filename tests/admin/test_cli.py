"""`patron user …`: create, list, set-password and unlock staff users from the command line."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from patron import clock
from patron.admin import service
from patron.cli import app
from patron.config import get_settings
from tests.admin.helpers import PASSWORD
from tests.conftest import T0


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, frozen) -> Iterator[CliRunner]:
    monkeypatch.setenv("PATRON_DATABASE_URL", "sqlite:///unused-by-these-tests.db")
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def run(cli: CliRunner, db, *args: str, code: int = 0, stdin: str | None = None) -> str:
    result = cli.invoke(app, [*args, "--database-url", db.url], input=stdin)
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


def can_sign_in(db, email: str, password: str) -> str | None:
    with db.unit_of_work() as s:
        return service.authenticate(s, email=email, password=password, now=clock.now()).failure


def test_the_first_owner_comes_from_the_cli(cli, db):
    out = run(cli, db, "user", "create", "--email", "Boss@Shop.example", "--role", "owner",
              "--name", "The Boss", "--password", PASSWORD)  # fmt: skip
    assert "staff user 1 created: boss@shop.example (owner)" in out
    assert PASSWORD not in out
    assert can_sign_in(db, "boss@shop.example", PASSWORD) is None
    listing = run(cli, db, "user", "list")
    assert "boss@shop.example" in listing and "owner" in listing and "active" in listing


def test_a_generated_password_is_printed_once(cli, db):
    out = run(cli, db, "user", "create", "--email", "s@shop.example", "--role", "support",
              "--name", "S", "--generate")  # fmt: skip
    password = re.search(r"password: (\S+)", out)
    assert password is not None and len(password.group(1)) >= 16
    assert can_sign_in(db, "s@shop.example", password.group(1)) is None


def test_the_password_can_be_typed_at_a_prompt(cli, db):
    run(cli, db, "user", "create", "--email", "v@shop.example", "--role", "viewer", "--name", "V",
        stdin=f"{PASSWORD}\n{PASSWORD}\n")  # fmt: skip
    assert can_sign_in(db, "v@shop.example", PASSWORD) is None


def test_bad_input_is_a_clear_error(cli, db):
    out = run(cli, db, "user", "create", "--email", "x@shop.example", "--role", "admin",
              "--name", "X", "--password", PASSWORD, code=2)  # fmt: skip
    assert "invalid_role" in out
    out = run(cli, db, "user", "create", "--email", "x@shop.example", "--role", "viewer",
              "--name", "X", "--password", "short", code=2)  # fmt: skip
    assert "password_too_short" in out
    assert "staff_user_not_found" in run(
        cli, db, "user", "unlock", "--email", "nobody@shop.example", code=2
    )


def test_set_password_and_unlock(cli, db):
    run(cli, db, "user", "create", "--email", "s@shop.example", "--role", "support",
        "--name", "S", "--password", PASSWORD)  # fmt: skip
    for _ in range(5):
        can_sign_in(db, "s@shop.example", "wrong password")
    assert can_sign_in(db, "s@shop.example", PASSWORD) == "locked"
    assert "locked" in run(cli, db, "user", "list")
    assert "s@shop.example unlocked" in run(cli, db, "user", "unlock", "--email", "s@shop.example")
    assert can_sign_in(db, "s@shop.example", PASSWORD) is None
    assert "was not locked" in run(cli, db, "user", "unlock", "--email", "s@shop.example")
    out = run(cli, db, "user", "set-password", "--email", "S@shop.example", "--password",
              "another-secret-1")  # fmt: skip
    assert "sessions have ended" in out
    assert can_sign_in(db, "s@shop.example", "another-secret-1") is None
    assert clock.now() == T0
