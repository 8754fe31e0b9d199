"""The Messages pages over HTTP: the notification settings form and the template editor, with its
preview for a real member, save (checked, audited), reset, and who may do what."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from patron.audit.models import AuditRecord
from patron.events.kinds import EVENT_TYPES
from patron.ledger.models import Account, Lot
from patron.notify import settings as notify_settings
from patron.notify.models import MessageTemplate
from patron.programs.models import Program
from tests.admin.helpers import STAFF, sign_in
from tests.conftest import T0

FIELD_ERROR = re.compile(r'<p class="field-error" id="(?:f-)?([^"]+)-error">([^<]*)</p>')
EDITOR = "/admin/messages/templates/points.expiring/email/ko"
SAVE = "/admin/messages/bakery/templates/points.expiring/email/ko"
KO_SUBJECT = "[{{ program.name }}] {{ member.name }}님, 포인트가 곧 소멸됩니다"
KO_BODY = (
    "{{ member.name }}님, {{ expiring_points|points }}포인트를 {{ expiring_date|date }}까지 "
    "사용해 주세요.\n현재 포인트: {{ balance|points }}P"
)


def field_errors(html: str) -> dict[str, str]:
    return dict(FIELD_ERROR.findall(html))


@pytest.fixture
def web(app, staff, seeded):
    with TestClient(app) as test_client:
        yield test_client


def as_role(client: TestClient, role: str) -> str:
    return sign_in(client, STAFF[role][0])


def rows(db, model, *where):
    with db.unit_of_work(readonly=True) as s:
        found = list(s.scalars(select(model).where(*where)))
        s.expunge_all()
        return found


def kim_figures(db, member_id: int) -> tuple[int, int, str]:
    """김민지's balance, her soonest expiring points and their last day (Korean), from the
    ledger itself."""
    with db.unit_of_work(readonly=True) as s:
        account = s.scalars(select(Account).where(Account.member_id == member_id)).one()
        lots = list(
            s.scalars(
                select(Lot)
                .where(Lot.account_id == account.id, Lot.remaining > 0)
                .order_by(Lot.expires_at)
            )
        )
        first = lots[0]
        same = sum(lot.remaining for lot in lots if lot.expires_at == first.expires_at)
        last_day = (first.expires_at - timedelta(microseconds=1)).astimezone(ZoneInfo("Asia/Seoul"))
        return account.available, same, f"{last_day.year}년 {last_day.month}월 {last_day.day}일"


# --- the home page and the settings form ------------------------------------------------------


def test_messages_home_lists_every_event_with_its_settings_and_template_links(web):
    as_role(web, "marketer")
    page = web.get("/admin/messages")
    assert page.status_code == 200
    for kind in EVENT_TYPES:
        assert f'<code class="muted">{kind}</code>' in page.text
        assert f"/admin/messages/templates/{kind}/email/en?program=bakery" in page.text
        assert f"/admin/messages/templates/{kind}/sms/en?program=bakery" in page.text
    # The defaults: expiring on as marketing, the receipt off.
    assert 'name="points.expiring:enabled" type="checkbox" value="1" checked' in page.text
    assert 'name="points.earned:enabled" type="checkbox" value="1">' in page.text
    assert 'action="/admin/messages/bakery/settings"' in page.text
    assert "Save settings" in page.text


def test_the_nav_links_to_messages(web):
    as_role(web, "viewer")
    assert 'href="/admin/messages"' in web.get("/admin/").text


def settings_form(token: str, **changes: str) -> dict[str, str]:
    form = {"csrf_token": token}
    for kind, setting in notify_settings.NotifySettings().events.items():
        if setting.enabled:
            form[f"{kind}:enabled"] = "1"
        form[f"{kind}:purpose"] = setting.purpose
        form[f"{kind}:channels"] = ",".join(setting.channels)
    form.update(
        expiring_days_before="30",
        quiet_hours_start="21:00",
        quiet_hours_end="08:00",
        frequency_cap_per_day="2",
        jobs_hour="10",
        statement_day="1",
    )
    form.update(changes)
    return form


def program_id(db) -> int:
    return rows(db, Program, Program.code == "bakery")[0].id


def test_the_settings_form_saves_and_is_audited(web, db):
    token = as_role(web, "marketer")
    form = settings_form(
        token,
        expiring_days_before="14",
        quiet_hours_start="22:30",
        **{"points.earned:enabled": "1", "points.earned:channels": "sms"},
    )
    form.pop("member.birthday:enabled")
    answer = web.post("/admin/messages/bakery/settings", data=form, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/admin/messages?program=bakery&done=saved#settings"
    with db.unit_of_work(readonly=True) as s:
        saved = notify_settings.load(s, program_id(db))
    assert saved.expiring_days_before == 14
    assert saved.quiet_hours_start.hour == 22 and saved.quiet_hours_start.minute == 30
    assert saved.event("points.earned").enabled
    assert saved.event("points.earned").channels == ["sms"]
    assert not saved.event("member.birthday").enabled
    audits = rows(db, AuditRecord, AuditRecord.action == "notifications.settings_changed")
    assert len(audits) == 1 and audits[0].actor.startswith("user:")
    page = web.get(answer.headers["location"])
    assert "Notification settings saved." in page.text
    assert 'name="expiring_days_before" type="number" value="14"' in page.text


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("expiring_days_before", "0", "Enter a number of days from 1 to 365."),
        ("expiring_days_before", "many", "Enter a number of days from 1 to 365."),
        ("quiet_hours_start", "25:00", "Enter a time in whole minutes, such as 21:00."),
        ("frequency_cap_per_day", "101", "Enter a number from 0 (no limit) to 100."),
        ("jobs_hour", "24", "Enter an hour from 0 to 23."),
        ("statement_day", "31", "Enter a day from 1 to 28."),
        ("statement_day", "", "Fill this in."),
        ("points.expiring:purpose", "spam", "Choose one of the options."),
        ("points.expiring:channels", "pigeon", "Choose one of the options."),
    ],
)
def test_a_bad_setting_shows_its_error_inline_and_saves_nothing(web, db, field, value, message):
    token = as_role(web, "owner")
    answer = web.post(
        "/admin/messages/bakery/settings", data=settings_form(token, **{field: value})
    )
    assert answer.status_code == 422
    assert field_errors(answer.text) == {field: message}
    assert "Nothing was saved." in answer.text
    # What was typed comes back, so it can be corrected.
    if field == "expiring_days_before":
        assert f'name="expiring_days_before" type="number" value="{value}"' in answer.text
    assert rows(db, AuditRecord, AuditRecord.action == "notifications.settings_changed") == []


def test_a_settings_error_is_in_the_users_language(web):
    token = as_role(web, "owner")
    web.post("/admin/account/language", data={"language": "ko", "csrf_token": token})
    answer = web.post("/admin/messages/bakery/settings", data=settings_form(token, jobs_hour="99"))
    assert answer.status_code == 422
    assert field_errors(answer.text) == {"jobs_hour": "0부터 23 사이의 시각을 입력하세요."}
    assert "저장하지 않았습니다." in answer.text


@pytest.mark.parametrize("role", ["viewer", "support"])
def test_viewers_see_the_settings_but_cannot_save(web, db, role):
    token = as_role(web, role)
    page = web.get("/admin/messages")
    assert page.status_code == 200
    assert '<fieldset class="plain" disabled>' in page.text
    assert "Save settings" not in page.text
    answer = web.post("/admin/messages/bakery/settings", data=settings_form(token))
    assert answer.status_code == 403
    assert rows(db, AuditRecord, AuditRecord.action == "notifications.settings_changed") == []


# --- the template editor ----------------------------------------------------------------------


def test_a_marketer_edits_previews_saves_and_resets_the_korean_expiry_email(web, db, seeded):
    token = as_role(web, "marketer")
    page = web.get(EDITOR)
    assert page.status_code == 200
    assert "Default" in page.text and "Reset to default" not in page.text
    assert "포인트를 {{ expiring_date|date }}까지 사용해 주세요" in page.text  # the default
    assert "{{ expiring_points }}" in page.text  # the variables box
    assert "Marketing (with consent)" not in page.text  # (that is the home page's wording)
    assert "This is a marketing message" in page.text

    # The live preview for 김민지, found by her card number: her name and her own figures.
    balance, expiring, last_day = kim_figures(db, seeded.member_id)
    preview = web.post(
        f"{SAVE}/preview",
        data={"csrf_token": token, "subject": KO_SUBJECT, "body": KO_BODY, "member": "BKR100000"},
        headers={"HX-Request": "true"},
    )
    assert preview.status_code == 200
    assert "<html" not in preview.text  # a fragment
    assert '<strong class="preview-name">김민지</strong>' in preview.text
    assert f"#{seeded.member_id}" in preview.text
    assert "[Corner Bakery] 김민지님, 포인트가 곧 소멸됩니다" in preview.text
    assert f"김민지님, {expiring:,}포인트를 {last_day}까지 사용해 주세요." in preview.text
    assert f"현재 포인트: {balance:,}P" in preview.text
    # By phone, the same member.
    by_phone = web.post(
        f"{SAVE}/preview",
        data={
            "csrf_token": token,
            "subject": KO_SUBJECT,
            "body": KO_BODY,
            "member": "010-1234-5678",
        },
        headers={"HX-Request": "true"},
    )
    assert '<strong class="preview-name">김민지</strong>' in by_phone.text

    saved = web.post(
        SAVE,
        data={"csrf_token": token, "subject": KO_SUBJECT, "body": KO_BODY.replace("\n", "\r\n")},
        follow_redirects=False,
    )
    assert saved.status_code == 303
    assert saved.headers["location"] == f"{EDITOR}?program=bakery&done=saved"
    [row] = rows(db, MessageTemplate)
    assert (row.event_kind, row.channel, row.language) == ("points.expiring", "email", "ko")
    assert row.subject == KO_SUBJECT and row.body == KO_BODY  # stored with LF line ends
    [audit] = rows(db, AuditRecord, AuditRecord.action == "notifications.template_changed")
    assert audit.subject_id == "bakery/points.expiring/email/ko"
    assert audit.before["custom"] is False and audit.after == {
        "custom": True,
        "subject": KO_SUBJECT,
        "body": KO_BODY,
    }
    page = web.get(saved.headers["location"])
    assert "Template saved." in page.text and "Reset to default" in page.text
    assert "Edited" in page.text
    # The other languages keep the default.
    assert "Default" in web.get(EDITOR.replace("/ko", "/zh")).text

    reset = web.post(f"{SAVE}/reset", data={"csrf_token": token}, follow_redirects=False)
    assert reset.status_code == 303
    assert reset.headers["location"] == f"{EDITOR}?program=bakery&done=reset"
    assert rows(db, MessageTemplate) == []
    [undo] = rows(db, AuditRecord, AuditRecord.action == "notifications.template_reset")
    assert undo.before["body"] == KO_BODY and undo.after["custom"] is False
    assert "Back to the default wording." in web.get(reset.headers["location"]).text


def test_the_preview_without_a_member_uses_a_sample_member(web):
    token = as_role(web, "marketer")
    preview = web.post(
        f"{SAVE}/preview",
        data={"csrf_token": token, "subject": KO_SUBJECT, "body": KO_BODY, "member": ""},
        headers={"HX-Request": "true"},
    )
    assert preview.status_code == 200
    assert "sample member" in preview.text
    assert "1,250포인트를 2027년 1월 15일까지" in preview.text


def test_an_unknown_member_is_said_in_the_preview(web):
    token = as_role(web, "marketer")
    preview = web.post(
        f"{SAVE}/preview",
        data={"csrf_token": token, "subject": KO_SUBJECT, "body": KO_BODY, "member": "NOPE-1"},
        headers={"HX-Request": "true"},
    )
    assert preview.status_code == 200
    assert "No member of this program has that card number" in preview.text
    assert "preview-name" not in preview.text


def test_a_template_error_shows_in_the_preview_while_typing(web):
    token = as_role(web, "marketer")
    preview = web.post(
        f"{SAVE}/preview",
        data={"csrf_token": token, "subject": KO_SUBJECT, "body": "Hi\n{{ membr.name }}"},
        headers={"HX-Request": "true"},
    )
    assert preview.status_code == 200
    assert "No preview: the template has a problem." in preview.text
    assert "Line 2: “membr” is not a variable messages have." in preview.text


def test_the_preview_works_without_javascript(web):
    token = as_role(web, "marketer")
    page = web.post(
        f"{SAVE}/preview",
        data={"csrf_token": token, "subject": KO_SUBJECT, "body": KO_BODY, "member": "BKR100000"},
    )
    assert page.status_code == 200
    assert "<html" in page.text and '<strong class="preview-name">김민지</strong>' in page.text
    # What was typed stays in the form.
    assert "{{ member.name }}님, {{ expiring_points|points }}" in page.text


@pytest.mark.parametrize(
    ("subject", "body", "field", "message"),
    [
        (KO_SUBJECT, "{{ member.name }\n", "body", "Line 1: the template cannot be read"),
        (KO_SUBJECT, "안녕하세요\n{{ balanse }}", "body", "Line 2: “balanse” is not a variable"),
        (KO_SUBJECT, "{{ ''.__class__ }}", "body", "this is not allowed in a message template"),
        (KO_SUBJECT, "{% for x in member %}{% endfor %}", "body", "{% for %} is not available"),
        (KO_SUBJECT, "{{ tier.upper() }}", "body", "a value is empty for some members"),
        ("", KO_BODY, "subject", "An e-mail needs a subject."),
        (KO_SUBJECT, "   ", "body", "Write the message."),
    ],
)
def test_save_refuses_a_broken_template_inline(web, db, subject, body, field, message):
    token = as_role(web, "marketer")
    answer = web.post(SAVE, data={"csrf_token": token, "subject": subject, "body": body})
    assert answer.status_code == 422
    errors = field_errors(answer.text)
    assert list(errors) == [field]
    assert message in html.unescape(errors[field])
    assert rows(db, MessageTemplate) == []
    assert rows(db, AuditRecord, AuditRecord.action == "notifications.template_changed") == []


def test_the_sms_editor_has_no_subject_and_counts_characters(web):
    token = as_role(web, "marketer")
    page = web.get("/admin/messages/templates/points.earned/sms/en")
    assert page.status_code == 200
    assert 'name="subject"' not in page.text
    preview = web.post(
        "/admin/messages/bakery/templates/points.earned/sms/en/preview",
        data={"csrf_token": token, "body": "{{ member.name }}: +{{ points|points }}"},
        headers={"HX-Request": "true"},
    )
    assert "Alex Morgan: +1,250" in preview.text
    assert "19 of 1,000 characters" in preview.text  # "Alex Morgan: +1,250"
    too_long = web.post(
        "/admin/messages/bakery/templates/points.earned/sms/en",
        data={"csrf_token": token, "body": "x" * 1001},
    )
    assert too_long.status_code == 422
    assert field_errors(too_long.text)["body"].startswith("The SMS is too long")


def test_a_viewer_sees_the_editor_and_previews_but_cannot_save_or_reset(web, db, seeded):
    token = as_role(web, "viewer")
    page = web.get(EDITOR)
    assert page.status_code == 200
    assert '<fieldset class="plain" disabled>' in page.text
    assert "Save template" not in page.text and "Reset to default" not in page.text
    # The viewer's form posts no template (its fields are disabled): the current one is shown.
    preview = web.post(
        f"{SAVE}/preview",
        data={"csrf_token": token, "member": str(seeded.member_id)},
        headers={"HX-Request": "true"},
    )
    assert preview.status_code == 200
    assert '<strong class="preview-name">김민지</strong>' in preview.text
    assert (
        web.post(SAVE, data={"csrf_token": token, "subject": "x", "body": "y"}).status_code == 403
    )
    assert web.post(f"{SAVE}/reset", data={"csrf_token": token}).status_code == 403
    assert rows(db, MessageTemplate) == []


def test_posts_need_the_csrf_token(web, db):
    as_role(web, "owner")
    assert web.post(SAVE, data={"subject": "x", "body": "y"}).status_code == 403
    assert rows(db, MessageTemplate) == []


@pytest.mark.parametrize(
    "url",
    [
        "/admin/messages/templates/points.nope/email/ko",
        "/admin/messages/templates/points.earned/fax/ko",
        "/admin/messages/templates/points.earned/email/fr",
        "/admin/messages/templates/points.earned/email/ko?program=nosuch",
        "/admin/messages?program=nosuch",
    ],
)
def test_unknown_templates_and_programs_are_404_pages(web, url):
    as_role(web, "owner")
    assert web.get(url).status_code == 404


def test_the_editor_switches_language_and_program(web, db, frozen):
    from tests.factories import SHANGHAI, make_program

    with db.unit_of_work() as s:
        make_program(s, now=T0, base=SHANGHAI, stores=())
    as_role(web, "owner")
    page = web.get(EDITOR)
    assert 'href="/admin/messages/templates/points.expiring/email/zh?program=bakery"' in page.text
    assert 'id="program-switch" name="program"' in page.text
    other = web.get(EDITOR + "?program=shanghai")
    assert other.status_code == 200 and "Shanghai Department Store" in other.text
    assert 'action="/admin/messages/shanghai/templates/points.expiring/email/ko"' in other.text


def test_every_key_the_pages_build_from_values_exists():
    from patron.admin import i18n
    from patron.admin.views import messages
    from patron.notify import templates

    for kind in EVENT_TYPES:
        assert i18n.has_message(f"messages.kind.{kind}"), kind
        assert i18n.has_message(f"messages.kind.{kind}.help"), kind
    for variable in templates.variables():
        assert i18n.has_message(f"messages.var.{variable.name}"), variable.name
    for purpose in messages.PURPOSES:
        assert i18n.has_message(f"messages.purpose.{purpose}")
    for order in messages.CHANNEL_ORDERS:
        assert i18n.has_message(f"messages.order.{order.replace(',', '_')}")
    for channel in templates.CHANNELS:
        assert i18n.has_message(f"messages.channel.{channel}")
    for problem in templates.PROBLEMS:
        if problem != "too_long":
            assert i18n.has_message(f"messages.problem.{problem}"), problem
    for part in ("source", "subject", "sms", "email"):
        assert i18n.has_message(f"messages.problem.too_long.{part}")
    for done in messages.SETTINGS_NOTICES:
        assert i18n.has_message(f"messages.done.{done}")
    for done in messages.TEMPLATE_NOTICES:
        assert i18n.has_message(f"messages.template.done.{done}")
    for field in messages.NUMBER_FIELDS:
        assert i18n.has_message(f"messages.error.{field}")
