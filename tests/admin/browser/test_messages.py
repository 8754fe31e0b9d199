"""Messages and the delivery log in a real browser: the Korean expiry e-mail edited with a live
preview for a real member, a broken template refused at its field, the expiry reminder switched
on, a dead webhook delivery found and replayed, a phone's width, and the pages in Korean."""

from __future__ import annotations

import re
import socket
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from patron.admin import service as staff_users
from patron.audit.models import AuditRecord
from patron.audit.service import SYSTEM
from patron.config import Settings
from patron.delivery.worker import DeliveryLoop
from patron.events.models import Delivery
from patron.ledger.models import Account, Lot
from patron.members.schemas import MemberRef
from patron.notify import settings as notify_settings
from patron.notify.models import MessageTemplate
from patron.programs.service import get_program
from patron.sales import purchases
from patron.sales.schemas import AdjustRequest, PurchaseRequest
from patron.webhooks import service as webhooks
from tests.admin.helpers import STAFF
from tests.conftest import T0
from tests.factories import make_member

pytestmark = pytest.mark.browser

MARKETER = STAFF["marketer"][0]
SUPPORT = STAFF["support"][0]
PHONE = {"width": 390, "height": 844}
CARD = "BKR200000"
MESSAGE = re.compile(r"^Message")  # the body field (its label ends with a * for required)
# 350 days before T0: 480 points that expire 12 months after the sale, about two weeks after T0.
SALE_DAYS, SALE_AMOUNT, SALE_POINTS = 350, 48000, 480
KO_SUBJECT = "[{{ program.name }}] {{ member.name }}님, 포인트 소멸 안내"
KO_BODY = (
    "{{ member.name }}님, {{ expiring_points|points }}포인트가 {{ expiring_date|date }}에 "
    "마지막으로 사용할 수 있습니다.\n잔액: {{ balance|points }}P"
)


# --- setup through the services ---------------------------------------------------------------


def add_member_with_expiring_points(db) -> int:
    """이서연 (card BKR200000, Korean), whose only points expire in about two weeks."""
    at = T0 - timedelta(days=SALE_DAYS)
    with db.unit_of_work() as s:
        program = get_program(s, "bakery")
        member = make_member(
            s,
            now=at,
            program=program,
            name="이서연",
            phone="010-2222-3333",
            email="seoyeon@example.com",
            card=CARD,
            language="ko",
        )
        purchases.purchase(
            s,
            program,
            PurchaseRequest(
                external_id="MAPO-9001",
                member=MemberRef(id=member.id),
                amount=Decimal(SALE_AMOUNT),
                store="mapo",
                occurred_at=at,
            ),
            actor=SYSTEM,
            now=at,
        )
        return member.id


def expiring_figures(db, member_id: int) -> tuple[int, int, str]:
    """The member's balance, their soonest expiring points and the last day to use them (as
    Korean writes it), read from the ledger itself."""
    with db.unit_of_work(readonly=True) as s:
        account = s.scalars(select(Account).where(Account.member_id == member_id)).one()
        lots = list(
            s.scalars(
                select(Lot)
                .where(Lot.account_id == account.id, Lot.remaining > 0)
                .order_by(Lot.expires_at)
            )
        )
        first = lots[0].expires_at
        soonest = sum(lot.remaining for lot in lots if lot.expires_at == first)
        last = (first - timedelta(microseconds=1)).astimezone(ZoneInfo("Asia/Seoul"))
        return account.available, soonest, f"{last.year}년 {last.month}월 {last.day}일"


def stored_templates(db) -> list[tuple[str, str, str, str | None, str]]:
    with db.unit_of_work(readonly=True) as s:
        return [
            (t.event_kind, t.channel, t.language, t.subject, t.body)
            for t in s.scalars(select(MessageTemplate))
        ]


