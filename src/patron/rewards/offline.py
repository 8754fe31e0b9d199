"""Coupons at a till that is offline: signed tokens, the program's keys, and syncing later.

A coupon's offline token is what its QR code carries: `PC1.<payload>.<signature>`, both parts
in unpadded base32 (RFC 4648), so the whole token is upper-case letters, digits and dots, which
QR encodes in its compact alphanumeric mode. The payload is compact JSON with short keys (see
`WIRE` and docs/rewards.md); the signature is Ed25519 over the ASCII bytes of `PC1.<payload>`.
A till checks it with the program's public keys alone (docs/snippets/verify_coupon.py).

Each program has its own signing keys, made on first need and kept in `instance_keys` as
`coupon-signing:<program id>:<kid>` (the program's id, not its code: names hold 40
characters). The newest key signs; older public keys keep verifying what they signed.

What a till accepted offline comes back through `sync_uses`, one savepoint per use. A coupon
used on another order meanwhile is a double use: it is refused, and a `conflict` event records
it for staff; the coupon stays used once.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron import clock
from patron.audit.service import Actor
from patron.coupons import codes
from patron.coupons import tokens as wire
from patron.coupons import use as coupon_use
from patron.coupons.lookup import find_coupon, state_refusal, store_id
from patron.coupons.models import Coupon, CouponEvent, Reward
from patron.coupons.schemas import UseRequest
from patron.coupons.tokens import PREFIX, TOKEN_MAX, coupon_code, is_token  # noqa: F401 - offline's API
from patron.db.engine import READONLY
from patron.errors import CouponRefused, Invalid, PatronError
from patron.events.keys import instance_key
from patron.events.models import InstanceKey
from patron.money import from_minor, parse_amount, to_minor
from patron.programs.models import Program, Store

KEY_NAME = "coupon-signing"
ALGORITHM = "Ed25519"
# A till's clock may run a little ahead; a use dated later than this after the sync is refused.
CLOCK_SKEW = timedelta(minutes=5)

# The payload's keys (short: they are in every QR code) and what they mean.
WIRE = {
    "k": "kid: the signing key's id",
    "p": "program code",
    "c": "coupon code, stored form (no dashes)",
    "r": "reward code",
    "t": "reward kind",
    "cu": "currency of every amount (ISO 4217)",
    "m": "member id (absent: the coupon is anyone's)",
    "x": "expires at, Unix seconds (absent: no expiry)",
    "d": "fixed_discount: money off",
    "pc": "percent_discount: percent off",
    "cap": "percent_discount: at most this off",
    "s": "free_product: the product's sku",
    "b": "gift_card: the balance when the token was made",
    "ms": "the basket total needed (absent: none)",
}


class TokenRefused(CouponRefused):
    """An offline token that does not verify: token_malformed, token_unknown_key,
    token_bad_signature, or coupon_expired."""

    code = "token_refused"


@dataclass(frozen=True)
class PublicKey:
    kid: str
    public_key: str  # base64url (unpadded) of the raw 32 bytes
    created_at: datetime


@dataclass(frozen=True)
class Payload:
    """What a verified token says; amounts in `currency`, as on the coupon when signed."""

    kid: str
    program: str
    coupon: str
    reward: str
    kind: str
    currency: str
    member_id: int | None
    expires_at: datetime | None
    discount: Decimal | None
    percent: Decimal | None
    cap: Decimal | None
    sku: str | None
    balance: Decimal | None
    min_spend: Decimal


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# Keys -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Key:
    kid: str
    seed: bytes  # the Ed25519 private key, raw
    created_at: datetime


def _key_name(program: Program, kid: str) -> str:
    return f"{KEY_NAME}:{program.id}:{kid}"


def _stored_keys(session: Session, program: Program) -> list[_Key]:
    prefix = f"{KEY_NAME}:{program.id}:"
    rows = session.scalars(select(InstanceKey).where(InstanceKey.name.startswith(prefix)))
    keys = [
        _Key(row.name.removeprefix(prefix), base64.urlsafe_b64decode(row.value), row.created_at)
        for row in rows
    ]
    return sorted(keys, key=lambda k: int(k.kid))


def _read_only(session: Session) -> bool:
    return bool(session.get_bind().get_execution_options().get(READONLY))


def _make_key(session: Session, program: Program, kid: str, now: datetime) -> _Key:
    name = _key_name(program, kid)
    if _read_only(session):
        # A read-only unit of work is rolled back at its end: a key made in it would sign
        # tokens and then vanish. It is made in a transaction of its own, committed at once.
        writer = session.get_bind().execution_options(**{READONLY: False})
        with Session(writer) as side, side.begin():
            return _make_key(side, program, kid, now)
    # instance_key settles a race between two workers: both end up with the winner's key.
    seed = instance_key(session, name, now=now)
    row = session.get(InstanceKey, name)
    assert row is not None
    return _Key(kid, seed, row.created_at)


def _keys(session: Session, program: Program, now: datetime | None) -> list[_Key]:
    """The program's keys, oldest first; the first is made on first need."""
    return _stored_keys(session, program) or [_make_key(session, program, "1", now or clock.now())]


