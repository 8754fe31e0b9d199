"""The member card's signed, short-lived token: what the card page's QR code says.

`PM1.<payload>.<signature>`, like a coupon's offline token (patron.coupons.tokens): both
parts in unpadded base32, so the token is upper-case letters, digits and dots, which QR
encodes in its compact alphanumeric mode. The payload is the UTF-8 text

    <kid>:<program code>:<issued at, Unix seconds>:<lifetime, seconds>:<card number>

(the card number last, so it may hold any character); the signature is Ed25519 over the
ASCII bytes of `PM1.<payload>`, made with the program's newest coupon-signing key. A till
checks it with the public keys it already keeps for coupons (GET …/coupons/keys), offline.

A token lives `LIFETIME` (5 minutes) from when the card page made it: long enough to open the
page in the queue and reach the till, short enough that a screenshot or a photo of someone
else's screen stops working within minutes. The page makes a new one each time it is opened.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.coupons import tokens as wire
from patron.errors import Conflict, Invalid, MemberBlocked, NotFound
from patron.ledger import views
from patron.ledger.models import Account
from patron.members.models import Card, Member
from patron.programs.models import Program
from patron.rewards import offline
from patron.tiers.models import TierDefinition

PREFIX = "PM1."
LIFETIME = timedelta(minutes=5)
# A till's clock may run behind the server's: a token "issued" this far ahead still counts.
CLOCK_SKEW = timedelta(minutes=1)
TOKEN_MAX = 400  # characters; a token is about 170 (more with a long program code or number)


class TokenMalformed(Invalid):
    code = "token_malformed"


class TokenUnknownKey(Invalid):
    code = "token_unknown_key"


class TokenBadSignature(Invalid):
    code = "token_bad_signature"


class TokenWrongProgram(Invalid):
    code = "token_wrong_program"


class TokenExpired(Conflict):
    code = "token_expired"


class CardBlocked(Conflict):
    """The card is blocked or reported lost."""

    code = "card_blocked"


class CardNotFound(NotFound):
    code = "card_not_found"


# Every refusal `check` can answer, for the endpoint's OpenAPI responses.
REFUSALS: tuple[type[Invalid | Conflict | NotFound], ...] = (
    TokenMalformed,
    TokenUnknownKey,
    TokenBadSignature,
    TokenWrongProgram,
    TokenExpired,
    CardBlocked,
    MemberBlocked,
    CardNotFound,
)


@dataclass(frozen=True)
class CardClaim:
    """What a verified token says."""

    kid: str
    program: str
    number: str
    issued_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class CardHolder:
    """The member behind a valid card token, as the till shows her."""

    member_id: int
    number: str
    name: str
    tier: str | None
    tier_names: dict[str, str]
    balance: int
    expires_at: datetime


def make(session: Session, program: Program, number: str, *, now: datetime) -> str:
    """A fresh token for card `number`, signed with the program's newest key."""
    signer = offline.signer(session, program, now=now)
    lifetime = int(LIFETIME.total_seconds())
    body = f"{signer.kid}:{program.code}:{int(now.timestamp())}:{lifetime}:{number}"
    signed = PREFIX + wire.b32(body.encode())
    return f"{signed}.{wire.b32(signer.sign(signed.encode('ascii')))}"


def read(token: str) -> tuple[str, bytes, CardClaim]:
    """(signed part, signature, claim) of a token, not yet verified; TokenMalformed."""
    text = token.strip().upper()
    if len(text) > TOKEN_MAX or not text.startswith(PREFIX):
        raise TokenMalformed("not a member card token (PM1.…)")
    signed, dot, signature = text.rpartition(".")
    if not dot or signed.count(".") != 1:
        raise TokenMalformed("a card token has three parts separated by dots")
    try:
        fields = wire.unb32(signed.removeprefix(PREFIX)).decode().split(":", 4)
        raw_signature = wire.unb32(signature)
        kid, program, issued, lifetime, number = fields
        issued_at = datetime.fromtimestamp(int(issued), UTC)
        expires_at = issued_at + timedelta(seconds=int(lifetime))
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError, OSError):
        raise TokenMalformed("the card token's content cannot be read") from None
    if not (kid and program and number) or len(raw_signature) != 64:
        raise TokenMalformed("the card token lacks its required fields")
    return signed, raw_signature, CardClaim(kid, program, number, issued_at, expires_at)


def verify(
    token: str, public_keys: Iterable[offline.PublicKey], *, program: str, now: datetime
) -> CardClaim:
    """What the token says, once it is `program`'s, its signature checks with one of
    `public_keys` and it is within its lifetime; a refusal otherwise. Needs no database:
    what a till does offline (docs: "How a till verifies a card token")."""
    signed, signature, claim = read(token)
    if claim.program != program:
        raise TokenWrongProgram(f"this card token is for another program ({claim.program})")
    key = next((k for k in public_keys if k.kid == claim.kid), None)
    if key is None:
        raise TokenUnknownKey(f"no public key {claim.kid!r} for this program")
    raw_key = base64.urlsafe_b64decode(key.public_key + "=" * (-len(key.public_key) % 4))
    try:
        Ed25519PublicKey.from_public_bytes(raw_key).verify(signature, signed.encode("ascii"))
    except (InvalidSignature, ValueError):
        raise TokenBadSignature("the card token's signature does not match its content") from None
    if claim.expires_at <= now or claim.issued_at > now + CLOCK_SKEW:
        raise TokenExpired("this card token has expired: ask the member to open the card again")
    return claim


def check(session: Session, program: Program, token: str, *, now: datetime) -> CardHolder:
    """The member behind a valid token of `program`, with her balance and tier now."""
    claim = verify(token, offline.public_keys(session, program, now=now), program=program.code,
                   now=now)  # fmt: skip
    card = session.scalars(select(Card).where(Card.number == claim.number)).one_or_none()
    account = (
        session.scalars(
            select(Account).where(
                Account.program_id == program.id, Account.member_id == card.member_id
            )
        ).one_or_none()
        if card is not None
        else None
    )
    member = session.get(Member, card.member_id) if card is not None else None
    if card is None or account is None or member is None:
        raise CardNotFound(f"no card {claim.number} in program {program.code}")
    if card.status != "active":
        raise CardBlocked(f"card {card.number} is {card.status}: it cannot be used")
    if member.status != "active":
        raise MemberBlocked(f"the member holding card {card.number} is blocked")
    names = (
        session.scalar(
            select(TierDefinition.names).where(
                TierDefinition.program_id == program.id, TierDefinition.code == account.tier
            )
        )
        if account.tier is not None
        else None
    )
    return CardHolder(
        member_id=member.id,
        number=card.number,
        name=member.name,
        tier=account.tier,
        tier_names=dict(names or {}),
        balance=views.totals(session, account, now).balance,
        expires_at=claim.expires_at,
    )
