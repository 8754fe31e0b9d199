"""Reward and coupon messages from real redemptions: every new event in ko, zh and en on both
channels with the member's own figures, the shipped wording passing `validate`, the settings'
defaults (a campaign coupon is marketing and needs consent, a redemption does not), the admin
preview for a real member, and a webhook endpoint subscribed to reward.redeemed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from patron.config import Settings, get_settings
from patron.db.engine import Database
from patron.delivery import dispatch
from patron.delivery.worker import DeliveryLoop
from patron.events.models import Delivery, DomainEvent
from patron.ledger.models import Account
from patron.members.models import Member
from patron.notify import templates
from patron.notify.models import NotificationConfig
from patron.notify.settings import NotifySettings, load
from patron.notify.templates import Rendered
from patron.programs.models import Program
from patron.rewards.jobs import expire_coupons
from tests.conftest import T0
from tests.factories import make_member
from tests.ledger._helpers import adjust
from tests.rewards import conftest as rewards_fixtures
from tests.rewards.conftest import AMERICANO, FIVE_OFF, add, redeem
from tests.support.http_receiver import Receiver

bakery = rewards_fixtures.bakery
admin = rewards_fixtures.admin
pos = rewards_fixtures.pos

NEW_KINDS = (
    "reward.redeemed",
    "coupon.issued",
    "coupon.used",
    "coupon.cancelled",
    "coupon.expired",
)
# Refunds its points when it expires unused (the americano forfeits them).
MUFFIN: dict[str, Any] = {
    "code": "muffin",
    "kind": "goods",
    "names": {"ko": "블루베리 머핀", "zh": "蓝莓松饼", "en": "Blueberry muffin"},
    "points_cost": 800,
    "value": "3000",
    "valid_days": 7,
    "on_expiry": "refund",
}
PEOPLE = {"ko": "김민지", "zh": "王芳", "en": "Alex Morgan"}
_phones = iter(range(1000, 10_000))
AMERICANO_NAME = AMERICANO["names"]
FIVE_OFF_NAME = FIVE_OFF["names"]
MUFFIN_NAME = MUFFIN["names"]
# T0 is noon on 2 March 2026 in Seoul: a 30-day coupon is good through 1 April, a 7-day one
# through 9 March; the unused ones expire when the job runs a month later.
APRIL_1 = {"ko": "2026년 4월 1일", "zh": "2026年4月1日", "en": "Apr 1, 2026"}
MARCH_9 = {"ko": "2026년 3월 9일", "zh": "2026年3月9日", "en": "Mar 9, 2026"}
USED_AT = {
    "ko": "2026년 3월 2일 오후 12:00",
    "zh": "2026年3月2日 12:00",
    "en": "Mar 2, 2026, 12:00",
}
LATER = T0 + timedelta(days=31)


def use(client, pos, code: str, **basket: Any) -> dict[str, Any]:
    r = client.post(f"/api/v1/programs/bakery/coupons/{code}/use", json=basket, headers=pos)
    assert r.status_code == 200, r.text
    return r.json()


def cancel(client, admin, code: str) -> dict[str, Any]:
    r = client.post(
        f"/api/v1/programs/bakery/coupons/{code}/cancel",
        json={"reason": "changed their mind"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    return r.json()


def issue(client, admin, reward: str, members: list[int], campaign: str) -> list[dict[str, Any]]:
    r = client.post(
        f"/api/v1/programs/bakery/rewards/{reward}/issue",
        json={"members": members, "campaign": campaign},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    coupons: list[dict[str, Any]] = r.json()["coupons"]
    return coupons


def new_member(db: Database, lang: str, *, consent: bool = True) -> int:
    """A member of the bakery in `lang` with an e-mail, a phone and 10,000 points."""
    n = next(_phones)
    with db.unit_of_work() as s:
        program = s.scalars(select(Program).where(Program.code == "bakery")).one()
        member = make_member(
            s,
            now=T0,
            program=program,
            name=PEOPLE[lang],
            phone=f"010-{n}-0000",
            email=f"{lang}-{n}@example.com",
            language=lang,
            marketing_consent=consent,
        )
        adjust(s, program, member.id, 10_000, now=T0)
        return member.id


@pytest.fixture
def world(db, frozen, client, admin, pos, bakery) -> dict[str, dict[str, Any]]:
    """A member per language with 10,000 points who, through the API, redeems an americano
    (kept, unused), 5,000 KRW off (used on a ₩32,000 order at Mapo), a second americano
    (cancelled) and a muffin (kept, unused), and is given an americano by a campaign. A month
    later the coupon job expires the unused ones."""
    for reward in (AMERICANO, FIVE_OFF, MUFFIN):
        add(client, admin, reward)
    world: dict[str, dict[str, Any]] = {}
    for lang in PEOPLE:
        member = new_member(db, lang)
        kept = redeem(client, pos, "americano", member, store="mapo")
        assert kept["points"] == 1500
        five = redeem(client, pos, "five-off", member)["coupons"][0]["code"]
        use(client, pos, five, amount="32000", store="mapo", order=f"MAPO-{lang}-7")
        again = redeem(client, pos, "americano", member)["coupons"][0]["code"]
        assert cancel(client, admin, again)["points_returned"] == 1500
        muffin = redeem(client, pos, "muffin", member)["coupons"][0]["code"]
        world[lang] = {
            "member": member,
            "kept": kept["coupons"][0]["code"],
            "five": five,
            "cancelled": again,
            "muffin": muffin,
        }
    given = issue(client, admin, "americano", [w["member"] for w in world.values()], "spring")
    for coupon in given:
        lang = next(k for k, w in world.items() if w["member"] == coupon["member_id"])
        world[lang]["gift"] = coupon["code"]
    report = expire_coupons(db, LATER)
    assert report.coupons == 3 * 3 and report.refunded == 3  # the muffins give points back
    return world


class Event(NamedTuple):
    kind: str
    payload: dict[str, Any]
    at: datetime


def events(db: Database, member_id: int) -> list[Event]:
    """The member's reward and coupon events in the outbox, oldest first."""
    with db.unit_of_work(readonly=True) as s:
        rows = s.execute(
            select(DomainEvent.kind, DomainEvent.payload, DomainEvent.at)
            .where(DomainEvent.member_id == member_id, DomainEvent.kind.in_(NEW_KINDS))
            .order_by(DomainEvent.id)
        )
        return [Event(*row) for row in rows]


