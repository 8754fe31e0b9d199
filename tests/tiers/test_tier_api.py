"""Tier setup, manual changes, history and the evaluation through HTTP and the CLI."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from patron import clock
from patron.cli import app as cli_app
from patron.cli import console
from patron.config import get_settings
from tests.api.helpers import enroll
from tests.conftest import auth
from tests.factories import BAKERY
from tests.tiers._tier_helpers import AFTER_H1, club_setup


@pytest.fixture
def admin(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["admin"])


@pytest.fixture
def pos(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["pos"])


@pytest.fixture
def reader(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["read"])


@pytest.fixture
def bakery(client, admin) -> dict[str, Any]:
    response = client.post("/api/v1/programs", json=BAKERY, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def club(client, admin, bakery) -> dict[str, Any]:
    response = client.put("/api/v1/programs/bakery/tiers", json=club_setup(), headers=admin)
    assert response.status_code == 200, response.text
    return response.json()


def _bad(mutate) -> dict[str, Any]:
    body = copy.deepcopy(club_setup())
    mutate(body)
    return body


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["tiers"][2].update(code="silver"), "tiers.2.code"),
        (lambda b: b["tiers"][2].update(threshold=1000), "tiers.2.threshold"),
        (lambda b: b["tiers"][0].update(threshold=5), "tiers.0.threshold"),
        (lambda b: b["tiers"][1].update(multiplier="-1"), "tiers.1.multiplier"),
        (lambda b: b["policy"].update(metric="balance"), "policy.metric"),
        (lambda b: b["policy"].update(downgrade="never"), "policy.downgrade"),
        (lambda b: b.update(tiers=[]), "tiers"),
    ],
)
def test_invalid_setups_are_422_naming_the_field(client, admin, bakery, mutate, field):
    response = client.put("/api/v1/programs/bakery/tiers", json=_bad(mutate), headers=admin)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"{field}:"), response.json()


def test_setup_round_trips_and_needs_admin(client, admin, reader, club):
    assert [t["code"] for t in club["tiers"]] == ["bronze", "silver", "gold", "platinum", "diamond"]
    assert club["tiers"][1]["multiplier"] == "1.5" and club["policy"]["window"] == "half_year"
    got = client.get("/api/v1/programs/bakery/tiers", headers=reader)
    assert got.status_code == 200 and got.json() == club
    denied = client.put("/api/v1/programs/bakery/tiers", json=club_setup(), headers=reader)
    assert denied.status_code == 403


def test_the_s2_appeal_through_the_api(client, admin, pos, reader, club, frozen):
    member = enroll(client, admin)
    sale = client.post(
        "/api/v1/programs/bakery/purchases",
        headers=pos,
        json={"external_id": "A-1", "member": {"id": member["id"]}, "amount": "99000"},
    )
    assert sale.status_code == 201, sale.text
    history = client.get(
        f"/api/v1/programs/bakery/members/{member['id']}/tier-history", headers=reader
    ).json()
    assert [(h["to_tier"], h["reason"], h["metric_value"]) for h in history] == [
        ("bronze", "upgrade", 990)
    ]

    url = f"/api/v1/programs/bakery/members/{member['id']}/tier"
    no_reason = client.post(url, json={"tier": "silver"}, headers=admin)
    assert no_reason.status_code == 422 and "reason" in no_reason.json()["detail"]
    assert (
        client.post(
            url, json={"tier": "silver", "reason": "ten points short"}, headers=pos
        ).status_code
        == 403
    )
    manual = client.post(
        url,
        json={"tier": "silver", "reason": "ten points short", "until": "2026-12-31"},
        headers=admin,
    )
    assert manual.status_code == 200, manual.text
    assert manual.json()["tier"] == "silver" and manual.json()["manual"]
    assert manual.json()["change"]["note"] == "ten points short"

    # The silver multiplier applies to the next purchase.
    next_sale = client.post(
        "/api/v1/programs/bakery/purchases",
        headers=pos,
        json={"external_id": "A-2", "member": {"id": member["id"]}, "amount": "10000"},
    )
    assert next_sale.json()["points_earned"] == 150

    evaluate = "/api/v1/programs/bakery/tiers/evaluate"
    clock.freeze(AFTER_H1)
    dry = client.post(evaluate, json={"dry_run": True}, headers=admin)
    assert dry.status_code == 200, dry.text
    assert dry.json()["period"] == "2026H1" and dry.json()["kept_manual"] == 1
    real = client.post(evaluate, json={"as_of": "2026-07-01"}, headers=admin).json()
    assert real["moves"] == {} and real["kept_manual"] == 1 and not real["already_done"]
    assert client.post(evaluate, json={}, headers=admin).json()["already_done"]
    future = client.post(evaluate, json={"as_of": "2030-01-01"}, headers=admin)
    assert future.status_code == 422


def test_tier_calls_on_a_program_without_tiers(client, admin, bakery):
    member = enroll(client, admin)
    response = client.post(
        f"/api/v1/programs/bakery/members/{member['id']}/tier",
        json={"tier": "gold", "reason": "because"},
        headers=admin,
    )
    assert response.status_code == 404 and response.json()["error"] == "tiers_not_configured"
    evaluate = client.post("/api/v1/programs/bakery/tiers/evaluate", json={}, headers=admin)
    assert (evaluate.status_code, evaluate.json()["error"]) == (404, "tiers_not_configured")


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("PATRON_DATABASE_URL", "sqlite:///unused-by-these-tests.db")
    monkeypatch.setattr(console, "_width", 200)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_the_cli_shows_sets_and_evaluates(cli, db, client, admin, pos, club, frozen):
    member = enroll(client, admin)
    client.post(
        "/api/v1/programs/bakery/purchases",
        headers=pos,
        json={"external_id": "A-1", "member": {"id": member["id"]}, "amount": "150000"},
    )

    def run(*args: str, code: int = 0) -> str:
        result = cli.invoke(cli_app, ["tiers", *args, "--database-url", db.url])
        assert result.exit_code == code, (result.output, result.exception)
        return result.output

    shown = run("show", "--program", "bakery")
    assert "half_year" in shown and "Gold / 골드" in shown and "5% off cakes" in shown
    out = run(
        "set",
        "--program",
        "bakery",
        "--member",
        str(member["id"]),
        "--tier",
        "gold",
        "--reason",
        "VIP appeal [S2]",
        "--until",
        "2026-06-30",
    )
    assert "silver → gold until 2026-06-30 (manual: VIP appeal [S2])" in out
    assert "unknown_tier" in run(
        "set",
        "--program",
        "bakery",
        "--member",
        str(member["id"]),
        "--tier",
        "ruby",
        "--reason",
        "nope",
        code=2,
    )
    clock.freeze(AFTER_H1)
    # A window that has not ended cannot be evaluated, not even as a dry run.
    assert "as_of_in_future" in run(
        "evaluate", "--program", "bakery", "--as-of", "2027-01-01", "--dry-run", code=2
    )
    dry = run("evaluate", "--program", "bakery", "--as-of", "2026-07-01", "--dry-run")
    assert "dry run: period 2026H1: 1 accounts" in dry and "gold" in dry
    real = run("evaluate", "--program", "bakery", "--as-of", "2026-07-01", "--batch-size", "1")
    assert (
        "period 2026H1: 1 accounts, 1 moved, 0 kept in grace, 0 manual kept, 1 manual ended" in real
    )
    assert "silver" in real  # the table row gold → silver
    again = run("evaluate", "--program", "bakery", "--as-of", "2026-07-01")
    assert "already evaluated, nothing changed" in again
