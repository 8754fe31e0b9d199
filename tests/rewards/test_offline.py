"""Offline tills: signed coupon tokens, the program's keys, the docs' verification snippet, and
syncing uses accepted offline (double uses reported, never accepted twice)."""

from __future__ import annotations

import base64
import importlib.util
import json
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import segno
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import func, select

from patron import clock
from patron.coupons.models import Coupon, CouponEvent
from patron.events.models import DomainEvent, InstanceKey
from patron.programs.service import get_program
from patron.rewards import offline
from tests.factories import make_program
from tests.rewards.conftest import AMERICANO, FIVE_OFF, add, redeem

SNIPPET = Path(__file__).resolve().parents[2] / "docs" / "snippets" / "verify_coupon.py"


def keys_of(db, program: str = "bakery") -> list[offline.PublicKey]:
    with db.unit_of_work(readonly=True) as s:
        return offline.public_keys(s, get_program(s, program))


def tampered(token: str, **changes: Any) -> str:
    """`token` with its payload changed and its signature kept."""
    prefix, body, signature = token.split(".")
    document = json.loads(base64.b32decode(body + "=" * (-len(body) % 8)))
    new_body = base64.b32encode(json.dumps({**document, **changes}).encode()).decode()
    return f"{prefix}.{new_body.rstrip('=')}.{signature}"


def refused(token: str, keys: list[offline.PublicKey], **kwargs: Any) -> str:
    with pytest.raises(offline.TokenRefused) as caught:
        offline.verify(token, keys, **kwargs)
    return caught.value.code


def five_off(client, admin, pos, member: int) -> dict[str, Any]:
    add(client, admin, FIVE_OFF)
    return redeem(client, pos, "five-off", member)["coupons"][0]


def test_token_verifies_with_the_programs_public_key(client, db, bakery, admin, pos, frozen):
    coupon = five_off(client, admin, pos, bakery["rich"])
    token = coupon["offline_token"]
    assert token.startswith("PC1.") and len(token) < 400
    # Upper-case base32 and dots: QR's compact alphanumeric mode.
    assert segno.make(token, error="m").mode == "alphanumeric"

    keys = keys_of(db)
    assert [k.kid for k in keys] == ["1"] and len(
        base64.urlsafe_b64decode(keys[0].public_key + "=")
    ) == 32
    payload = offline.verify(token, keys)
    assert payload.program == "bakery" and payload.kid == "1"
    assert payload.coupon == coupon["code"].replace("-", "")
    assert (payload.reward, payload.kind, payload.currency) == ("five-off", "fixed_discount", "KRW")
    assert payload.discount == Decimal("5000") and payload.min_spend == Decimal("30000")
    assert payload.percent is None and payload.sku is None and payload.balance is None
    assert payload.member_id == bakery["rich"]
    assert payload.expires_at == datetime.fromisoformat(coupon["expires_at"])
    # Scanned by a lower-casing reader, it still verifies.
    assert offline.verify(token.lower(), keys).coupon == payload.coupon

    # The till fetches the same keys over HTTP.
    r = client.get("/api/v1/programs/bakery/coupons/keys", headers=pos)
    assert r.status_code == 200, r.text
    assert r.json() == [
        {
            "kid": "1",
            "algorithm": "Ed25519",
            "public_key": keys[0].public_key,
            "created_at": r.json()[0]["created_at"],
        }
    ]


def test_each_kind_carries_what_the_till_needs(client, db, bakery, admin, pos, frozen):
    cheap = {"points_cost": 100, "value": "3000", "valid_days": 7}
    add(client, admin, {**cheap, "code": "pct", "kind": "percent_discount", "names": {"en": "%"},
                        "percent": "12.500", "cap": "3000"})  # fmt: skip
    add(client, admin, {**cheap, "code": "bun", "kind": "free_product", "names": {"en": "Bun"},
                        "sku": "BUN-1"})  # fmt: skip
    add(client, admin, {**cheap, "code": "gift", "kind": "gift_card", "names": {"en": "Gift"},
                        "gift_value": "20000"})  # fmt: skip
    keys = keys_of(db)
    pct, bun, gift = (
        offline.verify(redeem(client, pos, r, bakery["rich"])["coupons"][0]["offline_token"], keys)
        for r in ("pct", "bun", "gift")
    )
    assert (pct.kind, pct.percent, pct.cap, pct.discount) == (
        "percent_discount", Decimal("12.5"), Decimal("3000"), None,
    )  # fmt: skip
    assert (bun.kind, bun.sku, bun.min_spend) == ("free_product", "BUN-1", Decimal(0))
    assert (gift.kind, gift.balance) == ("gift_card", Decimal("20000"))