def render(db: Database, member_id: int, event: Event, channel: str) -> Rendered:
    with db.unit_of_work(readonly=True) as s:
        program = s.scalars(select(Program).where(Program.code == "bakery")).one()
        member = s.get(Member, member_id)
        assert member is not None
        return templates.render_for_member(
            s, program, member, event.kind, channel, event.payload, now=event.at
        )


def balance(db: Database, member_id: int) -> str:
    with db.unit_of_work(readonly=True) as s:
        return (
            f"{s.scalars(select(Account.available).where(Account.member_id == member_id)).one():,}"
        )


def find(found: list[Event], kind: str, code: str) -> Event:
    """The event of `kind` about the coupon shown as `code`."""
    for event in found:
        shown = [event.payload.get("coupon"), *event.payload.get("coupons", [])]
        if event.kind == kind and code in shown:
            return event
    raise AssertionError(f"no {kind} for {code}")


# --- every new event, in every language and on both channels ------------------------------


def test_every_reward_event_renders_for_real_members_in_their_language(db, world):
    for lang, mine in world.items():
        found = events(db, mine["member"])
        assert sorted(e.kind for e in found) == sorted(
            ["reward.redeemed"] * 4
            + ["coupon.used", "coupon.cancelled", "coupon.issued"]
            + ["coupon.expired"] * 3
        )
        for event in found:
            names = {"americano": AMERICANO_NAME, "five-off": FIVE_OFF_NAME, "muffin": MUFFIN_NAME}
            reward = names[event.payload["reward"]][lang]
            code = event.payload.get("coupon") or event.payload["coupons"][0]
            for channel in templates.CHANNELS:
                message = render(db, mine["member"], event, channel)
                shown = f"{message.subject or ''}\n{message.body}"
                where = (lang, event.kind, channel)
                assert message.language == lang
                assert "None" not in shown and "{{" not in shown and "{%" not in shown, shown
                assert "Corner Bakery" in shown, where
                assert reward in shown and code in shown, (where, shown)
                if channel == "email":
                    assert message.subject and "\n" not in message.subject
                    assert PEOPLE[lang] in message.body, where
                else:
                    assert message.subject is None and len(message.body) <= templates.SMS_MAX


