"""The purchase call's wire format (patron.sales.wire, decision 0014).

msgspec decodes the bodies it can into the very PurchaseRequest pydantic would build, and
hands every other body to pydantic; both routes (the till's direct route and the FastAPI
route) give the same bytes for every kind of body, errors included.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.responses import JSONResponse

from patron.ledger.schemas import LineIn
from patron.members.schemas import MemberRef
from patron.sales import wire
from patron.sales.schemas import PurchaseRequest
from tests.api.helpers import enroll

P = "/api/v1/programs/bakery"
PHONE = {"phone": "010-1234-5678"}
INVALID_JSON = {"error": "invalid_json", "detail": "the request body is not valid JSON"}


def sale(external_id: str = "W-1", **fields: Any) -> dict[str, Any]:
    return {"external_id": external_id, "member": PHONE, "amount": 25800, **fields}


def raw(data: Any) -> bytes:
    return json.dumps(data).encode()


# --- the fast path builds what pydantic builds ---------------------------------------------------


def fast(body: bytes) -> PurchaseRequest | None:
    """The fast path's model, or None where it leaves the body to pydantic."""
    try:
        return wire._fast(wire._decoder.decode(body))
    except (msgspec.DecodeError, wire._Slow):
        return None


def by_pydantic(body: bytes) -> PurchaseRequest | wire.Rejected:
    return wire._slow(body, "application/json")


def assert_same_model(mine: PurchaseRequest, theirs: PurchaseRequest) -> None:
    assert mine == theirs
    assert mine.model_dump(mode="json") == theirs.model_dump(mode="json")
    assert mine.model_dump() == theirs.model_dump()
    assert mine.model_fields_set == theirs.model_fields_set
    assert mine.member.model_fields_set == theirs.member.model_fields_set
    for a, b in zip(mine.lines, theirs.lines, strict=True):
        assert a.model_fields_set == b.model_fields_set
        assert type(a) is type(b) is LineIn
    assert type(mine.member) is MemberRef
    for name in PurchaseRequest.model_fields:
        assert repr(getattr(mine, name)) == repr(getattr(theirs, name)), name


TAKEN = [
    sale(),
    sale(amount="25800.50", currency="KRW", store="mapo", channel="app", payment_method="card"),
    sale(amount=258.5, points_to_spend=1000, coupons=["AB-12", "CD-34"]),
    sale(amount="0.0001", member={"id": 2**53}),
    sale(amount=10**13, member={"card": "C" * 40}),
    sale(amount="10000000000000.0000", member={"email": "kim@example.com"}),
    sale(member={"phone": "010-1234-5678", "id": None, "card": None}),
    sale(occurred_at="2026-01-05T10:00:00+09:00"),
    sale(occurred_at="2026-01-05T01:00:00Z"),
    sale(occurred_at="2026-01-05T01:00:00.123456789Z"),
    sale(occurred_at="2026-01-05 01:00:00+09:00"),
    sale(occurred_at="2026-01-05T01:00:00.123456+00:00"),
    sale(occurred_at=None, currency=None, store=None, payment_method=None),
    sale(
        lines=[
            {"amount": "7600", "quantity": 2, "sku": "CROISSANT", "category": "bread"},
            {"id": "2", "amount": 5200.25, "quantity": "1.5"},
            {"amount": 0, "quantity": "0.001", "id": "x" * 60, "sku": None},
            {"amount": "0.0000", "quantity": 1_000_000},
        ]
    ),
    sale(external_id="한국어-\u0001\n\t-é" + "x" * 100),
    sale(coupons=[]),
]


@pytest.mark.parametrize("data", TAKEN, ids=range(len(TAKEN)))
def test_the_fast_path_builds_the_model_pydantic_builds(data):
    body = raw(data)
    mine = fast(body)
    assert mine is not None, "the fast path should take this body"
    theirs = by_pydantic(body)
    assert isinstance(theirs, PurchaseRequest)
    assert_same_model(mine, theirs)
    assert wire.decode(body, "application/json") == theirs


# Valid for pydantic, left to it by the fast path: the answer is pydantic's all the same.
LEFT_TO_PYDANTIC = [
    sale(amount="1e3"),
    sale(amount=" 12.5 "),
    sale(amount="1.00000"),
    sale(amount="+5"),
    sale(points_to_spend="5"),
    sale(points_to_spend=0.0),
    sale(member={"id": 1.0}),
    sale(member={"id": "7"}),
    sale(occurred_at=1767571200),
    sale(lines=[{"amount": 1, "quantity": "2.000000"}]),
]


