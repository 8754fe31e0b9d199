"""The webhook pages over HTTP, on SQLite and PostgreSQL: an owner creates an endpoint (its
secret shown once), sends a test to a real receiver and verifies it with that secret, rotates
the secret, edits, pauses and replays; a marketer only looks; support is refused."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select
from standardwebhooks import Webhook

from patron.admin import service as admin_service
from patron.admin.settings import get_admin_settings
from patron.audit.models import AuditRecord
from patron.config import get_settings
from patron.db.engine import Database
from patron.events.models import Delivery
from patron.webhooks.models import WebhookEndpoint
from tests.admin.helpers import STAFF, create_staff, sign_in
from tests.conftest import T0
from tests.factories import make_program
from tests.support.http_receiver import Receiver, start_receiver

SECRET = re.compile(r'<input id="webhook-secret" type="text" value="([^"]+)"')
FIELD_ERROR = re.compile(r'<p class="field-error" id="(?:f-)?([^"]+)-error">([^<]*)</p>')


@pytest.fixture(autouse=True)
def _cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # As tests/admin/conftest.py: argon2id with minimal cost, so a sign-in per test is cheap.
    monkeypatch.setattr(
        admin_service, "hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    monkeypatch.setattr(admin_service, "_dummy", [])
    get_admin_settings.cache_clear()
    yield
    get_admin_settings.cache_clear()


@pytest.fixture
def allow_private(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PATRON_WEBHOOK_ALLOW_PRIVATE", "true")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got, server = start_receiver()
    yield got
    server.shutdown()
    server.server_close()


@pytest.fixture
def web(app, db: Database, allow_private) -> Iterator[TestClient]:
    create_staff(db, now=T0)
    with db.unit_of_work() as s:
        make_program(s, now=T0)
    with TestClient(app) as client:
        yield client


def as_role(client: TestClient, role: str) -> str:
    return sign_in(client, STAFF[role][0])


def secret_of(html: str) -> str:
    found = SECRET.search(html)
    assert found, "no secret on the page"
    return found.group(1)


def endpoint_rows(db) -> list[WebhookEndpoint]:
    with db.unit_of_work(readonly=True) as s:
        rows = list(s.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))
        s.expunge_all()
        return rows


def actions(db) -> list[tuple[str, str]]:
    with db.unit_of_work(readonly=True) as s:
        return [
            (r.action, r.actor) for r in s.scalars(select(AuditRecord).order_by(AuditRecord.id))
        ]


def create_form(csrf: str, url: str, *kinds: str, **extra: str) -> dict[str, Any]:
    data: dict[str, Any] = {"csrf_token": csrf, "url": url, "description": "CRM", **extra}
    for kind in kinds:
        data["event_all" if kind == "*" else f"event_{kind}"] = "1"
    return data


def test_owner_creates_tests_rotates_and_the_receiver_verifies(web, db, receiver):
    csrf = as_role(web, "owner")
    listing = web.get("/admin/webhooks")
    assert listing.status_code == 200
    assert "No endpoints yet" in listing.text and "/admin/webhooks/bakery/new" in listing.text
    assert web.get("/admin/webhooks/bakery/new").status_code == 200

    created = web.post(
        "/admin/webhooks/bakery/new",
        data=create_form(csrf, receiver.url + "/in", "points.earned", "tier.changed"),
    )
    assert created.status_code == 200, created.text
    secret = secret_of(created.text)
    assert secret.startswith("whsec_") and "shown only once" in created.text
    (row,) = endpoint_rows(db)
    assert row.event_types == ["points.earned", "tier.changed"] and row.description == "CRM"
    assert row.secret == secret
    # The secret is on the creation page only: not on the list or the detail page.
    detail_path = f"/admin/webhooks/bakery/{row.id}"
    assert secret not in web.get("/admin/webhooks").text
    detail = web.get(detail_path)
    assert detail.status_code == 200 and secret not in detail.text
    assert secret[:10] in detail.text  # the hint

    # The test send: a real POST, verified with the secret the page showed.
    tested = web.post(f"{detail_path}/test", data={"csrf_token": csrf}, follow_redirects=False)
    assert tested.status_code == 303
    page = web.get(tested.headers["location"])
    assert "The endpoint accepted the test event." in page.text
    assert 'id="test-result"' in page.text and "<dd>200</dd>" in page.text
    (got,) = receiver.requests
    assert Webhook(secret).verify(got.body, got.headers)["type"] == "webhook.test"

    # Rotation: confirm, then the new secret once; the old one still verifies meanwhile.
    confirm = web.get(f"{detail_path}/rotate")
    assert confirm.status_code == 200 and "Rotate the secret" in confirm.text
    rotated = web.post(
        f"{detail_path}/rotate", data={"csrf_token": csrf, "keep_previous_hours": "24"}
    )
    assert rotated.status_code == 200
    new_secret = secret_of(rotated.text)
    assert new_secret != secret and "The previous secret also signs until" in rotated.text
    web.post(f"{detail_path}/test", data={"csrf_token": csrf})
    got = receiver.requests[-1]
    Webhook(new_secret).verify(got.body, got.headers)
    Webhook(secret).verify(got.body, got.headers)

    mine = [a for a, actor in actions(db) if a.startswith("webhooks.") and actor == "user:1"]
    assert mine == [
        "webhooks.created",
        "webhooks.test_sent",
        "webhooks.secret_rotated",
        "webhooks.test_sent",
    ]


def test_form_errors_are_shown_under_their_fields_and_nothing_is_saved(web, db, monkeypatch):
    csrf = as_role(web, "owner")
    empty = web.post("/admin/webhooks/bakery/new", data=create_form(csrf, ""))
    assert empty.status_code == 422
    errors = dict(FIELD_ERROR.findall(empty.text))
    assert errors["url"] == "Fill this in." and errors["event-types"].startswith("Choose")
    ftp = web.post("/admin/webhooks/bakery/new", data=create_form(csrf, "ftp://x.org/", "*"))
    assert ftp.status_code == 422
    assert "only http:// and https://" in dict(FIELD_ERROR.findall(ftp.text))["url"]
    # With the SSRF checks on, a private address is refused with the reason.
    monkeypatch.delenv("PATRON_WEBHOOK_ALLOW_PRIVATE")
    get_settings.cache_clear()
    private = web.post(
        "/admin/webhooks/bakery/new", data=create_form(csrf, "http://169.254.169.254/", "*")
    )
    assert private.status_code == 422
    assert "not a public address" in dict(FIELD_ERROR.findall(private.text))["url"]
    assert endpoint_rows(db) == []


def test_edit_pause_resume_and_replay(web, db, receiver):
    csrf = as_role(web, "owner")
    web.post("/admin/webhooks/bakery/new", data=create_form(csrf, receiver.url, "points.earned"))
    (row,) = endpoint_rows(db)
    path = f"/admin/webhooks/bakery/{row.id}"

    saved = web.post(
        path,
        data=create_form(csrf, receiver.url + "/v2", "*"),
        follow_redirects=False,
    )
    assert saved.status_code == 303 and "done=saved" in saved.headers["location"]
    (row,) = endpoint_rows(db)
    assert row.url == receiver.url + "/v2" and row.event_types == ["*"]
    bad = web.post(path, data=create_form(csrf, receiver.url))  # no event type
    assert bad.status_code == 422 and "event-types" in dict(FIELD_ERROR.findall(bad.text))

    paused = web.post(f"{path}/active", data={"csrf_token": csrf, "active": "0"})
    assert paused.status_code == 200 and "Sending is paused" in paused.text
    assert f"{path}/test" not in paused.text  # no test button while paused
    assert endpoint_rows(db)[0].active is False
    resumed = web.post(f"{path}/active", data={"csrf_token": csrf, "active": "1"})
    assert "Sending is on again" in resumed.text and endpoint_rows(db)[0].active is True

    # A dead delivery in the log gets a replay button; replaying makes it pending again.
    with db.unit_of_work() as s:
        dead = Delivery(
            event_id=None,
            program_id=row.program_id,
            member_id=None,
            event_kind="points.earned",
            channel="webhook",
            endpoint_id=row.id,
            queue_key=f"webhook:{row.id}:0",
            recipient=row.url,
            body="{}",
            status="dead",
            attempts=8,
            last_error="answered 500",
            last_status_code=500,
            next_attempt_at=T0 - timedelta(hours=1),
            created_at=T0 - timedelta(hours=2),
        )
        s.add(dead)
        s.flush()
        dead_id = dead.id
    log = web.get(path)
    assert f'data-delivery="{dead_id}" data-status="dead"' in log.text
    assert "answered 500" in log.text and f"/deliveries/{dead_id}/replay" in log.text
    replayed = web.post(
        f"{path}/deliveries/{dead_id}/replay", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert replayed.status_code == 303
    with db.unit_of_work(readonly=True) as s:
        assert s.get(Delivery, dead_id).status == "pending"
    assert ("deliveries.replayed", "user:1") in actions(db)
    # Another endpoint's id in the address does not reach this delivery.
    assert (
        web.post(
            f"/admin/webhooks/bakery/{row.id + 1}/deliveries/{dead_id}/replay",
            data={"csrf_token": csrf},
        ).status_code
        == 404
    )


def test_a_marketer_looks_but_cannot_change_and_support_is_refused(web, db):
    owner = TestClient(web.app)
    csrf = as_role(owner, "owner")
    owner.post("/admin/webhooks/bakery/new", data=create_form(csrf, "http://127.0.0.1:9/", "*"))
    (row,) = endpoint_rows(db)
    path = f"/admin/webhooks/bakery/{row.id}"

    csrf = as_role(web, "marketer")
    assert web.get("/admin/webhooks").status_code == 200
    detail = web.get(path)
    assert detail.status_code == 200 and "Only owners can change webhook endpoints." in detail.text
    assert f"{path}/rotate" not in detail.text and f"{path}/test" not in detail.text
    for url, data in (
        ("/admin/webhooks/bakery/new", create_form(csrf, "http://127.0.0.1:9/x", "*")),
        (path, create_form(csrf, "http://127.0.0.1:9/x", "*")),
        (f"{path}/active", {"active": "0"}),
        (f"{path}/rotate", {"keep_previous_hours": "0"}),
        (f"{path}/test", {}),
    ):
        assert web.post(url, data={"csrf_token": csrf, **data}).status_code == 403, url
    assert web.get(f"{path}/rotate").status_code == 403
    (after,) = endpoint_rows(db)
    assert (after.url, after.active, after.secret) == (row.url, True, row.secret)

    support = TestClient(web.app)
    as_role(support, "support")
    assert support.get("/admin/webhooks").status_code == 403
    assert support.get(path).status_code == 403
    assert "/admin/webhooks" not in support.get("/admin/").text  # not in the navigation


def test_state_changes_need_the_csrf_token(web, db):
    csrf = as_role(web, "owner")
    missing = web.post(
        "/admin/webhooks/bakery/new", data=create_form("wrong", "http://127.0.0.1:9/", "*")
    )
    assert missing.status_code == 403
    assert endpoint_rows(db) == []
    assert csrf


@pytest.mark.parametrize(
    ("language", "title", "new"),
    [
        ("ko", "웹훅", "새 엔드포인트"),
        ("zh", "Webhook", "新建接收地址"),
        ("en", "Webhooks", "New endpoint"),
    ],
)
def test_the_pages_speak_the_users_language(web, db, language, title, new):
    csrf = as_role(web, "owner")
    web.post("/admin/account/language", data={"csrf_token": csrf, "language": language})
    page = web.get("/admin/webhooks")
    assert f"<h1>{title} " in page.text and new in page.text
    web.post("/admin/webhooks/bakery/new", data=create_form(csrf, "http://127.0.0.1:9/", "*"))
    (row,) = endpoint_rows(db)
    assert web.get(f"/admin/webhooks/bakery/{row.id}").status_code == 200


def test_unknown_program_and_endpoint_are_404(web):
    as_role(web, "owner")
    assert web.get("/admin/webhooks?program=nope").status_code == 404
    assert web.get("/admin/webhooks/bakery/999").status_code == 404
    assert web.get("/admin/webhooks/bakery/abc").status_code == 404


def test_every_message_the_webhook_pages_use_exists_in_three_languages():
    from pathlib import Path

    from patron.admin import i18n
    from patron.events.kinds import EVENT_TYPES
    from patron.events.models import STATES

    folder = Path(i18n.__file__).parent / "templates" / "webhooks"
    literal = re.compile(r"""\bt\(\s*["']([a-z0-9_.]*[a-z0-9_])["']""")
    keys = {k for path in folder.glob("*.html") for k in literal.findall(path.read_text())}
    keys |= {f"webhooks.status.{s}" for s in STATES} | {f"webhooks.event.{k}" for k in EVENT_TYPES}
    keys |= {f"webhooks.done.{d}" for d in ("saved", "unchanged", "activated", "deactivated")}
    keys |= {"webhooks.done.replayed", "webhooks.activate", "webhooks.secret.rotated_title"}
    for key in sorted(keys):
        texts = i18n.catalog().get(key)
        assert texts is not None, key
        assert set(texts) == {"en", "ko", "zh"} and all(t.strip() for t in texts.values()), key