@pytest.mark.parametrize("lang", ["ko", "zh", "en"])
def test_the_redemption_says_what_was_redeemed_for_how_many_points_and_until_when(db, world, lang):
    mine = world[lang]
    event = find(events(db, mine["member"]), "reward.redeemed", mine["kept"])
    assert event.payload["points"] == 1500 and event.payload["store"] == "mapo"
    email = render(db, mine["member"], event, "email")
    sms = render(db, mine["member"], event, "sms")
    code, left, name = mine["kept"], balance(db, mine["member"]), AMERICANO_NAME[lang]
    if lang == "en":
        assert email.subject == "You redeemed Free americano for 1,500 points"
        assert "You redeemed Free americano for 1,500 points at Mapo." in email.body
        assert f"Your code: {code}\nValid until: Apr 1, 2026\n" in email.body
        assert "Show the code at the till.\n\nYour balance:" in email.body
        assert sms.body == (
            f"Corner Bakery: You redeemed Free americano for 1,500 points. Show code {code} at "
            f"the till, valid until Apr 1, 2026. Balance: {left} points."
        )
    elif lang == "ko":
        assert email.subject == "[Corner Bakery] 아메리카노 무료 교환이 완료되었습니다"
        assert "교환 매장: Mapo\n사용 포인트: 1,500P\n" in email.body
        assert f"쿠폰 번호: {code}\n사용 기한: 2026년 4월 1일까지\n" in email.body
        assert sms.body == (
            f"[Corner Bakery] {name} 교환 완료(1,500P 사용). 쿠폰번호 {code}, 2026년 4월 1일까지 "
            f"사용 가능. 주문 시 보여 주세요. 남은 포인트 {left}P"
        )
    else:
        assert email.subject == "您已成功兑换免费美式咖啡"
        assert "您已使用 1,500 积分成功兑换免费美式咖啡。\n兑换门店：Mapo\n" in email.body
        assert f"券码：{code}\n有效期至：2026年4月1日\n请在收银台出示券码使用。" in email.body
        assert sms.body == (
            f"【Corner Bakery】您已用1,500积分兑换{name}。券码{code}，有效期至2026年4月1日，"
            f"请在收银台出示。剩余积分{left}。"
        )
    assert f"{left}" in email.body


@pytest.mark.parametrize("lang", ["ko", "zh", "en"])
def test_the_coupon_receipt_the_cancellation_and_the_expiries(db, world, lang):
    mine = world[lang]
    found = events(db, mine["member"])
    member = mine["member"]

    used = render(db, member, find(found, "coupon.used", mine["five"]), "email")
    saved = {"ko": "할인 금액: ₩5,000", "zh": "优惠金额：₩5,000", "en": "You saved: ₩5,000"}
    receipt = {
        "ko": "영수증 번호: MAPO-ko-7",
        "zh": "小票号：MAPO-zh-7",
        "en": "Receipt: MAPO-en-7",
    }
    assert saved[lang] in used.body and receipt[lang] in used.body
    assert USED_AT[lang] in used.body and "Mapo" in used.body

    back = render(db, member, find(found, "coupon.cancelled", mine["cancelled"]), "sms")
    returned = {
        "ko": "1,500P를 돌려 드렸습니다",
        "zh": "1,500积分已退回",
        "en": "1,500 points returned",
    }
    assert returned[lang] in back.body

    # The muffin refunds on expiry; the americano (bought or given) forfeits.
    muffin = render(db, member, find(found, "coupon.expired", mine["muffin"]), "email")
    assert MUFFIN_NAME[lang] in (muffin.subject or "") and MARCH_9[lang] in muffin.body
    refunded = {
        "ko": "쿠폰 교환에 사용하신 800포인트를 돌려 드렸습니다.",
        "zh": "兑换时使用的 800 积分已退回您的账户。",
        "en": "The 800 points you spent on it have been returned to your account.",
    }
    assert refunded[lang] in muffin.body
    for code in (mine["kept"], mine["gift"]):
        lost = render(db, member, find(found, "coupon.expired", code), "email")
        assert APRIL_1[lang] in lost.body and code in lost.body
        assert "800" not in lost.body and "1,500" not in lost.body
        assert refunded[lang].split("800")[0] not in lost.body

    gift = render(db, member, find(found, "coupon.issued", mine["gift"]), "email")
    assert APRIL_1[lang] in gift.body
    if lang == "ko":  # a campaign coupon is marketing: a Korean ad says so first
        assert gift.subject == "(광고) [Corner Bakery] 김민지님께 아메리카노 무료 쿠폰을 드립니다"


