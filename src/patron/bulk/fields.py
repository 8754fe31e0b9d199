"""Which column of a file holds which field, and each row's values checked and normalised.

Columns map to fields by their header (`DEFAULTS`, compared without case, spaces, hyphens or
dots) unless `--map column=field` says otherwise (`field` "ignore" drops a column). A row's
problems come back as `RowError`s (row, column, code, message), every one of them, so a
dry run shows a file's whole list at once."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import EmailStr, TypeAdapter, ValidationError

from patron.errors import Invalid, PatronError
from patron.members.phone import PhoneCache, normalise_phone
from patron.members.refs import normal_email

MEMBER_FIELDS = (
    "external_ref",
    "name",
    "phone",
    "email",
    "birthday",
    "gender",
    "language",
    "joined_at",
    "marketing_consent",
    "tier",
    "opening_balance",
    "opening_balance_expiry",
)
ADJUSTMENT_FIELDS = (
    "external_ref",
    "member_id",
    "phone",
    "email",
    "card",
    "points",
    "reason",
    "key",
)
ATTRIBUTE_PREFIX = "attributes."
IGNORE = "ignore"

# Header spellings (normalised by `_norm`) that map to a field without --map.
DEFAULTS: dict[str, str] = {
    **{
        k: "external_ref"
        for k in (
            "externalref",
            "externalid",
            "ref",
            "customerid",
            "memberno",
            "membernumber",
            "memberref",
            "customerno",
            "legacyid",
        )
    },
    **{k: "name" for k in ("name", "fullname", "membername", "customername")},
    **{k: "phone" for k in ("phone", "mobile", "phonenumber", "tel", "cellphone", "mobilephone")},
    **{k: "email" for k in ("email", "emailaddress", "mail")},
    **{k: "birthday" for k in ("birthday", "birthdate", "dateofbirth", "dob")},
    "gender": "gender",
    **{k: "language" for k in ("language", "lang", "locale")},
    **{
        k: "joined_at"
        for k in (
            "joinedat",
            "joined",
            "joindate",
            "joinedon",
            "signupdate",
            "memberSince".lower(),
            "createdat",
        )
    },
    **{
        k: "marketing_consent"
        for k in ("marketingconsent", "consent", "marketing", "optin", "marketingoptin")
    },
    **{k: "tier" for k in ("tier", "level", "grade", "membershiplevel")},
    **{k: "opening_balance" for k in ("openingbalance", "balance", "points", "pointsbalance")},
    **{
        k: "opening_balance_expiry"
        for k in (
            "openingbalanceexpiry",
            "balanceexpiry",
            "pointsexpiry",
            "expiry",
            "expiresat",
            "expireson",
            "expirydate",
        )
    },
    "memberid": "member_id",
    **{k: "card" for k in ("card", "cardnumber", "cardno")},
    **{k: "reason" for k in ("reason", "note", "memo")},
    **{k: "key" for k in ("key", "idempotencykey", "adjustmentid", "requestid")},
}

TRUE = {"1", "true", "yes", "y", "t", "o", "예", "是", "동의", "同意"}
FALSE = {"0", "false", "no", "n", "f", "x", "", "아니오", "否", "거부", "不同意"}


def _norm(header: str) -> str:
    return re.sub(r"[\s_\-.]+", "", header.strip().lower())


@dataclass(frozen=True)
class RowError:
    row: int
    column: str | None
    code: str
    message: str


def parse_map(options: Sequence[str]) -> dict[str, str]:
    """`--map "Mobile No=phone"` options as {column: field}."""
    out: dict[str, str] = {}
    for option in options:
        column, sep, target = option.partition("=")
        if not sep or not column.strip() or not target.strip():
            raise Invalid(f"--map {option!r}: write it as column=field", code="invalid_mapping")
        out[column.strip()] = target.strip()
    return out


def resolve_mapping(
    header: Sequence[str], given: Mapping[str, str], fields: Sequence[str]
) -> tuple[dict[int, str], list[str]]:
    """Column index -> field for this header, and the columns left unmapped (ignored)."""
    by_lower = {h.lower(): i for i, h in enumerate(header) if h}
    out: dict[int, str] = {}
    for column, target in given.items():
        index = by_lower.get(column.lower())
        if index is None:
            raise Invalid(
                f"--map: the file has no column {column!r} (columns: {', '.join(h for h in header if h)})",
                code="invalid_mapping",
            )
        is_attribute = target.startswith(ATTRIBUTE_PREFIX) and len(target) > len(ATTRIBUTE_PREFIX)
        if target != IGNORE and target not in fields and not (is_attribute and "name" in fields):
            raise Invalid(
                f"--map {column}={target}: {target!r} is not a field (fields: "
                f"{', '.join(fields)}{', attributes.<name>' if 'name' in fields else ''}, ignore)",
                code="invalid_mapping",
            )
        out[index] = target
    ignored: list[str] = []
    direct = {_norm(f): f for f in fields}  # a header that names a field exactly
    for index, column in enumerate(header):
        if index in out or not column:
            continue
        if column.lower().startswith(ATTRIBUTE_PREFIX) and "name" in fields:
            out[index] = ATTRIBUTE_PREFIX + column[len(ATTRIBUTE_PREFIX) :].strip()
            continue
        default = direct.get(_norm(column)) or DEFAULTS.get(_norm(column))
        if default is not None and default in fields and default not in out.values():
            out[index] = default
        else:
            ignored.append(column)
    mapped = {i: f for i, f in out.items() if f != IGNORE}
    targets = list(mapped.values())
    twice = sorted({f for f in targets if targets.count(f) > 1})
    if twice:
        raise Invalid(
            f"two columns map to {', '.join(twice)}; map one of them to another field or to ignore",
            code="invalid_mapping",
        )
    return mapped, ignored


def require(
    mapping: Mapping[int, str], needed: Sequence[Sequence[str]], header: Sequence[str]
) -> None:
    """Each group of `needed` must have one of its fields mapped."""
    have = set(mapping.values())
    for group in needed:
        if not have.intersection(group):
            raise Invalid(
                f"no column holds {' or '.join(group)} (columns: {', '.join(h for h in header if h)}); "
                "name the header so, or add --map column=field",
                code="invalid_mapping",
            )


# --- values ---------------------------------------------------------------------------------

_EMAIL: TypeAdapter[str] = TypeAdapter(EmailStr)


# Plain ASCII addresses (nearly all of a migration's) are checked here, a hundred times faster
# than through email_validator; a property test proves everything this accepts EmailStr
# accepts too. Anything else (Unicode, quoted parts, odd domains) goes to EmailStr itself.
_PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_SPECIAL_DOMAINS = ("arpa", "invalid", "local", "localhost", "onion", "test")


def _plain_email(text: str) -> bool:
    if len(text) > 254 or not _PLAIN_EMAIL.fullmatch(text):
        return False
    local, _, domain = text.rpartition("@")
    labels = domain.lower().split(".")
    return (
        len(local) <= 64
        and len(domain) <= 253
        and labels[-1] not in _SPECIAL_DOMAINS
        and not any(label.startswith("xn--") or label[2:4] == "--" for label in labels)
    )


def parse_email(text: str) -> str:
    """As the members API checks an e-mail (pydantic's EmailStr), stored in lower case."""
    if _plain_email(text):
        return normal_email(text)
    try:
        _EMAIL.validate_python(text)
    except ValidationError:
        raise Invalid(f"{text!r} is not an e-mail address", code="invalid_email") from None
    return normal_email(text)


def parse_date(text: str, code: str) -> date:
    for candidate in (text, text.replace("/", "-").replace(".", "-")):
        try:
            return date.fromisoformat(candidate[:10])
        except ValueError:
            continue
    raise Invalid(f"{text!r} is not a date (write it as 2026-03-31)", code=code)


def parse_instant(text: str, tz: ZoneInfo, code: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("/", "-"))
    except ValueError:
        value = datetime.combine(parse_date(text, code), time(0))
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC)


