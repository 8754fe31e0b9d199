"""The purchase call on the wire: body bytes in, answer bytes out (decision 0014).

The FastAPI route (`ledger.api.purchase`) and the till's direct route (`ledger.till_route`)
both call `decode` and then `purchase`, so they give the same answer, byte for byte, errors
included.

`decode` reads a body in one pass with msgspec into structs that accept a strict subset of what
`PurchaseRequest` accepts (JSON numbers or plain decimal strings for money, JSON integers for
integers, the same lengths, ranges and the one-member-reference rule), then builds the very
`PurchaseRequest` the service takes as `model_construct` does, without validating again. Anything
outside that subset — an error, but also an unusual yet valid body such as `"amount": "1e3"`,
`"points_to_spend": "5"` or a UTF-16 body — goes the way FastAPI reads a body: `json.loads`,
then pydantic. So pydantic stays the judge of every body the fast path does not take, and its
messages are the ones a client sees. A body the fast path takes must give the model pydantic
would give; tests/api/test_wire.py checks that on many bodies.

Answers are encoded with orjson.
"""

from __future__ import annotations

import email.message
import json
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import AwareDatetime, BaseModel, TypeAdapter, ValidationError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from patron import clock, http
from patron.audit import idempotency
from patron.audit.models import IdempotencyKey
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import PatronError
from patron.ledger.schemas import LineIn
from patron.members.schemas import MemberRef
from patron.sales import program_cache, purchases
from patron.sales.schemas import PurchaseRequest

UNSET = msgspec.UNSET
Unset = msgspec.UnsetType


class InvalidJSON(PatronError):
    """The body is not JSON (malformed, not UTF-8, nested deeper than a parser goes): the 400
    every JSON route gives (`app.INVALID_JSON`)."""

    status = 400
    code = "invalid_json"

    def __init__(self) -> None:
        super().__init__("the request body is not valid JSON")


@dataclass(frozen=True, slots=True)
class Rejected:
    """A body that is JSON but not a valid sale: pydantic's errors, located as FastAPI locates
    a body's errors (`("body", ...)`). Raised as a RequestValidationError only once the caller
    is known, as FastAPI does: a bad body from an unknown caller is a 401, not a 422."""

    errors: list[dict[str, Any]]


Decoded = PurchaseRequest | Rejected


# --- the fast path: msgspec structs, a strict subset of the pydantic schemas ------------------

# Money as JSON gives it: an integer, a number or a string. Only plain decimals are taken here
# ("12.50", 12.5, 12); signs, exponents, spaces go to pydantic.
Number = int | float | str
_MAX_AMOUNT = Decimal("1e13")
_MAX_QUANTITY = Decimal(1_000_000)


# The lengths and ranges of PurchaseRequest, LineIn and MemberRef.
_ExternalId = Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
_MemberId = Annotated[int, msgspec.Meta(ge=1, le=2**53)]
_Card = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
_Phone = Annotated[str, msgspec.Meta(min_length=3, max_length=30)]
_Email = Annotated[str, msgspec.Meta(min_length=3, max_length=254)]
_LineId = Annotated[str, msgspec.Meta(min_length=1, max_length=60)]
_Label = Annotated[str, msgspec.Meta(max_length=80)]
_Store = Annotated[str, msgspec.Meta(max_length=40)]
_PaymentMethod = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
_Points = Annotated[int, msgspec.Meta(ge=0, le=10**12)]
_Coupon = Annotated[str, msgspec.Meta(max_length=64)]


class _Member(msgspec.Struct, forbid_unknown_fields=True):
    id: _MemberId | Unset | None = UNSET
    card: _Card | Unset | None = UNSET
    phone: _Phone | Unset | None = UNSET
    email: _Email | Unset | None = UNSET


class _Line(msgspec.Struct, forbid_unknown_fields=True):
    amount: Number
    id: _LineId | Unset | None = UNSET
    sku: _Label | Unset | None = UNSET
    category: _Label | Unset | None = UNSET
    quantity: Number | Unset = UNSET


class _Purchase(msgspec.Struct, forbid_unknown_fields=True):
    external_id: _ExternalId
    member: _Member
    amount: Number
    currency: Annotated[str, msgspec.Meta(max_length=3)] | Unset | None = UNSET
    lines: Annotated[list[_Line], msgspec.Meta(min_length=1, max_length=500)] | Unset = UNSET
    store: _Store | Unset | None = UNSET
    channel: Literal["pos", "online", "app"] | Unset = UNSET
    payment_method: _PaymentMethod | Unset | None = UNSET
    occurred_at: str | Unset | None = UNSET
    points_to_spend: _Points | Unset = UNSET
    coupons: Annotated[list[_Coupon], msgspec.Meta(max_length=10)] | Unset = UNSET


_decoder = msgspec.json.Decoder(_Purchase)
_aware = TypeAdapter(AwareDatetime)