def closed_port() -> int:
    """A loopback port nothing listens on: a connection to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dead_webhook_delivery(db, member_id: int, tmp_path: Path) -> int:
    """A CRM webhook at a closed port, a points adjustment for the member, and one round of the
    delivery runner with a single try allowed: the webhook call is a dead letter."""
    with db.unit_of_work() as s:
        program = get_program(s, "bakery")
        endpoint, _secret = webhooks.create_endpoint(
            s,
            program,
            f"http://127.0.0.1:{closed_port()}/hooks",
            "CRM",
            ["points.adjusted"],
            actor=SYSTEM,
            now=T0,
            allow_private=True,
        )
        endpoint_id = endpoint.id
        purchases.adjust(
            s,
            program,
            AdjustRequest(member=MemberRef(id=member_id), points=300, reason="Goodwill"),
            actor=SYSTEM,
            now=T0,
        )
    settings = Settings(
        webhook_allow_private=True,
        webhook_timeout_seconds=3,
        delivery_max_attempts=1,
        email_channel="log",
        sms_channel="log",
        message_log=str(tmp_path / "messages.log"),
    )
    loop = DeliveryLoop(db, settings=settings, jobs=False)
    try:
        loop.drain()
    finally:
        loop.pool.shutdown(wait=True)
    with db.unit_of_work(readonly=True) as s:
        [dead] = s.scalars(select(Delivery).where(Delivery.endpoint_id == endpoint_id)).all()
        assert (dead.status, dead.attempts) == ("dead", 1), dead.last_error
        return dead.id


def delivery_status(db, delivery_id: int) -> str:
    with db.unit_of_work(readonly=True) as s:
        row = s.get(Delivery, delivery_id)
        assert row is not None
        return row.status


def set_staff_language(db, email: str, language: str) -> None:
    with db.unit_of_work() as s:
        user = staff_users.find_user(s, email)
        staff_users.set_language(s, user, language, now=T0)


# For the failure message: what sticks out (a scrolling table's own cells do not count).
WIDER_THAN_THE_SCREEN = """() => [...document.querySelectorAll("body *")]
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
  .filter(e => getComputedStyle(e).position !== "static"
    || !e.parentElement.closest(".table-wrap"))
  .slice(0, 8).map(e => `${e.tagName.toLowerCase()}.${e.className}`)"""


def no_horizontal_overflow(page) -> None:
    page.wait_for_load_state("load")  # measured with the style sheets applied
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], (
        f"{page.url}: the page is {width} px wide on a 390 px phone; too wide: "
        f"{page.evaluate(WIDER_THAN_THE_SCREEN)}"
    )


# --- the template editor ----------------------------------------------------------------------


def test_a_marketer_edits_the_korean_expiry_email_with_a_live_preview_and_saves_it(
    page, db, staff, seeded, sign_in_as, shot
):
    member_id = add_member_with_expiring_points(db)
    balance, expiring, last_day = expiring_figures(db, member_id)
    assert balance == expiring == SALE_POINTS

    sign_in_as("marketer")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Messages").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Messages")
    expiring_row = page.get_by_role("row", name=re.compile("Points about to expire"))
    shot(page, "messages-home")
    expiring_row.get_by_role("link", name="E-mail").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Points about to expire")
    page.get_by_role("navigation", name="Languages").get_by_role("link", name="한국어").click()
    expect(page).to_have_url(re.compile(r"/messages/templates/points\.expiring/email/ko\b"))
    expect(page.get_by_role("heading", name="Template in Korean")).to_be_visible()
    expect(page.locator(".editor .badge")).to_have_text("Default")

    # The preview follows what is typed: first the member, by card number ...
    preview = page.locator("#preview-body")
    expect(preview).to_contain_text("sample member")
    page.get_by_label("Preview for").fill(CARD)
    expect(preview.locator(".preview-name")).to_have_text("이서연")
    expect(preview).to_contain_text(f"#{member_id}")
    expect(preview).not_to_contain_text("sample member")
    # ... then the wording, filled in with her own figures from the ledger.
    page.get_by_label("Subject").fill(KO_SUBJECT)
    page.get_by_label(MESSAGE).fill(KO_BODY)
    expect(preview.locator(".preview-subject")).to_contain_text(
        "[Corner Bakery] 이서연님, 포인트 소멸 안내"
    )
    expect(preview.locator(".message-body")).to_contain_text(
        f"이서연님, {expiring:,}포인트가 {last_day}에 마지막으로 사용할 수 있습니다."
    )
    expect(preview.locator(".message-body")).to_contain_text(f"잔액: {balance:,}P")
    assert stored_templates(db) == []  # a preview writes nothing
    shot(page, "messages-editor")

    page.get_by_role("button", name="Save template").click()
    expect(page.get_by_role("status")).to_have_text(
        "Template saved. Members get this wording from now on."
    )
    expect(page.locator(".editor .badge")).to_have_text("Edited")
    expect(page.get_by_role("button", name="Reset to default")).to_be_visible()
    expect(page.get_by_label(MESSAGE)).to_have_value(KO_BODY)
    saved = ("points.expiring", "email", "ko", KO_SUBJECT, KO_BODY)
    assert stored_templates(db) == [saved]
    expect(page.locator(".changes-list")).to_contain_text("Message template changed")
    expect(page.locator(".changes-list")).to_contain_text(MARKETER)

    # A Jinja syntax error: the preview says so while typing, and Save refuses it at the field.
    # The save reloaded the page: typing only previews once htmx (a deferred script) is listening.
    page.wait_for_load_state("load")
    body = page.get_by_label(MESSAGE)
    body.fill("{{ member.name }님,\n포인트가 곧 소멸됩니다.")
    expect(preview).to_contain_text("No preview: the template has a problem.")
    expect(preview).to_contain_text("Line 1: the template cannot be read")
    page.get_by_role("button", name="Save template").click()
    error = page.locator("#f-body-error")
    expect(error).to_contain_text("Line 1: the template cannot be read")
    body = page.get_by_label(MESSAGE)
    expect(body).to_have_attribute("aria-invalid", "true")
    expect(body).to_have_attribute("aria-describedby", "f-body-error")
    expect(body).to_be_focused()
    expect(body).to_have_value("{{ member.name }님,\n포인트가 곧 소멸됩니다.")  # kept to fix
    expect(page.get_by_role("status")).to_have_count(0)
    assert stored_templates(db) == [saved]  # nothing saved
    shot(page, "messages-editor-error")
    # Opened again, the editor has the saved wording.
    page.get_by_role("navigation", name="Languages").get_by_role("link", name="한국어").click()
    expect(page.get_by_label(MESSAGE)).to_have_value(KO_BODY)
    expect(page.locator(".editor .badge")).to_have_text("Edited")


# --- the notification settings ----------------------------------------------------------------


def test_the_marketer_switches_on_the_expiry_reminder_30_days_before(
    page, db, staff, seeded, sign_in_as
):
    with db.unit_of_work() as s:
        program = get_program(s, "bakery")
        off = notify_settings.NotifySettings.model_validate(
            {
                "events": {"points.expiring": {"enabled": False, "purpose": "marketing"}},
                "expiring_days_before": 7,
            }
        )
        notify_settings.save(s, program, off, actor=SYSTEM, now=T0)

    sign_in_as("marketer")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Messages").click()
    row = page.get_by_role("row", name=re.compile("Points about to expire"))
    switch = row.get_by_label("Send a message")
    days = page.get_by_label("Expiry reminder, days before")
    expect(switch).not_to_be_checked()
    expect(days).to_have_value("7")
    switch.check()
    days.fill("30")
    page.get_by_role("button", name="Save settings").click()

    expect(page.get_by_role("status")).to_have_text("Notification settings saved.")
    expect(page).to_have_url(re.compile(r"done=saved#settings$"))
    page.reload()
    row = page.get_by_role("row", name=re.compile("Points about to expire"))
    expect(row.get_by_label("Send a message")).to_be_checked()
    expect(page.get_by_label("Expiry reminder, days before")).to_have_value("30")
    # Only what was changed changed.
    birthday = page.get_by_role("row", name=re.compile("Birthday"))
    expect(birthday.get_by_label("Send a message")).to_be_checked()
    with db.unit_of_work(readonly=True) as s:
        saved = notify_settings.load(s, get_program(s, "bakery").id)
        audits = list(
            s.scalars(
                select(AuditRecord.actor)
                .where(AuditRecord.action == "notifications.settings_changed")
                .order_by(AuditRecord.id)
            )
        )
    assert saved.event("points.expiring").enabled and saved.expiring_days_before == 30
    assert saved.event("points.expiring").purpose == "marketing"
    assert len(audits) == 2 and audits[-1].startswith("user:")
    expect(page.locator(".changes-list li").first).to_contain_text(MARKETER)


# --- the delivery log -------------------------------------------------------------------------


def test_support_finds_the_dead_webhook_call_and_sends_it_again(
    page, db, staff, seeded, sign_in_as, shot, tmp_path
):
    dead_id = dead_webhook_delivery(db, seeded.member_id, tmp_path)

    sign_in_as("support")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Messages").click()
    page.get_by_role("link", name="Delivery log").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Delivery log")
    rows = page.locator("table.deliveries-table tbody tr")
    expect(rows.first).to_be_visible()
    assert rows.count() > 1  # the member's e-mails went out too

    page.wait_for_load_state("load")  # its change handler is a deferred script
    page.get_by_label("Status").select_option(label="Failed")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"status=dead"))
    expect(page.get_by_label("Status")).to_have_value("dead")
    expect(rows).to_have_count(1)
    row = rows.first
    expect(row).to_contain_text("points.adjusted")
    expect(row).to_contain_text("Webhook")
    expect(row).to_contain_text("/hooks")
    expect(row.locator(".badge")).to_have_text("Failed")
    expect(row.locator(".error-text")).not_to_be_empty()
    row.get_by_text("Tries").click()
    expect(row.locator(".attempts li")).to_have_count(1)
    shot(page, "deliveries")

    row.get_by_role("button", name="Send again").click()
    expect(page.get_by_role("status")).to_have_text("Queued to be sent again.")
    # Back on the same filtered list: it is no longer a failure.
    expect(page).to_have_url(re.compile(r"status=dead.*done=replayed"))
    expect(rows.locator("td.empty")).to_have_count(1)
    assert delivery_status(db, dead_id) == "pending"

    page.wait_for_load_state("load")  # its change handler is a deferred script
    page.get_by_label("Status").select_option(label="Waiting")
    page.get_by_role("button", name="Show").click()
    expect(rows).to_have_count(1)
    row = rows.first
    expect(row.locator(".badge")).to_have_text("Waiting")
    expect(row).to_contain_text("Webhook")
    # Its earlier try stays in its log; waiting, it can be cancelled, not replayed.
    row.get_by_text("Tries").click()
    expect(row.locator(".attempts li")).to_have_count(1)
    expect(row.get_by_role("button", name="Cancel")).to_be_visible()
    expect(row.get_by_role("button", name="Send again")).to_have_count(0)
    with db.unit_of_work(readonly=True) as s:
        [actor] = s.scalars(
            select(AuditRecord.actor).where(
                AuditRecord.action == "deliveries.replayed",
                AuditRecord.subject_id == str(dead_id),
            )
        ).all()
    assert actor.startswith("user:")


def test_a_viewer_sees_the_log_without_replay_buttons(
    page, db, staff, seeded, sign_in_as, tmp_path
):
    dead_webhook_delivery(db, seeded.member_id, tmp_path)
    sign_in_as("viewer")
    page.goto("/admin/deliveries?status=dead")
    expect(page.locator("table.deliveries-table tbody tr")).to_have_count(1)
    expect(page.get_by_role("button", name="Send again")).to_have_count(0)
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)


# --- a phone ----------------------------------------------------------------------------------


def test_on_a_phone_messages_and_the_delivery_log_fit_and_the_navigation_works(
    page, db, staff, seeded, sign_in_as, shot, tmp_path
):
    dead_webhook_delivery(db, seeded.member_id, tmp_path)
    page.set_viewport_size(PHONE)
    sign_in_as("marketer")
    nav = page.get_by_role("navigation", name="Sections")
    messages = nav.get_by_role("link", name="Messages")
    # The sections strip scrolls sideways in its own box on a phone: Messages can be reached.
    messages.scroll_into_view_if_needed()
    expect(messages).to_be_in_viewport()
    no_horizontal_overflow(page)
    messages.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Messages")
    expect(nav.get_by_role("link", name="Messages")).to_have_attribute("aria-current", "page")
    no_horizontal_overflow(page)
    # Each event is a block: its switch and its template links are on screen, not off to the side.
    row = page.get_by_role("row", name=re.compile("Points about to expire"))
    row.scroll_into_view_if_needed()
    expect(row.get_by_label("Send a message")).to_be_in_viewport()
    expect(row.get_by_role("link", name="SMS")).to_be_in_viewport()
    save = page.get_by_role("button", name="Save settings")
    save.scroll_into_view_if_needed()
    expect(save).to_be_in_viewport()
    shot(page, "messages-phone", full_page=False)

    row.get_by_role("link", name="E-mail").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Points about to expire")
    no_horizontal_overflow(page)
    page.locator(".crumbs").get_by_role("link", name="Messages").click()

    page.get_by_role("link", name="Delivery log").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Delivery log")
    no_horizontal_overflow(page)
    page.wait_for_load_state("load")  # its change handler is a deferred script
    page.get_by_label("Status").select_option(label="Failed")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("table.deliveries-table tbody tr")).to_have_count(1)
    no_horizontal_overflow(page)
    # The wide table scrolls inside its card; its button can still be reached and pressed.
    again = page.get_by_role("button", name="Send again")
    again.scroll_into_view_if_needed()
    expect(again).to_be_in_viewport()
    shot(page, "deliveries-phone")
    again.click()
    expect(page.get_by_role("status")).to_have_text("Queued to be sent again.")
    no_horizontal_overflow(page)
    # Back to Messages from the log, and on through the top navigation.
    page.locator(".crumbs").get_by_role("link", name="Messages").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Messages")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Members").click()
    expect(page).to_have_url(re.compile(r"/admin/members"))


# --- Korean -----------------------------------------------------------------------------------


def test_the_pages_read_in_korean_for_a_korean_speaking_user(
    page, db, staff, seeded, sign_in_as, shot, tmp_path
):
    dead_webhook_delivery(db, seeded.member_id, tmp_path)
    set_staff_language(db, MARKETER, "ko")
    sign_in_as("marketer")
    nav = page.get_by_role("navigation", name="메뉴")
    expect(nav.get_by_role("link", name="회원")).to_be_visible()
    nav.get_by_role("link", name="메시지").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("메시지")
    expect(page.get_by_role("heading", name="이벤트와 채널")).to_be_visible()
    row = page.get_by_role("row", name=re.compile("포인트 소멸 예정"))
    expect(row.get_by_label("메시지 보내기")).to_be_checked()
    expect(row.get_by_label(re.compile("^목적"))).to_have_value("marketing")
    expect(row.get_by_label(re.compile("^목적")).locator("option:checked")).to_have_text(
        "마케팅 (수신 동의 시)"
    )
    expect(page.get_by_label("소멸 예정 알림 (며칠 전)")).to_have_value("30")
    expect(page.get_by_role("button", name="설정 저장")).to_be_visible()
    shot(page, "messages-home-ko")

    # The editor opens in the user's language: the Korean template, with Korean labels.
    row.get_by_role("link", name="이메일").click()
    expect(page).to_have_url(re.compile(r"/messages/templates/points\.expiring/email/ko\b"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("포인트 소멸 예정")
    expect(page.get_by_role("heading", name="한국어 템플릿")).to_be_visible()
    expect(page.get_by_label(re.compile(r"^내용"))).to_contain_text("{{ member.name }}님")
    expect(page.get_by_role("button", name="템플릿 저장")).to_be_visible()
    expect(page.get_by_role("heading", name="미리보기")).to_be_visible()
    expect(page.locator("#preview-body")).to_contain_text("예시 회원")

    page.locator(".crumbs").get_by_role("link", name="메시지").click()
    page.get_by_role("link", name="발송 기록").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("발송 기록")
    page.wait_for_load_state("load")  # its change handler is a deferred script
    page.get_by_label("상태", exact=True).select_option(label="실패")
    page.get_by_role("button", name="보기").click()
    row = page.locator("table.deliveries-table tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator(".badge")).to_have_text("실패")
    expect(row).to_contain_text("웹훅")
    expect(page.locator("table.deliveries-table thead")).to_contain_text("채널")
    expect(row.get_by_role("button", name="다시 보내기")).to_be_visible()
    shot(page, "deliveries-ko")
    row.get_by_role("button", name="다시 보내기").click()
    expect(page.get_by_role("status")).to_have_text("다시 보내도록 대기열에 넣었습니다.")
    expect(row.locator("td.empty")).to_have_count(1)