def parse_bool(text: str, code: str) -> bool:
    low = text.strip().lower()
    if low in TRUE:
        return True
    if low in FALSE:
        return False
    raise Invalid(f"{text!r} is not yes or no", code=code)


def parse_points(text: str, code: str, *, signed: bool) -> int:
    cleaned = text.replace(",", "").replace(" ", "")
    if cleaned.startswith("+"):
        cleaned = cleaned[1:]
    try:
        value = int(cleaned)
    except ValueError:
        raise Invalid(f"{text!r} is not a whole number of points", code=code) from None
    if not signed and value < 0:
        raise Invalid(f"{text!r}: an opening balance cannot be negative", code=code)
    if abs(value) > 10**12:
        raise Invalid(f"{text!r} is too many points", code=code)
    return value


def local_midnight_after(day: date, tz: ZoneInfo) -> datetime:
    """Points valid through `day` expire at the local midnight that ends it."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)


# --- a member row ---------------------------------------------------------------------------

GENDERS = ("female", "male", "other", "undisclosed")
LANGUAGES = ("ko", "zh", "en", "ja")


@dataclass
class MemberRow:
    row: int
    name: str
    external_ref: str | None = None
    phone: str | None = None
    email: str | None = None
    birthday: date | None = None
    gender: str | None = None
    language: str | None = None
    joined_at: datetime | None = None
    marketing_consent: bool | None = None
    tier: str | None = None
    opening_balance: int = 0
    expires_at: datetime | None = None  # of the opening balance; None: the program's policy
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str | None:
        """What makes the row idempotent: its external reference, else its phone or e-mail."""
        if self.external_ref:
            return self.external_ref
        if self.phone:
            return f"phone:{self.phone}"
        if self.email:
            return f"email:{self.email}"
        return None


@dataclass(frozen=True)
class MemberContext:
    country: str
    timezone: ZoneInfo
    tiers: frozenset[str]
    now: datetime
    # The job's phone numbers, parsed once per leading digits (results equal normalise_phone's).
    phones: PhoneCache | None = None

    def phone(self, text: str) -> str:
        if self.phones is None:
            return normalise_phone(text, self.country)
        return self.phones.normalise(text)


def member_row(
    number: int,
    cells: Sequence[str],
    mapping: Mapping[int, str],
    header: Sequence[str],
    ctx: MemberContext,
) -> tuple[MemberRow | None, list[RowError]]:
    """The row's member, or None with every error found in it."""
    values: dict[str, tuple[str, str]] = {}  # field -> (column, text)
    for index, target in mapping.items():
        text = cells[index].strip() if index < len(cells) else ""
        if text:
            values[target] = (header[index], text)
    errors: list[RowError] = []

    def err(target: str, code: str, message: str) -> None:
        column = values[target][0] if target in values else None
        errors.append(RowError(number, column, code, message))

    def take(target: str, parse: Any) -> Any:
        if target not in values:
            return None
        try:
            return parse(values[target][1])
        except PatronError as exc:
            err(target, exc.code, exc.detail)
            return None

    out = MemberRow(row=number, name="")
    name = values.get("name", ("", ""))[1]
    if not name:
        column = next((header[i] for i, t in mapping.items() if t == "name"), None)
        errors.append(RowError(number, column, "missing_name", "the member's name is empty"))
    elif len(name) > 200:
        err("name", "invalid_name", "the name is longer than 200 characters")
    out.name = name[:200]
    ref = values.get("external_ref", ("", ""))[1] or None
    if ref is not None and len(ref) > 120:
        err(
            "external_ref",
            "invalid_external_ref",
            "the external reference is longer than 120 characters",
        )
        ref = None
    out.external_ref = ref
    out.phone = take("phone", ctx.phone)
    out.email = take("email", parse_email)
    if out.email is not None and len(out.email) > 254:
        err("email", "invalid_email", "the e-mail address is longer than 254 characters")
    out.birthday = take("birthday", lambda t: parse_date(t, "invalid_birthday"))
    if out.birthday is not None and not date(1900, 1, 1) <= out.birthday <= ctx.now.date():
        err(
            "birthday",
            "invalid_birthday",
            f"{out.birthday.isoformat()} is not a plausible birthday",
        )
    gender = values.get("gender", ("", ""))[1].lower() or None
    if gender is not None and gender not in GENDERS:
        err("gender", "invalid_gender", f"{gender!r} is not one of {', '.join(GENDERS)}")
        gender = None
    out.gender = gender
    language = values.get("language", ("", ""))[1].lower() or None
    if language is not None and language not in LANGUAGES:
        err("language", "invalid_language", f"{language!r} is not one of {', '.join(LANGUAGES)}")
        language = None
    out.language = language
    out.joined_at = take("joined_at", lambda t: parse_instant(t, ctx.timezone, "invalid_joined_at"))
    if out.joined_at is not None and out.joined_at > ctx.now:
        err("joined_at", "invalid_joined_at", "the join date is in the future")
    out.marketing_consent = take("marketing_consent", lambda t: parse_bool(t, "invalid_consent"))
    tier = values.get("tier", ("", ""))[1] or None
    if tier is not None and tier not in ctx.tiers:
        known = ", ".join(sorted(ctx.tiers)) or "none: set the program's tiers up first"
        err("tier", "unknown_tier", f"the program has no tier {tier!r} (tiers: {known})")
        tier = None
    out.tier = tier
    balance = take("opening_balance", lambda t: parse_points(t, "invalid_balance", signed=False))
    out.opening_balance = balance or 0
    expiry = take("opening_balance_expiry", lambda t: parse_date(t, "invalid_expiry"))
    if expiry is not None:
        out.expires_at = local_midnight_after(expiry, ctx.timezone)
        if out.expires_at <= ctx.now and out.opening_balance > 0:
            err(
                "opening_balance_expiry",
                "expiry_in_past",
                f"the opening balance expired on {expiry.isoformat()}: leave it out of the file",
            )
    for target, (_column, text) in values.items():
        if target.startswith(ATTRIBUTE_PREFIX):
            out.attributes[target[len(ATTRIBUTE_PREFIX) :]] = text
    if out.key is None and not errors:
        errors.append(
            RowError(
                number,
                None,
                "missing_identity",
                "the row has no external reference, phone or e-mail to recognise it by",
            )
        )
    return (None if errors else out), errors