_MEMBER_FIELDS = ("id", "card", "phone", "email")
_LINE_TEXT = ("id", "sku", "category")
_PURCHASE_OPTIONAL = (
    "currency",
    "lines",
    "store",
    "channel",
    "payment_method",
    "occurred_at",
    "points_to_spend",
    "coupons",
)
_ONE = Decimal(1)
M = TypeVar("M", bound=BaseModel)


class _Slow(Exception):
    """The fast path does not take this body: pydantic judges it."""


def _decimal(value: Number, places: int) -> Decimal:
    """`value` as pydantic makes a Decimal of it (ints as they are, floats by their repr,
    strings as written), when it is a plain decimal (ASCII digits, at most one point with
    digits on both sides) with at most `places` decimals."""
    if type(value) is int:
        return Decimal(value)
    text = value if type(value) is str else repr(value)
    assert isinstance(text, str)
    whole, point, fraction = text.partition(".")
    if (
        whole.isdigit()
        and whole.isascii()
        and (not point or (len(fraction) <= places and fraction.isdigit() and fraction.isascii()))
    ):
        return Decimal(text)
    raise _Slow


def _built(cls: type[M], values: dict[str, Any], given: set[str]) -> M:
    """`cls.model_construct(given, **values)` for these models (every field given in `values`,
    in the declared order; no aliases, private attributes or post-init), without its loop over
    the fields, which cost more than msgspec's whole decode."""
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", values)
    object.__setattr__(model, "__pydantic_fields_set__", given)
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model


def _given(value: Any) -> Any:
    return None if value is UNSET else value


def _fast(raw: _Purchase) -> PurchaseRequest:
    ref = raw.member
    member = {
        "id": _given(ref.id),
        "card": _given(ref.card),
        "phone": _given(ref.phone),
        "email": _given(ref.email),
    }
    if sum(v is not None for v in member.values()) != 1:
        raise _Slow  # pydantic words the exactly-one rule
    member_given = {n for n in _MEMBER_FIELDS if getattr(ref, n) is not UNSET}

    amount = _decimal(raw.amount, 4)
    if not 0 < amount <= _MAX_AMOUNT:
        raise _Slow

    lines = []
    for line in raw.lines or ():
        given = {"amount"}
        line_amount = _decimal(line.amount, 4)
        if not 0 <= line_amount <= _MAX_AMOUNT:
            raise _Slow
        if line.quantity is UNSET:
            quantity = _ONE
        else:
            quantity = _decimal(line.quantity, 3)
            if not 0 < quantity <= _MAX_QUANTITY:
                raise _Slow
            given.add("quantity")
        for name in _LINE_TEXT:
            if getattr(line, name) is not UNSET:
                given.add(name)
        values = {
            "id": _given(line.id),
            "sku": _given(line.sku),
            "category": _given(line.category),
            "quantity": quantity,
            "amount": line_amount,
        }
        lines.append(_built(LineIn, values, given))

    occurred_at: datetime | None = None
    if isinstance(raw.occurred_at, str):
        try:
            occurred_at = _aware.validate_python(raw.occurred_at)
        except ValidationError:
            raise _Slow from None

    given = {"external_id", "member", "amount"}
    for name in _PURCHASE_OPTIONAL:
        if getattr(raw, name) is not UNSET:
            given.add(name)
    values = {
        "amount": amount,
        "currency": _given(raw.currency),
        "lines": lines,
        "store": _given(raw.store),
        "channel": "pos" if raw.channel is UNSET else raw.channel,
        "payment_method": _given(raw.payment_method),
        "external_id": raw.external_id,
        "member": _built(MemberRef, member, member_given),
        "occurred_at": occurred_at,
        "points_to_spend": 0 if raw.points_to_spend is UNSET else raw.points_to_spend,
        "coupons": [] if raw.coupons is UNSET else raw.coupons,
    }
    return _built(PurchaseRequest, values, given)


# --- the slow path: as FastAPI reads and validates a body --------------------------------------


def _is_json(content_type: str | None) -> bool:
    """FastAPI's rule (strict content type): JSON only when declared application/json or
    application/*+json; any other body is validated as bytes (and refused)."""
    if not content_type:
        return False
    if content_type == "application/json":
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    if message.get_content_maintype() != "application":
        return False
    subtype = message.get_content_subtype()
    return subtype == "json" or subtype.endswith("+json")