@pytest.mark.parametrize("data", LEFT_TO_PYDANTIC, ids=range(len(LEFT_TO_PYDANTIC)))
def test_unusual_valid_bodies_are_judged_by_pydantic(data):
    body = raw(data)
    assert fast(body) is None
    theirs = by_pydantic(body)
    assert isinstance(theirs, PurchaseRequest)
    assert wire.decode(body, "application/json") == theirs


def test_the_structs_mirror_the_pydantic_models():
    """A field added to PurchaseRequest, MemberRef or LineIn must be added to the structs
    (and its rule to wire._fast), or the fast path would refuse bodies that use it."""
    assert set(wire._Purchase.__struct_fields__) == set(PurchaseRequest.model_fields)
    assert set(wire._Member.__struct_fields__) == set(MemberRef.model_fields)
    assert set(wire._Line.__struct_fields__) == set(LineIn.model_fields)
    # _built stands in for model_construct: no aliases, private attributes or post-init.
    for model in (PurchaseRequest, MemberRef, LineIn):
        assert not model.__private_attributes__
        assert not model.__pydantic_post_init__
        assert all(
            f.alias is None and f.validation_alias is None for f in model.model_fields.values()
        )


# The schema the structs in patron.sales.wire mirror (fields, lengths, ranges, decimals).
MIRRORED = "c78059bd6c8bb960418d4290f0fca43bbf7a92ec8e3377fcefc04247480b3eba"


def test_the_structs_mirror_this_version_of_the_schema():
    """A new rule on an existing field (a shorter store, a pattern) would not send bodies to
    pydantic by itself: the fast path would take what pydantic now refuses."""
    schema = json.dumps(PurchaseRequest.model_json_schema(), sort_keys=True).encode()
    assert hashlib.sha256(schema).hexdigest() == MIRRORED, (
        "PurchaseRequest, MemberRef or LineIn changed: make the same change in "
        "patron.sales.wire (its structs and _fast), then put the new digest here"
    )


DECIMALS = st.one_of(
    st.integers(min_value=-5, max_value=10**20),
    st.sampled_from([0, 1, 10**13, 10**13 + 1, 10**6, 10**6 + 1, True, None]),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1, max_value=1e15),
    st.decimals(
        min_value=-1, max_value=Decimal("1e14"), allow_nan=False, allow_infinity=False, places=6
    ).map(str),
    st.decimals(allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(["1e3", "1.", ".5", " 1", "1_0", "٣", "0x1", "", "00012", "1.0000", "-0"]),
)
TEXT = st.one_of(st.none(), st.text(max_size=130), st.integers(), st.sampled_from(["", "x" * 41]))
MEMBER = st.dictionaries(
    st.sampled_from(["id", "card", "phone", "email", "other"]),
    st.one_of(TEXT, st.sampled_from([0, 1, 2**53, 2**53 + 1, 1.0, -1, True])),
    max_size=3,
)
LINE = st.dictionaries(
    st.sampled_from(["id", "sku", "category", "quantity", "amount", "colour"]),
    st.one_of(DECIMALS, TEXT),
    max_size=5,
).map(lambda line: {"amount": 1, **line})
AWARE = st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=9))])).map(
    datetime.isoformat
)
WHEN = st.one_of(
    AWARE,
    st.datetimes().map(datetime.isoformat),
    st.sampled_from(["2026-01-05T01:00:00Z", "2026-01-05 01:00:00+09:00", "2026-13-01T00:00Z"]),
    st.integers(min_value=0, max_value=2**33),
    st.none(),
)
OPTIONAL = {
    "currency": TEXT,
    "lines": st.one_of(st.lists(LINE, max_size=3), st.none(), st.just({})),
    "store": TEXT,
    "channel": st.sampled_from(["pos", "online", "app", "web", None, 1]),
    "payment_method": TEXT,
    "occurred_at": WHEN,
    "points_to_spend": st.one_of(
        st.integers(min_value=-1, max_value=10**12 + 1), st.sampled_from(["5", 1.0, None])
    ),
    "coupons": st.one_of(st.lists(st.text(max_size=5), max_size=11), st.just([1])),
    "colour": st.just("red"),
}
BODIES = st.fixed_dictionaries(
    {"external_id": TEXT, "member": MEMBER, "amount": DECIMALS},
    optional=OPTIONAL,
)