# --- an adjustment row ----------------------------------------------------------------------

REF_FIELDS = ("external_ref", "member_id", "phone", "email", "card")


@dataclass
class AdjustmentRow:
    row: int
    ref_field: str
    ref: str
    points: int
    reason: str
    key: str


def adjustment_row(
    number: int, cells: Sequence[str], mapping: Mapping[int, str], header: Sequence[str]
) -> tuple[AdjustmentRow | None, list[RowError]]:
    values: dict[str, tuple[str, str]] = {}
    for index, target in mapping.items():
        text = cells[index].strip() if index < len(cells) else ""
        if text:
            values[target] = (header[index], text)
    errors: list[RowError] = []
    column_of = {target: header[i] for i, target in mapping.items()}
    given = [f for f in REF_FIELDS if f in values]
    if len(given) != 1:
        errors.append(
            RowError(
                number,
                None,
                "invalid_member_ref",
                "give exactly one of the member's external reference, id, phone, e-mail or card",
            )
        )
    points = 0
    if "points" not in values:
        errors.append(
            RowError(number, column_of.get("points"), "missing_points", "the points are empty")
        )
    else:
        column, text = values["points"]
        try:
            points = parse_points(text, "invalid_points", signed=True)
            if points == 0:
                errors.append(RowError(number, column, "invalid_points", "points must not be zero"))
        except PatronError as exc:
            errors.append(RowError(number, column, exc.code, exc.detail))
    reason = values.get("reason", ("", ""))[1]
    if not 3 <= len(reason) <= 500:
        errors.append(
            RowError(
                number,
                column_of.get("reason"),
                "invalid_reason",
                "a reason of 3 to 500 characters is needed",
            )
        )
    key = values.get("key", ("", ""))[1]
    if not 1 <= len(key) <= 200:
        errors.append(
            RowError(
                number,
                column_of.get("key"),
                "missing_key",
                "each row needs its own idempotency key (1 to 200 characters)",
            )
        )
    if errors:
        return None, errors
    ref_field = given[0]
    return AdjustmentRow(number, ref_field, values[ref_field][1], points, reason, key), []