def _slow(body: bytes, content_type: str | None) -> Decoded:
    if not body:
        return Rejected([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
    value: Any = body
    if _is_json(content_type):
        try:
            value = json.loads(body)
        # ValueError: malformed, or not UTF-8; RecursionError: nested deeper than json goes.
        except (ValueError, RecursionError):
            raise InvalidJSON from None
    try:
        return PurchaseRequest.model_validate(value, from_attributes=True)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        return Rejected([{**e, "loc": ("body", *e["loc"])} for e in errors])


def decode(body: bytes, content_type: str | None) -> Decoded:
    """The sale in `body`, or why it is not one; InvalidJSON if the body is not JSON."""
    if content_type == "application/json" or _is_json(content_type):
        try:
            return _fast(_decoder.decode(body))
        except (msgspec.DecodeError, _Slow):
            pass
    return _slow(body, content_type)


_DECODED = "patron.purchase_body"


async def read_purchase(request: Request) -> Decoded:
    """The FastAPI dependency, declared first: the body, decoded before the caller is checked
    (FastAPI reads a body before solving dependencies, so a malformed body is a 400 for anyone,
    and a body that is not a sale a 422 only for a caller who may send one)."""
    decoded = decode(await request.body(), request.headers.get("content-type"))
    request.scope[_DECODED] = decoded
    return decoded


class _BodyInvalid(RequestValidationError):
    """The body's errors alone (the path and headers were valid)."""


class PurchaseRoute(APIRoute):
    """The purchase route: when the path or a header is invalid as well as the body, FastAPI
    reports all their errors together, path and headers first; so does this route."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except _BodyInvalid:
                raise
            except RequestValidationError as exc:
                decoded = request.scope.get(_DECODED)
                if not isinstance(decoded, Rejected):
                    raise
                raise RequestValidationError([*exc.errors(), *decoded.errors]) from None

        return route


# --- the service and the answer -----------------------------------------------------------------

Job = Callable[[Session], Response]
Run = Callable[[Job], Awaitable[Response]]
Record = Callable[[Session, str, PurchaseRequest, Actor, "str | None"], Response]


def encoded(content: Any, status_code: int, headers: dict[str, str] | None = None) -> Response:
    """`content` as JSON bytes (orjson; the standard library for what orjson refuses, e.g. an
    integer past 64 bits)."""
    try:
        data = orjson.dumps(content)
    except TypeError:
        return JSONResponse(content, status_code=status_code, headers=headers)
    return Response(data, status_code=status_code, headers=headers, media_type="application/json")


def take_key(
    session: Session, code: str, req: PurchaseRequest, actor: Actor, idempotency_key: str
) -> IdempotencyKey | Response:
    """The Idempotency-Key taken for this sale, or the first answer to it, replayed (as
    `http.write_in`); IdempotencyConflict if it was used for another request."""
    payload = {"program": code, **req.model_dump(mode="json")}
    try:
        return idempotency.claim(
            session, actor=str(actor), key=idempotency_key, payload=payload, now=clock.now()
        )
    except idempotency.Replay as replay:
        return encoded(replay.response, replay.status_code, headers={"Idempotent-Replayed": "true"})


def answered(session: Session, claim: IdempotencyKey | None, answer: dict[str, Any]) -> Response:
    """A recorded sale's answer, stored first under its Idempotency-Key if it has one."""
    if claim is not None:
        idempotency.answer(session, claim, 201, answer)
    return encoded(answer, 201)


def record(
    session: Session, code: str, req: PurchaseRequest, actor: Actor, idempotency_key: str | None
) -> Response:
    """The sale recorded in the caller's transaction, and its answer; with an Idempotency-Key,
    the key taken first, or the first answer replayed (as `http.write_in`)."""
    claim = None
    if idempotency_key is not None:
        taken = take_key(session, code, req, actor, idempotency_key)
        if isinstance(taken, Response):
            return taken
        claim = taken
    program_id = program_cache.program_id(session, code)
    answer, _created = purchases.record(session, program_id, req, actor=actor, now=clock.now())
    return answered(session, claim, answer)


def in_transaction(db: Database) -> Run:
    """`run` for a request of its own: the job in a unit of work, in the thread pool."""

    def unit_of_work(job: Job) -> Response:
        with db.unit_of_work() as session:
            return job(session)

    async def run(job: Job) -> Response:
        return await run_in_threadpool(unit_of_work, job)

    return run


async def purchase(
    decoded: Decoded,
    code: str,
    *,
    actor: Actor,
    idempotency_key: str | None,
    run: Run,
    record: Record = record,
) -> Response:
    """The purchase call for a decoded body: the sale recorded (`record`) in the transaction
    `run` gives it and commits, and its answer; or the error's answer.

    A body that is not a sale raises RequestValidationError (the app's handler answers it); a
    database error is raised too, for the caller's handlers."""
    if isinstance(decoded, Rejected):
        raise _BodyInvalid(decoded.errors)
    try:
        if actor.stores is not None:
            http.check_store(actor, decoded.store)
        return await run(lambda session: record(session, code, decoded, actor, idempotency_key))
    except PatronError as exc:  # as the app's handler answers it
        return JSONResponse(exc.body(), status_code=exc.status)
