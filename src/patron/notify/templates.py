"""Message templates: what a member reads, per program, event kind, channel and language.

Every event kind in `patron.events.kinds.EVENT_TYPES` has a default e-mail (subject and plain-text
body) and SMS in Korean, Chinese and English, shipped in `notify/defaults/{ko,zh,en}.json`. A
program may replace any of them with its own wording (a `MessageTemplate` row); deleting the row
brings the default back. A member gets the template in their own language, English when theirs
is not one of the three.

Templates are Jinja2, rendered in a sandbox that allows only what a message needs:

- `{{ variable }}`, `{{ member.name }}`, `{% if … %}…{% else %}…{% endif %}`, comparisons and
  arithmetic, `{% filter upper %}`;
- the filters `points` (1,250), `money` (₩25,800; `money("USD")` for another currency), `date`
  (2027년 1월 15일 / 2027年1月15日 / Jan 15, 2027), `datetime`, all in the message's language and
  the program's currency and timezone, plus upper, lower, title, capitalize, trim, truncate,
  default, length, abs, round, int, string;
- no loops, `set`, macros, includes or imports, no attribute of anything but a text's simple
  methods (`.upper()`, …) and a date's year/month/day, and no `%` formatting or long repeats
  (`"x" * 100000`): rendering always takes bounded time and memory.

A misspelt variable is an error (StrictUndefined), an empty one (`tier` for a member without a
tier) prints nothing. `validate` compiles a template and renders it against sample members before
it is saved, so a broken template is a 422 at save time, never a failed delivery.

The variables a template sees (`variables()` returns them for the editor's help box):

    member.name, member.id, member.language   the member
    program.name, program.code                the program (name: its branding's display name
                                              in the message's language, if it has one)
    points          the event's points, as a positive number (earned, used, adjusted, …;
                    spent on the reward for reward.redeemed, given back for coupon.cancelled
                    and coupon.expired)
    points_signed   the same with its sign: negative when points were taken away
    balance         the member's available points now
    pending         points earned but not yet available
    expiring_points, expiring_date
                    points.expiring: what expires and the last day it can be used; other
                    events: the member's next expiry, if any (empty when none)
    tier            the member's tier, named in the message's language (empty without one)
    from_tier, to_tier, upgrade
                    tier.changed: the old and new tier, and whether it is a move up
    order, amount, store
                    points events of a sale: the receipt number, what was paid (money) and the
                    store's name; also where a reward was redeemed or a coupon used, and the
                    order a coupon was used on
    occurred_at     when the points event happened, or the coupon was used or closed
    reason          why points were adjusted (staff's note), or why a coupon was cancelled
    month, earned, redeemed, expired
                    points.statement: the month ("2027년 1월") and its totals
    reward          reward.* and coupon.*: the reward, named in the message's language
    coupon          its coupon code as the member types it (7KQM-3X9P-DV2T-H8WC-R); several,
                    comma-separated, when one redemption issued more; empty for a reward
                    fulfilled by another system
    quantity        reward.redeemed: how many units were redeemed (1 for a coupon event)
    valid_until     the last day the coupon can be used (empty when it does not expire)
    discount        coupon.used: what the coupon took off the order (money)
    campaign        coupon.issued: the campaign that gave the coupon
    marketing       true when the program sends this event as marketing (with consent)
    unsubscribe_url the member's unsubscribe link (marketing e-mails; else empty)
    portal_url      the member's page: settings.public_url + "/m/" + program code
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.environment import Template
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.config import get_settings
from patron.coupons import codes as coupon_codes
from patron.coupons.models import Coupon, CouponEvent, Reward
from patron.errors import Invalid, NotFound, PatronError
from patron.events.kinds import ENTRY_EVENTS, EVENT_TYPES
from patron.ledger.models import Account, Entry, Lot, Purchase
from patron.members.models import Member
from patron.money import MINOR_UNITS, quantum
from patron.notify import formatting
from patron.notify import settings as notify_settings
from patron.notify.models import MessageTemplate
from patron.programs import branding as program_branding
from patron.programs.models import Program, Store
from patron.rewards.catalog import name_in
from patron.tiers.models import TierChange, TierDefinition

log = logging.getLogger(__name__)

CHANNELS: tuple[str, ...] = ("email", "sms")
LANGUAGES: tuple[str, ...] = formatting.LANGUAGES
DEFAULTS = Path(__file__).parent / "defaults"

# What a template may be (source) and what it may render to.
SUBJECT_SOURCE_MAX = 500  # message_templates.subject is String(500)
BODY_SOURCE_MAX = 10_000
SUBJECT_MAX = 300
EMAIL_BODY_MAX = 50_000
# Several SMS segments; longer is a letter, not a text message (providers cut or refuse it).
SMS_MAX = 1_000
# `"x" * n` and `[…] * n` may not build more than this (bounded memory at render time).
REPEAT_MAX = 1_000


# --- errors -----------------------------------------------------------------------------------


class TemplateInvalid(Invalid):
    """A template that would not render: 422 invalid_template. `part` is subject or body,
    `problem` one of PROBLEMS, `line` the template line (when known), `name` the variable or
    construct it is about. The admin UI words the message from these in the user's language."""

    code = "invalid_template"

    def __init__(
        self,
        detail: str,
        *,
        part: str,
        problem: str,
        line: int | None = None,
        name: str | None = None,
    ) -> None:
        where = f"{part}, line {line}" if line else part
        super().__init__(f"{where}: {detail}")
        self.part = part
        self.problem = problem
        self.line = line
        self.name = name
        self.reason = detail


PROBLEMS = (
    "syntax",  # Jinja could not parse it (unclosed tag, unknown filter, …)
    "undefined",  # a variable or attribute that does not exist
    "unsafe",  # refused by the sandbox
    "not_allowed",  # a loop, set, macro, include, …
    "error",  # failed while rendering (e.g. a sum of text and a number)
    "empty_value",  # fails for a member where a value is empty (wrap it in {% if %})
    "empty",  # nothing to send
    "subject_missing",  # an e-mail without a subject
    "subject_not_allowed",  # an SMS with a subject
    "too_long",  # the source or the rendered message is too long
)


# --- the sandbox ------------------------------------------------------------------------------

# The only attributes a template can reach besides the context's own keys: a text's harmless
# methods and a date's parts. Everything else (`__class__`, `format`, dict methods, …) is refused,
# which also closes `cycler`/`self`-style escapes (there are no globals; `self` has no allowed
# attribute).
_STR_METHODS = frozenset(
    {
        "upper",
        "lower",
        "title",
        "capitalize",
        "strip",
        "lstrip",
        "rstrip",
        "startswith",
        "endswith",
        "isdigit",
        "isalpha",
    }
)
_DATE_PARTS = frozenset({"year", "month", "day"})

