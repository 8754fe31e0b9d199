"""Message templates: locale formatting, the shipped defaults for every event in ko/zh/en, the
sandbox and `validate`, real members' messages (`render_for_member`), and the service that
saves, resets and previews a program's own wording."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from patron.audit.models import AuditRecord
from patron.audit.service import CLI
from patron.db.engine import Database
from patron.demo import BAKERY_TIERS
from patron.errors import Invalid, NotFound
from patron.events.kinds import EVENT_TYPES
from patron.events.models import DomainEvent
from patron.ledger.models import Account, Lot
from patron.members.models import Member
from patron.notify import formatting, templates
from patron.notify import settings as notify_settings
from patron.notify.models import MessageTemplate
from patron.notify.templates import Locale, TemplateInvalid
from patron.programs.models import Program
from patron.tiers import service as tiers
from tests.conftest import T0
from tests.factories import SHANGHAI, make_member, make_program
from tests.ledger._helpers import adjust, buy, refund

NNBSP = "\u202f"  # CLDR puts a narrow no-break space before "PM"
SEOUL_T0_KO = "2026년 3월 2일"  # T0 is 12:00 on 2 March 2026 in Seoul
SEOUL_T0 = {"ko": SEOUL_T0_KO, "zh": "2026年3月2日", "en": "Mar 2, 2026"}


# --- formatting -------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", ["ko", "zh", "en"])
def test_points_are_grouped_by_thousands(lang):
    assert formatting.points(1250, lang) == "1,250"
    assert formatting.points(1234567, lang) == "1,234,567"
    assert formatting.points(-500, lang) == "-500"
    assert formatting.points(None, lang) == ""


@pytest.mark.parametrize(
    ("amount", "currency", "lang", "text"),
    [
        ("25800", "KRW", "ko", "₩25,800"),
        ("25800", "KRW", "zh", "₩25,800"),
        ("25800", "KRW", "en", "₩25,800"),
        ("25.8", "CNY", "zh", "¥25.80"),
        ("25.8", "CNY", "en", "CN¥25.80"),
        ("25.8", "CNY", "ko", "CN¥25.80"),
        ("1234.5", "USD", "en", "$1,234.50"),
        ("1234.5", "USD", "ko", "US$1,234.50"),
    ],
)
def test_money_is_what_cldr_says(amount, currency, lang, text):
    assert formatting.money(Decimal(amount), currency, lang) == text


def test_dates_are_in_the_programs_timezone_and_the_members_language():
    noon_seoul = datetime(2027, 1, 15, 3, 0, tzinfo=UTC)
    assert formatting.date(noon_seoul, "Asia/Seoul", "ko") == "2027년 1월 15일"
    assert formatting.date(noon_seoul, "Asia/Seoul", "zh") == "2027年1月15日"
    assert formatting.date(noon_seoul, "Asia/Seoul", "en") == "Jan 15, 2027"
    # 00:30 on the 15th in Seoul is still the 14th in UTC and in Shanghai's 23:30.
    late = datetime(2027, 1, 14, 15, 30, tzinfo=UTC)
    assert formatting.date(late, "Asia/Seoul", "en") == "Jan 15, 2027"
    assert formatting.date(late, "Asia/Shanghai", "zh") == "2027年1月14日"
    # A plain date is a local day already; an ISO text from a payload reads the same.
    assert formatting.date(date(2027, 1, 15), "Asia/Seoul", "ko") == "2027년 1월 15일"
    assert formatting.date("2027-01-14T15:30:00+00:00", "Asia/Seoul", "ko") == "2027년 1월 15일"
    # SQLite hands back naive UTC.
    assert formatting.date(late.replace(tzinfo=None), "Asia/Seoul", "en") == "Jan 15, 2027"


def test_datetimes_and_months():
    noon_seoul = datetime(2027, 1, 15, 3, 0, tzinfo=UTC)
    assert formatting.datetime(noon_seoul, "Asia/Seoul", "ko") == "2027년 1월 15일 오후 12:00"
    assert formatting.datetime(noon_seoul, "Asia/Seoul", "zh") == "2027年1月15日 12:00"
    assert formatting.datetime(noon_seoul, "Asia/Seoul", "en") == f"Jan 15, 2027, 12:00{NNBSP}PM"
    assert formatting.month("2027-01", "ko") == "2027년 1월"
    assert formatting.month("2027-01", "zh") == "2027年1月"
    assert formatting.month("2027-01", "en") == "January 2027"


def test_other_languages_are_written_in_english():
    assert formatting.language("ja") == "en"
    assert formatting.language(None) == "en"
    assert formatting.date(date(2027, 1, 15), "UTC", "ja") == "Jan 15, 2027"


# --- the shipped defaults ---------------------------------------------------------------------


def test_there_is_a_default_for_every_event_channel_and_language():
    for lang in templates.LANGUAGES:
        assert set(templates.defaults()[lang]) == set(EVENT_TYPES), lang
        for kind in EVENT_TYPES:
            subject, body = templates.default_template(kind, "email", lang)
            assert subject and body, (kind, lang)
            sms_subject, sms = templates.default_template(kind, "sms", lang)
            assert sms_subject is None and sms, (kind, lang)


@pytest.mark.parametrize("kind", list(EVENT_TYPES))
def test_every_default_passes_validate(kind):
    for lang in templates.LANGUAGES:
        for channel in templates.CHANNELS:
            templates.validate(*templates.default_template(kind, channel, lang), channel, kind=kind)


@pytest.mark.parametrize("lang", ["ko", "zh", "en"])
def test_marketing_emails_end_with_the_unsubscribe_link_when_given(lang):
    locale = Locale(lang, "KRW", "Asia/Seoul")
    context = templates.sample_context(lang, kind="points.expiring")
    with_link = templates.render(
        *templates.default_template("points.expiring", "email", lang), "email", context, locale
    )
    assert with_link.body.endswith(context["unsubscribe_url"])
    context["unsubscribe_url"] = None
    without = templates.render(
        *templates.default_template("points.expiring", "email", lang), "email", context, locale
    )
    assert "/u/" not in without.body and "None" not in without.body


def test_a_korean_advertisement_says_so_first():
    locale = Locale("ko", "KRW", "Asia/Seoul")
    context = templates.sample_context("ko", kind="points.expiring")
    sms = templates.render(
        *templates.default_template("points.expiring", "sms", "ko"), "sms", context, locale
    )
    email = templates.render(
        *templates.default_template("points.expiring", "email", "ko"), "email", context, locale
    )
    assert sms.body.startswith("(광고)[Corner Bakery]")
    assert email.subject is not None and email.subject.startswith("(광고) ")
    context["marketing"] = False
    receipt = templates.render(
        *templates.default_template("points.expiring", "sms", "ko"), "sms", context, locale
    )
    assert receipt.body.startswith("[Corner Bakery]")


# --- validate: what a template may not do -----------------------------------------------------


def invalid(subject: str | None, body: str, channel: str = "email", **kw: Any) -> TemplateInvalid:
    with pytest.raises(TemplateInvalid) as caught:
        templates.validate(subject, body, channel, **kw)
    assert caught.value.status == 422 and caught.value.code == "invalid_template"
    return caught.value


def test_a_syntax_error_names_its_line():
    err = invalid("Hi", "Hello {{ member.name }}\n\n{% if points %}lots")
    assert err.problem == "syntax" and err.part == "body" and err.line == 3
    assert err.detail.startswith("body, line 3: ")
    err = invalid("Hi {{ member.name", "body")
    assert err.problem == "syntax" and err.part == "subject" and err.line == 1


def test_an_unknown_variable_or_attribute_is_refused_with_its_name():
    err = invalid("Hi", "Hello\n{{ membr.name }}")
    assert (err.problem, err.line, err.name) == ("undefined", 2, "membr")
    assert "membr is not a variable messages have" in err.detail
    err = invalid("Hi", "{{ member.nmae }}")
    assert (err.problem, err.name) == ("undefined", "nmae")
    err = invalid("Hi", "{{ points|center(40) }}")
    assert err.problem == "syntax" and "center" in err.detail  # not an allowed filter


@pytest.mark.parametrize(
    "body",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ member.__class__ }}",
        "{{ member['__class__'] }}",
        "{{ member.items() }}",
        "{{ member.name.format(member) }}",
        "{{ '{0.__class__}'.format(member) }}",
        "{{ member.name.ljust(100000) }}",
        "{{ self.__init__.__globals__ }}",
        "{{ self._TemplateReference__context }}",
        "{{ 'x' * 100000 }}",
        "{{ [1] * 100000 }}",
        "{{ '%s' % member }}",
        "{{ 9 ** 9999 }}",
        "{{ (10 ** 19) ** 2 }}",
        "{{ expiring_date.__class__ }}",
        "{{ expiring_date.replace(year=1) }}",
    ],
)
def test_the_sandbox_refuses_unsafe_access(body):
    err = invalid("Hi", body)
    assert err.problem == "unsafe", err.detail


@pytest.mark.parametrize(
    "body",
    [
        "{{ cycler.__init__.__globals__.os }}",
        "{{ joiner }}",
        "{{ namespace() }}",
        "{{ lipsum.__globals__ }}",
        "{{ range(10) }}",
        "{{ dict(a=1) }}",
        "{{ config }}",
        "{{ request }}",
        "{{ self.body() }}",
    ],
)
def test_there_are_no_globals_to_escape_through(body):
    err = invalid("Hi", body)
    assert err.problem in ("undefined", "unsafe"), err.detail


@pytest.mark.parametrize(
    ("body", "name"),
    [
        ("{% for c in member.name %}{{ c }}{% endfor %}", "for"),
        ("{% set x = member.name ~ member.name %}{{ x }}", "set"),
        ("{% set x %}a{% endset %}{{ x }}", "set"),
        ("{% with a = 1 %}{{ a }}{% endwith %}", "with"),
        ("{% macro m() %}x{% endmacro %}{{ m() }}", "macro"),
        ("{% include 'other' %}", "include"),
        ("{% import 'other' as o %}", "import"),
        ("{% extends 'base' %}", "extends"),
        ("{% block b %}x{% endblock %}", "block"),
        ("{% autoescape true %}x{% endautoescape %}", "autoescape"),
    ],
)
def test_statements_a_message_does_not_need_are_refused(body, name):
    err = invalid("Hi", "Hello\n" + body)
    assert (err.problem, err.name, err.line) == ("not_allowed", name, 2)


def test_a_value_some_members_lack_must_be_guarded():
    err = invalid("Hi", "You are {{ tier.upper() }}")
    assert err.problem == "empty_value"
    templates.validate("Hi", "{% if tier %}You are {{ tier.upper() }}{% endif %}Hello", "email")
    # The statement's month is always there in a statement, so the kind may use it freely.
    invalid("Hi", "{{ month[:4] }}")
    templates.validate("Hi", "{{ month[:4] }}", "email", kind="points.statement")


def test_empty_missing_and_oversized_templates_are_refused():
    assert invalid("Hi", "   ").problem == "empty"
    assert invalid("Hi", "{% if tier %}x{% endif %}").problem == "empty"  # empty for some
    assert invalid(None, "body").problem == "subject_missing"
    assert invalid("  ", "body").problem == "subject_missing"
    assert invalid("{{ unsubscribe_url }}", "body").problem == "subject_missing"
    assert invalid("Hi", "body", "sms").problem == "subject_not_allowed"
    err = invalid(None, "x" * 1001, "sms")
    assert (err.problem, err.name) == ("too_long", "sms")
    err = invalid(None, "{{ member.name }}" + "x" * 990, "sms")  # 1,001+ once filled in
    assert err.problem == "too_long"
    err = invalid("Hi", "x" * 10_001)
    assert (err.problem, err.name) == ("too_long", "source")
    err = invalid("Hi", "{{ amount|money('XYZ') }}")
    assert err.problem == "error" and "unknown currency 'XYZ'" in err.detail
    with pytest.raises(Invalid):
        templates.validate(None, "body", "fax")


def test_a_good_template_uses_the_filters_and_prints_nothing_for_an_empty_value():
    body = (
        "{{ member.name|upper }} {{ points|points }} {{ amount|money }} {{ amount|money('USD') }}"
        " {{ expiring_date|date }} {{ expiring_date.year }} [{{ store }}]"
    )
    # expiring_date is always there in a reminder; elsewhere .year would fail for some members.
    assert invalid("Hi", body).problem == "empty_value"
    templates.validate("Hi", body, "email", kind="points.expiring")
    locale = Locale("en", "KRW", "Asia/Seoul")
    context = templates.sample_context("en")
    shown = templates.render("Hi", body, "email", context, locale).body
    assert shown == "ALEX MORGAN 1,250 ₩25,800 $25,800.00 Jan 15, 2027 2027 [Mapo]"
    context["store"] = None
    assert templates.render("Hi", body, "email", context, locale).body.endswith("[]")


def test_a_subject_is_one_line():
    locale = Locale("en", "KRW", "UTC")
    message = templates.render(
        "Hi\n{{ member.name }}\r\nBcc: x@example.com",
        "b",
        "email",
        {"member": {"name": "A"}},
        locale,
    )
    assert message.subject == "Hi A Bcc: x@example.com"


# --- real members -----------------------------------------------------------------------------

KO, ZH, EN, JA = "김민지", "王芳", "Alex Morgan", "Yuki Tanaka"


def make_world(db: Database) -> dict[str, int]:
    """The bakery (KRW, Seoul) with tiers; a member per language, each with a ₩125,000 sale at
    T0 (1,250 points), then points spent, refunded and adjusted, so the outbox holds real
    events of every ledger kind."""
    ids: dict[str, int] = {}
    with db.unit_of_work() as s:
        program = make_program(s, now=T0 - timedelta(days=10))
        tiers.set_tiers(s, program, BAKERY_TIERS, actor=CLI, now=T0 - timedelta(days=10))
        for name, lang, phone in (
            (KO, "ko", "010-1111-2222"),
            (ZH, "zh", "010-3333-4444"),
            (EN, "en", "010-5555-6666"),
            (JA, "ja", "010-7777-8888"),
        ):
            member = make_member(
                s,
                now=T0 - timedelta(days=10),
                program=program,
                name=name,
                phone=phone,
                language=lang,
            )
            ids[lang] = member.id
    with db.unit_of_work() as s:
        program = s.scalars(select(Program)).one()
        for lang, member_id in ids.items():
            buy(s, program, member_id, 125000, ext=f"MAPO-{lang}-1", now=T0)
            buy(s, program, member_id, 30000, ext=f"MAPO-{lang}-2", now=T0, spend=1000)
            refund(s, program, f"MAPO-{lang}-2", refund_id=f"R-{lang}", full=True, now=T0)
            adjust(s, program, member_id, 500, now=T0)
    return ids


def real_payloads(db: Database, member_id: int) -> dict[str, dict[str, Any]]:
    """The member's first event payload of each kind in the outbox, plus the jobs' kinds as
    the jobs write them."""
    with db.unit_of_work(readonly=True) as s:
        events = s.scalars(
            select(DomainEvent).where(DomainEvent.member_id == member_id).order_by(DomainEvent.id)
        ).all()
        found: dict[str, dict[str, Any]] = {}
        for event in events:
            found.setdefault(event.kind, dict(event.payload))
        lot = s.scalars(
            select(Lot)
            .join(Account, Account.id == Lot.account_id)
            .where(Account.member_id == member_id, Lot.remaining > 0)
            .order_by(Lot.expires_at)
        ).first()
        assert lot is not None and lot.expires_at is not None
        expires = lot.expires_at.replace(tzinfo=lot.expires_at.tzinfo or UTC)
    found.setdefault(
        "points.expiring",
        {"points": 1250, "expires_at": expires.isoformat(), "balance": 1750},
    )
    found.setdefault(
        "points.statement",
        {"month": "2026-02", "balance": 1750, "earned": 1250, "redeemed": 1000, "expired": 0},
    )
    found.setdefault("member.birthday", {"year": 2026, "points": 1000})
    found.setdefault(
        "points.expired",
        {"points": -200, "entry_kind": "expire", "occurred_at": T0.isoformat(), "reason": None},
    )
    found.setdefault("tier.changed", {"from": "basic", "to": "silver", "reason": "upgrade"})
    # As the member page writes it (rendered from a real request in tests/portal/test_privacy.py).
    found.setdefault(
        "member.erasure_requested",
        {"program": "bakery", "member_id": member_id, "request_id": 1,
         "occurred_at": T0.isoformat(), "source": "portal"},
    )  # fmt: skip
    # As patron.privacy.erasure writes it (tests/privacy).
    found.setdefault(
        "member.erased",
        {"program": "bakery", "member_id": member_id, "erasure_id": 1,
         "occurred_at": T0.isoformat(), "source": "admin"},
    )  # fmt: skip
    # As patron.fraud.guard writes it (tests/fraud).
    found.setdefault(
        "fraud.review",
        {"program": "bakery", "member_id": member_id, "review_id": 1, "status": "open",
         "code": "review_threshold", "codes": ["review_threshold"], "order": "MAPO-1",
         "points": 5000, "released_points": 0, "reversed_points": 0, "reason": None},
    )  # fmt: skip
    # As patron.moves.merge and .transfer write them (tests/moves).
    found.setdefault(
        "member.merged", {"program": "bakery", "source_id": 1, "survivor_id": member_id}
    )
    # As patron.milestones.jobs writes it (tests/milestones render it from a real run).
    found.setdefault(
        "milestone.achieved",
        {"program": "bakery", "member_id": member_id, "milestone": "ten-visits",
         "kind": "visits", "period": "2026-03", "value": 10, "target": 10, "points": 500,
         "reward": None, "achievement_id": 1, "achieved_at": T0.isoformat()},
    )  # fmt: skip
    # As patron.surveys.service writes it (tests/surveys answer real invitations).
    found.setdefault(
        "survey.answered",
        {"program": "bakery", "member_id": member_id, "survey": "after-visit", "response_id": 1,
         "invitation_id": 1, "store": "mapo", "channel": "email", "order": "MAPO-1",
         "language": "en", "answers": {"overall": 5}, "points": 100,
         "answered_at": T0.isoformat()},
    )  # fmt: skip
    # Campaign events have no member (webhooks only); their templates still render.
    found.setdefault("campaign.launched", {"program": "bakery", "campaign": "winback",
                                           "segment": "gold-dormant", "assigned": 120})  # fmt: skip
    found.setdefault("campaign.ended", {"program": "bakery", "campaign": "winback",
                                        "reason": "stopped"})  # fmt: skip
    # As patron.campaigns.service writes it for each member of an arm with a message.
    found.setdefault(
        "campaign.offer",
        {"program": "bakery", "campaign": "winback", "campaign_name": "Win back",
         "variant": "b", "variant_name": "B", "offer": "points", "member_id": member_id,
         "points": 500, "reward": None, "ends_at": (T0 + timedelta(days=14)).isoformat()},
    )  # fmt: skip
    for kind, entry_kind in (("points.merged", "merge_in"), ("points.transferred", "transfer_in")):
        found.setdefault(
            kind,
            {"program": "bakery", "member_id": member_id, "entry_id": 1, "entry_kind": entry_kind,
             "points": 300, "occurred_at": T0.isoformat(), "reason": "transfer from member 1"},
        )  # fmt: skip
    return found


def render(db: Database, member_id: int, kind: str, channel: str, payload: dict[str, Any], **kw):
    with db.unit_of_work(readonly=True) as s:
        program = s.scalars(select(Program)).one()
        member = s.get(Member, member_id)
        assert member is not None
        return templates.render_for_member(s, program, member, kind, channel, payload, now=T0, **kw)


def test_every_default_renders_for_real_members_in_their_language(db, frozen):
    ids = make_world(db)
    expected_events = {
        "member.enrolled",
        "points.earned",
        "points.redeemed",
        "points.refunded",
        "points.adjusted",
    }
    # The reward and coupon events render from real redemptions in test_templates_rewards.py.
    kinds = [k for k in EVENT_TYPES if not k.startswith(("reward.", "coupon."))]
    for lang in ("ko", "zh", "en"):
        payloads = real_payloads(db, ids[lang])
        assert expected_events <= set(payloads), set(payloads)
        for kind in kinds:
            for channel in templates.CHANNELS:
                message = render(db, ids[lang], kind, channel, payloads[kind])
                shown = f"{message.subject or ''}\n{message.body}"
                assert message.language == lang
                assert "None" not in shown and "{{" not in shown and "{%" not in shown, shown
                assert "Corner Bakery" in shown, (kind, channel, lang)
                if kind == "points.earned" and channel == "email":  # the receipt, dated
                    assert SEOUL_T0[lang] in message.body, message.body
                    assert "1,250" in shown and "₩125,000" in shown
                if channel == "email":
                    assert message.subject and "\n" not in message.subject
                    # The erasure notice names no one: the name is what was erased.
                    named = {"ko": KO, "zh": ZH, "en": EN}[lang] in message.body
                    assert named != (kind == "member.erased"), (kind, lang)
                else:
                    assert message.subject is None and len(message.body) <= templates.SMS_MAX


def test_the_korean_bakery_receipt(db, frozen):
    ids = make_world(db)
    earned = real_payloads(db, ids["ko"])["points.earned"]
    assert earned["points"] == 1250 and earned["order"] == "MAPO-ko-1"
    email = render(db, ids["ko"], "points.earned", "email", earned)
    assert email.subject == "[Corner Bakery] 1,250포인트가 적립되었습니다"
    assert "결제 금액: ₩125,000" in email.body
    assert "적립 포인트: 1,250P" in email.body
    assert f"구매 일시: {SEOUL_T0_KO} 오후 12:00" in email.body
    assert "매장: Mapo" not in email.body  # this sale named no store
    assert "영수증 번호: MAPO-ko-1" in email.body
    with db.unit_of_work(readonly=True) as s:
        balance = s.scalars(select(Account.available).where(Account.member_id == ids["ko"])).one()
    assert f"현재 포인트: {balance:,}P" in email.body
    # The next expiry: the sale's points, valid through 2 March 2027 (12 months, Seoul).
    assert "포인트의 유효기간은 2027년 3월 2일까지입니다." in email.body
    sms = render(db, ids["ko"], "points.earned", "sms", earned)
    assert sms.body.startswith("[Corner Bakery] ₩125,000 결제, 1,250P 적립.")


@pytest.mark.parametrize(
    ("lang", "money", "day"),
    [("zh", "¥1,250.00", "2026年3月2日"), ("en", "CN¥1,250.00", "Mar 2, 2026")],
)
def test_a_chinese_program_shows_yuan(db, frozen, lang, money, day):
    with db.unit_of_work() as s:
        program = make_program(s, now=T0, base=SHANGHAI, stores=("jingan",))
        member = make_member(s, now=T0, program=program, name="Li", language=lang)
        buy(s, program, member.id, "1250.00", ext="SH-1", now=T0)
        member_id = member.id
    payload = real_payloads(db, member_id)["points.earned"]
    with db.unit_of_work(readonly=True) as s:
        program = s.scalars(select(Program)).one()
        member = s.get(Member, member_id)
        assert member is not None
        message = templates.render_for_member(
            s, program, member, "points.earned", "email", payload, now=T0
        )
    assert money in message.body and day in message.body
    assert "1,250" in message.body


def test_the_expiry_reminder_shows_the_last_day_the_points_can_be_used(db, frozen):
    ids = make_world(db)
    payload = real_payloads(db, ids["ko"])["points.expiring"]
    # The lot's expiry instant is midnight at the start of 3 March 2027 in Seoul.
    assert payload["expires_at"].startswith("2027-03-02T15:00:00")
    message = render(db, ids["ko"], "points.expiring", "email", payload)
    assert (
        message.subject == "(광고) [Corner Bakery] 1,250포인트를 2027년 3월 2일까지 사용해 주세요"
    )
    en = render(db, ids["en"], "points.expiring", "sms", payload)
    assert "1,250 of your points are valid until Mar 2, 2027." in en.body
    # A plain date is taken as that last day already.
    plain = render(
        db, ids["zh"], "points.expiring", "sms", {"points": 10, "expires_at": "2027-03-02"}
    )
    assert "10积分有效期至2027年3月2日" in plain.body


def test_tier_names_are_in_the_members_language(db, frozen):
    ids = make_world(db)
    payload = {"from": "silver", "to": "gold", "reason": "upgrade", "at": T0.isoformat()}
    assert "골드 등급이 되셨습니다" in (
        render(db, ids["ko"], "tier.changed", "email", payload).subject or ""
    )
    assert "恭喜您升级为金卡会员" in (
        render(db, ids["zh"], "tier.changed", "email", payload).subject or ""
    )
    down = render(db, ids["en"], "tier.changed", "email", {"from": "gold", "to": "silver"})
    assert down.subject == "Your Corner Bakery tier is now Silver"
    assert "(it was Gold)" in down.body


def test_a_member_in_another_language_reads_english(db, frozen):
    ids = make_world(db)
    message = render(db, ids["ja"], "member.birthday", "email", {"year": 2026, "points": 1000})
    assert message.language == "en"
    assert message.subject == f"Happy birthday, {JA}!"
    assert "we have added 1,000 birthday points" in message.body


@pytest.mark.parametrize("kind", list(EVENT_TYPES))
def test_missing_payload_keys_are_tolerated(db, frozen, kind):
    ids = make_world(db)
    for lang in ("ko", "zh", "en"):
        for channel in templates.CHANNELS:
            message = render(db, ids[lang], kind, channel, {})
            assert message.body and "None" not in message.body


def test_the_programs_own_template_wins_in_the_members_language(db, frozen):
    ids = make_world(db)
    with db.unit_of_work() as s:
        program = s.scalars(select(Program)).one()
        templates.put_template(
            s,
            program,
            "points.earned",
            "sms",
            "ko",
            None,
            "{{ member.name }}님 +{{ points|points }}P (잔액 {{ balance|points }}P)",
            actor=CLI,
            now=T0,
        )
        templates.put_template(
            s,
            program,
            "points.earned",
            "sms",
            "en",
            None,
            "EN {{ points|points }}",
            actor=CLI,
            now=T0,
        )
    payload = real_payloads(db, ids["ko"])["points.earned"]
    with db.unit_of_work(readonly=True) as s:
        balance = s.scalars(select(Account.available).where(Account.member_id == ids["ko"])).one()
    assert render(db, ids["ko"], "points.earned", "sms", payload).body == (
        f"{KO}님 +1,250P (잔액 {balance:,}P)"
    )
    assert render(db, ids["ja"], "points.earned", "sms", payload).body == "EN 1,250"
    # Chinese has no wording of its own: the default.
    assert render(db, ids["zh"], "points.earned", "sms", payload).body.startswith(
        "【Corner Bakery】"
    )


def test_a_stored_template_that_fails_for_a_member_falls_back_to_the_default(db, frozen, caplog):
    ids = make_world(db)
    with db.unit_of_work() as s:
        program = s.scalars(select(Program)).one()
        # Written around validate (as an older version might have stored it).
        s.add(
            MessageTemplate(
                program_id=program.id,
                event_kind="points.earned",
                channel="sms",
                language="en",
                subject=None,
                body="{{ from_tier.upper() }}",
                updated_at=T0,
                updated_by="test",
            )
        )
    payload = real_payloads(db, ids["en"])["points.earned"]
    with caplog.at_level(logging.WARNING, logger="patron.notify.templates"):
        message = render(db, ids["en"], "points.earned", "sms", payload)
    assert message.body.startswith("Corner Bakery: +1,250 points")
    assert "sent the default" in caplog.text
    with pytest.raises(Invalid) as caught:
        render(db, ids["en"], "points.earned", "log", payload)
    assert caught.value.code == "unknown_channel"


# --- the service: save, reset, list, preview --------------------------------------------------


def test_put_validates_audits_and_saving_the_same_text_changes_nothing(db, frozen):
    make_world(db)
    with db.unit_of_work() as s:
        program = s.scalars(select(Program)).one()
        with pytest.raises(TemplateInvalid):
            templates.put_template(
                s, program, "points.expiring", "email", "ko", "Hi", "{{ nope }}", actor=CLI, now=T0
            )
        out = templates.put_template(
            s,
            program,
            "points.expiring",
            "email",
            "ko",
            " 제목 ",
            "본문 {{ balance }}\r\n",
            actor=CLI,
            now=T0,
        )
        assert out.custom and out.subject == "제목" and out.body == "본문 {{ balance }}\n"
        again = templates.put_template(
            s,
            program,
            "points.expiring",
            "email",
            "ko",
            "제목",
            "본문 {{ balance }}\n",
            actor=CLI,
            now=T0 + timedelta(minutes=1),
        )
        assert again.updated_at == T0
        # The default's own text saved as is stays the default.
        subject, body = templates.default_template("points.earned", "email", "zh")
        same = templates.put_template(
            s, program, "points.earned", "email", "zh", subject, body, actor=CLI, now=T0
        )
        assert not same.custom
    with db.unit_of_work(readonly=True) as s:
        audits = s.scalars(
            select(AuditRecord).where(AuditRecord.action == "notifications.template_changed")
        ).all()
        assert len(audits) == 1
        assert audits[0].subject_id == "bakery/points.expiring/email/ko"
        assert audits[0].before is not None and audits[0].before["custom"] is False
        assert audits[0].after == {
            "custom": True,
            "subject": "제목",
            "body": "본문 {{ balance }}\n",
        }
        assert s.scalars(select(MessageTemplate)).one().language == "ko"


def test_reset_goes_back_to_the_default(db, frozen):
    make_world(db)
    with db.unit_of_work() as s:
        program = s.scalars(select(Program)).one()
        templates.put_template(
            s, program, "tier.changed", "sms", "zh", None, "升级 {{ to_tier }}", actor=CLI, now=T0
        )
        listed = templates.list_templates(s, program)
        assert len(listed) == len(EVENT_TYPES) * 2 * 3
        assert [(t.kind, t.channel, t.language) for t in listed if t.custom] == [
            ("tier.changed", "sms", "zh")
        ]
        out = templates.reset_template(s, program, "tier.changed", "sms", "zh", actor=CLI, now=T0)
        assert not out.custom
        assert out.body == templates.default_template("tier.changed", "sms", "zh")[1]
        # Nothing to reset: no change, no audit.
        templates.reset_template(s, program, "tier.changed", "sms", "zh", actor=CLI, now=T0)
    with db.unit_of_work(readonly=True) as s:
        assert s.scalars(select(MessageTemplate)).all() == []
        resets = s.scalars(
            select(AuditRecord).where(AuditRecord.action == "notifications.template_reset")
        ).all()
        assert len(resets) == 1 and resets[0].before is not None
        assert resets[0].before["body"] == "升级 {{ to_tier }}"


@pytest.mark.parametrize(
    ("kind", "channel", "language", "code"),
    [
        ("points.nope", "email", "ko", "unknown_event_type"),
        ("points.earned", "fax", "ko", "unknown_channel"),
        ("points.earned", "email", "ja", "unknown_language"),
    ],
)
def test_unknown_templates_are_not_found(db, frozen, kind, channel, language, code):
    make_world(db)
    with db.unit_of_work() as s:
        program = s.scalars(select(Program)).one()
        with pytest.raises(NotFound) as caught:
            templates.get_template(s, program, kind, channel, language)
        assert caught.value.code == code
        with pytest.raises(Invalid) as bad:
            templates.preview(s, program, kind, channel, language, None, None, None, now=T0)
        assert bad.value.code == code


def test_preview_for_a_real_member_and_a_sample_one(db, frozen):
    ids = make_world(db)
    with db.unit_of_work() as s:
        program = s.scalars(select(Program)).one()
        notify_settings.save(
            s, program, notify_settings.NotifySettings(), actor=CLI, now=T0
        )  # points.expiring is marketing by default
    with db.unit_of_work(readonly=True) as s:
        program = s.scalars(select(Program)).one()
        balance = s.scalars(select(Account.available).where(Account.member_id == ids["en"])).one()
        # The member's own figures, in the language being edited (Korean), not theirs.
        real = templates.preview(
            s, program, "points.expiring", "email", "ko", None, None, ids["en"], now=T0
        )
        assert real.member_name == EN and real.member_id == ids["en"] and real.language == "ko"
        # Every lot of the day expires at the same instant: all of the balance.
        assert real.subject == (
            f"(광고) [Corner Bakery] {balance:,}포인트를 2027년 3월 2일까지 사용해 주세요"
        )
        assert f"현재 포인트: {balance:,}P" in real.body
        assert "수신거부: http" in real.body  # a marketing e-mail shows its unsubscribe link
        sample = templates.preview(
            s,
            program,
            "points.statement",
            "sms",
            "zh",
            None,
            "{{ member.name }} {{ month }}",
            None,
            now=T0,
        )
        assert sample.member_id is None and sample.body == "王芳 2027年1月"
        assert sample.characters == len(sample.body)
        # The receipt: the member's latest sale, with its amount.
        receipt = templates.preview(
            s, program, "points.earned", "sms", "en", None, None, ids["ko"], now=T0
        )
        assert receipt.body.startswith("Corner Bakery: +290 points for ₩30,000. Balance: 1,750")
        with pytest.raises(TemplateInvalid):
            templates.preview(
                s, program, "points.earned", "sms", "en", None, "{{ x }}", ids["ko"], now=T0
            )
        with pytest.raises(NotFound) as missing:
            templates.preview(s, program, "points.earned", "sms", "en", None, "hi", 10**9, now=T0)
        assert missing.value.code == "member_not_found"


def test_the_statement_preview_counts_last_month(db, frozen):
    ids = make_world(db)
    later = T0 + timedelta(days=31)  # April 2: the statement is for March
    with db.unit_of_work(readonly=True) as s:
        program = s.scalars(select(Program)).one()
        out = templates.preview(
            s, program, "points.statement", "email", "en", None, None, ids["en"], now=later
        )
    assert "Here is your points summary for March 2026." in out.body
    # 1,250 + 290 (the ₩30,000 sale paid ₩1,000 with points; refunded later, still earned)
    assert "Earned: 1,540 points" in out.body
    assert "Used: 1,000 points" in out.body


def test_variables_are_listed_for_the_help_box():
    names = [v.name for v in templates.variables()]
    assert names[:3] == ["member.name", "member.id", "member.language"]
    for name in (
        "program.name",
        "points",
        "balance",
        "pending",
        "expiring_points",
        "expiring_date",
        "tier",
        "from_tier",
        "to_tier",
        "order",
        "store",
        "reason",
        "month",
        "unsubscribe_url",
        "portal_url",
    ):
        assert name in names
    # Every variable is in the sample context a template is checked against.
    context = templates.sample_context("en")
    for name in names:
        head, _, tail = name.partition(".")
        assert head in context and (not tail or tail in context[head]), name