# Valid bodies (most of them taken by the fast path), and valid bodies with one wild value:
# the boundaries where the fast path and pydantic could part.
MONEY = st.one_of(
    st.integers(min_value=1, max_value=10**13),
    st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("1e13"), places=4).map(str),
    st.decimals(min_value=1, max_value=Decimal("1e13"), places=0).map(str),
    st.floats(min_value=0.0001, max_value=1e13),
)
QUANTITY = st.one_of(
    st.integers(min_value=1, max_value=10**6),
    st.decimals(min_value=Decimal("0.001"), max_value=10**6, places=3).map(str),
    st.floats(min_value=0.001, max_value=1e6),
)
REFS = {
    "id": st.integers(min_value=1, max_value=2**53),
    "card": st.text(min_size=1, max_size=40),
    "phone": st.text(min_size=3, max_size=30),
    "email": st.text(min_size=3, max_size=254),
}
ONE_REF = st.sampled_from(sorted(REFS)).flatmap(
    lambda name: REFS[name].map(lambda value: {name: value})
)
VALID_LINE = st.fixed_dictionaries(
    {"amount": MONEY | st.just(0)},
    optional={
        "quantity": QUANTITY,
        "id": st.text(min_size=1, max_size=60),
        "sku": st.text(max_size=80) | st.none(),
        "category": st.text(max_size=80) | st.none(),
    },
)
VALID = st.fixed_dictionaries(
    {"external_id": st.text(min_size=1, max_size=120), "member": ONE_REF, "amount": MONEY},
    optional={
        "lines": st.lists(VALID_LINE, max_size=4),
        "store": st.text(max_size=40) | st.none(),
        "payment_method": st.text(min_size=1, max_size=40) | st.none(),
        "occurred_at": AWARE | st.none(),
        "points_to_spend": st.integers(0, 10**12),
        "coupons": st.lists(st.text(max_size=8), max_size=10),
        "channel": st.sampled_from(["pos", "online", "app"]),
        "currency": st.text(max_size=5) | st.none(),
    },
)
WILD = st.one_of(DECIMALS, TEXT, WHEN, MEMBER, OPTIONAL["lines"], st.lists(LINE, max_size=2))
ONE_WILD = st.tuples(VALID, st.sampled_from([*OPTIONAL, "external_id", "amount"]), WILD).map(
    lambda t: {**t[0], t[1]: t[2]}
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(BODIES | VALID | ONE_WILD)
def test_any_body_the_fast_path_takes_is_the_model_pydantic_builds(data):
    body = raw(data)
    theirs = by_pydantic(body)
    mine = fast(body)
    if mine is not None:
        assert isinstance(theirs, PurchaseRequest), (data, theirs)
        assert_same_model(mine, theirs)
    decoded = wire.decode(body, "application/json")
    if isinstance(theirs, wire.Rejected):
        assert isinstance(decoded, wire.Rejected)
        assert [(e["type"], e["loc"], e["msg"]) for e in decoded.errors] == [
            (e["type"], e["loc"], e["msg"]) for e in theirs.errors
        ]
    else:
        assert_same_model(decoded, theirs)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0, max_value=1e13, allow_nan=False))
def test_json_numbers_become_the_decimal_pydantic_makes(number):
    body = raw(sale(amount=number, lines=[{"amount": number, "quantity": min(number, 1e6)}]))
    theirs = by_pydantic(body)
    mine = fast(body)
    if mine is not None:
        assert isinstance(theirs, PurchaseRequest)
        assert_same_model(mine, theirs)


def test_bodies_that_are_not_json_raise_invalid_json():
    for body in (b"{", b"[" * 100_000, b'{"a":' * 100_000, b'{"external_id": "\xff"}', b"NaN{"):
        with pytest.raises(wire.InvalidJSON) as caught:
            wire.decode(body, "application/json")
        assert (caught.value.status, caught.value.body()) == (400, INVALID_JSON)


def test_answers_are_the_bytes_json_dumps_gave():
    answer = {"a": 'é한\n\u0001"\\', "n": [1, None, True, {"x": -(2**62)}], "d": "25800.50"}
    for content in (answer, {"huge": 2**70}):  # past 64 bits orjson refuses: json does it
        mine = wire.encoded(content, 201, headers={"Idempotent-Replayed": "true"})
        theirs = JSONResponse(content, 201, headers={"Idempotent-Replayed": "true"})
        assert mine.body == theirs.body
        assert mine.raw_headers == theirs.raw_headers


# --- both routes, byte for byte ------------------------------------------------------------------


