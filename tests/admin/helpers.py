"""Seed data and sign-in helpers shared by the admin tests (HTTP and browser)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from patron import demo
from patron.admin import service
from patron.audit.service import CLI, SYSTEM
from patron.db.engine import Database
from patron.members.schemas import MemberRef
from patron.rules import publishing
from patron.sales import purchases
from patron.sales.schemas import PurchaseRequest
from patron.tiers import service as tiers
from tests.conftest import T0
from tests.factories import make_member, make_program

START = T0 - timedelta(days=400)
PASSWORD = "correct-horse-42"
STAFF = {
    "owner": ("owner@demo.patron", "Olivia Owner"),
    "marketer": ("marketer@demo.patron", "Mark Marketer"),
    "support": ("support@demo.patron", "수진 Support"),
    "viewer": ("viewer@demo.patron", "Vic Viewer"),
}
# (days before T0, amount in KRW) for the walk-through member, oldest first. The first lot
# expires within 30 days of T0, so the page shows points that expire soon.
SALES = [(340, 25800), (300, 64000), (120, 32000), (40, 12000), (3, 9800)]


@dataclass(frozen=True)
class Seeded:
    member_id: int  # 김민지, phone 010-1234-5678, card BKR100000, with sales and a tier
    other_id: int  # 박서준, phone 010-5555-7777, card BKR100001, no sales


def create_staff(db: Database, *, now: datetime) -> dict[str, int]:
    """One user per role, all with PASSWORD; returns role -> user id."""
    ids = {}
    with db.unit_of_work() as session:
        for role, (email, name) in STAFF.items():
            user = service.create_user(
                session, email=email, name=name, role=role, password=PASSWORD, actor=CLI, now=now
            )
            ids[role] = user.id
    return ids


def seed_bakery(db: Database) -> Seeded:
    """The bakery (KRW, Asia/Seoul) with its rules and basic/silver/gold tiers, two members,
    and a year of sales for the first. Everything happens before T0."""
    with db.unit_of_work() as session:
        program = make_program(session, now=START)
        publishing.publish(session, program, demo.BAKERY_RULES, actor=SYSTEM, now=START)
        tiers.set_tiers(session, program, demo.BAKERY_TIERS, actor=SYSTEM, now=START)
        kim = make_member(
            session,
            now=START,
            program=program,
            name="김민지",
            phone="010-1234-5678",
            email="minji@example.com",
            card="BKR100000",
            language="ko",
        )
        park = make_member(
            session,
            now=START,
            program=program,
            name="박서준",
            phone="010-5555-7777",
            email="seojun@example.com",
            card="BKR100001",
        )
        for n, (days, amount) in enumerate(SALES):
            at = T0 - timedelta(days=days)
            purchases.purchase(
                session,
                program,
                PurchaseRequest(
                    external_id=f"MAPO-{n + 1:04d}",
                    member=MemberRef(id=kim.id),
                    amount=Decimal(amount),
                    store="mapo",
                    occurred_at=at,
                ),
                actor=SYSTEM,
                now=at,
            )
        return Seeded(kim.id, park.id)


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def sign_in(client, email: str, password: str = PASSWORD) -> str:
    """Sign a TestClient in; returns the session's CSRF token."""
    form = client.get("/admin/sign-in")
    response = client.post(
        "/admin/sign-in",
        data={"email": email, "password": password, "csrf_token": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return csrf_of(client.get("/admin/").text)
