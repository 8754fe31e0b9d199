"""Each worker caches its programs' configuration; a change is seen by the very next earn.

Two app instances on one database stand for two workers (each has its own engine, so its own
cache). Every change goes through one instance's API; the next earn on the other must use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from patron.app import create_app
from patron.db.engine import Database
from tests.conftest import auth
from tests.factories import make_member, make_program

P = "/api/v1/programs/bakery"


@pytest.fixture
def two_workers(db: Database, keys: dict[str, str], frozen) -> Iterator[dict[str, Any]]:
    with db.unit_of_work() as session:
        program = make_program(session, now=frozen)
        member_id = make_member(session, now=frozen, program=program, card="CARD-0001").id
    other = Database(db.url, pool_size=5)
    with TestClient(create_app(db=db)) as first, TestClient(create_app(db=other)) as second:
        yield {"admin": first, "till": second, "member": member_id}
    other.dispose()


def sale(client: TestClient, keys: dict[str, str], n: int, member: int, **extra: Any) -> Any:
    body = {"external_id": f"S-{n}", "member": {"id": member}, "amount": "10000", **extra}
    answer = client.post(f"{P}/purchases", json=body, headers=auth(keys["pos"]))
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_every_kind_of_change_reaches_the_next_earn_on_another_worker(two_workers, keys):
    admin, till, member = two_workers["admin"], two_workers["till"], two_workers["member"]
    staff = auth(keys["admin"])
    first = sale(till, keys, 1, member)  # the till's worker now holds the configuration
    assert first["points_earned"] == 100
    assert first["entries"][0]["rule_version"] == 1

    # A rule (through the other worker's API) applies to the very next sale.
    bonus = {"id": "double", "kind": "promotion", "factor": "2"}
    # Doubling points on purpose: confirmed (tests/rules/test_publish_confirmation.py).
    confirm = {"confirm_large_change": "true"}
    added = admin.post(f"{P}/rules/items", json=bonus, headers=staff, params=confirm)
    assert added.status_code in (200, 201), added.text
    second = sale(till, keys, 2, member)
    assert second["points_earned"] == 200
    assert second["entries"][0]["rule_version"] == 2

    # The program's own settings: a longer expiry.
    patched = admin.patch(P, json={"expiry": {"kind": "months", "months": 24}}, headers=staff)
    assert patched.status_code == 200, patched.text
    third = sale(till, keys, 3, member)
    assert third["entries"][0]["details"]["expires_at"].startswith("2028-03-0")

    # A new store is known at once.
    created = admin.post(f"{P}/stores", json={"code": "hongdae", "name": "Hongdae"}, headers=staff)
    assert created.status_code == 201, created.text
    fourth = sale(till, keys, 4, member, store="hongdae")
    assert fourth["entries"][0]["store"] == "hongdae"

    # Tiers: the member is placed at once (immediate upgrade) and earns the tier's multiplier.
    tiers = {
        "policy": {"metric": "points", "window": "year", "upgrade": "immediate"},
        "tiers": [
            {"code": "basic", "names": {"en": "Basic"}, "threshold": 0},
            {"code": "vip", "names": {"en": "VIP"}, "threshold": 500, "multiplier": "3"},
        ],
    }
    put = admin.put(f"{P}/tiers", json=tiers, headers=staff)
    assert put.status_code == 200, put.text
    sale(till, keys, 5, member)  # 600 qualifying points so far: vip from now on
    sixth = sale(till, keys, 6, member)
    assert sixth["points_earned"] == 600  # 100 × 2 (promotion) × 3 (vip)
    tier = admin.get(f"{P}/members/{member}/tier", headers=staff)
    assert tier.status_code == 200 and tier.json()["tier_code"] == "vip", tier.text

    # And back: removing the promotion is seen too.
    removed = admin.delete(f"{P}/rules/items/double", headers=staff, params=confirm)
    assert removed.status_code in (200, 204), removed.text
    assert sale(till, keys, 7, member)["points_earned"] == 300


def test_a_change_made_by_a_service_call_elsewhere_is_seen(two_workers, keys, db, frozen):
    """A change made outside any HTTP worker (the CLI, a job) bumps the token as well."""
    from patron.audit.service import CLI
    from patron.programs import service as programs
    from patron.programs.schemas import ProgramUpdate
    from patron.setup import service as setup

    till, member = two_workers["till"], two_workers["member"]
    assert sale(till, keys, 1, member)["points_earned"] == 100
    other = Database(db.url)
    try:
        with other.unit_of_work() as session:
            program = programs.get_program(session, "bakery")
            setup.update_program(
                session,
                program,
                ProgramUpdate.model_validate(
                    {"earning": {"mode": "per_full_unit", "points": 30, "per_amount": "1000"}}
                ),
                actor=CLI,
                now=frozen,
            )
    finally:
        other.dispose()
    assert sale(till, keys, 2, member)["points_earned"] == 300
