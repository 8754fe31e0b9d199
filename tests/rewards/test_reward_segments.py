"""Segments as a rewards eligibility condition (issue 18 item 1): a reward's `segments` list
holds when the member is in at least one of them, live, at the time of redeeming — the
semantics of the earning rules' `conditions.segments`. The API (unknown segment, redeeming,
refusals that write nothing, segment in use), the member catalog (one membership query for all
rewards), the member page, and the migration's default."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func, select

from patron.audit.service import CLI
from patron.coupons.models import Coupon, Redemption, Reward
from patron.db.engine import Database
from patron.ledger.models import Account, Entry
from patron.segments import service as segments
from patron.segments.schemas import SegmentIn
from tests.conftest import auth
from tests.factories import make_member, make_program
from tests.ledger._helpers import adjust

P = "/api/v1/programs/bakery"
CAKE: dict[str, Any] = {
    "code": "seoul-cake",
    "kind": "goods",
    "names": {"ko": "서울 케이크", "zh": "首尔蛋糕", "en": "Seoul cake"},
    "points_cost": 2000,
    "value": "2000",
    "stock": 10,
    "valid_days": 30,
    "segments": ["seoul"],
}


def city(code: str, name: str) -> SegmentIn:
    return SegmentIn.model_validate(
        {
            "code": code,
            "name": name,
            "definition": {
                "condition": {"type": "attribute", "key": "city", "op": "eq", "values": [name]}
            },
        }
    )


@pytest.fixture
def town(db: Database, frozen) -> dict[str, int]:
    """Program bakery; segments `seoul` and `busan` (by the member attribute city); ada lives
    in Seoul, bo in Busan, cy nowhere; each has 10,000 points."""
    with db.unit_of_work() as s:
        program = make_program(s, now=frozen, stores=("mapo",))
        out = {}
        for name, where in (("ada", "seoul"), ("bo", "busan"), ("cy", None)):
            member = make_member(
                s, now=frozen, program=program, name=name.title(),
                email=f"{name}@example.com", attributes={"city": where} if where else None,
            )  # fmt: skip
            adjust(s, program, member.id, 10_000, now=frozen)
            out[name] = member.id
        segments.create(s, program, city("seoul", "seoul"), actor=CLI, now=frozen)
        segments.create(s, program, city("busan", "busan"), actor=CLI, now=frozen)
        return out


@pytest.fixture
def admin(keys) -> dict[str, str]:
    return auth(keys["admin"])


@pytest.fixture
def pos(keys) -> dict[str, str]:
    return auth(keys["pos"])


def written(db: Database, member_id: int) -> dict[str, Any]:
    """What a redemption writes, for one member: balance, entries, redemptions, coupons, and
    the stock of every reward."""
    with db.unit_of_work(readonly=True) as s:
        account = s.scalars(select(Account).where(Account.member_id == member_id)).one()
        return {
            "available": account.available,
            "entries": s.scalar(select(func.count()).where(Entry.account_id == account.id)),
            "redemptions": s.scalar(select(func.count()).where(Redemption.member_id == member_id)),
            "coupons": s.scalar(select(func.count()).where(Coupon.member_id == member_id)),
            "stock": dict(s.execute(select(Reward.code, Reward.stock_left)).all()),
        }


def redeem(client, pos, reward: str, member: int):
    return client.post(f"{P}/rewards/{reward}/redeem", json={"member": {"id": member}},
                       headers=pos)  # fmt: skip


# --- the catalog API --------------------------------------------------------------------------


def test_a_reward_names_segments_that_exist(client, town, admin):
    r = client.post(f"{P}/rewards", json={**CAKE, "segments": ["seoul", "mars"]}, headers=admin)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "unknown_segment" and "'mars'" in r.json()["detail"]
    assert client.get(f"{P}/rewards/seoul-cake", headers=admin).status_code == 404

    made = client.post(f"{P}/rewards", json={**CAKE, "segments": ["seoul", "seoul"]},
                       headers=admin)  # fmt: skip
    assert made.status_code == 201, made.text
    assert made.json()["segments"] == ["seoul"]
    assert client.get(f"{P}/rewards/seoul-cake", headers=admin).json()["segments"] == ["seoul"]

    bad = client.patch(f"{P}/rewards/seoul-cake", json={"segments": ["mars"]}, headers=admin)
    assert bad.status_code == 422 and bad.json()["error"] == "unknown_segment"
    both = client.patch(f"{P}/rewards/seoul-cake", json={"segments": ["busan", "seoul"]},
                        headers=admin)  # fmt: skip
    assert both.status_code == 200 and both.json()["segments"] == ["busan", "seoul"]
    assert both.json()["version"] == 2
    versions = client.get(f"{P}/rewards/seoul-cake/versions", headers=admin).json()
    assert [v["document"]["segments"] for v in versions] == [["busan", "seoul"], ["seoul"]]
    # Everyone again: an empty list (as tiers, stores and channels).
    cleared = client.patch(f"{P}/rewards/seoul-cake", json={"segments": []}, headers=admin)
    assert cleared.json()["segments"] == []
    bad_code = client.post(f"{P}/rewards", json={**CAKE, "code": "x", "segments": ["No!"]},
                           headers=admin)  # fmt: skip
    assert bad_code.status_code == 422


def test_a_reward_without_segments_is_for_everyone(client, town, admin, pos):
    body = {k: v for k, v in CAKE.items() if k != "segments"}
    assert client.post(f"{P}/rewards", json=body, headers=admin).json()["segments"] == []
    for member in town.values():
        assert redeem(client, pos, "seoul-cake", member).status_code == 201


# --- redeeming --------------------------------------------------------------------------------


def test_a_member_in_the_segment_redeems_and_one_outside_is_refused_with_nothing_written(
    client, db, town, admin, pos
):
    assert client.post(f"{P}/rewards", json=CAKE, headers=admin).status_code == 201
    ok = redeem(client, pos, "seoul-cake", town["ada"])
    assert ok.status_code == 201, ok.text
    assert ok.json()["points"] == 2000 and ok.json()["balance"] == 8000
    assert len(ok.json()["coupons"]) == 1

    before = written(db, town["bo"])
    refused = redeem(client, pos, "seoul-cake", town["bo"])
    assert refused.status_code == 409
    assert refused.json() == {
        "error": "segment_not_eligible",
        "detail": "reward seoul-cake is for members of segment seoul",
    }
    assert written(db, town["bo"]) == before
    assert before["available"] == 10_000 and before["redemptions"] == 0
    assert before["stock"]["seoul-cake"] == 9  # ada's unit only
    # Idempotent replay of a refusal writes nothing either.
    headers = {**pos, "Idempotency-Key": "bo-cake-1"}
    again = client.post(f"{P}/rewards/seoul-cake/redeem", json={"member": {"id": town["bo"]}},
                        headers=headers)  # fmt: skip
    assert again.status_code == 409 and written(db, town["bo"]) == before


def test_any_of_the_segments_is_enough(client, town, admin, pos):
    body = {**CAKE, "code": "city-cake", "segments": ["busan", "seoul"]}
    assert client.post(f"{P}/rewards", json=body, headers=admin).status_code == 201
    assert redeem(client, pos, "city-cake", town["ada"]).status_code == 201
    assert redeem(client, pos, "city-cake", town["bo"]).status_code == 201
    nowhere = redeem(client, pos, "city-cake", town["cy"])
    assert nowhere.status_code == 409
    assert nowhere.json()["detail"] == (
        "reward city-cake is for members of any of segments busan, seoul"
    )


def test_membership_is_live_at_the_time_of_redeeming(client, town, admin, pos):
    """Bo moves to Seoul: from then on she is in `seoul` and may redeem (no snapshot)."""
    assert client.post(f"{P}/rewards", json=CAKE, headers=admin).status_code == 201
    assert redeem(client, pos, "seoul-cake", town["bo"]).status_code == 409
    moved = client.patch(f"/api/v1/members/{town['bo']}", json={"attributes": {"city": "seoul"}},
                         headers=admin)  # fmt: skip
    assert moved.status_code == 200, moved.text
    assert redeem(client, pos, "seoul-cake", town["bo"]).status_code == 201


def test_the_member_catalog_says_why_with_one_membership_query(
    client, town, admin, pos, monkeypatch
):
    for body in (
        CAKE,
        {**CAKE, "code": "busan-cake", "segments": ["busan"]},
        {**CAKE, "code": "city-cake", "segments": ["busan", "seoul"]},
        {**CAKE, "code": "plain", "segments": []},
    ):
        assert client.post(f"{P}/rewards", json=body, headers=admin).status_code == 201
    calls: list[tuple[list[str], list[int]]] = []
    real = segments.memberships

    def counted(session, program, codes, member_ids, **kw):
        calls.append((list(codes), list(member_ids)))
        return real(session, program, codes, member_ids, **kw)

    monkeypatch.setattr(segments, "memberships", counted)
    seen = client.get(f"/api/v1/programs/bakery/members/{town['bo']}/rewards", headers=pos)
    assert seen.status_code == 200
    got = {i["reward"]["code"]: (i["redeemable"], i["reason"]) for i in seen.json()}
    assert got == {
        "seoul-cake": (False, "segment_not_eligible"),
        "busan-cake": (True, None),
        "city-cake": (True, None),
        "plain": (True, None),
    }
    # One query for the three rewards' segments, for this member only.
    assert calls == [(["busan", "seoul"], [town["bo"]])]
    calls.clear()
    assert redeem(client, pos, "seoul-cake", town["bo"]).status_code == 409
    assert redeem(client, pos, "plain", town["bo"]).status_code == 201
    assert calls == [(["seoul"], [town["bo"]])]  # the plain reward reads no segment


# --- a segment in use -------------------------------------------------------------------------


def test_a_segment_a_reward_uses_cannot_be_deleted(client, town, admin):
    assert client.post(f"{P}/rewards", json=CAKE, headers=admin).status_code == 201
    gone = client.delete(f"{P}/segments/seoul", headers=admin)
    assert gone.status_code == 409
    assert gone.json()["error"] == "segment_in_use"
    assert "seoul-cake" in gone.json()["detail"]
    # Paused is still in use (it can be resumed at any moment).
    client.patch(f"{P}/rewards/seoul-cake", json={"status": "paused"}, headers=admin)
    assert client.delete(f"{P}/segments/seoul", headers=admin).status_code == 409
    # An unused segment goes; so does this one once the reward is archived.
    assert client.delete(f"{P}/segments/busan", headers=admin).status_code == 204
    client.patch(f"{P}/rewards/seoul-cake", json={"status": "archived"}, headers=admin)
    assert client.delete(f"{P}/segments/seoul", headers=admin).status_code == 204
    # Bringing the reward back asks for segments that exist.
    back = client.patch(f"{P}/rewards/seoul-cake", json={"status": "active"}, headers=admin)
    assert back.status_code == 422 and back.json()["error"] == "unknown_segment"
    back = client.patch(f"{P}/rewards/seoul-cake", json={"status": "active", "segments": []},
                        headers=admin)  # fmt: skip
    assert back.status_code == 200 and back.json()["status"] == "active"


def test_the_errors_are_declared_in_openapi(client, db):
    if db.dialect != "sqlite":
        pytest.skip("the schema does not depend on the engine")
    paths = client.get("/openapi.json").json()["paths"]
    create = paths["/api/v1/programs/{code}/rewards"]["post"]["responses"]
    assert "unknown_segment" in create["422"]["description"]
    change = paths["/api/v1/programs/{code}/rewards/{reward}"]["patch"]["responses"]
    assert "unknown_segment" in change["422"]["description"]
    redeem_ = paths["/api/v1/programs/{code}/rewards/{reward}/redeem"]["post"]["responses"]
    assert "segment_not_eligible" in redeem_["409"]["description"]
    delete = paths["/api/v1/programs/{code}/segments/{segment}"]["delete"]["responses"]
    assert "segment_in_use" in delete["409"]["description"]
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert "segments" in schema["RewardOut"]["required"]


# --- the member page --------------------------------------------------------------------------

REASONS = {
    "en": "Only for members of a group you are not in",
    "ko": "해당 회원 그룹 전용입니다",
    "zh": "仅限特定会员群组",
}


@pytest.fixture
def outbox(monkeypatch) -> list[Any]:
    sent: list[Any] = []
    monkeypatch.setattr("patron.portal.views.send_code", sent.append)
    return sent


def test_the_member_page_shows_why_and_refuses_with_nothing_written(
    client, db, town, admin, outbox
):
    from tests.portal.test_pages import sign_in

    assert client.post(f"{P}/rewards", json=CAKE, headers=admin).status_code == 201
    base = "/m/bakery"
    token = sign_in(client, outbox, contact="bo@example.com")
    page = client.get(f"{base}/rewards").text
    block = page[page.index("서울 케이크") if "서울 케이크" in page else page.index("Seoul cake") :]
    block = block[: block.index("</div>")]
    assert any(reason in block for reason in REASONS.values()), block
    assert "/rewards/seoul-cake" not in page  # no redeem button
    before = written(db, town["bo"])
    # Posting anyway (an old tab) is refused, and nothing is written.
    confirm = client.get(f"{base}/rewards/seoul-cake")
    assert confirm.status_code == 200
    assert any(reason in confirm.text for reason in REASONS.values())
    assert 'name="nonce"' not in confirm.text  # the reason, not a button
    r = client.post(f"{base}/rewards/seoul-cake",
                    data={"csrf_token": token, "nonce": "n" * 20}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 409
    assert any(reason in r.text for reason in REASONS.values())
    assert written(db, town["bo"]) == before

    client.cookies.clear()
    token = sign_in(client, outbox, contact="ada@example.com")
    page = client.get(f"{base}/rewards").text
    assert "/rewards/seoul-cake" in page
    nonce = re.search(
        r'name="nonce" value="([^"]+)"', client.get(f"{base}/rewards/seoul-cake").text
    )
    assert nonce
    r = client.post(f"{base}/rewards/seoul-cake",
                    data={"csrf_token": token, "nonce": nonce.group(1)}, follow_redirects=False)  # fmt: skip
    assert r.status_code == 303
    assert written(db, town["ada"])["redemptions"] == 1


@pytest.mark.parametrize("lang", ["ko", "zh", "en"])
def test_the_reason_reads_in_every_language(lang):
    from patron.portal import i18n

    assert i18n.translate("reason.segment_not_eligible", lang) == REASONS[lang]


# --- migration 0029 ---------------------------------------------------------------------------


@pytest.fixture
def empty_url(db: Database, tmp_path) -> Any:
    """A database of its own on the engine under test (migrations are run up and down on it)."""
    if db.dialect == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    import os

    import psycopg

    base, _, _ = db.url.replace("postgresql+psycopg://", "postgresql://").rpartition("/")
    name = f"patron_m0029_{os.getpid()}"
    server = os.environ["PATRON_TEST_DATABASE_URL"].replace("+psycopg", "")
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"{base}/{name}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migration_0029_adds_segments_empty_for_existing_rewards(empty_url, frozen):
    from alembic import command
    from sqlalchemy import create_engine, inspect

    from patron.db.migrate import alembic_config, upgrade
    from patron.rewards import catalog
    from patron.rewards.schemas import RewardCreate

    def columns() -> set[str]:
        engine = create_engine(empty_url)
        try:
            return {c["name"] for c in inspect(engine).get_columns("rewards")}
        finally:
            engine.dispose()

    upgrade(empty_url)
    assert "segments" in columns()
    mine = Database(empty_url)
    try:
        with mine.unit_of_work() as s:
            program = make_program(s, now=frozen)
            body = {k: v for k, v in CAKE.items() if k != "segments"}
            catalog.create_reward(s, program, RewardCreate.model_validate(body), actor=CLI,
                                  now=frozen)  # fmt: skip
    finally:
        mine.dispose()
    command.downgrade(alembic_config(empty_url), "0028")
    assert "segments" not in columns()
    upgrade(empty_url)
    mine = Database(empty_url)
    try:
        with mine.unit_of_work(readonly=True) as s:
            reward = s.scalars(select(Reward)).one()
            assert reward.segments == [] and reward.points_cost == 2000
    finally:
        mine.dispose()
