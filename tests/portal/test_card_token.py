"""The member card's signed, short-lived token: made by the card page, checked by a till online
(POST …/cards/verify) or offline with the program's public keys alone."""

from __future__ import annotations

import base64
import importlib.util
import re
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

import pytest
import segno
from cryptography.exceptions import InvalidSignature
from sqlalchemy import select, update

from patron import clock
from patron.members.models import Card, Member
from patron.portal import cardtoken
from patron.programs.service import get_program
from patron.rewards import offline
from tests.conftest import auth
from tests.factories import make_program
from tests.portal.test_pages import outbox, sign_in  # noqa: F401 - a fixture

BASE = "/m/bakery"
VERIFY = "/api/v1/programs/bakery/cards/verify"


def make_token(db, number: str = "BKR100000", program: str = "bakery") -> str:
    with db.unit_of_work(readonly=True) as s:
        return cardtoken.make(s, get_program(s, program), number, now=clock.now())


def public_keys(db, program: str = "bakery") -> list[offline.PublicKey]:
    with db.unit_of_work(readonly=True) as s:
        return offline.public_keys(s, get_program(s, program))


def refusal(token: str, keys, **kwargs) -> str:
    kwargs.setdefault("program", "bakery")
    kwargs.setdefault("now", clock.now())
    with pytest.raises((cardtoken.TokenMalformed, cardtoken.TokenWrongProgram,
                        cardtoken.TokenUnknownKey, cardtoken.TokenBadSignature,
                        cardtoken.TokenExpired)) as caught:  # fmt: skip
        cardtoken.verify(token, keys, **kwargs)
    return caught.value.code


def with_payload(token: str, payload: str) -> str:
    """`token` with its payload replaced and its signature kept."""
    prefix, _body, signature = token.split(".")
    body = base64.b32encode(payload.encode()).decode().rstrip("=")
    return f"{prefix}.{body}.{signature}"


def test_round_trip_offline_with_the_public_keys_alone(db, portal, frozen):
    token = make_token(db)
    assert token.startswith("PM1.") and len(token) < 200
    # Upper-case base32 and dots: QR's compact alphanumeric mode, a small QR code.
    assert re.fullmatch(r"[A-Z2-7.1PM]+", token)
    assert segno.make_qr(token, error="m").version <= 9
    claim = cardtoken.verify(token, public_keys(db), program="bakery", now=frozen)
    assert (claim.program, claim.number, claim.kid) == ("bakery", "BKR100000", "1")
    assert claim.issued_at == frozen
    assert claim.expires_at == frozen + cardtoken.LIFETIME
    # A till may lower-case or pad what it scanned with spaces.
    assert cardtoken.verify(f" {token.lower()} ", public_keys(db), program="bakery", now=frozen)


def test_tampered_malformed_and_foreign_tokens_are_refused(db, portal, frozen):
    token = make_token(db)
    keys = public_keys(db)
    issued = int(frozen.timestamp())
    assert refusal(with_payload(token, f"1:bakery:{issued}:300:BKR100001"), keys) == (
        "token_bad_signature"
    )
    assert refusal(with_payload(token, f"1:bakery:{issued}:99999:BKR100000"), keys) == (
        "token_bad_signature"
    )
    assert refusal(with_payload(token, f"9:bakery:{issued}:300:BKR100000"), keys) == (
        "token_unknown_key"
    )
    for bad in ("", "PM1.", "PM1.AAAA", "PM1.AAAA.BBBB", "PC1.AAAA.BBBB", token + ".X",
                token[:-3], with_payload(token, "1:bakery:soon:300:BKR100000"),
                with_payload(token, "only-two:fields"), "PM1." + "A" * 500 + ".B"):  # fmt: skip
        assert refusal(bad, keys) == "token_malformed", bad
    assert refusal(token, keys, program="cafe") == "token_wrong_program"
    with db.unit_of_work() as s:
        make_program(s, now=frozen, code="cafe", name="Cafe")
    # Another program's token, even with its own keys offered, is not this program's card.
    cafe_token = make_token(db, program="cafe")
    assert refusal(cafe_token, keys) == "token_wrong_program"
    assert refusal(with_payload(cafe_token, f"1:bakery:{issued}:300:BKR100000"), keys) == (
        "token_bad_signature"
    )


def test_expired_and_future_tokens_are_refused(db, portal, frozen):
    token = make_token(db)
    keys = public_keys(db)
    almost = frozen + cardtoken.LIFETIME - timedelta(seconds=1)
    assert cardtoken.verify(token, keys, program="bakery", now=almost).number == "BKR100000"
    clock.freeze(frozen + cardtoken.LIFETIME)
    assert refusal(token, keys) == "token_expired"
    # Made by a clock far ahead of the till's: not accepted either.
    assert refusal(token, keys, now=frozen - cardtoken.CLOCK_SKEW - timedelta(seconds=1)) == (
        "token_expired"
    )


def test_a_rotated_key_keeps_earlier_tokens_valid(db, portal, frozen):
    before = make_token(db)
    with db.unit_of_work() as s:
        offline.rotate_key(s, get_program(s, "bakery"), now=frozen)
    after = make_token(db)
    keys = public_keys(db)
    assert cardtoken.read(after)[2].kid == "2"
    for token in (before, after):
        assert cardtoken.verify(token, keys, program="bakery", now=frozen).number == "BKR100000"


