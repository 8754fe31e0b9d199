"""API keys limited to programs and stores: 403 outside them (on the till's direct route too),
members of other programs answered as not found, deployment-wide calls refused, unrestricted
keys flagged, and a revocation that reaches every worker within a second."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select

from patron import clock, http
from patron.audit.service import CLI
from patron.auth.models import ApiKey
from patron.auth.service import create_key, revoke_key
from tests.conftest import auth
from tests.factories import BAKERY

CAFE = {**BAKERY, "code": "cafe", "name": "Cafe"}


@pytest.fixture
def two(client, admin) -> dict[str, Any]:
    """Two programs, bakery (stores mapo, hongdae) and cafe (store gangnam), a member in each
    and one in both; a key limited to bakery and one limited to bakery's mapo store."""
    for program, stores in ((BAKERY, ("mapo", "hongdae")), (CAFE, ("gangnam",))):
        assert client.post("/api/v1/programs", json=program, headers=admin).status_code == 201
        for store in stores:
            answer = client.post(
                f"/api/v1/programs/{program['code']}/stores",
                json={"code": store, "name": store.title()},
                headers=admin,
            )
            assert answer.status_code == 201, answer.text
    people = {}
    for name, phone, program in (
        ("Kim", "010-1111-2222", "bakery"),
        ("Wang", "010-3333-4444", "cafe"),
        ("Lee", "010-5555-6666", "bakery"),
    ):
        answer = client.post(
            "/api/v1/members",
            json={"name": name, "phone": phone, "program": program},
            headers=admin,
        )
        assert answer.status_code == 201, answer.text
        people[name] = answer.json()["id"]
    enrolled = client.post(
        f"/api/v1/members/{people['Lee']}/programs", json={"program": "cafe"}, headers=admin
    )
    assert enrolled.status_code == 201, enrolled.text
    made = {}
    for name, body in (
        ("bakery", {"name": "Bakery tills", "scopes": ["pos", "read"], "programs": ["bakery"]}),
        (
            "mapo",
            {"name": "Mapo till", "scopes": ["pos"], "programs": ["bakery"], "stores": ["mapo"]},
        ),
    ):
        answer = client.post("/api/v1/api-keys", json=body, headers=admin)
        assert answer.status_code == 201, answer.text
        made[name] = answer.json()
    return {"people": people, "keys": made}


def sale(ext: str, member: int, store: str | None = "mapo", **more: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"external_id": ext, "member": {"id": member}, "amount": "10000"}
    if store is not None:
        body["store"] = store
    return {**body, **more}


def test_a_key_limited_to_a_program_acts_there_and_gets_403_elsewhere(client, two):
    bakery = auth(two["keys"]["bakery"]["key"])
    kim, lee = two["people"]["Kim"], two["people"]["Lee"]
    # Twice each: the first call authenticates the key, the second takes the till's direct
    # route with the remembered key; both answer the same.
    for n in range(2):
        ok = client.post(
            "/api/v1/programs/bakery/purchases", json=sale(f"B{n}", kim), headers=bakery
        )
        assert ok.status_code == 201, ok.text
        refused = client.post(
            "/api/v1/programs/cafe/purchases", json=sale(f"C{n}", lee, "gangnam"), headers=bakery
        )
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "program_not_allowed"
        assert "bakery" in refused.json()["detail"]
    for path in (
        "/api/v1/programs/cafe",
        "/api/v1/programs/cafe/rewards",
        f"/api/v1/programs/cafe/members/{lee}/account",
    ):
        answer = client.get(path, headers=bakery)
        assert answer.status_code == 403 and answer.json()["error"] == "program_not_allowed"
    assert client.get("/api/v1/programs/bakery", headers=bakery).status_code == 200
    listed = client.get("/api/v1/programs", headers=bakery).json()
    assert [p["code"] for p in listed] == ["bakery"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/check"),
        ("GET", "/api/v1/audit"),
        ("GET", "/api/v1/api-keys"),
        ("POST", "/api/v1/expire"),
        ("POST", "/api/v1/reports/refresh"),
    ],
)
def test_deployment_wide_calls_need_an_unrestricted_key(client, admin, two, method, path):
    limited = client.post(
        "/api/v1/api-keys",
        json={"name": "Bakery admin", "scopes": ["admin"], "programs": ["bakery"]},
        headers=admin,
    ).json()["key"]
    answer = client.request(method, path, headers=auth(limited))
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"] == "key_not_allowed"
    created = client.post("/api/v1/programs", json={**BAKERY, "code": "x"}, headers=auth(limited))
    assert created.status_code == 403 and created.json()["error"] == "key_not_allowed"