def test_a_reward_fulfilled_elsewhere_has_no_code_to_show(db, frozen, client, admin, pos, bakery):
    add(client, admin, {**AMERICANO, "code": "miles", "kind": "external", "stock": None})
    member = new_member(db, "en")
    out = redeem(client, pos, "miles", member, quantity=2)
    assert out["coupons"] == []
    [event] = events(db, member)
    email = render(db, member, event, "email")
    assert email.subject == "You redeemed 2 × Free americano for 3,000 points"
    assert "we will take care of the rest" in email.body and "code" not in email.body
    sms = render(db, member, event, "sms")
    assert "2 x Free americano for 3,000 points." in sms.body and "code" not in sms.body


def test_several_units_list_every_code(db, frozen, client, admin, pos, bakery):
    add(client, admin, AMERICANO)
    member = new_member(db, "ko")
    out = redeem(client, pos, "americano", member, quantity=2)
    codes = [c["code"] for c in out["coupons"]]
    [event] = events(db, member)
    sms = render(db, member, event, "sms")
    assert "아메리카노 무료 2개 교환 완료(3,000P 사용)" in sms.body
    assert f"쿠폰번호 {codes[0]}, {codes[1]}," in sms.body


# --- the shipped wording and the settings ---------------------------------------------------


@pytest.mark.parametrize("kind", NEW_KINDS)
@pytest.mark.parametrize("lang", ["ko", "zh", "en"])
def test_the_shipped_templates_pass_validation(kind, lang):
    for channel in templates.CHANNELS:
        subject, body = templates.default_template(kind, channel, lang)
        assert body and (subject is not None) == (channel == "email")
        templates.validate(subject, body, channel, kind=kind)


def test_the_defaults_and_settings_stored_before_the_reward_events(db, frozen, bakery):
    defaults = NotifySettings()
    got = {k: (defaults.event(k).enabled, defaults.event(k).purpose) for k in NEW_KINDS}
    assert got == {
        "reward.redeemed": (True, "transactional"),
        "coupon.issued": (True, "marketing"),
        "coupon.used": (False, "transactional"),
        "coupon.cancelled": (True, "transactional"),
        "coupon.expired": (False, "transactional"),
    }
    assert defaults.event("reward.redeemed").channels == ["email", "sms"]
    # A program that saved its settings before these events existed keeps its own choices and
    # gets the defaults for the new ones.
    stored = defaults.model_dump(mode="json")
    for kind in NEW_KINDS:
        del stored["events"][kind]
    stored["events"]["points.earned"]["enabled"] = True
    with db.unit_of_work() as s:
        program = s.scalars(select(Program).where(Program.code == "bakery")).one()
        s.add(NotificationConfig(program_id=program.id, config=stored, updated_at=frozen))
    with db.unit_of_work(readonly=True) as s:
        loaded = load(s, program.id)
    assert loaded.event("points.earned").enabled is True
    assert loaded.event("reward.redeemed").enabled is True
    assert loaded.event("coupon.issued").purpose == "marketing"


# --- dispatch: consent, and the webhook -----------------------------------------------------


@pytest.fixture
def delivery_settings(tmp_path: Path) -> Settings:
    return Settings(
        webhook_allow_private=True,
        email_channel="log",
        sms_channel="log",
        message_log=str(tmp_path / "messages.log"),
        webhook_timeout_seconds=3,
    )


def deliveries(db: Database, member_id: int, kind: str) -> list[dict[str, Any]]:
    """The member's messages about `kind` (not the webhook calls)."""
    columns = ("status", "skip_reason", "purpose", "channel", "subject", "body")
    with db.unit_of_work(readonly=True) as s:
        rows = s.execute(
            select(*(getattr(Delivery, c) for c in columns)).where(
                Delivery.member_id == member_id,
                Delivery.event_kind == kind,
                Delivery.channel != "webhook",
            )
        )
        return [dict(zip(columns, row, strict=True)) for row in rows]