def test_tampered_foreign_unknown_and_expired_tokens_are_refused(
    client, db, bakery, admin, pos, frozen
):
    coupon = five_off(client, admin, pos, bakery["rich"])
    token = coupon["offline_token"]
    keys = keys_of(db)

    assert refused(tampered(token, d="50000"), keys) == "token_bad_signature"
    assert refused(tampered(token, m=bakery["poor"]), keys) == "token_bad_signature"
    prefix, body, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    assert refused(f"{prefix}.{body}.{flipped}", keys) == "token_bad_signature"

    # Another program's key, or a stranger's key under the same kid, does not verify it.
    with db.unit_of_work() as s:
        cafe = make_program(s, now=frozen, code="cafe", stores=())
        cafe_keys = offline.public_keys(s, cafe)
    assert cafe_keys[0].kid == "1" and cafe_keys[0].public_key != keys[0].public_key
    assert refused(token, cafe_keys) == "token_bad_signature"
    stranger = (
        Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    forged = offline.PublicKey("1", base64.urlsafe_b64encode(stranger).decode(), frozen)
    assert refused(token, [forged]) == "token_bad_signature"
    assert refused(token, []) == "token_unknown_key"

    for junk in ("PC1.", "PC1.AAAA", "PC1.!!!!.AAAA", "PC1.AB.CD.EF", "7KQM-3X9P-DV2T-H8WC-R"):
        assert refused(junk, keys) == "token_malformed"

    expires = datetime.fromisoformat(coupon["expires_at"])
    assert offline.verify(token, keys, now=expires - timedelta(seconds=1)).coupon
    assert refused(token, keys, now=expires) == "coupon_expired"


def test_keys_are_stable_persisted_and_per_program(client, db, bakery, frozen):
    # First asked for in read-only units of work (rolled back at their end): the key made then
    # must still be the one the next request sees.
    first = client.get(
        "/api/v1/programs/bakery/coupons/keys", headers={"X-API-Key": _key(db, "read")}
    ).json()
    assert keys_of(db) == keys_of(db)
    assert first[0]["public_key"] == keys_of(db)[0].public_key
    with db.unit_of_work(readonly=True) as s:
        program_id = get_program(s, "bakery").id
        names = list(s.scalars(select(InstanceKey.name).where(InstanceKey.name.like("coupon-%"))))
    assert names == [f"coupon-signing:{program_id}:1"]

    with db.unit_of_work() as s:
        other = make_program(s, now=frozen, code="cafe", stores=())
        assert offline.public_keys(s, other)[0].public_key != first[0]["public_key"]


def _key(db, scope: str) -> str:
    from patron.audit.service import CLI
    from patron.auth.service import create_key

    with db.unit_of_work() as s:
        _row, raw = create_key(s, name=f"{scope} 2", scopes=[scope], actor=CLI, now=clock.now())
    return raw


def test_the_same_coupon_gives_the_same_token_until_keys_rotate(
    client, db, bakery, admin, pos, frozen
):
    coupon = five_off(client, admin, pos, bakery["rich"])
    old = coupon["offline_token"]
    url = f"/api/v1/programs/bakery/coupons/{coupon['code']}/token"
    assert client.get(url, headers=pos).json()["token"] == old

    with db.unit_of_work() as s:
        added = offline.rotate_key(s, get_program(s, "bakery"), now=frozen)
    assert added.kid == "2"
    keys = keys_of(db)
    assert [k.kid for k in keys] == ["1", "2"]
    new = client.get(url, headers=pos).json()["token"]
    assert new != old and offline.verify(new, keys).kid == "2"
    # Tokens handed out before keep verifying with the older key, still published.
    assert offline.verify(old, keys).kid == "1"
    assert refused(new, keys[:1]) == "token_unknown_key"


def test_token_scanned_online_works_with_use_and_the_qr(client, db, bakery, admin, pos, frozen):
    coupon = five_off(client, admin, pos, bakery["rich"])
    token = coupon["offline_token"]
    base = "/api/v1/programs/bakery/coupons"

    svg = client.get(f"{base}/{coupon['code']}/qr.svg", headers=pos)
    assert svg.status_code == 200
    assert svg.text == segno.make(token, error="m").svg_inline(scale=4)
    shown = client.get(f"{base}/{token}", headers=pos)
    assert shown.status_code == 200 and shown.json()["code"] == coupon["code"]

    used = client.post(
        f"{base}/{token}/use",
        json={"amount": "32000", "order": "o-1", "store": "mapo"},
        headers=pos,
    )
    assert used.status_code == 200, used.text
    assert used.json()["discount"] == "5000" and used.json()["coupon"]["status"] == "used"
    assert used.json()["coupon"]["offline_token"] is None
    again = client.post(
        f"{base}/{token}/use", json={"amount": "32000", "order": "o-1"}, headers=pos
    )
    assert again.status_code == 200 and again.json()["replayed"] is True

    # A used coupon has no token any more; its QR code is the bare code.
    gone = client.get(f"{base}/{coupon['code']}/token", headers=pos)
    assert gone.status_code == 409 and gone.json()["error"] == "coupon_used"
    svg = client.get(f"{base}/{coupon['code']}/qr.svg", headers=pos)
    assert svg.text == segno.make(coupon["code"].replace("-", ""), error="m").svg_inline(scale=4)

    bad = client.post(f"{base}/PC1.ABC/use", json={"amount": "1", "order": "o-2"}, headers=pos)
    assert bad.status_code == 422 and bad.json()["error"] == "invalid_token"


def sync(client, pos, *uses: dict[str, Any]) -> dict[str, Any]:
    r = client.post(
        "/api/v1/programs/bakery/coupons/uses/batch", json={"uses": list(uses)}, headers=pos
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_offline_uses_sync_replay_and_double_use(client, db, bakery, admin, pos, frozen):
    add(client, admin, AMERICANO)
    americano = redeem(client, pos, "americano", bakery["rich"])["coupons"][0]
    five = five_off(client, admin, pos, bakery["rich"])
    at = (frozen + timedelta(minutes=10)).isoformat()
    clock.freeze(frozen + timedelta(hours=2))  # the till comes back online

    batch = [
        {"code": americano["offline_token"], "order": "off-1", "store": "mapo", "amount": "4500",
         "used_at": at},
        {"code": "0000-0000-0000-0000-0", "order": "off-9", "amount": "1000", "used_at": at},
        {"code": five["code"], "order": "off-2", "store": "mapo", "amount": "32000",
         "used_at": at},
    ]  # fmt: skip
    first = sync(client, pos, *batch)
    assert [(u["status"], u["error"]) for u in first["uses"]] == [
        ("used", None), ("refused", "coupon_not_found"), ("used", None),
    ]  # fmt: skip
    assert (first["used"], first["replayed"], first["refused"]) == (2, 0, 1)
    assert first["uses"][0]["coupon"] == americano["code"]
    assert first["uses"][2]["discount"] == "5000" and first["uses"][1]["discount"] is None

    again = sync(client, pos, *batch)
    assert [u["status"] for u in again["uses"]] == ["replayed", "refused", "replayed"]
    assert again["uses"][2]["discount"] == "5000"

    # Another till accepted the americano offline too, on another order: reported, not taken.
    double = {"code": americano["offline_token"], "order": "off-3", "store": "gangnam",
              "amount": "4500", "used_at": at}  # fmt: skip
    for _ in range(2):  # synced twice: still one conflict
        out = sync(client, pos, double)
        [item] = out["uses"]
        assert (item["status"], item["error"], out["double_uses"]) == ("refused", "double_use", 1)
        assert item["first_use"]["order"] == "off-1" and item["first_use"]["store"] == "mapo"

    with db.unit_of_work(readonly=True) as s:
        coupon = s.scalars(
            select(Coupon).where(Coupon.code == americano["code"].replace("-", ""))
        ).one()
        assert (coupon.status, coupon.used_order) == ("used", "off-1")
        events = list(
            s.scalars(
                select(CouponEvent)
                .where(CouponEvent.coupon_id == coupon.id)
                .order_by(CouponEvent.id)
            )
        )
        assert [e.kind for e in events] == ["issued", "used", "conflict"]
        used, conflict = events[1], events[2]
        assert used.offline is True and used.order_ref == "off-1"
        assert conflict.offline is True and conflict.order_ref == "off-3"
        assert conflict.details is not None and conflict.details["first_order"] == "off-1"
        assert conflict.details["first_store"] == "mapo"
        assert conflict.at == frozen + timedelta(minutes=10)
        # The outbox has the two real uses and nothing for the double use.
        kinds = s.scalars(select(DomainEvent.kind).where(DomainEvent.kind.like("coupon.%")))
        assert sorted(kinds) == ["coupon.used", "coupon.used"]

    detail = client.get(f"/api/v1/programs/bakery/coupons/{americano['code']}", headers=pos).json()
    assert [(h["kind"], h["order"], h["offline"]) for h in detail["history"]][1:] == [
        ("used", "off-1", True), ("conflict", "off-3", True),
    ]  # fmt: skip


def test_one_batch_with_the_same_coupon_on_two_orders(client, db, bakery, admin, pos, frozen):
    five = five_off(client, admin, pos, bakery["rich"])
    at = frozen.isoformat()
    out = sync(
        client,
        pos,
        {"code": five["offline_token"], "order": "a", "amount": "32000", "used_at": at},
        {"code": five["offline_token"], "order": "b", "amount": "40000", "used_at": at},
    )
    assert [(u["status"], u["error"]) for u in out["uses"]] == [
        ("used", None), ("refused", "double_use"),
    ]  # fmt: skip
    with db.unit_of_work(readonly=True) as s:
        counts = dict(
            s.execute(select(CouponEvent.kind, func.count()).group_by(CouponEvent.kind)).all()
        )
        conflict = s.scalars(select(CouponEvent).where(CouponEvent.kind == "conflict")).one()
        assert conflict.amount_minor == 5000  # what the second till gave away
    assert counts == {"issued": 1, "used": 1, "conflict": 1}


def test_sync_refuses_what_cannot_have_happened(client, db, bakery, admin, pos, frozen):
    five = five_off(client, admin, pos, bakery["rich"])
    expires = datetime.fromisoformat(five["expires_at"])
    clock.freeze(expires + timedelta(days=1))  # a till that stayed offline for a month
    later = (expires + timedelta(days=1, hours=1)).isoformat()
    expired = (expires + timedelta(minutes=1)).isoformat()
    out = sync(
        client,
        pos,
        {"code": five["code"], "order": "a", "amount": "32000", "used_at": later},
        {"code": five["code"], "order": "b", "amount": "32000", "used_at": expired},
        {"code": five["code"], "order": "c", "amount": "20000", "used_at": frozen.isoformat()},
    )
    assert [u["error"] for u in out["uses"]] == [
        "used_at_in_future", "coupon_expired", "coupon_not_applicable",
    ]  # fmt: skip
    naive = client.post(
        "/api/v1/programs/bakery/coupons/uses/batch",
        json={"uses": [{"code": five["code"], "order": "d", "amount": "1", "used_at": "2026-03-02T10:00:00"}]},
        headers=pos,
    )  # fmt: skip
    assert naive.status_code == 422


def test_batch_and_keys_need_their_scopes(client, bakery, keys, frozen):
    read = {"Authorization": f"Bearer {keys['read']}"}
    r = client.post("/api/v1/programs/bakery/coupons/uses/batch", json={"uses": []}, headers=read)
    assert r.status_code == 403
    missing = client.get("/api/v1/programs/nowhere/coupons/keys", headers=read)
    assert missing.status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    batch = paths["/api/v1/programs/{code}/coupons/uses/batch"]["post"]["responses"]
    assert {"200", "404", "422"} <= set(batch)
    token = paths["/api/v1/programs/{code}/coupons/{coupon}/token"]["get"]["responses"]
    assert {"404", "409"} <= set(token)


def _snippet() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_coupon", SNIPPET)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_snippet_verifies_a_real_token(client, db, bakery, admin, pos, frozen):
    snippet = _snippet()
    coupon = five_off(client, admin, pos, bakery["rich"])
    token = coupon["offline_token"]
    keys = client.get("/api/v1/programs/bakery/coupons/keys", headers=pos).json()
    now = frozen.timestamp()

    payload = snippet.verify_coupon(token, keys, now=now)
    reference = offline.verify(token, keys_of(db))
    assert payload["c"] == reference.coupon == coupon["code"].replace("-", "")
    assert (payload["p"], payload["r"], payload["t"]) == ("bakery", "five-off", "fixed_discount")
    assert (payload["d"], payload["ms"], payload["cu"]) == ("5000", "30000", "KRW")
    assert payload["m"] == bakery["rich"] and payload["k"] == "1"
    assert payload["x"] == int(datetime.fromisoformat(coupon["expires_at"]).timestamp())

    for bad, when in (
        (tampered(token, d="50000"), now),
        (token, payload["x"]),
        ("PC1.AAAA", now),
        (coupon["code"], now),
    ):
        with pytest.raises(ValueError):
            snippet.verify_coupon(bad, keys, now=when)
    with pytest.raises(ValueError):
        snippet.verify_coupon(token, [{**keys[0], "kid": "9"}], now=now)
