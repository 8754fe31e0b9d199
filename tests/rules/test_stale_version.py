"""A change made from an old version is refused, over HTTP (If-Match) and in the services the
admin UI uses, on both engines: rule sets (version numbers) and tier setups (fingerprints)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from patron import clock
from patron.audit.service import CLI
from patron.errors import StaleVersion
from patron.programs.service import get_program
from patron.rules import publishing
from patron.rules import service as rules
from patron.rules.models import RuleSetVersion
from patron.tiers import service as tiers
from patron.tiers.schemas import TierSetup
from tests.api import conftest as api_fixtures
from tests.rules.test_rules_api import BASE, CAKE, CLUB_RULES
from tests.tiers._tier_helpers import club_setup

admin, reader, bakery = api_fixtures.admin, api_fixtures.reader, api_fixtures.bakery
P = "/api/v1/programs/bakery"


def versions(db) -> int:
    with db.unit_of_work(readonly=True) as s:
        return int(s.scalar(select(func.count()).select_from(RuleSetVersion)) or 0)


def test_rules_etag_and_if_match(frozen, client, db, admin, reader, bakery):
    got = client.get(f"{P}/rules", headers=reader)
    assert got.headers["etag"] == '"1"'
    ok = client.put(f"{P}/rules", json=CLUB_RULES, headers={**admin, "If-Match": '"1"'})
    assert ok.status_code == 200, ok.text
    assert client.get(f"{P}/rules", headers=reader).headers["etag"] == '"2"'
    # Someone else published version 2: a change made from version 1 is refused, nothing written.
    for weak in ('"1"', 'W/"1"', "1", "banana"):
        stale = client.put(f"{P}/rules", json=CLUB_RULES, headers={**admin, "If-Match": weak})
        assert stale.status_code == 409, weak
        assert stale.json()["error"] == "stale_version"
    assert versions(db) == 2
    assert (
        "version 2"
        in client.put(f"{P}/rules", json=CLUB_RULES, headers={**admin, "If-Match": '"1"'}).json()[
            "detail"
        ]
    )
    # The same refusal for one rule added, replaced or removed.
    stale = {**admin, "If-Match": '"1"'}
    assert client.post(f"{P}/rules/items", json=CAKE, headers=stale).status_code == 409
    assert client.put(f"{P}/rules/items/base", json=BASE, headers=stale).status_code == 409
    assert client.delete(f"{P}/rules/items/weekend", headers=stale).status_code == 409
    assert versions(db) == 2
    current = {**admin, "If-Match": '"2"'}
    assert client.post(f"{P}/rules/items", json=CAKE, headers=current).status_code == 201
    # Without If-Match (or with *) a write applies to whatever is current, as before.
    assert client.delete(f"{P}/rules/items/cake-bonus", headers=admin).status_code == 200
    assert (
        client.post(f"{P}/rules/items", json=CAKE, headers={**admin, "If-Match": "*"}).status_code
        == 201
    )
    assert versions(db) == 5


def test_tiers_etag_and_if_match(frozen, client, db, admin, reader, bakery):
    first = client.put(f"{P}/tiers", json=club_setup(), headers=admin)
    assert first.status_code == 200, first.text
    tag = client.get(f"{P}/tiers", headers=reader).headers["etag"]
    changed = club_setup(downgrade="one_level")
    ok = client.put(f"{P}/tiers", json=changed, headers={**admin, "If-Match": tag})
    assert ok.status_code == 200, ok.text
    new_tag = client.get(f"{P}/tiers", headers=reader).headers["etag"]
    assert new_tag != tag
    stale = client.put(f"{P}/tiers", json=club_setup(), headers={**admin, "If-Match": tag})
    assert stale.status_code == 409 and stale.json()["error"] == "stale_version"
    assert client.get(f"{P}/tiers", headers=reader).json()["policy"]["downgrade"] == "one_level"


def _race(db, write) -> list[str]:
    """Two writers, each in its own connection and transaction, from the same base at once."""
    start = threading.Barrier(2, timeout=30)
    results: list[str] = []

    def run() -> None:
        start.wait()
        try:
            with db.unit_of_work() as s:
                write(s)
            results.append("ok")
        except StaleVersion:
            results.append("stale")

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return sorted(results)


def test_two_publishers_from_one_version_one_wins(frozen, db, client, admin, bakery):
    doc = rules.validate_doc(CLUB_RULES)

    def publish(s: Any) -> None:
        publishing.publish(s, get_program(s, "bakery"), doc, actor=CLI, now=clock.now(),
                      expected_version=1)  # fmt: skip

    assert _race(db, publish) == ["ok", "stale"]
    assert versions(db) == 2


def test_two_tier_saves_from_one_setup_one_wins(frozen, db, client, admin, bakery):
    with db.unit_of_work() as s:
        program = get_program(s, "bakery")
        tiers.set_tiers(s, program, TierSetup.model_validate(club_setup()), actor=CLI,
                        now=clock.now())  # fmt: skip
        base = tiers.setup_version(s, program)
    setups = iter([club_setup(downgrade="one_level"), club_setup(upgrade="next_period")])
    lock = threading.Lock()

    def save(s: Any) -> None:
        with lock:
            setup = TierSetup.model_validate(next(setups))
        tiers.set_tiers(s, get_program(s, "bakery"), setup, actor=CLI, now=clock.now(),
                        expected_version=base)  # fmt: skip

    assert _race(db, save) == ["ok", "stale"]


@pytest.mark.parametrize("header", ['"x"', 'W/"abc"'])
def test_tiers_if_match_that_matches_nothing_is_stale(client, admin, bakery, header):
    client.put(f"{P}/tiers", json=club_setup(), headers=admin)
    r = client.put(f"{P}/tiers", json=club_setup(), headers={**admin, "If-Match": header})
    assert r.status_code == 409 and r.json()["error"] == "stale_version"