# Statements a message never needs. Loops (and recursion through macros) are the only ways to
# make rendering take unbounded time, `set`/`with` to build text exponentially; the others load
# other templates.
_NOT_ALLOWED: dict[type[nodes.Node], str] = {
    nodes.For: "for",
    nodes.Macro: "macro",
    nodes.CallBlock: "call",
    nodes.Assign: "set",
    nodes.AssignBlock: "set",
    nodes.With: "with",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from … import",
    nodes.Extends: "extends",
    nodes.Block: "block",
    nodes.ScopedEvalContextModifier: "autoescape",
    nodes.EvalContextModifier: "autoescape",
}

# Jinja's own filters that cannot blow up (no padding, repeating or formatting ones).
_BUILTIN_FILTERS = (
    "abs",
    "capitalize",
    "default",
    "d",
    "first",
    "float",
    "int",
    "last",
    "length",
    "count",
    "lower",
    "round",
    "string",
    "title",
    "trim",
    "truncate",
    "upper",
    "wordcount",
)


def _check_power(base: Any, exponent: Any) -> None:
    """`**` with small numbers only: 10 ** 10 ** 10 would take forever."""
    if not isinstance(exponent, int | float | Decimal) or not -64 <= exponent <= 64:
        raise SecurityError("this power is too large")
    if isinstance(base, int | float | Decimal) and not -(10**18) <= base <= 10**18:
        raise SecurityError("this power is too large")


class MessageSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str):
            return attr in _STR_METHODS
        if isinstance(obj, dt.date):
            return attr in _DATE_PARTS
        return False

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # str.format would bypass is_safe_attribute (the sandbox wraps it instead) and can pad
        # to any width: refused like any other attribute.
        return None

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "%" and isinstance(left, str | bytes):
            raise SecurityError("text formatting with % is not available; use filters")
        if operator_ == "**":
            _check_power(left, right)
        if operator_ == "*":
            seq, times = (left, right) if isinstance(left, str | list | tuple) else (right, left)
            sequence = isinstance(seq, str | list | tuple) and isinstance(times, int)
            if sequence and len(seq) * times > REPEAT_MAX:
                raise SecurityError(f"repeating text may make at most {REPEAT_MAX:,} characters")
        return super().call_binop(context, operator_, left, right)


def _finalize(value: Any) -> Any:
    # An empty value (no tier, no store) prints nothing rather than "None".
    return "" if value is None else value


@dataclass(frozen=True)
class Locale:
    """What a message's filters format for."""

    language: str
    currency: str
    timezone: str


@lru_cache(maxsize=64)
def environment(locale: Locale) -> MessageSandbox:
    env = MessageSandbox(
        autoescape=False,  # plain text: an e-mail body and an SMS are not HTML
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_finalize,
        auto_reload=False,
    )
    env.globals.clear()  # no range, cycler, joiner, namespace, lipsum, dict
    builtins = env.filters
    lang, currency, tz = locale.language, locale.currency, locale.timezone

    def points(value: Any) -> str:
        return formatting.points(value, lang)

    def money(value: Any, other_currency: str | None = None) -> str:
        if other_currency is not None and other_currency not in MINOR_UNITS:
            raise ValueError(f"unknown currency {other_currency!r}")
        return formatting.money(value, other_currency or currency, lang)

    def date(value: Any) -> str:
        return formatting.date(value, tz, lang)

    def datetime(value: Any) -> str:
        return formatting.datetime(value, tz, lang)

    env.filters = {name: builtins[name] for name in _BUILTIN_FILTERS}
    env.filters.update(points=points, money=money, date=date, datetime=datetime)
    return env


@lru_cache(maxsize=1024)
def _template(locale: Locale, source: str, part: str) -> Template:
    """Parse, refuse the statements messages do not have, and compile (which also finds unknown
    filters). Cached: the jobs render the same few templates for many members."""
    env = environment(locale)
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateInvalid(
            exc.message or "syntax error", part=part, problem="syntax", line=exc.lineno
        ) from None
    for kind, name in _NOT_ALLOWED.items():
        found = next(iter(tree.find_all(kind)), None)
        if found is not None:
            raise TemplateInvalid(
                f"{{% {name} %}} is not available in message templates",
                part=part,
                problem="not_allowed",
                line=found.lineno,
                name=name,
            )
    try:
        return env.from_string(tree)
    except TemplateSyntaxError as exc:  # e.g. "No filter named 'center'."
        raise TemplateInvalid(
            exc.message or "syntax error", part=part, problem="syntax", line=exc.lineno
        ) from None