def _public(key: _Key) -> PublicKey:
    raw = (
        Ed25519PrivateKey.from_private_bytes(key.seed)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    return PublicKey(key.kid, _b64url(raw), key.created_at)


def public_keys(
    session: Session, program: Program, *, now: datetime | None = None
) -> list[PublicKey]:
    """Every public key of the program, oldest first: what a till keeps to verify tokens."""
    return [_public(k) for k in _keys(session, program, now)]


def rotate_key(session: Session, program: Program, *, now: datetime) -> PublicKey:
    """A new signing key for the program. Tokens made from now on use it; the older public
    keys stay published, so tokens already handed out keep verifying."""
    newest = _keys(session, program, now)[-1]
    return _public(_make_key(session, program, str(int(newest.kid) + 1), now))


# Tokens -----------------------------------------------------------------------------------


def _money(minor: int, currency: str) -> str:
    return str(from_minor(minor, currency))


def payload_of(program: Program, coupon: Coupon, reward: Reward, kid: str) -> dict[str, Any]:
    """The payload, as signed: only what a till needs to accept the coupon on its own."""
    currency = program.currency
    doc: dict[str, Any] = {
        "k": kid,
        "p": program.code,
        "c": coupon.code,
        "r": reward.code,
        "t": reward.kind,
        "cu": currency,
    }
    if coupon.member_id is not None:
        doc["m"] = coupon.member_id
    if coupon.expires_at is not None:
        doc["x"] = int(clock.as_utc(coupon.expires_at).timestamp())
    if reward.kind == "fixed_discount":
        doc["d"] = _money(reward.discount_minor or 0, currency)
    elif reward.kind == "percent_discount" and reward.percent is not None:
        doc["pc"] = format(reward.percent.normalize(), "f")
        if reward.cap_minor is not None:
            doc["cap"] = _money(reward.cap_minor, currency)
    elif reward.kind == "free_product":
        doc["s"] = reward.sku
    elif reward.kind == "gift_card":
        doc["b"] = _money(coupon.balance_minor or 0, currency)
    if reward.min_spend_minor:
        doc["ms"] = _money(reward.min_spend_minor, currency)
    return doc


class Signer:
    """Makes tokens with one program's newest key."""

    def __init__(self, program: Program, key: _Key) -> None:
        self.program = program
        self.kid = key.kid
        self._private = Ed25519PrivateKey.from_private_bytes(key.seed)

    def sign(self, message: bytes) -> bytes:
        """The Ed25519 signature of `message` with this key (other signed tokens of the
        program, such as the member card's, share its keys)."""
        return self._private.sign(message)

    def token(self, coupon: Coupon, reward: Reward) -> str:
        document = payload_of(self.program, coupon, reward, self.kid)
        body = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
        signed = PREFIX + wire.b32(body.encode())
        return f"{signed}.{wire.b32(self.sign(signed.encode('ascii')))}"


def signer(session: Session, program: Program, *, now: datetime | None = None) -> Signer:
    return Signer(program, _keys(session, program, now)[-1])


def token_for(
    session: Session,
    program: Program,
    coupon: Coupon,
    reward: Reward,
    *,
    now: datetime | None = None,
) -> str:
    """The coupon's offline token (the same one each time while its terms stay the same:
    Ed25519 signatures are deterministic)."""
    return signer(session, program, now=now).token(coupon, reward)


def usable_token(session: Session, program: Program, coupon: Coupon, *, now: datetime) -> str:
    """The token of a coupon that can be used now; a used, expired or cancelled coupon gets
    none (CouponRefused with its state)."""
    why = state_refusal(coupon, now)
    if why is not None:
        raise CouponRefused(why.detail, code=why.code)
    reward = session.get(Reward, coupon.reward_id)
    assert reward is not None
    return token_for(session, program, coupon, reward, now=now)


def tokens(
    session: Session,
    program: Program,
    coupons: Sequence[Coupon],
    rewards: Mapping[int, Reward],
    *,
    now: datetime | None = None,
) -> dict[int, str]:
    """Tokens of the coupons that can be used now, by coupon id."""
    at = now or clock.now()
    usable = [c for c in coupons if state_refusal(c, at) is None]
    if not usable:
        return {}
    sign = signer(session, program, now=at)
    return {c.id: sign.token(c, rewards[c.reward_id]) for c in usable}


def qr_text(session: Session, program: Program, coupon: Coupon, *, now: datetime) -> str:
    """What the coupon's QR code says: its token while it can be used, its code after."""
    try:
        return usable_token(session, program, coupon, now=now)
    except CouponRefused:
        return coupon.code


def _decimal(document: Mapping[str, Any], key: str) -> Decimal | None:
    value = document.get(key)
    return Decimal(value) if value is not None else None


def verify(token: str, public_keys: Iterable[PublicKey], *, now: datetime | None = None) -> Payload:
    """What the token says, once its signature checks with one of `public_keys` and it has
    not expired; TokenRefused otherwise. The reference for docs/snippets/verify_coupon.py."""
    try:
        signed, signature, document = wire.parts(token)
        raw_signature = wire.unb32(signature)
    except (binascii.Error, ValueError) as exc:
        raise TokenRefused(str(exc), code="token_malformed") from None
    key = next((k for k in public_keys if k.kid == document["k"]), None)
    if key is None:
        raise TokenRefused(
            f"no public key {document['k']!r} for this program", code="token_unknown_key"
        )
    try:
        Ed25519PublicKey.from_public_bytes(_unb64url(key.public_key)).verify(
            raw_signature, signed.encode("ascii")
        )
    except (InvalidSignature, ValueError):
        raise TokenRefused(
            "the token's signature does not match its content", code="token_bad_signature"
        ) from None
    try:
        expires = document.get("x")
        expires_at = datetime.fromtimestamp(expires, UTC) if expires is not None else None
        payload = Payload(
            kid=document["k"],
            program=document["p"],
            coupon=document["c"],
            reward=document["r"],
            kind=document["t"],
            currency=document["cu"],
            member_id=document.get("m"),
            expires_at=expires_at,
            discount=_decimal(document, "d"),
            percent=_decimal(document, "pc"),
            cap=_decimal(document, "cap"),
            sku=document.get("s"),
            balance=_decimal(document, "b"),
            min_spend=_decimal(document, "ms") or Decimal(0),
        )
    except (TypeError, ValueError, ArithmeticError, OverflowError):
        raise TokenRefused(
            "the token's payload is not well-formed", code="token_malformed"
        ) from None
    if expires_at is not None and expires_at <= (now or clock.now()):
        raise TokenRefused("this coupon has expired", code="coupon_expired")
    return payload


# Syncing uses made offline ----------------------------------------------------------------


@dataclass(frozen=True)
class FirstUse:
    order: str | None
    used_at: datetime | None
    store: str | None


@dataclass(frozen=True)
class Synced:
    """One offline use after the sync: used, replayed (synced before) or refused."""

    order: str
    status: Literal["used", "replayed", "refused"]
    coupon: str | None  # as printed, when the code could be read
    discount_minor: int = 0
    sku: str | None = None
    error: str | None = None
    detail: str | None = None
    first_use: FirstUse | None = None  # double_use: the use that counts


def _shown(raw: str) -> str | None:
    try:
        code = wire.coupon_code(raw) if wire.is_token(raw) else raw
    except Invalid:
        return None
    return codes.display(codes.lookup_form(code))


def sync_uses(
    session: Session,
    program: Program,
    uses: Sequence[tuple[str, UseRequest]],
    *,
    actor: Actor,
    now: datetime,
) -> list[Synced]:
    """Apply uses a till accepted offline, in the order given: `(code or token, use)` each,
    in its own savepoint, so one refusal undoes nothing else. Each is idempotent per coupon
    and order (syncing a batch again answers `replayed`)."""
    return [_sync_one(session, program, raw, req, actor=actor, now=now) for raw, req in uses]


def _sync_one(
    session: Session, program: Program, raw: str, req: UseRequest, *, actor: Actor, now: datetime
) -> Synced:
    shown = _shown(raw)
    if req.used_at is not None and req.used_at > now + CLOCK_SKEW:
        return Synced(
            req.order, "refused", shown, error="used_at_in_future",
            detail=f"used_at {req.used_at.isoformat()} is later than now",
        )  # fmt: skip
    try:
        with session.begin_nested():
            used = coupon_use.use(session, program, raw, req, actor=actor, now=now, offline=True)
    except PatronError as refused:
        first = (
            _double_use(session, program, raw, req, actor=actor, now=now)
            if refused.code == "coupon_used"
            else None
        )
        if first is not None:
            return Synced(
                req.order, "refused", shown, error="double_use",
                detail=f"this coupon was used on order {first.order} before; this use is not "
                "accepted", first_use=first,
            )  # fmt: skip
        return Synced(req.order, "refused", shown, error=refused.code, detail=refused.detail)
    return Synced(
        req.order, "replayed" if used.replayed else "used", codes.display(used.coupon.code),
        discount_minor=used.discount_minor, sku=used.sku,
    )  # fmt: skip


def _double_use(
    session: Session, program: Program, raw: str, req: UseRequest, *, actor: Actor, now: datetime
) -> FirstUse | None:
    """When the coupon is used on another order: the first use, after recording this one as a
    `conflict` event (once per coupon and order: a batch synced again adds none). The event
    is all that is written: the coupon, its uses and the outbox stay as they were."""
    coupon = find_coupon(session, program, raw)
    if coupon.status != "used" or coupon.used_order in (None, req.order):
        return None
    first_store = (
        session.scalar(select(Store.code).where(Store.id == coupon.used_store_id))
        if coupon.used_store_id is not None
        else None
    )
    first = FirstUse(coupon.used_order, coupon.used_at, first_store)
    recorded = session.scalar(
        select(CouponEvent.id)
        .where(
            CouponEvent.coupon_id == coupon.id,
            CouponEvent.kind == "conflict",
            CouponEvent.order_ref == req.order,
        )
        .limit(1)
    )
    if recorded is not None:
        return first
    try:
        offline_store = store_id(session, program, req.store)
    except PatronError:
        offline_store = None
    with session.begin_nested():
        session.add(
            CouponEvent(
                coupon_id=coupon.id,
                kind="conflict",
                at=req.used_at or now,
                actor=str(actor),
                store_id=offline_store,
                order_ref=req.order,
                amount_minor=_given(session, program, coupon, req),
                offline=True,
                reason=f"used offline on order {req.order} after its use on order {first.order}",
                details={
                    "first_order": first.order,
                    "first_used_at": first.used_at.isoformat() if first.used_at else None,
                    "first_store": first.store,
                    "basket": str(req.amount),
                    "synced_at": now.isoformat(),
                },
            )
        )
    return first


def _given(session: Session, program: Program, coupon: Coupon, req: UseRequest) -> int | None:
    """What the coupon gave on the offline basket (what the double use cost), when known."""
    reward = session.get(Reward, coupon.reward_id)
    assert reward is not None
    try:
        if reward.kind == "gift_card":
            if req.gift_amount is None:
                return None
            return to_minor(parse_amount(req.gift_amount, program.currency), program.currency)
        amount, lines = coupon_use.basket_lines(program, req)
    except (PatronError, ValueError):
        return None
    outcome = coupon_use.effect(reward, coupon, amount, lines)
    return outcome.discount_minor if isinstance(outcome, coupon_use.Effect) else None