def test_the_till_endpoint_answers_whose_card_it_is(client, db, portal, keys, frozen):
    r = client.post(VERIFY, json={"token": make_token(db)}, headers=auth(keys["pos"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["member_id"] == portal.a and body["card"] == "BKR100000"
    assert body["name"] == "김민지" and body["balance"] == 8_500
    assert body["tier"] is None or isinstance(body["tier_names"], dict)
    read = client.post(VERIFY, json={"token": make_token(db)}, headers=auth(keys["read"]))
    assert read.status_code == 200
    assert client.post(VERIFY, json={"token": make_token(db)}).status_code == 401


def test_the_till_endpoint_refuses_with_clear_errors(client, db, portal, keys, frozen):
    pos = auth(keys["pos"])
    token = make_token(db)

    def answer(body, program: str = "bakery") -> tuple[int, str]:
        r = client.post(f"/api/v1/programs/{program}/cards/verify", json=body, headers=pos)
        assert set(r.json()) >= {"error", "detail"}, r.text
        return r.status_code, r.json()["error"]

    assert answer({"token": "PM1.nonsense"}) == (422, "token_malformed")
    assert answer({"token": with_payload(token, "1:bakery:0:300:BKR100001")})[0] == 422
    assert answer({})[0] == 422
    assert answer({"token": token, "extra": 1})[0] == 422
    assert answer({"token": token}, program="nowhere")[0] == 404
    assert answer({"token": make_token(db, number="NOSUCHCARD")}) == (404, "card_not_found")
    with db.unit_of_work() as s:
        s.execute(update(Card).where(Card.number == "BKR100000").values(status="blocked"))
    assert answer({"token": token}) == (409, "card_blocked")
    with db.unit_of_work() as s:
        s.execute(update(Card).where(Card.number == "BKR100000").values(status="active"))
        s.execute(update(Member).where(Member.id == portal.a).values(status="blocked"))
    assert answer({"token": token}) == (409, "member_blocked")
    clock.freeze(frozen + cardtoken.LIFETIME)
    assert answer({"token": token}) == (409, "token_expired")


def test_another_programs_card_is_not_found_here(client, db, portal, keys, frozen):
    with db.unit_of_work() as s:
        card = s.scalars(select(Card).where(Card.number == "BKR100001")).one()
        cafe = make_program(s, now=frozen, code="cafe", name="Cafe")
        cafe_code = cafe.code
        number = card.number
    # A token signed by cafe for a bakery member's card: cafe has no such member.
    r = client.post(
        f"/api/v1/programs/{cafe_code}/cards/verify",
        json={"token": make_token(db, number=number, program=cafe_code)},
        headers=auth(keys["pos"]),
    )
    assert r.status_code == 404 and r.json()["error"] == "card_not_found"


def test_openapi_declares_the_errors(client):
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/api/v1/programs/{code}/cards/verify"]["post"]
    assert {"200", "401", "403", "404", "409", "422"} <= set(post["responses"])
    assert "token_expired" in post["responses"]["409"]["description"]
    assert "token_bad_signature" in post["responses"]["422"]["description"]


def test_the_card_page_shows_the_token_and_the_plain_number(
    client,
    db,
    portal,
    outbox,  # noqa: F811 - the fixture imported above
    frozen,
):
    sign_in(client, outbox)
    page = client.get(f"{BASE}/card").text
    assert 'id="token-qr"' in page and 'id="plain-card"' in page
    assert "5분" in page  # "valid for 5 minutes", in her language
    assert 'data-kept="0" data-ttl="300"' in page  # the service worker's copy says 1
    plain = client.get(f"{BASE}/card?plain=1").text
    assert 'id="token-qr"' not in plain and 'id="plain-qr"' in plain
    assert "BKR100000" in plain
    assert client.get(f"{BASE}/card?plain=maybe").status_code == 422


def test_the_docs_snippet_verifies_a_real_token_offline(db, portal, frozen):
    path = Path(__file__).resolve().parents[2] / "docs" / "snippets" / "verify_card.py"
    spec = importlib.util.spec_from_file_location("verify_card", path)
    assert spec is not None and spec.loader is not None
    snippet = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(snippet)
    token = make_token(db)
    keys = [
        {k: str(v) for k, v in asdict(key).items() if k in ("kid", "public_key")}
        for key in public_keys(db)
    ]
    now = frozen.timestamp()
    assert snippet.verify_card(token, keys, "bakery", now=now) == "BKR100000"
    assert snippet.verify_card(f" {token.lower()} ", keys, "bakery", now=now) == "BKR100000"
    issued = int(now)
    forged = with_payload(token, f"1:bakery:{issued}:300:BKR100001")
    with pytest.raises(InvalidSignature):
        snippet.verify_card(forged, keys, "bakery", now=now)
    later = (frozen + timedelta(minutes=5, seconds=1)).timestamp()
    for bad, program, when in (
        (token, "cafe", now),
        (token, "bakery", later),
        ("PC1.ABC.DEF", "bakery", now),
    ):
        with pytest.raises(ValueError):
            snippet.verify_card(bad, keys, program, now=when)