def _template_line(exc: BaseException) -> int | None:
    """The template line an error was raised at: Jinja rewrites the traceback so template code
    shows as frames of "<template>"."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


_UNDEFINED_NAME = re.compile(r"^'([^']+)' is undefined$")
_NO_ATTRIBUTE = re.compile(r"^'([^']+)' has no attribute '([^']+)'$")


def _render_part(locale: Locale, source: str, context: Mapping[str, Any], part: str) -> str:
    try:
        return _template(locale, source, part).render(dict(context))
    except TemplateInvalid:
        raise
    except SecurityError as exc:
        raise TemplateInvalid(
            str(exc), part=part, problem="unsafe", line=_template_line(exc)
        ) from None
    except UndefinedError as exc:
        message = str(exc)
        line = _template_line(exc)
        if m := _UNDEFINED_NAME.match(message):
            raise TemplateInvalid(
                f"{m.group(1)} is not a variable messages have",
                part=part,
                problem="undefined",
                line=line,
                name=m.group(1),
            ) from None
        if (m := _NO_ATTRIBUTE.match(message)) and m.group(1) == "None":
            raise TemplateInvalid(
                f"a value is empty for some members, so .{m.group(2)} fails: put it inside "
                "{% if … %}",
                part=part,
                problem="empty_value",
                line=line,
                name=m.group(2),
            ) from None
        name = m.group(2) if m else None
        raise TemplateInvalid(
            f"{name} does not exist (check the spelling)" if name else message,
            part=part,
            problem="undefined",
            line=line,
            name=name,
        ) from None
    except TemplateError as exc:
        raise TemplateInvalid(
            str(exc) or type(exc).__name__, part=part, problem="error", line=_template_line(exc)
        ) from None
    except Exception as exc:  # anything the author's expression raises (a sum of text and 1)
        problem = "empty_value" if "NoneType" in str(exc) else "error"
        detail = f"{type(exc).__name__}: {exc}"
        if problem == "empty_value":
            detail += " (a value is empty for some members: put it inside {% if … %})"
        raise TemplateInvalid(
            detail, part=part, problem=problem, line=_template_line(exc)
        ) from None


# --- rendering --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """A message ready to send: its language, subject (e-mail only) and body."""

    language: str
    subject: str | None
    body: str


def _tidy_body(text: str) -> str:
    # Conditionals that print nothing can leave a run of blank lines; keep at most one.
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _tidy_subject(text: str) -> str:
    # One line: a newline in an e-mail header would start another header.
    return " ".join(text.split())


def render(
    subject: str | None,
    body: str,
    channel: str,
    context: Mapping[str, Any],
    locale: Locale,
) -> Rendered:
    """Render a template; raises TemplateInvalid when it cannot."""
    text = _tidy_body(_render_part(locale, body, context, "body"))
    title = None
    if channel == "email" and subject is not None:
        title = _tidy_subject(_render_part(locale, subject, context, "subject"))
    return Rendered(language=locale.language, subject=title, body=text)


# --- default templates ------------------------------------------------------------------------


@lru_cache(maxsize=1)
def defaults() -> dict[str, dict[str, dict[str, dict[str, str | None]]]]:
    """language -> kind -> channel -> {"subject", "body"} from notify/defaults/*.json (a body
    is stored as a list of lines, for review)."""
    out: dict[str, dict[str, dict[str, dict[str, str | None]]]] = {}
    for lang in LANGUAGES:
        doc = json.loads((DEFAULTS / f"{lang}.json").read_text(encoding="utf-8"))
        out[lang] = {}
        for kind, channels in doc.items():
            out[lang][kind] = {}
            for channel, parts in channels.items():
                body = parts["body"]
                out[lang][kind][channel] = {
                    "subject": parts.get("subject") if channel == "email" else None,
                    "body": "\n".join(body) if isinstance(body, list) else body,
                }
    return out


def default_template(kind: str, channel: str, language: str) -> tuple[str | None, str]:
    """The shipped (subject, body)."""
    found = defaults()[formatting.language(language)][kind][channel]
    return found["subject"], found["body"] or ""


# --- variables and sample contexts ------------------------------------------------------------


@dataclass(frozen=True)
class Variable:
    name: str
    description: str  # English; the admin UI shows its own translation (messages.var.<name>)
    example: str
    kinds: tuple[str, ...] = ()  # the events it is about; () = every event


_POINTS_EVENTS = tuple(k for k in EVENT_TYPES if k.startswith("points."))
_SALE_EVENTS = ("points.earned", "points.redeemed", "points.refunded", "points.adjusted")
_REWARD_EVENTS = tuple(k for k in EVENT_TYPES if k.startswith(("reward.", "coupon.")))
_COUPON_EVENTS = tuple(k for k in EVENT_TYPES if k.startswith("coupon."))
VARIABLES: tuple[Variable, ...] = (
    Variable("member.name", "The member's name", "김민지"),
    Variable("member.id", "The member's number", "1024"),
    Variable("member.language", "The member's language: ko, zh or en", "ko"),
    Variable("program.name", "The program's name", "Corner Bakery"),
    Variable("program.code", "The program's code", "bakery"),
    Variable("points", "The event's points, always positive", "{{ points|points }} → 1,250"),
    Variable("points_signed", "The event's points, negative when taken away", "-500"),
    Variable("balance", "The member's available points now", "{{ balance|points }} → 8,450"),
    Variable("pending", "Points earned but not yet available", "0"),
    Variable(
        "expiring_points",
        "Points that expire (points.expiring), else the member's next expiring points",
        "1,250",
    ),
    Variable(
        "expiring_date",
        "The last day those points can be used",
        "{{ expiring_date|date }} → 2027년 1월 15일",
    ),
    Variable("tier", "The member's tier in the message's language (empty without one)", "골드"),
    Variable("from_tier", "The previous tier (may be empty)", "실버", ("tier.changed",)),
    Variable("to_tier", "The new tier", "골드", ("tier.changed",)),
    Variable("upgrade", "True when the new tier is higher", "true", ("tier.changed",)),
    Variable(
        "order", "The receipt number of the sale", "MAPO-0042", (*_SALE_EVENTS, "coupon.used")
    ),
    Variable("amount", "What the sale came to", "{{ amount|money }} → ₩25,800", _SALE_EVENTS),
    Variable(
        "store", "The store's name", "Mapo", (*_SALE_EVENTS, "reward.redeemed", "coupon.used")
    ),
    Variable(
        "occurred_at",
        "When it happened",
        "{{ occurred_at|datetime }}",
        (*_SALE_EVENTS, "points.expired", *_REWARD_EVENTS, "member.erasure_requested"),
    ),
    Variable(
        "reason",
        "Why points were adjusted",
        "Goodwill credit",
        ("points.adjusted", "coupon.cancelled"),
    ),
    Variable("month", "The statement's month", "2027년 1월", ("points.statement",)),
    Variable("earned", "Points earned that month", "3,200", ("points.statement",)),
    Variable("redeemed", "Points used that month", "1,000", ("points.statement",)),
    Variable("expired", "Points expired that month", "0", ("points.statement",)),
    Variable(
        "reward",
        "The reward, in the message's language",
        "아메리카노 무료",
        (*_REWARD_EVENTS, "campaign.offer"),
    ),
    Variable("coupon", "The coupon code", "7KQM-3X9P-DV2T-H8WC-R", _REWARD_EVENTS),
    Variable("quantity", "How many were redeemed", "1", ("reward.redeemed",)),
    Variable(
        "valid_until",
        "The last day the coupon (or the campaign's offer) can be used",
        "{{ valid_until|date }} → 2027년 2월 14일",
        (*_REWARD_EVENTS, "campaign.offer"),
    ),
    Variable(
        "discount", "What the coupon took off", "{{ discount|money }} → ₩5,000", ("coupon.used",)
    ),
    Variable(
        "campaign",
        "The campaign that gave the coupon (or sends the offer)",
        "봄맞이 이벤트",
        ("coupon.issued", "campaign.offer"),
    ),
    Variable(
        "offer",
        "What the campaign gives: points, coupon, rules (extra points on visits) or none",
        "rules",
        ("campaign.offer",),
    ),
    Variable("marketing", "True when the program sends this event as marketing", "true"),
    Variable("unsubscribe_url", "The unsubscribe link (marketing e-mails)", "https://…"),
    Variable("portal_url", "The member's page", "https://…/m/bakery"),
)


def variables() -> list[Variable]:
    """The variables a template sees, for the editor's help box and the docs."""
    return list(VARIABLES)


_SAMPLE_NAMES = {"ko": "김민지", "zh": "王芳", "en": "Alex Morgan"}
_SAMPLE_TIERS = {"ko": ("실버", "골드"), "zh": ("银卡", "金卡"), "en": ("Silver", "Gold")}
_SAMPLE_STORES = {"ko": "마포점", "zh": "静安店", "en": "Mapo"}
_SAMPLE_REASONS = {"ko": "고객 불편 보상", "zh": "客户关怀补偿", "en": "Goodwill credit"}
_SAMPLE_REWARDS = {"ko": "아메리카노 무료", "zh": "免费美式咖啡", "en": "Free americano"}
_SAMPLE_CAMPAIGNS = {"ko": "봄맞이 이벤트", "zh": "春季活动", "en": "Spring treats"}
_SAMPLE_COUPON = "7KQM-3X9P-DV2T-H8WC-R"
_SAMPLE_PROGRAM = {"code": "bakery", "name": "Corner Bakery", "currency": "KRW"}
# Values a real message can lack; `validate` also renders with them empty, so a template that
# would fail for such a member fails at save time. Each kind's own values stay filled.
_OPTIONAL = (
    "expiring_date",
    "tier",
    "from_tier",
    "to_tier",
    "order",
    "amount",
    "store",
    "occurred_at",
    "reason",
    "month",
    "reward",
    "coupon",
    "valid_until",
    "discount",
    "campaign",
    "unsubscribe_url",
)
_KIND_VALUES: dict[str, tuple[str, ...]] = {
    "points.expiring": ("expiring_date",),
    "points.statement": ("month",),
    "tier.changed": ("to_tier",),
    **{
        kind: ("occurred_at",)
        for kind in ("points.earned", "points.redeemed", "points.refunded", "points.adjusted")
    },
    "points.expired": ("occurred_at",),
    # A reward fulfilled by another system has no coupon, so reward.redeemed keeps only its
    # reward; every coupon event has its coupon.
    "reward.redeemed": ("reward",),
    **{kind: ("reward", "coupon") for kind in _COUPON_EVENTS},
}


def _sample_amount(currency: str) -> Decimal:
    return Decimal("25800") if MINOR_UNITS.get(currency, 2) == 0 else Decimal("258.00")


def _sample_discount(currency: str) -> Decimal:
    return Decimal("5000") if MINOR_UNITS.get(currency, 2) == 0 else Decimal("50.00")


def _portal_url(program_code: str) -> str:
    return f"{get_settings().public_url.rstrip('/')}/m/{program_code}"


def sample_context(
    language: str,
    *,
    kind: str | None = None,
    program: Program | None = None,
    sparse: bool = False,
) -> dict[str, Any]:
    """A realistic context for a sample member (the preview without a member, and `validate`).
    `sparse` empties the values a real message can lack, except `kind`'s own."""
    lang = formatting.language(language)
    code = program.code if program is not None else _SAMPLE_PROGRAM["code"]
    currency = program.currency if program is not None else _SAMPLE_PROGRAM["currency"]
    low, high = _SAMPLE_TIERS[lang]
    ctx: dict[str, Any] = {
        "member": {"name": _SAMPLE_NAMES[lang], "id": 1024, "language": lang},
        "program": {
            "name": program.name if program is not None else _SAMPLE_PROGRAM["name"],
            "code": code,
        },
        "points": 1250,
        "points_signed": 1250,
        "balance": 8450,
        "pending": 300,
        "expiring_points": 1250,
        "expiring_date": dt.date(2027, 1, 15),
        "tier": high,
        "from_tier": low,
        "to_tier": high,
        "upgrade": True,
        "order": "MAPO-0042",
        "amount": _sample_amount(currency),
        "store": _SAMPLE_STORES[lang],
        "occurred_at": dt.datetime(2027, 1, 10, 5, 30, tzinfo=dt.UTC),
        "reason": _SAMPLE_REASONS[lang],
        "month": formatting.month("2027-01", lang),
        "earned": 3200,
        "redeemed": 1000,
        "expired": 0,
        "reward": _SAMPLE_REWARDS[lang],
        "coupon": _SAMPLE_COUPON,
        "quantity": 1,
        "valid_until": dt.date(2027, 2, 14),
        "discount": _sample_discount(currency),
        "campaign": _SAMPLE_CAMPAIGNS[lang],
        "offer": "rules",
        "marketing": True,
        "unsubscribe_url": f"{get_settings().public_url.rstrip('/')}/u/sample",
        "portal_url": _portal_url(code),
    }
    if sparse:
        keep = _KIND_VALUES.get(kind or "", ())
        for name in _OPTIONAL:
            if name not in keep:
                ctx[name] = None
        ctx.update(points=0, points_signed=0, pending=0, expiring_points=0)
        ctx.update(upgrade=False, marketing=False)
        ctx.update(earned=0, redeemed=0, expired=0)
    return ctx


# --- validation -------------------------------------------------------------------------------


def normalise(text: str | None) -> str | None:
    """Browsers post CRLF line ends; templates are stored with LF."""
    return None if text is None else text.replace("\r\n", "\n").replace("\r", "\n")


def validate(subject: str | None, body: str, channel: str, *, kind: str | None = None) -> None:
    """Raise TemplateInvalid (422 invalid_template) unless the template parses, uses only what
    messages have, and renders for sample members in every language: one with every value
    filled and one with the values a member can lack left empty (`kind`'s own stay filled)."""
    if channel not in CHANNELS:
        raise Invalid(f"channel must be one of {', '.join(CHANNELS)}", code="unknown_channel")
    if not body or not body.strip():
        raise TemplateInvalid("the message is empty", part="body", problem="empty")
    if len(body) > BODY_SOURCE_MAX:
        raise TemplateInvalid(
            f"the template is longer than {BODY_SOURCE_MAX:,} characters",
            part="body",
            problem="too_long",
            name="source",
        )
    if channel == "email":
        if subject is None or not subject.strip():
            raise TemplateInvalid(
                "an e-mail needs a subject", part="subject", problem="subject_missing"
            )
        if len(subject) > SUBJECT_SOURCE_MAX:
            raise TemplateInvalid(
                f"the subject is longer than {SUBJECT_SOURCE_MAX:,} characters",
                part="subject",
                problem="too_long",
                name="subject",
            )
    elif subject is not None and subject.strip():
        raise TemplateInvalid(
            "an SMS has no subject", part="subject", problem="subject_not_allowed"
        )
    else:
        subject = None
    for lang in LANGUAGES:
        locale = Locale(lang, _SAMPLE_PROGRAM["currency"], "Asia/Seoul")
        for sparse in (False, True):
            context = sample_context(lang, kind=kind, sparse=sparse)
            _check_rendered(render(subject, body, channel, context, locale), channel)


def _check_rendered(message: Rendered, channel: str) -> None:
    if not message.body:
        raise TemplateInvalid("the message renders as empty text", part="body", problem="empty")
    if channel == "sms" and len(message.body) > SMS_MAX:
        raise TemplateInvalid(
            f"the SMS is {len(message.body):,} characters long; at most {SMS_MAX:,}",
            part="body",
            problem="too_long",
            name="sms",
        )
    if channel == "email":
        if len(message.body) > EMAIL_BODY_MAX:
            raise TemplateInvalid(
                f"the e-mail is longer than {EMAIL_BODY_MAX:,} characters",
                part="body",
                problem="too_long",
                name="email",
            )
        if not message.subject:
            raise TemplateInvalid(
                "the subject renders as empty text", part="subject", problem="subject_missing"
            )
        if len(message.subject) > SUBJECT_MAX:
            raise TemplateInvalid(
                f"the subject is longer than {SUBJECT_MAX} characters",
                part="subject",
                problem="too_long",
                name="subject",
            )


# --- the context of a real message ------------------------------------------------------------


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    try:
        return int(Decimal(str(value)))
    except (ArithmeticError, ValueError):
        return 0


def _when(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    if isinstance(value, str) and len(value) > 10:
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)
    return None


def last_valid_day(expires_at: dt.datetime, timezone: str) -> dt.date:
    """A lot's expiry instant is the local midnight that ends its last valid day."""
    aware = expires_at if expires_at.tzinfo is not None else expires_at.replace(tzinfo=dt.UTC)
    return formatting.local_day(aware - dt.timedelta(microseconds=1), timezone)


def _expiry_day(value: Any, timezone: str) -> dt.date | None:
    """points.expiring's expires_at: an instant (as Lot.expires_at) or already the last day."""
    if isinstance(value, dt.datetime):
        return last_valid_day(value, timezone)
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        if len(value) == 10:
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                return None
        when = _when(value)
        return last_valid_day(when, timezone) if when is not None else None
    return None


def _tier_names(session: Session, program_id: int) -> dict[str, tuple[dict[str, str], int]]:
    rows = session.execute(
        select(TierDefinition.code, TierDefinition.names, TierDefinition.rank).where(
            TierDefinition.program_id == program_id
        )
    )
    return {code: (names or {}, rank) for code, names, rank in rows}


def _tier_name(tiers: Mapping[str, tuple[dict[str, str], int]], code: Any, lang: str) -> str | None:
    if not code:
        return None
    names = tiers.get(str(code), ({}, 0))[0]
    return names.get(lang) or names.get("en") or str(code)


def next_expiry(
    session: Session, account_id: int, now: dt.datetime
) -> tuple[int, dt.datetime] | None:
    """The member's soonest expiring available points: (points, expiry instant)."""
    first = session.scalar(
        select(func.min(Lot.expires_at)).where(
            Lot.account_id == account_id,
            Lot.remaining > 0,
            Lot.pending.is_(False),
            Lot.expires_at > now,
        )
    )
    if first is None:
        return None
    total = session.scalar(
        select(func.coalesce(func.sum(Lot.remaining), 0)).where(
            Lot.account_id == account_id,
            Lot.remaining > 0,
            Lot.pending.is_(False),
            Lot.expires_at == first,
        )
    )
    return int(total or 0), first


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        return None
    return number if number.is_finite() else None


def _reward_values(
    session: Session, program: Program, kind: str, payload: Mapping[str, Any], lang: str
) -> dict[str, Any]:
    """reward.* and coupon.*: the reward named in `lang`, the coupon code(s) and the coupon's
    last valid day and moment of use or closing. Two look-ups by unique key (the reward by
    program and code, the first coupon by code); a payload that carries `expires_at` spares
    the reading of the date."""
    reward_code = payload.get("reward")
    reward = None
    if reward_code:
        reward = session.scalars(
            select(Reward).where(Reward.program_id == program.id, Reward.code == str(reward_code))
        ).one_or_none()
    shown = [str(payload["coupon"])] if payload.get("coupon") else []
    shown = shown or [str(c) for c in payload.get("coupons") or [] if c]
    expires_at: Any = payload.get("expires_at")
    occurred_at = None
    if shown:
        row = session.execute(
            select(Coupon.issued_at, Coupon.expires_at, Coupon.used_at, Coupon.closed_at).where(
                Coupon.program_id == program.id,
                Coupon.code == coupon_codes.lookup_form(shown[0]),
            )
        ).first()
        if row is not None:
            expires_at = expires_at or row.expires_at
            occurred_at = {
                "coupon.used": row.used_at,
                "coupon.cancelled": row.closed_at,
                "coupon.expired": row.closed_at,
            }.get(kind, row.issued_at)
    return {
        "reward": name_in(reward, lang) if reward is not None else reward_code or None,
        "coupon": ", ".join(shown) or None,
        "quantity": _int(payload.get("quantity")) or len(shown) or 1,
        "valid_until": _expiry_day(expires_at, program.timezone),
        "discount": _decimal(payload.get("discount")),
        "campaign": payload.get("campaign") or None,
        "occurred_at": _when(occurred_at),
    }


def context_for(
    session: Session,
    program: Program,
    member: Member,
    kind: str,
    payload: Mapping[str, Any],
    *,
    now: dt.datetime,
    unsubscribe_url: str | None,
    language: str | None = None,
) -> dict[str, Any]:
    """The variables for one member's message about one event (see the module docstring).
    Missing payload keys leave their variables empty (or 0); `language` (default: the member's)
    names tiers and the statement month."""
    lang = formatting.language(language or member.language)
    account = session.scalars(
        select(Account).where(Account.program_id == program.id, Account.member_id == member.id)
    ).one_or_none()
    tz = program.timezone

    tiers: dict[str, tuple[dict[str, str], int]] = {}
    from_code, to_code = payload.get("from"), payload.get("to")
    if (account is not None and account.tier) or from_code or to_code:
        tiers = _tier_names(session, program.id)

    signed = _int(payload.get("points"))
    if kind in ("coupon.cancelled", "coupon.expired"):
        signed = _int(payload.get("points_returned"))
    expiring_points, expiring_date = 0, None
    if kind == "points.expiring":
        expiring_points = abs(signed)
        expiring_date = _expiry_day(payload.get("expires_at"), tz)
    elif account is not None:
        upcoming = next_expiry(session, account.id, now)
        if upcoming is not None:
            expiring_points, expiring_date = upcoming[0], last_valid_day(upcoming[1], tz)

    order = payload.get("order") or None
    amount = None
    if order and kind in _POINTS_EVENTS:
        minor = session.scalar(
            select(Purchase.amount_minor).where(
                Purchase.program_id == program.id, Purchase.external_id == str(order)
            )
        )
        if minor is not None:
            amount = Decimal(minor) * quantum(program.currency)
    store = payload.get("store") or None
    if store:
        store = (
            session.scalar(
                select(Store.name).where(Store.program_id == program.id, Store.code == str(store))
            )
            or store
        )

    up = False
    if kind == "tier.changed" and to_code:
        to_rank = tiers.get(str(to_code), ({}, 0))[1]
        from_rank = tiers.get(str(from_code), ({}, -1))[1] if from_code else -1
        up = to_rank > from_rank

    month = payload.get("month")
    rewards: dict[str, Any] = {
        "reward": None,
        "coupon": None,
        "quantity": 0,
        "valid_until": None,
        "discount": None,
        "campaign": None,
        "occurred_at": None,
    }
    if kind in _REWARD_EVENTS:
        rewards = _reward_values(session, program, kind, payload, lang)
    elif kind == "campaign.offer":
        rewards = _offer_values(session, program, payload, lang)
    # The program's settings say whether this event goes out as marketing (a Korean ad must
    # say "(광고)"); the session's identity map keeps the row for the next message.
    marketing = notify_settings.load(session, program.id).event(kind).purpose == "marketing"
    return {
        "member": {"name": member.name, "id": member.id, "language": lang},
        "program": {
            "name": program_branding.get(session, program).name_in(lang, program.name),
            "code": program.code,
        },
        "points": abs(signed) if kind != "points.statement" else 0,
        "points_signed": signed if kind != "points.statement" else 0,
        "balance": account.available if account is not None else _int(payload.get("balance")),
        "pending": account.pending if account is not None else 0,
        "expiring_points": expiring_points,
        "expiring_date": expiring_date,
        "tier": _tier_name(tiers, account.tier if account is not None else None, lang),
        "from_tier": _tier_name(tiers, from_code, lang),
        "to_tier": _tier_name(tiers, to_code, lang),
        "upgrade": up,
        "order": str(order) if order else None,
        "amount": amount,
        "store": store,
        "occurred_at": _when(payload.get("occurred_at") or payload.get("at"))
        or rewards["occurred_at"],
        "reason": payload.get("reason") or None,
        "month": formatting.month(month, lang) if month else None,
        "earned": _int(payload.get("earned")),
        "redeemed": abs(_int(payload.get("redeemed"))),
        "expired": abs(_int(payload.get("expired"))),
        "reward": rewards["reward"],
        "coupon": rewards["coupon"],
        "quantity": rewards["quantity"],
        "valid_until": rewards["valid_until"],
        "discount": rewards["discount"],
        "campaign": rewards["campaign"],
        "offer": payload.get("offer") if kind == "campaign.offer" else None,
        "marketing": marketing,
        "unsubscribe_url": unsubscribe_url,
        "portal_url": _portal_url(program.code),
    }


def _offer_values(
    session: Session, program: Program, payload: Mapping[str, Any], lang: str
) -> dict[str, Any]:
    """campaign.offer: the campaign's name, its coupon's reward named in `lang`, and the last
    day of the campaign (its end is exclusive)."""
    reward_code = payload.get("reward")
    reward = None
    if reward_code:
        reward = session.scalars(
            select(Reward).where(Reward.program_id == program.id, Reward.code == str(reward_code))
        ).one_or_none()
    last_day = _expiry_day(payload.get("ends_at"), program.timezone)
    return {
        "reward": name_in(reward, lang) if reward is not None else reward_code or None,
        "coupon": None,
        "quantity": 0,
        "valid_until": last_day,
        "discount": None,
        "campaign": payload.get("campaign_name") or payload.get("campaign") or None,
        "occurred_at": None,
    }


def _custom_row(
    session: Session, program_id: int, kind: str, channel: str, language: str
) -> MessageTemplate | None:
    return session.scalars(
        select(MessageTemplate).where(
            MessageTemplate.program_id == program_id,
            MessageTemplate.event_kind == kind,
            MessageTemplate.channel == channel,
            MessageTemplate.language == language,
        )
    ).one_or_none()


def render_for_member(
    session: Session,
    program: Program,
    member: Member,
    kind: str,
    channel: str,
    payload: Mapping[str, Any],
    *,
    now: dt.datetime,
    unsubscribe_url: str | None = None,
) -> Rendered:
    """The message `member` gets about an event: the program's own template for the kind,
    channel and the member's language (English when theirs is not ko/zh/en), else the default.

    A program's template was checked when it was saved; should it still fail for this member's
    values, the default is sent instead (and the failure logged): a message is never lost to
    its wording. An unknown kind or channel (not email/sms) is Invalid."""
    check_key(kind, channel, "en", Invalid)
    lang = formatting.language(member.language)
    context = context_for(
        session, program, member, kind, payload, now=now, unsubscribe_url=unsubscribe_url
    )
    locale = Locale(lang, program.currency, program.timezone)
    row = _custom_row(session, program.id, kind, channel, lang)
    if row is not None:
        try:
            message = render(row.subject, row.body, channel, context, locale)
            _check_rendered(message, channel)  # not empty, not too long for this member either
            return message
        except TemplateInvalid as exc:
            log.warning(
                "template %s/%s/%s/%s failed for member %s (%s); sent the default",
                program.code,
                kind,
                channel,
                lang,
                member.id,
                exc.detail,
            )
    subject, body = default_template(kind, channel, lang)
    return render(subject, body, channel, context, locale)


# --- the service: list, get, put, reset, preview ----------------------------------------------


class TemplateOut(BaseModel):
    kind: str
    channel: str
    language: str
    custom: bool = Field(description="true: the program's own wording; false: the default")
    subject: str | None
    body: str
    updated_at: dt.datetime | None = None
    updated_by: str | None = None


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str | None = Field(
        None, max_length=SUBJECT_SOURCE_MAX, description="E-mail only; leave out for SMS"
    )
    body: str = Field(max_length=BODY_SOURCE_MAX)


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(max_length=60, examples=["points.expiring"])
    channel: str = Field(max_length=10, examples=["email"])
    language: str = Field(max_length=10, examples=["ko"])
    subject: str | None = Field(None, max_length=SUBJECT_SOURCE_MAX)
    body: str | None = Field(
        None,
        max_length=BODY_SOURCE_MAX,
        description="The template to preview; leave out to preview the current one",
    )
    member_id: int | None = Field(
        None, ge=1, le=2**53, description="Render for this member; leave out for a sample member"
    )


class PreviewOut(BaseModel):
    kind: str
    channel: str
    language: str
    subject: str | None
    body: str
    member_id: int | None = Field(description="null: rendered for a sample member")
    member_name: str
    characters: int = Field(description="The body's length (SMS: at most 1,000)")


def check_key(kind: str, channel: str, language: str, error: type[PatronError] = NotFound) -> None:
    """Is this a template that exists? NotFound for a path, Invalid for a request body."""
    if kind not in EVENT_TYPES:
        raise error(f"unknown event type {kind!r}", code="unknown_event_type")
    if channel not in CHANNELS:
        raise error(
            f"unknown channel {channel!r}: one of {', '.join(CHANNELS)}", code="unknown_channel"
        )
    if language not in LANGUAGES:
        raise error(
            f"unknown language {language!r}: one of {', '.join(LANGUAGES)}",
            code="unknown_language",
        )


def _out(kind: str, channel: str, language: str, row: MessageTemplate | None) -> TemplateOut:
    if row is not None:
        return TemplateOut(
            kind=kind,
            channel=channel,
            language=language,
            custom=True,
            subject=row.subject,
            body=row.body,
            updated_at=row.updated_at,
            updated_by=row.updated_by,
        )
    subject, body = default_template(kind, channel, language)
    return TemplateOut(
        kind=kind, channel=channel, language=language, custom=False, subject=subject, body=body
    )


def list_templates(session: Session, program: Program) -> list[TemplateOut]:
    """Every kind × channel × language, the program's own wording or the default."""
    rows = {
        (r.event_kind, r.channel, r.language): r
        for r in session.scalars(
            select(MessageTemplate).where(MessageTemplate.program_id == program.id)
        )
    }
    return [
        _out(kind, channel, lang, rows.get((kind, channel, lang)))
        for kind in EVENT_TYPES
        for channel in CHANNELS
        for lang in LANGUAGES
    ]


def get_template(
    session: Session, program: Program, kind: str, channel: str, language: str
) -> TemplateOut:
    check_key(kind, channel, language)
    return _out(kind, channel, language, _custom_row(session, program.id, kind, channel, language))


def _text(t: TemplateOut) -> dict[str, Any]:
    return {"custom": t.custom, "subject": t.subject, "body": t.body}


def _subject_id(program: Program, kind: str, channel: str, language: str) -> str:
    return f"{program.code}/{kind}/{channel}/{language}"


def put_template(
    session: Session,
    program: Program,
    kind: str,
    channel: str,
    language: str,
    subject: str | None,
    body: str,
    *,
    actor: Actor,
    now: dt.datetime,
) -> TemplateOut:
    """Save the program's own wording, after `validate`. Saving exactly the text in force
    changes nothing (and the default stays the default)."""
    check_key(kind, channel, language)
    subject, body = normalise(subject), normalise(body) or ""
    if channel == "sms" and subject is not None and not subject.strip():
        subject = None
    validate(subject, body, channel, kind=kind)
    if channel == "email" and subject is not None:
        subject = subject.strip()
    row = _custom_row(session, program.id, kind, channel, language)
    before = _out(kind, channel, language, row)
    if before.subject == subject and before.body == body:
        return before
    if row is None:
        row = MessageTemplate(
            program_id=program.id,
            event_kind=kind,
            channel=channel,
            language=language,
            subject=subject,
            body=body,
            updated_at=now,
            updated_by=str(actor),
        )
        session.add(row)
    else:
        row.subject, row.body, row.updated_at, row.updated_by = subject, body, now, str(actor)
    after = _out(kind, channel, language, row)
    audit.record(
        session,
        actor=actor,
        action="notifications.template_changed",
        subject_type="message_template",
        subject_id=_subject_id(program, kind, channel, language),
        program_id=program.id,
        at=now,
        before=_text(before),
        after=_text(after),
    )
    session.flush()
    return after


def reset_template(
    session: Session,
    program: Program,
    kind: str,
    channel: str,
    language: str,
    *,
    actor: Actor,
    now: dt.datetime,
) -> TemplateOut:
    """Back to the default wording (deletes the program's own; nothing to do without one)."""
    check_key(kind, channel, language)
    row = _custom_row(session, program.id, kind, channel, language)
    default = _out(kind, channel, language, None)
    if row is None:
        return default
    before = _out(kind, channel, language, row)
    session.delete(row)
    audit.record(
        session,
        actor=actor,
        action="notifications.template_reset",
        subject_type="message_template",
        subject_id=_subject_id(program, kind, channel, language),
        program_id=program.id,
        at=now,
        before=_text(before),
        after=_text(default),
    )
    session.flush()
    return default


def _entry_payload(
    session: Session, program: Program, account: Account, kind: str
) -> dict[str, Any] | None:
    """The member's latest ledger entry reported by `kind`, as its event payload."""
    entry_kind = next((e for e, k in ENTRY_EVENTS.items() if k == kind), None)
    if entry_kind is None:
        return None
    entry = session.scalars(
        select(Entry)
        .where(Entry.account_id == account.id, Entry.kind == entry_kind)
        .order_by(Entry.occurred_at.desc(), Entry.id.desc())
        .limit(1)
    ).first()
    if entry is None:
        return None
    order = None
    if entry.purchase_id is not None:
        order = session.scalar(select(Purchase.external_id).where(Purchase.id == entry.purchase_id))
    store = None
    if entry.store_id is not None:
        store = session.scalar(select(Store.code).where(Store.id == entry.store_id))
    return {
        "points": entry.points,
        "occurred_at": entry.occurred_at.isoformat(),
        "reason": entry.reason,
        "order": order,
        "store": store,
    }


def _month_totals(
    session: Session, program: Program, account: Account, now: dt.datetime
) -> dict[str, Any]:
    """Last month's statement figures (in the program's timezone) from the ledger."""
    tz = formatting.zone(program.timezone)
    local = now.astimezone(tz)
    this_month = local.date().replace(day=1)
    first = (this_month - dt.timedelta(days=1)).replace(day=1)
    start = dt.datetime.combine(first, dt.time(0), tzinfo=tz).astimezone(dt.UTC)
    end = dt.datetime.combine(this_month, dt.time(0), tzinfo=tz).astimezone(dt.UTC)
    sums = dict(
        session.execute(
            select(Entry.kind, func.sum(Entry.points))
            .where(
                Entry.account_id == account.id,
                Entry.occurred_at >= start,
                Entry.occurred_at < end,
            )
            .group_by(Entry.kind)
        ).all()
    )
    return {
        "month": first.strftime("%Y-%m"),
        "balance": account.available,
        "earned": int(sums.get("earn") or 0),
        "redeemed": abs(int(sums.get("redeem") or 0)),
        "expired": abs(int(sums.get("expire") or 0)),
    }


def _coupon_payload(
    session: Session, program: Program, account: Account, now: dt.datetime
) -> dict[str, Any]:
    """The member's latest coupon as the payload of any reward event; without one, a sample
    coupon of the program's first reward (or no reward when it has none)."""
    coupon = session.scalars(
        select(Coupon)
        .where(Coupon.member_id == account.member_id, Coupon.program_id == program.id)
        .order_by(Coupon.id.desc())
        .limit(1)
    ).first()
    if coupon is None:
        first = session.scalar(
            select(Reward.code).where(Reward.program_id == program.id).order_by(Reward.id).limit(1)
        )
        return {
            "reward": first,
            "coupon": _SAMPLE_COUPON,
            "coupons": [_SAMPLE_COUPON],
            "quantity": 1,
            "points": 1500,
            "points_returned": 1500,
            "expires_at": (now + dt.timedelta(days=30)).isoformat(),
            "discount": str(_sample_discount(program.currency)),
        }
    shown = coupon_codes.display(coupon.code)
    used = session.execute(
        select(CouponEvent.order_ref, CouponEvent.amount_minor, Store.code)
        .outerjoin(Store, Store.id == CouponEvent.store_id)
        .where(CouponEvent.coupon_id == coupon.id, CouponEvent.kind == "used")
        .order_by(CouponEvent.id.desc())
        .limit(1)
    ).first()
    return {
        "reward": session.scalar(select(Reward.code).where(Reward.id == coupon.reward_id)),
        "coupon": shown,
        "coupons": [shown],
        "quantity": 1,
        "points": coupon.points,
        # What it gave back once closed; while open, what cancelling it would give back.
        "points_returned": (
            coupon.points_returned if coupon.status in ("cancelled", "expired") else coupon.points
        ),
        "campaign": coupon.campaign,
        "order": used.order_ref if used is not None else None,
        "store": used.code if used is not None else None,
        "discount": (
            str(Decimal(used.amount_minor) * quantum(program.currency))
            if used is not None and used.amount_minor is not None
            else None
        ),
    }


def _member_payload(
    session: Session, program: Program, account: Account, kind: str, now: dt.datetime
) -> dict[str, Any]:
    """A payload for previewing `kind` for a real member: their own latest event of the kind
    where there is one, else sample figures with their own account."""
    if kind == "points.expiring":
        upcoming = next_expiry(session, account.id, now)
        if upcoming is not None:
            return {"points": upcoming[0], "expires_at": upcoming[1].isoformat()}
        days = notify_settings.load(session, program.id).expiring_days_before
        return {"points": 1250, "expires_at": (now + dt.timedelta(days=days)).date().isoformat()}
    if kind == "points.statement":
        return _month_totals(session, program, account, now)
    if kind == "tier.changed":
        change = session.scalars(
            select(TierChange)
            .where(TierChange.account_id == account.id)
            .order_by(TierChange.id.desc())
            .limit(1)
        ).first()
        if change is not None:
            return {
                "from": change.from_tier,
                "to": change.to_tier,
                "reason": change.reason,
                "period": change.period,
                "at": change.at.isoformat(),
            }
        return {"from": None, "to": account.tier}
    if kind == "member.birthday":
        return {"year": now.year, "points": 1000}
    if kind in _REWARD_EVENTS:
        return _coupon_payload(session, program, account, now)
    found = _entry_payload(session, program, account, kind)
    if found is not None:
        return found
    if kind == "member.enrolled":
        return {}
    if kind == "member.erasure_requested":
        return {"occurred_at": now.isoformat(), "source": "portal"}
    return {"points": 1250, "occurred_at": now.isoformat(), "reason": None}


def preview(
    session: Session,
    program: Program,
    kind: str,
    channel: str,
    language: str,
    subject: str | None,
    body: str | None,
    member_id: int | None,
    *,
    now: dt.datetime,
) -> PreviewOut:
    """Render a template (as typed, or the current one when `body` is None) in `language` for a
    real member of the program (their name and figures) or a sample member. A template error
    is a 422 invalid_template; an unknown member a 404."""
    check_key(kind, channel, language, Invalid)
    if body is None:
        current = get_template(session, program, kind, channel, language)
        subject, body = current.subject, current.body
    subject, body = normalise(subject), normalise(body) or ""
    if channel == "sms":
        subject = subject if subject and subject.strip() else None
    validate(subject, body, channel, kind=kind)
    locale = Locale(language, program.currency, program.timezone)
    if member_id is None:
        context = sample_context(language, kind=kind, program=program)
    else:
        member = session.get(Member, member_id)
        account = session.scalars(
            select(Account).where(Account.program_id == program.id, Account.member_id == member_id)
        ).one_or_none()
        if member is None or account is None:
            raise NotFound(
                f"no member {member_id} in program {program.code}", code="member_not_found"
            )
        purpose = notify_settings.load(session, program.id).event(kind).purpose
        unsubscribe = (
            f"{get_settings().public_url.rstrip('/')}/u/preview" if purpose == "marketing" else None
        )
        context = context_for(
            session,
            program,
            member,
            kind,
            _member_payload(session, program, account, kind, now),
            now=now,
            unsubscribe_url=unsubscribe,
            language=language,
        )
    message = render(subject, body, channel, context, locale)
    return PreviewOut(
        kind=kind,
        channel=channel,
        language=language,
        subject=message.subject,
        body=message.body,
        member_id=member_id,
        member_name=context["member"]["name"],
        characters=len(message.body),
    )