def test_members_of_other_programs_are_not_found(client, admin, two):
    bakery = auth(two["keys"]["bakery"]["key"])
    kim, wang, lee = (two["people"][n] for n in ("Kim", "Wang", "Lee"))
    for member in (kim, lee):
        assert client.get(f"/api/v1/members/{member}", headers=bakery).status_code == 200
    for path in (
        f"/api/v1/members/{wang}",
        f"/api/v1/members/{wang}/consents",
        "/api/v1/members/lookup?phone=010-3333-4444",
        f"/api/v1/members/lookup?id={wang}",
    ):
        answer = client.get(path, headers=bakery)
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["error"] == "member_not_found"
    # An unrestricted key sees the same member.
    assert client.get(f"/api/v1/members/{wang}", headers=admin).status_code == 200
    listed = client.get("/api/v1/members", headers=bakery).json()["items"]
    assert sorted(m["id"] for m in listed) == sorted([kim, lee])
    other = client.get("/api/v1/members?program=cafe", headers=bakery)
    assert other.status_code == 403 and other.json()["error"] == "program_not_allowed"
    card = client.post(
        f"/api/v1/members/{wang}/cards", json={"number": "CARD-9001"}, headers=bakery
    )
    assert card.status_code == 404
    consent = client.post(
        f"/api/v1/members/{wang}/consents",
        json={"channels": ["email"], "granted": True},
        headers=bakery,
    )
    assert consent.status_code == 404


def test_a_limited_key_enrolls_only_in_its_programs(client, two):
    bakery = auth(two["keys"]["bakery"]["key"])
    missing = client.post("/api/v1/members", json={"name": "Park"}, headers=bakery)
    assert missing.status_code == 422 and missing.json()["error"] == "program_required"
    elsewhere = client.post(
        "/api/v1/members", json={"name": "Park", "program": "cafe"}, headers=bakery
    )
    assert elsewhere.status_code == 403 and elsewhere.json()["error"] == "program_not_allowed"
    made = client.post(
        "/api/v1/members", json={"name": "Park", "program": "bakery"}, headers=bakery
    )
    assert made.status_code == 201, made.text
    moved = client.post(
        f"/api/v1/members/{made.json()['id']}/programs", json={"program": "cafe"}, headers=bakery
    )
    assert moved.status_code == 403 and moved.json()["error"] == "program_not_allowed"


def test_a_key_limited_to_a_store_records_sales_and_refunds_only_there(client, admin, two):
    mapo = auth(two["keys"]["mapo"]["key"])
    kim = two["people"]["Kim"]
    for n in range(2):  # the framework's route, then the till's direct route
        ok = client.post("/api/v1/programs/bakery/purchases", json=sale(f"M{n}", kim), headers=mapo)
        assert ok.status_code == 201, ok.text
        for store in ("hongdae", None):
            refused = client.post(
                "/api/v1/programs/bakery/purchases",
                json=sale(f"H{n}{store}", kim, store),
                headers=mapo,
            )
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"] == "store_not_allowed"
    batch = client.post(
        "/api/v1/programs/bakery/purchases/batch",
        json={"purchases": [sale("BT1", kim), sale("BT2", kim, "hongdae")]},
        headers=mapo,
    )
    assert batch.status_code == 403 and batch.json()["error"] == "store_not_allowed"
    # A sale at hongdae, recorded by an unrestricted key, cannot be refunded by mapo's key.
    assert (
        client.post(
            "/api/v1/programs/bakery/purchases", json=sale("HG", kim, "hongdae"), headers=admin
        ).status_code
        == 201
    )
    refund = {"refund_id": "R1", "full": True}
    other = client.post("/api/v1/programs/bakery/purchases/HG/refunds", json=refund, headers=mapo)
    assert other.status_code == 403 and other.json()["error"] == "store_not_allowed"
    own = client.post("/api/v1/programs/bakery/purchases/M0/refunds", json=refund, headers=mapo)
    assert own.status_code == 201, own.text
    # Refused sales wrote nothing: the member's history holds M0, M1, HG and the refund.
    entries = client.get(f"/api/v1/programs/bakery/members/{kim}/entries", headers=admin).json()
    orders = {e["external_ref"] for e in entries["items"]} - {None}
    assert orders == {"M0", "M1", "HG"}, entries
    assert sum(e["external_ref"] == "M0" for e in entries["items"]) == 2  # earn and its refund


def test_keys_list_their_reach_and_unrestricted_ones_are_flagged(client, admin, two):
    listed = {k["name"]: k for k in client.get("/api/v1/api-keys", headers=admin).json()}
    assert listed["Bakery tills"]["programs"] == ["bakery"]
    assert listed["Bakery tills"]["unrestricted"] is False
    assert listed["Mapo till"]["stores"] == ["mapo"]
    assert listed["admin key"]["unrestricted"] is True and listed["admin key"]["programs"] is None


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"programs": ["nowhere"]}, 404, "program_not_found"),
        ({"programs": []}, 422, "invalid_key_reach"),
        ({"stores": ["mapo"]}, 422, "invalid_key_reach"),
        ({"programs": ["cafe"], "stores": ["mapo"]}, 404, "store_not_found"),
        ({"programs": ["Bad Code"]}, 422, "validation_error"),
    ],
)
def test_a_key_with_a_bad_reach_is_refused_and_not_made(client, admin, two, body, status, code):
    before = len(client.get("/api/v1/api-keys", headers=admin).json())
    answer = client.post(
        "/api/v1/api-keys", json={"name": "bad", "scopes": ["pos"], **body}, headers=admin
    )
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == code
    assert len(client.get("/api/v1/api-keys", headers=admin).json()) == before


