"""Rule tests: example sales with the points they must earn, kept and run over HTTP and with
`patron rules test` (JUnit XML), against the rules in force and against a proposal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from patron.audit.models import AuditRecord
from patron.cli import app as cli_app
from patron.cli import console
from patron.config import get_settings
from tests.api import conftest as api_fixtures
from tests.tiers._tier_helpers import club_setup

admin, pos, reader, bakery = (
    api_fixtures.admin,
    api_fixtures.pos,
    api_fixtures.reader,
    api_fixtures.bakery,
)
P = "/api/v1/programs/bakery"
E = f"{P}/rules/examples"
BASIC = {
    "sale": {"amount": 25800, "lines": [{"sku": "LATTE", "amount": 25800}]},
    "expected_points": 250,
    "note": "a 25,800 KRW sale by a basic member earns 250",
}
# The base rate doubled: what a marketer might propose.
DOUBLE = {"rules": [{"id": "base", "kind": "base_rate", "points": 20, "per_amount": "1000"}]}


def put(client, headers, name: str, body: dict[str, Any]):
    return client.put(f"{E}/{name}", json=body, headers=headers)


def run(client, headers, proposal: dict[str, Any] | None = None, **params: str):
    if proposal is None:
        return client.post(f"{E}/run", headers=headers, params=params)
    return client.post(f"{E}/run", json=proposal, headers=headers, params=params)


def test_examples_are_kept_and_run_against_the_rules_in_force_and_a_proposal(
    frozen, client, admin, pos, reader, bakery, db
):
    saved = put(client, admin, "basic-25800", BASIC)
    assert saved.status_code == 200, saved.text
    assert saved.json()["name"] == "basic-25800" and saved.json()["expected_points"] == 250
    assert [e["name"] for e in client.get(E, headers=reader).json()] == ["basic-25800"]

    now = run(client, reader)
    assert now.status_code == 200, now.text
    body = now.json()
    assert (body["passed"], body["failed"], body["changed"]) == (1, 0, 0)
    [result] = body["results"]
    assert (result["points"], result["current_points"], result["passed"]) == (250, 250, True)
    assert [s["rule"] for s in result["breakdown"]] == ["base"]

    proposed = run(client, pos, DOUBLE).json()
    assert (proposed["passed"], proposed["failed"], proposed["changed"]) == (0, 1, 1)
    assert proposed["rule_version"] is None and proposed["current_version"] == 1
    [result] = proposed["results"]
    assert (result["points"], result["current_points"]) == (500, 250)

    xml = run(client, reader, DOUBLE, format="junit")
    assert xml.status_code == 200 and xml.headers["content-type"].startswith("application/xml")
    suite = ElementTree.fromstring(xml.content)
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "1", "0")
    [failure] = suite.iter("failure")
    assert failure.get("message") == "expected 250 points, got 500"

    # Replaced by name, then deleted.
    assert put(client, admin, "basic-25800", {**BASIC, "expected_points": 500}).status_code == 200
    assert run(client, reader, DOUBLE).json()["passed"] == 1
    assert client.delete(f"{E}/basic-25800", headers=admin).status_code == 204
    gone = client.get(f"{E}/basic-25800", headers=reader)
    assert (gone.status_code, gone.json()["error"]) == (404, "rule_example_not_found")
    assert run(client, reader).json()["results"] == []
    # Each change is audited: who, what, before and after.
    with db.unit_of_work(readonly=True) as session:
        trail = session.execute(
            select(AuditRecord.action, AuditRecord.before, AuditRecord.after)
            .where(AuditRecord.subject_id == "bakery:basic-25800")
            .order_by(AuditRecord.id)
        ).all()
    assert [a for a, _b, _a in trail] == [
        "rules.example_saved",
        "rules.example_saved",
        "rules.example_deleted",
    ]
    assert trail[0][1] is None and trail[0][2]["expected_points"] == 250
    assert (trail[1][1]["expected_points"], trail[1][2]["expected_points"]) == (250, 500)
    assert trail[2][1]["expected_points"] == 500 and trail[2][2] is None


def test_a_publish_through_the_api_answers_with_the_rule_tests_it_changed(
    frozen, client, admin, reader, bakery
):
    assert put(client, admin, "basic-25800", BASIC).status_code == 200
    before = client.get(f"{P}/rules", headers=reader).json()
    assert before.get("tests") is None  # reads carry no test run

    doubled = client.put(f"{P}/rules", json=DOUBLE, headers=admin)
    assert doubled.status_code == 200, doubled.text
    tests = doubled.json()["tests"]
    assert tests["rule_version"] == doubled.json()["version"] == before["version"] + 1
    assert (tests["passed"], tests["failed"], tests["changed"]) == (0, 1, 1)
    [result] = tests["results"]
    # Priced under the version published, beside the one it replaced.
    assert (result["points"], result["current_points"], result["passed"]) == (500, 250, False)

    # A one-rule edit is a publish too: back to the single rate, the example passes again.
    edit = client.put(
        f"{P}/rules/items/base",
        json={"id": "base", "kind": "base_rate", "points": 10, "per_amount": "1000"},
        headers=admin,
    )
    assert edit.status_code == 200, edit.text
    [result] = edit.json()["tests"]["results"]
    assert (result["points"], result["current_points"], result["passed"]) == (250, 500, True)
    assert edit.json()["tests"]["changed"] == 1


def test_a_tier_example_uses_the_tier_multiplier_and_a_bad_one_is_reported(
    frozen, client, admin, reader, bakery
):
    setup = client.put(f"{P}/tiers", json=club_setup(), headers=admin)
    assert setup.status_code == 200, setup.text
    gold = {"sale": {"amount": 25800}, "member": {"tier": "gold"}, "expected_points": 500}
    assert put(client, admin, "gold-25800", gold).status_code == 200
    wrong = {"sale": {"amount": 25800}, "member": {"tier": "vip"}, "expected_points": 1}
    assert put(client, admin, "vip", wrong).status_code == 200
    mismatch = {
        "sale": {"amount": 100, "lines": [{"amount": 40}]},
        "expected_points": 0,
    }
    assert put(client, admin, "lines", mismatch).status_code == 200

    body = run(client, reader).json()
    results = {r["name"]: r for r in body["results"]}
    assert results["gold-25800"]["points"] == 500 and results["gold-25800"]["passed"]
    assert (results["vip"]["error"], results["vip"]["passed"]) == ("unknown_tier", False)
    assert results["lines"]["error"] == "lines_total_mismatch"
    assert (body["passed"], body["failed"]) == (1, 2)
    suite = ElementTree.fromstring(run(client, reader, format="junit").content)
    assert (suite.get("failures"), suite.get("errors")) == ("0", "2")


def test_examples_need_the_right_scope_and_valid_input(frozen, client, admin, pos, bakery):
    denied = put(client, pos, "basic", BASIC)
    assert (denied.status_code, denied.json()["error"]) == (403, "missing_scope")
    bad_name = put(client, admin, "Not A Slug", BASIC)
    assert bad_name.status_code == 422
    negative = put(client, admin, "basic", {**BASIC, "expected_points": -1})
    assert negative.status_code == 422
    assert negative.json()["detail"].startswith("expected_points"), negative.json()
    missing = client.delete(f"{E}/nothing", headers=admin)
    assert (missing.status_code, missing.json()["error"]) == (404, "rule_example_not_found")


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("PATRON_DATABASE_URL", "sqlite:///unused-by-these-tests.db")
    monkeypatch.setattr(console, "_width", 200)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_patron_rules_test_exits_1_on_a_failure_and_writes_junit(
    frozen, client, admin, bakery, db, cli, tmp_path: Path
):
    assert put(client, admin, "basic-25800", BASIC).status_code == 200
    args = ["rules", "test", "--program", "bakery", "--database-url", db.url]
    ok = cli.invoke(cli_app, args)
    assert ok.exit_code == 0, ok.output
    assert "1 passed, 0 failed, 0 changed" in ok.output

    proposal = tmp_path / "double.json"
    proposal.write_text(json.dumps(DOUBLE), encoding="utf-8")
    report = tmp_path / "rules.xml"
    failed = cli.invoke(cli_app, [*args, "--rules", str(proposal), "--junit", str(report)])
    assert failed.exit_code == 1, failed.output
    assert "0 passed, 1 failed, 1 changed" in failed.output
    suite = ElementTree.fromstring(report.read_text(encoding="utf-8"))
    assert suite.get("failures") == "1"

    # Examples from a file instead of the stored ones (a business's own CI).
    kept = tmp_path / "examples.json"
    kept.write_text(json.dumps({"double": {**BASIC, "expected_points": 500}}), encoding="utf-8")
    from_file = cli.invoke(cli_app, [*args, "--rules", str(proposal), "--examples", str(kept)])
    assert from_file.exit_code == 0, from_file.output
    assert "double" in from_file.output

    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    bad = cli.invoke(cli_app, [*args, "--examples", str(broken)])
    assert bad.exit_code == 2 and "invalid_file" in bad.output


def test_the_demo_ships_rule_examples_that_pass(db, frozen):
    from patron import demo
    from patron.earning import examples
    from patron.programs.service import get_program

    demo.load(db, now=frozen, members_count=3, days=20)
    with db.unit_of_work(readonly=True) as session:
        report = examples.run(session, get_program(session, "bakery"), now=frozen)
    assert [r.name for r in report.results] == sorted(demo.DEMO_RULE_EXAMPLES)
    assert (report.passed, report.failed) == (3, 0), report.results