def test_a_campaign_coupon_needs_consent_and_a_redemption_does_not(
    db, frozen, client, admin, pos, bakery, delivery_settings
):
    add(client, admin, AMERICANO)
    without = new_member(db, "ko", consent=False)
    agreed = new_member(db, "ko", consent=True)
    bought = redeem(client, pos, "americano", without)["coupons"][0]["code"]
    use(client, pos, bought, amount="4500", store="mapo", order="MAPO-1")
    issue(client, admin, "americano", [without, agreed], "spring")
    dispatch.dispatch_pending(db, now=frozen, settings=delivery_settings)

    [redeemed] = deliveries(db, without, "reward.redeemed")
    assert redeemed["status"] == "pending" and redeemed["purpose"] == "transactional"
    assert redeemed["channel"] == "email"
    assert redeemed["subject"] == "[Corner Bakery] 아메리카노 무료 교환이 완료되었습니다"
    assert bought in redeemed["body"] and "수신거부" not in redeemed["body"]
    # Withheld without consent, on either channel; sent with it, as an ad with its link.
    [refused] = deliveries(db, without, "coupon.issued")
    assert refused["status"] == "skipped" and refused["skip_reason"] == "no_consent"
    assert refused["purpose"] == "marketing"
    [gift] = deliveries(db, agreed, "coupon.issued")
    assert gift["status"] == "pending" and gift["purpose"] == "marketing"
    assert gift["subject"].startswith("(광고) [Corner Bakery]")
    assert f"수신거부: {get_settings().public_url.rstrip('/')}/u/" in gift["body"]
    # The receipt at the till is off unless the program switches it on.
    assert deliveries(db, without, "coupon.used") == []


@pytest.fixture
def allow_private(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PATRON_WEBHOOK_ALLOW_PRIVATE", "true")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_an_endpoint_subscribed_to_reward_redeemed_receives_it_signed(
    db,
    frozen,
    client,
    admin,
    pos,
    bakery,
    allow_private,
    http_receiver: Receiver,
    delivery_settings,
):
    made = client.post(
        "/api/v1/programs/bakery/webhooks",
        json={"url": http_receiver.url + "/hooks", "event_types": ["reward.redeemed"]},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    add(client, admin, AMERICANO)
    member = new_member(db, "zh")
    out = redeem(client, pos, "americano", member, store="gangnam")
    code = out["coupons"][0]["code"]
    use(client, pos, code, amount="4500", store="gangnam", order="GN-1")  # not subscribed
    DeliveryLoop(db, settings=delivery_settings, jobs=False).drain()

    [request] = http_receiver.requests
    body = json.loads(request.body)
    assert body["type"] == "reward.redeemed" and body["program"] == "bakery"
    assert body["data"] == {
        "program": "bakery",
        "member_id": member,
        "redemption_id": out["id"],
        "reward": "americano",
        "reward_kind": "goods",
        "quantity": 1,
        "points": 1500,
        "entry_id": out["entry_id"],
        "coupons": [code],
        "expires_at": out["coupons"][0]["expires_at"].replace("Z", "+00:00"),
        "fulfilment": "coupon",
        "store": "gangnam",
        "channel": "pos",
    }
    headers = {k.lower(): v for k, v in request.headers.items()}
    sent_at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=UTC)
    expected = Webhook(secret).sign(headers["webhook-id"], sent_at, request.text())
    assert expected in headers["webhook-signature"].split(" ")
    # The member got the redemption by e-mail as well, in Chinese.
    [message] = deliveries(db, member, "reward.redeemed")
    assert message["status"] == "delivered" and message["subject"] == "您已成功兑换免费美式咖啡"


# --- the admin preview for a real member ----------------------------------------------------


def test_the_preview_for_a_real_member_shows_their_latest_coupon(db, world):
    mine = world["en"]
    with db.unit_of_work(readonly=True) as s:
        program = s.scalars(select(Program).where(Program.code == "bakery")).one()
        latest = templates.preview(
            s, program, "coupon.issued", "sms", "en", None, None, mine["member"], now=LATER
        )
        other = templates.preview(
            s, program, "reward.redeemed", "email", "zh", None, None, mine["member"], now=LATER
        )
    assert mine["gift"] in latest.body and "Free americano" in latest.body
    assert mine["gift"] in other.body and "免费美式咖啡" in other.body


def test_the_preview_without_coupons_uses_the_programs_first_reward(
    db, frozen, client, admin, bakery
):
    add(client, admin, MUFFIN)
    with db.unit_of_work(readonly=True) as s:
        program = s.scalars(select(Program).where(Program.code == "bakery")).one()
        shown = templates.preview(
            s, program, "coupon.used", "email", "ko", None, None, bakery["rich"], now=frozen
        )
    assert shown.subject == "[Corner Bakery] 블루베리 머핀 쿠폰을 사용하셨습니다"
    assert "할인 금액: ₩5,000" in shown.body