@pytest.fixture
def plain(db) -> Iterator[TestClient]:
    """The same database behind the FastAPI routes alone."""
    from patron.app import create_app

    with TestClient(create_app(db=db, till_route=False), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def direct(app) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def kim(direct, pos, bakery, frozen) -> dict[str, Any]:
    # Enrolling with the POS key caches it: the sales below take the direct route.
    return enroll(direct, pos, name="Kim Minji", phone="010-1234-5678")


JSON = {"Content-Type": "application/json"}
# (label, body, content type, status, error code or None)
CASES: list[tuple[str, bytes, str | None, int, str | None]] = [
    ("bad type: amount true", raw(sale(amount=True)), "application/json", 422, "validation_error"),
    ("bad type: lines object", raw(sale(lines={})), "application/json", 422, "validation_error"),
    ("bad type: id int", raw(sale(external_id=5)), "application/json", 422, "validation_error"),
    ("bad type: channel", raw(sale(channel="web")), "application/json", 422, "validation_error"),
    (
        "missing member",
        raw({"external_id": "W-1", "amount": 1}),
        "application/json",
        422,
        "validation_error",
    ),
    (
        "two member references",
        raw(sale(member={**PHONE, "id": 1})),
        "application/json",
        422,
        "validation_error",
    ),
    ("no member reference", raw(sale(member={})), "application/json", 422, "validation_error"),
    ("huge integer", raw(sale(amount=10**40)), "application/json", 422, "validation_error"),
    ("huge points", raw(sale(points_to_spend=10**30)), "application/json", 422, "validation_error"),
    (
        "huge number",
        b'{"external_id":"W-1","member":{"phone":"010-1234-5678"},"amount":1e400}',
        "application/json",
        422,
        "validation_error",
    ),
    (
        "NaN",
        b'{"external_id":"W-1","member":{"phone":"010-1234-5678"},"amount":NaN}',
        "application/json",
        422,
        "validation_error",
    ),
    (
        "deep array 100,000",
        b"[" * 100_000 + b"]" * 100_000,
        "application/json",
        400,
        "invalid_json",
    ),
    (
        "deep object 100,000",
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        "application/json",
        400,
        "invalid_json",
    ),
    (
        "deep in a field",
        b'{"external_id":"W-1","member":{"phone":"010-1234-5678"},"amount":1,"lines":'
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}",
        "application/json",
        400,
        "invalid_json",
    ),
    ("invalid UTF-8", b'{"external_id": "\xff"}', "application/json", 400, "invalid_json"),
    ("empty body", b"", "application/json", 422, "validation_error"),
    ("not JSON", b"{x", "application/json", 400, "invalid_json"),
    ("array", raw([sale()]), "application/json", 422, "validation_error"),
    ("null", b"null", "application/json", 422, "validation_error"),
    ("unknown field", raw(sale(colour="red")), "application/json", 422, "validation_error"),
    ("no content type", raw(sale("W-2")), None, 422, "validation_error"),
    ("text/plain", raw(sale("W-2")), "text/plain", 422, "validation_error"),
    (
        "many errors",
        raw({"member": {}, "amount": -1, "lines": [{"amount": "x"}], "z": 1}),
        "application/json",
        422,
        "validation_error",
    ),
    (
        "unknown member",
        raw(sale(member={"phone": "010-9999-0000"})),
        "application/json",
        404,
        "member_not_found",
    ),
    # Lines, when given, are at least one (an empty list is refused, not read as none).
    ("empty lines", raw(sale("W-8", lines=[])), "application/json", 422, "validation_error"),
    ("a sale", raw(sale("W-3", amount="25800")), "application/json", 201, None),
    ("its replay", raw(sale("W-3", amount="25800")), "application/json", 201, None),
    (
        "another order, same id",
        raw(sale("W-3", amount=1000)),
        "application/json",
        409,
        "duplicate_order",
    ),
    ("decimals pydantic takes", raw(sale("W-4", amount="1e3")), "application/json", 201, None),
    ("charset", raw(sale("W-5")), "application/json; charset=utf-8", 201, None),
    ("UTF-16", json.dumps(sale("W-6")).encode("utf-16"), "application/json", 201, None),
    (
        "lines",
        raw(sale("W-7", lines=[{"amount": 25000, "quantity": "2"}, {"amount": "800.00"}])),
        "application/json",
        201,
        None,
    ),
]


