"""The campaigns section of the admin UI (build, confirm, launch, results; who may do what)
and `patron campaigns list|show|launch|results|run`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from patron.cli import app as cli_app
from tests.admin.helpers import STAFF, sign_in
from tests.campaigns.conftest import N


def _form(csrf: str, **extra: str) -> dict[str, str]:
    return {
        "csrf_token": csrf, "program": "bakery", "code": "ab", "name": "A/B", "segment": "club",
        "targeting": "snapshot", "holdout_pct": "10", "days": "28", "budget_points": "",
        "budget_coupons": "",
        "arm0_key": "a", "arm0_name": "Coupon", "arm0_share": "50", "arm0_kind": "coupon",
        "arm0_reward": "pastry",
        "arm1_key": "b", "arm1_name": "Bonus", "arm1_share": "50", "arm1_kind": "points",
        "arm1_points": "500",
        **extra,
    }  # fmt: skip


@pytest.mark.sqlite_only
def test_a_marketer_builds_confirms_launches_and_reads_results(client, staff, world):
    csrf = sign_in(client, STAFF["marketer"][0])
    home = client.get("/admin/campaigns", params={"program": "bakery"})
    assert home.status_code == 200 and "/admin/campaigns/new" in home.text
    new = client.get("/admin/campaigns/new", params={"program": "bakery"})
    assert new.status_code == 200 and 'value="club"' in new.text and 'value="pastry"' in new.text
    bad = client.post("/admin/campaigns/save", data=_form(csrf, arm1_share="40"))
    assert bad.status_code == 422 and "add up to 100" in bad.text
    saved = client.post("/admin/campaigns/save", data=_form(csrf), follow_redirects=False)
    assert saved.status_code == 303, saved.text
    assert client.post("/admin/campaigns/save", data=_form(csrf)).status_code == 409
    confirm = client.get(saved.headers["location"])
    assert confirm.status_code == 200 and f"{N} members of club" in confirm.text
    launched = client.post("/admin/campaigns/ab/launch",
                           data={"csrf_token": csrf, "program": "bakery"})  # fmt: skip
    assert launched.status_code == 200 and "The campaign was launched." in launched.text
    assert 'data-testid="arm-control"' in launched.text and "not enough data yet" in launched.text
    assert (
        client.get(
            "/admin/campaigns/ab/results", params={"program": "bakery", "period": "after"}
        ).status_code
        == 200
    )
    # The reports section links here.
    assert "/admin/campaigns?program=bakery" in client.get("/admin/reports").text


@pytest.mark.sqlite_only
def test_a_viewer_reads_but_cannot_launch(client, staff, world):
    csrf = sign_in(client, STAFF["viewer"][0])
    assert client.get("/admin/campaigns", params={"program": "bakery"}).status_code == 200
    assert client.post("/admin/campaigns/save", data=_form(csrf)).status_code == 403


@pytest.mark.sqlite_only
def test_cli_lists_launches_and_reports(db, world, frozen):
    runner = CliRunner()
    url = ["--database-url", db.url]
    from patron.audit.service import CLI
    from patron.campaigns import service
    from patron.campaigns.schemas import CampaignIn
    from patron.programs.models import Program
    from tests.campaigns.conftest import ab_body

    with db.unit_of_work() as s:
        service.create(s, s.get(Program, world["program"]), CampaignIn.model_validate(ab_body()),
                       actor=CLI, now=frozen)  # fmt: skip
    launched = runner.invoke(
        cli_app, ["campaigns", "launch", "winback", "--program", "bakery", *url]
    )
    assert launched.exit_code == 0, launched.output
    assert f"{N} members assigned" in launched.output
    again = runner.invoke(cli_app, ["campaigns", "launch", "winback", "--program", "bakery", *url])
    assert again.exit_code == 2 and "campaign_state" in again.output
    listed = runner.invoke(cli_app, ["campaigns", "list", "--program", "bakery", *url])
    assert "winback" in listed.output and "running" in listed.output
    shown = runner.invoke(cli_app, ["campaigns", "show", "winback", "--program", "bakery", *url])
    assert json.loads(shown.output)["members"] == N
    res = runner.invoke(cli_app, ["campaigns", "results", "winback", "--program", "bakery",
                                  "--json", *url])  # fmt: skip
    assert res.exit_code == 0 and json.loads(res.output)["campaign"] == "winback"
    text = runner.invoke(cli_app, ["campaigns", "results", "winback", "--program", "bakery", *url])
    assert "not enough data yet" in text.output
    assert runner.invoke(cli_app, ["campaigns", "run", *url]).exit_code == 0


@pytest.mark.sqlite_only
def test_a_marketer_builds_a_rule_experiment_with_a_message(client, staff, world, db):
    csrf = sign_in(client, STAFF["marketer"][0])
    rules = '[{"id": "winback-bonus", "kind": "order_bonus", "points": 500}]'
    form = _form(csrf, arm1_kind="rules", arm1_points="", arm1_rules=rules, arm1_message="on")
    bad = client.post("/admin/campaigns/save", data={**form, "arm1_rules": "[{"})
    assert bad.status_code == 422 and "not valid JSON" in bad.text
    wrong = '[{"id": "x", "kind": "order_bonus", "points": -1}]'
    refused = client.post("/admin/campaigns/save", data={**form, "arm1_rules": wrong})
    assert refused.status_code == 422 and "points" in refused.text
    saved = client.post("/admin/campaigns/save", data=form, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    edit = client.get("/admin/campaigns/ab/edit", params={"program": "bakery"})
    assert "winback-bonus" in edit.text and 'name="arm1_message" checked' in edit.text
    launched = client.post("/admin/campaigns/ab/launch",
                           data={"csrf_token": csrf, "program": "bakery"})  # fmt: skip
    assert launched.status_code == 200 and 'data-testid="rule-points-b"' in launched.text
    out = CliRunner().invoke(
        cli_app, ["campaigns", "show", "ab", "--program", "bakery", "--database-url", db.url]
    )
    assert out.exit_code == 0, out.output
    [_, b] = json.loads(out.output)["variants"]
    assert b["action"]["kind"] == "rules" and b["message"] is True
    assert b["action"]["rules"][0]["id"] == "winback-bonus"