def test_a_revocation_elsewhere_reaches_this_worker_within_a_second(client, db, two):
    """Revoked by the CLI (another process): this worker forgets nothing by itself, yet its
    next revocation check (every http.REVOCATION_CHECK s) turns the remembered key away."""
    key = two["keys"]["bakery"]
    headers = auth(key["key"])
    assert client.get("/api/v1/programs/bakery", headers=headers).status_code == 200
    assert http.cached_actor(key["key"]) is not None  # remembered
    with db.unit_of_work() as session:
        revoke_key(session, key["id"], actor=CLI, now=clock.now())
    started = time.monotonic()
    while True:
        answer = client.get("/api/v1/programs/bakery", headers=headers)
        if answer.status_code == 401:
            break
        assert answer.status_code == 200
        assert time.monotonic() - started < 1.0, "the revocation took a second or more"
        time.sleep(0.05)
    assert answer.json()["error"] == "revoked_api_key"
    # The till's direct route turns it away too.
    refused = client.post(
        "/api/v1/programs/bakery/purchases",
        json=sale("AFTER", two["people"]["Kim"]),
        headers=headers,
    )
    assert refused.status_code == 401


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # engine-independent
def test_the_first_revocation_check_keeps_a_key_authenticated_beside_it(db, two):
    """A worker's first check (count unknown) used to forget every key, so a key authenticated
    while it ran was checked again on the next request. The key's own read learns the count."""
    key = two["keys"]["bakery"]["key"]
    http.forget_keys()
    http._authenticate(db, key)
    http.check_revocations(db)  # the check that ran beside that first request
    assert http.cached_actor(key) is not None


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # engine-independent
def test_a_key_read_before_a_counted_revocation_is_not_remembered(db, two, monkeypatch):
    """A check has already counted a revocation that this key's read came before: the key is
    answered for this request but checked again on the next."""
    key = two["keys"]["bakery"]["key"]
    with db.unit_of_work() as session:
        revoke_key(session, two["keys"]["mapo"]["id"], actor=CLI, now=clock.now())
    http.forget_keys()
    http.check_revocations(db)  # the worker knows of the revocation
    with db.unit_of_work(readonly=True) as session:
        counted = http.auth.revocations(session)
    assert counted >= 1
    with monkeypatch.context() as patched:
        # As if this key's read had happened before that revocation: one fewer in its snapshot.
        patched.setattr(http.auth, "revocations", lambda session: counted - 1)
        assert http._authenticate(db, key).kind == "api_key"
    assert http.cached_actor(key) is None
    http._authenticate(db, key)  # read after it: remembered
    assert http.cached_actor(key) is not None


def test_the_cli_creates_and_lists_a_limited_key(db, two, monkeypatch):
    from typer.testing import CliRunner

    from patron.cli import app
    from patron.config import get_settings

    monkeypatch.setenv("PATRON_DATABASE_URL", "sqlite:///unused-by-these-tests.db")
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    runner = CliRunner()
    url = ["--database-url", db.url]
    made = runner.invoke(
        app,
        [
            *("apikey", "create", "--name", "Hongdae till", "--scope", "pos"),
            *("--program", "bakery", "--store", "hongdae", *url),
        ],
    )
    assert made.exit_code == 0, made.output
    assert "bakery; stores hongdae" in made.output
    with db.unit_of_work(readonly=True) as session:
        row = session.scalars(select(ApiKey).where(ApiKey.name == "Hongdae till")).one()
        assert (row.programs, row.stores) == (["bakery"], ["hongdae"])
    listed = runner.invoke(app, ["apikey", "list", *url])
    assert listed.exit_code == 0 and "Hongdae" in listed.output and "hongdae" in listed.output
    bad = runner.invoke(
        app, ["apikey", "create", "--name", "x", "--scope", "pos", "--program", "nowhere", *url]
    )
    assert bad.exit_code == 2 and "program_not_found" in bad.output
    get_settings.cache_clear()


def test_create_key_keeps_unrestricted_keys_valid(db, two):
    """An existing key (made before keys had a reach) still reaches every program."""
    with db.unit_of_work() as session:
        row, _raw = create_key(session, name="old", scopes=["pos"], actor=CLI, now=clock.now())
        assert row.programs is None and row.stores is None