def test_both_routes_answer_every_body_with_the_same_bytes(direct, plain, pos, reader, kim):
    for label, body, content_type, status, code in CASES:
        headers = dict(pos)
        if content_type is not None:
            headers["Content-Type"] = content_type
        # The direct route first, then the FastAPI route alone, on the same database: a sale
        # the first records, the second replays (same external id, same body); then the direct
        # route again, which replays it too. A replay is the stored answer, whose keys
        # PostgreSQL's jsonb reorders: the bytes of two replays agree, a replay and the first
        # answer agree as JSON.
        one = direct.post(f"{P}/purchases", content=body, headers=headers)
        two = plain.post(f"{P}/purchases", content=body, headers=headers)
        three = direct.post(f"{P}/purchases", content=body, headers=headers)
        assert one.status_code == two.status_code == three.status_code == status, (
            label,
            one.text,
            two.text,
        )
        assert two.content == three.content, label
        assert one.json() == two.json(), label
        if status != 201:
            assert one.content == two.content, label
        for answer in (one, two, three):
            assert answer.headers["content-type"] == "application/json"
        if code is not None:
            assert set(one.json()) == {"error", "detail"}, label
            assert one.json()["error"] == code, (label, one.json())
        if code == "invalid_json":
            assert one.json() == INVALID_JSON
    history = direct.get(f"{P}/members/{kim['id']}/entries", headers=reader).json()["items"]
    assert {e["external_ref"] for e in history} == {"W-3", "W-4", "W-5", "W-6", "W-7"}


def test_the_direct_route_answers_a_body_that_is_not_json_itself(direct, pos, kim, monkeypatch):
    from patron.sales import till_route

    def declined(*_args: Any) -> Any:
        raise AssertionError("the direct route handed the request on")

    monkeypatch.setattr(till_route, "_replay", declined)
    for body in (b"[" * 100_000, b'{"external_id": "\xff"}', b"{x"):
        response = direct.post(f"{P}/purchases", content=body, headers={**pos, **JSON})
        assert (response.status_code, response.json()) == (400, INVALID_JSON)
    ok = direct.post(f"{P}/purchases", content=raw(sale("D-1")), headers={**pos, **JSON})
    assert ok.status_code == 201, ok.text


def test_a_bad_body_is_reported_with_a_bad_path_or_header(plain, pos, kim):
    bad = raw(sale(amount=-1))
    response = plain.post("/api/v1/programs/Bad!/purchases", content=bad, headers={**pos, **JSON})
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "path.code: String should match pattern '^[a-z0-9][a-z0-9_-]{0,39}$'; "
        "amount: Input should be greater than 0"
    )
    long_key = {**pos, **JSON, "Idempotency-Key": "k" * 201}
    response = plain.post(f"{P}/purchases", content=bad, headers=long_key)
    assert response.json()["detail"] == (
        "header.Idempotency-Key: String should have at most 200 characters; "
        "amount: Input should be greater than 0"
    )


def test_a_caller_without_a_key_gets_400_for_bad_json_and_401_for_a_bad_sale(direct, plain, kim):
    for client in (direct, plain):
        not_json = client.post(f"{P}/purchases", content=b"{x", headers=JSON)
        assert (not_json.status_code, not_json.json()) == (400, INVALID_JSON)
        bad_sale = client.post(f"{P}/purchases", content=raw(sale(amount=-1)), headers=JSON)
        assert bad_sale.status_code == 401


def test_idempotency_key_replays_the_same_bytes_on_both_routes(direct, plain, pos, kim):
    headers = {**pos, **JSON, "Idempotency-Key": "till-7-0001"}
    first = direct.post(f"{P}/purchases", content=raw(sale("I-1")), headers=headers)
    again = plain.post(f"{P}/purchases", content=raw(sale("I-1")), headers=headers)
    third = direct.post(f"{P}/purchases", content=raw(sale("I-1")), headers=headers)
    assert first.status_code == again.status_code == third.status_code == 201
    assert again.headers["Idempotent-Replayed"] == third.headers["Idempotent-Replayed"] == "true"
    # The stored answer (keys reordered by PostgreSQL's jsonb), the same bytes on both routes.
    assert again.content == third.content
    assert again.json() == first.json()
    other = direct.post(f"{P}/purchases", content=raw(sale("I-2")), headers=headers)
    framework = plain.post(f"{P}/purchases", content=raw(sale("I-2")), headers=headers)
    assert other.status_code == framework.status_code == 409
    assert other.content == framework.content


def test_the_openapi_document_declares_the_body_and_the_answer(direct):
    operation = direct.get("/openapi.json").json()["paths"]["/api/v1/programs/{code}/purchases"]
    post = operation["post"]
    assert post["requestBody"] == {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/PurchaseRequest"}}
        },
    }
    assert post["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PurchaseOut"
    }
    assert {p["name"] for p in post["parameters"]} == {"code", "Idempotency-Key"}
