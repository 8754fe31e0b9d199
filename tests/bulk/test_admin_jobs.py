"""The admin jobs page: upload, dry run, run, progress, row errors and their CSV; roles."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron.admin import service as admin_service
from patron.admin.views import jobs as jobs_view
from patron.app import create_app
from patron.check import run_check
from patron.db.engine import Database
from patron.members.models import Member
from tests.admin.helpers import STAFF, create_staff, csrf_of, sign_in
from tests.conftest import T0

CSV = (
    b"Customer ID,Name,Mobile,Balance,Balance expiry\n"
    b"C-1,Kim,010-1234-5678,100,2026-12-31\n"
    b"C-2,Lee,not a phone,5,\n"
    b"C-3,Park,010-2222-3333,0,\n"
)


@pytest.fixture(autouse=True)
def _cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        admin_service, "hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
    monkeypatch.setattr(admin_service, "_dummy", [])


def _client(db: Database) -> Iterator[TestClient]:
    create_staff(db, now=T0)
    with TestClient(create_app(db=db)) as client:
        yield client


@pytest.fixture
def owner(db: Database, bakery) -> Iterator[tuple[TestClient, str]]:
    for client in _client(db):
        yield client, sign_in(client, STAFF["owner"][0])


@pytest.fixture
def sclient(sdb: Database, sbakery) -> Iterator[TestClient]:
    yield from _client(sdb)


def _upload(client: TestClient, csrf: str, content: bytes, name: str = "members.csv", **form):
    return client.post(
        "/admin/jobs",
        data={"csrf_token": csrf, "kind": "members", "program": "bakery", **form},
        files={"file": (name, content, "text/csv")},
        follow_redirects=False,
    )


def test_upload_check_then_run_a_member_import(db: Database, owner):
    client, csrf = owner
    page = client.get("/admin/jobs")
    assert page.status_code == 200 and 'enctype="multipart/form-data"' in page.text
    assert 'href="/admin/jobs"' in page.text  # the nav link
    answer = _upload(client, csrf, CSV)
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/jobs/1"
    jobs_view.wait(1)
    detail = client.get("/admin/jobs/1")
    assert detail.status_code == 200
    assert 'data-status="done"' in detail.text and 'data-count="done">2<' in detail.text
    assert "invalid_phone" in detail.text and "/admin/jobs/1/run" in detail.text
    report = client.get("/admin/jobs/1/errors.csv")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
    assert report.text.lstrip("\ufeff").splitlines()[1].startswith("3,Mobile,invalid_phone,")
    with db.unit_of_work(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Member)) == 0  # only checked
    run = client.post("/admin/jobs/1/run", data={"csrf_token": csrf}, follow_redirects=False)
    assert run.status_code == 303 and run.headers["location"] == "/admin/jobs/2"
    jobs_view.wait(2)
    done = client.get("/admin/jobs/2")
    assert 'data-status="done"' in done.text and 'data-count="done">2<' in done.text
    status = client.get("/admin/jobs/2/status")
    assert status.status_code == 200 and "hx-trigger" not in status.text  # no more polling
    with db.unit_of_work(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Member)) == 2
        assert run_check(session).ok
    listing = client.get("/admin/jobs")
    assert "members.csv" in listing.text and "/admin/jobs/2" in listing.text


def test_roles_bad_files_and_unknown_jobs(sclient: TestClient):
    csrf = sign_in(sclient, STAFF["viewer"][0])
    page = sclient.get("/admin/jobs")
    assert page.status_code == 200 and "multipart/form-data" not in page.text
    assert _upload(sclient, csrf, CSV).status_code == 403
    sclient.post("/admin/sign-out", data={"csrf_token": csrf})
    csrf = sign_in(sclient, STAFF["marketer"][0])  # may not edit members nor adjust points
    assert _upload(sclient, csrf, CSV).status_code == 403
    sclient.post("/admin/sign-out", data={"csrf_token": csrf})
    csrf = sign_in(sclient, STAFF["support"][0])
    bad = _upload(sclient, csrf, b"%PDF-1.4", name="members.pdf")
    assert bad.status_code == 422 and "only .csv and .xlsx" in bad.text
    assert "Traceback" not in bad.text
    broken = _upload(sclient, csrf, b"PK\x03\x04 not really", name="members.xlsx")
    assert broken.status_code == 422 and "not a readable Excel" in broken.text
    unmapped = _upload(sclient, csrf, b"phone\n010\n")
    assert unmapped.status_code == 422 and "no column holds name" in unmapped.text
    assert _upload(sclient, csrf, CSV, program="nope").status_code == 404
    assert sclient.get("/admin/jobs/99").status_code == 404
    assert sclient.get("/admin/jobs/99/errors.csv").status_code == 404
    no_csrf = sclient.post("/admin/jobs", files={"file": ("m.csv", CSV, "text/csv")})
    assert no_csrf.status_code == 403
    assert csrf_of(sclient.get("/admin/jobs").text) == csrf
