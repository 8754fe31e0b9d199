"""The Rewards pages over HTTP: the catalog, adding and changing a reward (a new version each
time), stock, coupons found by code, cancelled or reissued with a reason, a member's coupons on
the 360° page, and who may do what."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from patron import clock
from patron.admin import i18n
from patron.admin.views import rewards as pages
from patron.audit.models import AuditRecord
from patron.audit.service import CLI
from patron.coupons import codes
from patron.coupons.models import (
    COUPON_STATES,
    REWARD_KINDS,
    Coupon,
    CouponEvent,
    Reward,
    StockMove,
)
from patron.ledger.models import Account
from patron.members.models import Member
from patron.programs.service import get_program
from patron.rewards import catalog, redeem
from patron.rewards.schemas import RewardCreate
from tests.admin.helpers import STAFF, sign_in
from tests.ledger._helpers import adjust
from tests.rewards.conftest import AMERICANO, FIVE_OFF

FIELD_ERROR = re.compile(r'<p class="field-error" id="(?:f-)?([^"]+)-error">([^<]*)</p>')
FORM_ERROR = re.compile(r'<div class="alert alert-error" role="alert">([^<]*)</div>')
NEW = "/admin/rewards/bakery/new"
AMERICANO_PAGE = "/admin/rewards/bakery/americano"
COUPONS = "/admin/rewards/coupons"


def field_errors(page: str) -> dict[str, str]:
    return {k: html.unescape(v) for k, v in FIELD_ERROR.findall(page)}


def form_errors(page: str) -> list[str]:
    return [html.unescape(v) for v in FORM_ERROR.findall(page)]


@pytest.fixture
def web(app, staff, seeded):
    with TestClient(app) as test_client:
        yield test_client


def as_role(client: TestClient, role: str) -> str:
    return sign_in(client, STAFF[role][0])


class _Form(HTMLParser):
    """What a browser would post from the form with `action`: inputs, ticked boxes, the
    selected options and the text areas."""

    def __init__(self, action: str) -> None:
        super().__init__()
        self.action = action
        self.inside = False
        self.fields: dict[str, str] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = a.get("action", "").split("#")[0] == self.action
        if not self.inside or "name" not in a:
            if tag == "option" and self.inside and self._select and "selected" in a:
                self.fields[self._select] = a.get("value", "")
            return
        if tag == "input":
            if a.get("type") == "checkbox":
                if "checked" in a:
                    self.fields[a["name"]] = a.get("value", "on")
            else:
                self.fields[a["name"]] = a.get("value", "")
        elif tag == "select":
            self._select = a["name"]
            self.fields.setdefault(a["name"], "")
        elif tag == "textarea":
            self._textarea = a["name"]
            self.fields[a["name"]] = ""

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.fields[self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def form_of(page: str, action: str) -> dict[str, str]:
    parser = _Form(action)
    parser.feed(page)
    assert parser.fields, f"no form posting to {action}"
    return parser.fields


def add_reward(db, body: dict[str, Any]) -> None:
    with db.unit_of_work() as s:
        program = get_program(s, "bakery")
        catalog.create_reward(
            s, program, RewardCreate.model_validate(body), actor=CLI, now=clock.now()
        )


def give_points(db, member_id: int, points: int) -> None:
    with db.unit_of_work() as s:
        adjust(s, get_program(s, "bakery"), member_id, points, now=clock.now())


def redeem_for(db, member_id: int, reward: str) -> str:
    """Redeem one unit at the till; the coupon's code as printed."""
    with db.unit_of_work() as s:
        program = get_program(s, "bakery")
        member = s.get(Member, member_id)
        assert member is not None
        _redemption, [coupon], _account = redeem.redeem(
            s, program, reward, member=member, quantity=1, store=None, channel="pos",
            actor=CLI, now=clock.now(),
        )  # fmt: skip
        return codes.display(coupon.code)


def available(db, member_id: int) -> int:
    with db.unit_of_work(readonly=True) as s:
        return s.scalars(select(Account.available).where(Account.member_id == member_id)).one()


def rows(db, model, *where):
    with db.unit_of_work(readonly=True) as s:
        found = list(s.scalars(select(model).where(*where).order_by(model.id)))
        s.expunge_all()
        return found


def coupon_of(db, shown: str) -> Coupon:
    [found] = rows(db, Coupon, Coupon.code == codes.normalise(shown))
    return found


# --- the catalog ------------------------------------------------------------------------------


def test_the_catalog_lists_each_reward_with_its_prices_stock_and_status(web, db):
    add_reward(db, AMERICANO)
    add_reward(db, {**FIVE_OFF, "image_url": "/admin/static/favicon.svg"})
    token = as_role(web, "marketer")
    assert 'href="/admin/rewards"' in web.get("/admin/").text
    page = web.get("/admin/rewards")
    assert page.status_code == 200
    row = page.text.split('data-reward="americano"')[1].split("</tr>")[0]
    assert 'href="/admin/rewards/bakery/americano"' in row and "Free americano" in row
    assert "Goods" in row and "1,500 points" in row and "Gold: 1,200 points" in row
    assert ">500<" in row and "Active" in row
    five = page.text.split('data-reward="five-off"')[1].split("</tr>")[0]
    assert "5,000 KRW off" in five and "Money off" in five and "4,000 points" in five
    assert "Unlimited" in five
    assert '<img src="/admin/static/favicon.svg"' in five
    # In Korean, the Korean names and tier names.
    web.post(
        "/admin/account/language",
        data={"csrf_token": token, "language": "ko", "next": "/admin/rewards"},
    )
    korean = web.get("/admin/rewards").text
    assert "아메리카노 무료" in korean and "골드: 1,200포인트" in korean and "무제한" in korean


def test_an_empty_catalog_says_so_and_offers_to_add_one(web):
    as_role(web, "marketer")
    page = web.get("/admin/rewards").text
    assert "No rewards yet." in page
    assert 'action="/admin/rewards/bakery/new"' in page
    assert 'href="/admin/rewards/coupons?program=bakery"' in page


# --- adding and changing a reward -------------------------------------------------------------


def new_form(token: str, **changes: str) -> dict[str, str]:
    form = {
        "csrf_token": token,
        "kind": "goods",
        "code": "americano",
        "status": "active",
        "name_ko": "아메리카노 무료",
        "name_zh": "免费美式咖啡",
        "name_en": "Free americano",
        "points_cost": "1500",
        "price.gold": "1200",
        "value": "1500",
        "stock": "500",
        "valid_days": "30",
        "on_expiry": "forfeit",
        "on_refund": "restore",
        "max_per_order": "1",
        "combine_with_points": "1",
    }
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


def test_a_marketer_adds_a_reward_after_fixing_what_the_form_refused(web, db, staff):
    token = as_role(web, "marketer")
    blank = web.get(NEW + "?kind=goods")
    assert blank.status_code == 200
    assert 'name="price.gold"' in blank.text and 'name="price.silver"' in blank.text
    assert 'name="discount"' not in blank.text  # money off is for the money-off kind

    first = web.post(
        NEW, data=new_form(token, name_ko="", name_zh="", name_en="", points_cost="lots")
    )
    assert first.status_code == 422
    errors = field_errors(first.text)
    assert errors["names"] == "Give a name in at least one language."
    assert errors["points_cost"] == "Enter a whole number."
    assert 'value="americano"' in first.text  # what was typed is kept

    second = web.post(NEW, data=new_form(token, valid_days=""))
    assert second.status_code == 422
    assert field_errors(second.text) == {
        "valid_days": "Say how long coupons are valid: days, a last day, or both."
    }
    assert rows(db, Reward) == []

    done = web.post(NEW, data=new_form(token), follow_redirects=False)
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/admin/rewards/bakery/americano?done=created"
    [reward] = rows(db, Reward)
    assert reward.names == AMERICANO["names"] and reward.points_cost == 1500
    assert reward.tier_costs == {"gold": 1200} and reward.stock_left == 500
    assert reward.version == 1 and reward.valid_days == 30 and reward.value_minor == 1500
    [created] = rows(db, AuditRecord, AuditRecord.action == "reward.created")
    assert created.actor == f"user:{staff['marketer']}"
    page = web.get(done.headers["location"]).text
    assert "Reward added (version 1)." in page and "Version 1" in page

    again = web.post(NEW, data=new_form(token))
    assert again.status_code == 422
    assert field_errors(again.text)["code"] == "Another reward already has this code."


def test_each_kind_asks_for_what_it_needs(web, db):
    token = as_role(web, "owner")
    page = web.get(NEW + "?kind=percent_discount").text
    assert 'name="percent"' in page and 'name="cap"' in page and 'name="sku"' not in page
    answer = web.post(NEW, data=new_form(token, kind="percent_discount", code="tenpct"))
    assert answer.status_code == 422
    assert field_errors(answer.text) == {"percent": "Percent off needs a percentage."}
    answer = web.post(
        NEW,
        data=new_form(token, kind="percent_discount", code="tenpct", percent="10", cap="3000"),
        follow_redirects=False,
    )
    assert answer.status_code == 303
    [reward] = rows(db, Reward, Reward.code == "tenpct")
    assert str(reward.percent) in ("10", "10.000") and reward.cap_minor == 3000
    # External rewards issue no coupons: no validity, no coupon terms.
    external = web.get(NEW + "?kind=external").text
    assert 'name="valid_days"' not in external and 'name="exclusive"' not in external


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"code": "Bad Code"}, {"code": "Use lower-case letters"}),
        ({"valid_until": "2026-13-01"}, {"valid_until": "Enter a date as YYYY-MM-DD."}),
        ({"image_url": "javascript:alert(1)"}, {"image_url": "Give an address starting"}),
        ({"stock": "-5"}, {"stock": "At least 0."}),
        ({"price.gold": "-1"}, {"tier_costs": "Enter whole points from 0."}),
        ({"price.gold": "many"}, {"price.gold": "Enter a whole number."}),
        ({"value": "1500.5"}, {"value": "Too many decimal places for KRW."}),
        (
            {"available_from": "2026-05-01", "available_until": "2026-04-01"},
            {"available_until": "The last day is before the first day."},
        ),
        ({"name_en": "x" * 2001}, {"names": "Use at most 2,000 characters."}),
        ({"store.mapo": "1", "channel.pos": "1", "limit_ever": "0"}, {"limit_ever": "At least 1."}),
    ],
)
def test_bad_input_is_refused_next_to_its_field_never_a_500(web, db, changes, errors):
    token = as_role(web, "marketer")
    answer = web.post(NEW, data=new_form(token, **changes))
    assert answer.status_code == 422, answer.text
    found = field_errors(answer.text)
    for field, start in errors.items():
        assert found.get(field, "").startswith(start), found
    assert rows(db, Reward) == []


def test_editing_saves_a_new_version_and_lists_the_versions(web, db, staff):
    # A last day set through the API at 15:00 (not at midnight) is kept when the form is saved.
    add_reward(db, {**AMERICANO, "valid_until": "2026-06-30T06:00:00+00:00"})
    token = as_role(web, "marketer")
    page = web.get(AMERICANO_PAGE)
    assert page.status_code == 200 and "Version 1" in page.text
    form = form_of(page.text, AMERICANO_PAGE)
    assert form["version"] == "1" and form["price.gold"] == "1200"
    assert form["valid_until"] == "2026-06-30" and form["name_ko"] == "아메리카노 무료"

    unchanged = web.post(AMERICANO_PAGE, data=form, follow_redirects=False)
    assert unchanged.headers["location"] == f"{AMERICANO_PAGE}?done=unchanged"
    [reward] = rows(db, Reward)
    assert reward.version == 1

    form.update({"points_cost": "1400", "name_en": "Free americano (hot)", "price.silver": "1300"})
    saved = web.post(AMERICANO_PAGE, data=form, follow_redirects=False)
    assert saved.status_code == 303 and saved.headers["location"].endswith("?done=saved")
    [reward] = rows(db, Reward)
    assert reward.version == 2 and reward.points_cost == 1400
    assert reward.tier_costs == {"gold": 1200, "silver": 1300}
    assert reward.names["en"] == "Free americano (hot)" and reward.names["ko"] == "아메리카노 무료"
    assert reward.valid_until is not None and reward.valid_until.hour == 6
    [updated] = rows(db, AuditRecord, AuditRecord.action == "reward.updated")
    assert updated.actor == f"user:{staff['marketer']}"

    page = web.get(saved.headers["location"]).text
    assert "Saved as version 2." in page and 'name="version" value="2"' in page
    v2 = page.split('data-version="2"')[1].split("</li>\n  \n")[0]
    assert "Price (points): <span" in v2 and "1500" in v2 and "1400" in v2
    assert "marketer@demo.patron" in v2
    assert 'data-version="1"' in page and "Added to the catalog." in page

    # A form opened before that save is refused rather than undoing it.
    stale = web.post(AMERICANO_PAGE, data={**form, "version": "1", "points_cost": "900"})
    assert stale.status_code == 409
    assert form_errors(stale.text)[0].startswith("Someone saved this reward meanwhile")
    assert rows(db, Reward)[0].points_cost == 1400
    assert token


def test_restock_and_correct_the_stock_with_a_note(web, db, staff):
    add_reward(db, AMERICANO)
    token = as_role(web, "marketer")
    stock = AMERICANO_PAGE + "/stock"
    done = web.post(
        stock,
        data={"csrf_token": token, "delta": "20", "note": "Delivery 7"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"{AMERICANO_PAGE}?done=stock#stock"
    assert rows(db, Reward)[0].stock_left == 520
    move = rows(db, StockMove)[-1]
    assert (move.delta, move.reason, move.note) == (20, "restock", "Delivery 7")
    assert move.actor == f"user:{staff['marketer']}"
    page = web.get(done.headers["location"]).text
    assert "Stock updated." in page and "Restocked: Delivery 7" in page
    assert '<dd data-testid="stock-left">520</dd>' in page

    for delta, message in [
        ("", "Fill this in."),
        ("0", "Enter a number other than 0."),
        ("two", "Enter a whole number."),
        ("-600", "There are not that many units in stock."),
    ]:
        refused = web.post(stock, data={"csrf_token": token, "delta": delta})
        assert refused.status_code == 422
        assert field_errors(refused.text) == {"stock-delta": message}
    web.post(stock, data={"csrf_token": token, "delta": "-20", "note": "Count"})
    assert rows(db, Reward)[0].stock_left == 500
    assert rows(db, StockMove)[-1].reason == "correction"


# --- coupons ----------------------------------------------------------------------------------


@pytest.fixture
def coupon(db, seeded) -> str:
    """An americano redeemed by 김민지 (given 10,000 points first)."""
    add_reward(db, AMERICANO)
    add_reward(db, FIVE_OFF)
    give_points(db, seeded.member_id, 10_000)
    return redeem_for(db, seeded.member_id, "americano")


def test_a_coupon_is_found_by_its_code_however_it_is_typed(web, db, seeded, coupon):
    as_role(web, "support")
    typed = coupon.replace("-", "").lower()
    page = web.get(COUPONS, params={"program": "bakery", "code": typed})
    assert page.status_code == 200
    assert f'<span class="mono" data-testid="coupon-code">{coupon}</span>' in page.text
    assert "Free americano" in page.text and "Open" in page.text and "1,500 points" in page.text
    assert f'href="/admin/members/{seeded.member_id}?program=bakery#coupons"' in page.text
    assert '<tr data-event="issued">' in page.text
    assert 'action="/admin/rewards/coupons/bakery/cancel"' in page.text

    missing = web.get(COUPONS, params={"program": "bakery", "code": "0000-0000-0000-0000-0"})
    assert missing.status_code == 200
    assert field_errors(missing.text) == {
        "coupon-code": "No coupon has this code. Check it and try again."
    }
    assert 'data-testid="coupon-code"' not in missing.text


def test_support_cancels_with_a_reason_and_the_points_come_back(web, db, staff, seeded, coupon):
    token = as_role(web, "support")
    before = available(db, seeded.member_id)
    cancel = "/admin/rewards/coupons/bakery/cancel"

    refused = web.post(cancel, data={"csrf_token": token, "coupon": coupon, "reason": " "})
    assert refused.status_code == 422
    assert field_errors(refused.text) == {"coupon-reason": "Fill this in."}
    assert coupon_of(db, coupon).status == "issued"

    done = web.post(
        cancel,
        data={"csrf_token": token, "coupon": coupon, "reason": "Changed her mind"},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    query = parse_qs(urlsplit(done.headers["location"]).query)
    assert query == {
        "program": ["bakery"], "code": [coupon], "done": ["cancelled"], "returned": ["1500"]
    }  # fmt: skip
    assert available(db, seeded.member_id) == before + 1500
    assert coupon_of(db, coupon).status == "cancelled"
    event = rows(db, CouponEvent, CouponEvent.kind == "cancelled")[0]
    assert event.reason == "Changed her mind" and event.actor == f"user:{staff['support']}"
    assert rows(db, Reward, Reward.code == "americano")[0].stock_left == 500
    [audited] = rows(db, AuditRecord, AuditRecord.action == "coupon.cancelled")
    assert audited.actor == f"user:{staff['support']}"

    page = web.get(done.headers["location"]).text
    assert "Coupon cancelled: 1,500 points returned to the member." in page
    assert "Cancelled" in page and "Changed her mind" in page
    assert "This coupon is no longer open" in page and "Cancel coupon" not in page

    again = web.post(cancel, data={"csrf_token": token, "coupon": coupon, "reason": "again"})
    assert again.status_code == 409
    assert form_errors(again.text) == ["This coupon has already been cancelled."]


def test_points_whose_lot_expired_meanwhile_are_said_to_expire_again(web, db, seeded, coupon):
    # The americano took 김민지's soonest points first: 250 usable through 27 March.
    clock.freeze(datetime(2026, 3, 31, 3, 0, tzinfo=UTC))
    token = as_role(web, "support")
    done = web.post(
        "/admin/rewards/coupons/bakery/cancel",
        data={"csrf_token": token, "coupon": coupon, "reason": "Late return"},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    [event] = rows(db, CouponEvent, CouponEvent.kind == "cancelled")
    assert event.details is not None and event.details["points_expired_again"] == 250
    assert parse_qs(urlsplit(done.headers["location"]).query)["expired"] == ["250"]
    page = web.get(done.headers["location"]).text
    assert "Coupon cancelled: 1,500 points returned to the member." in page
    assert "250 points of them had expired meanwhile and expired again at once." in page


def test_reissue_gives_a_new_code_on_the_same_terms(web, db, seeded, coupon):
    token = as_role(web, "owner")
    before = available(db, seeded.member_id)
    old = coupon_of(db, coupon)
    done = web.post(
        "/admin/rewards/coupons/bakery/reissue",
        data={"csrf_token": token, "coupon": coupon, "reason": "Lost the printout"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    query = parse_qs(urlsplit(done.headers["location"]).query)
    new_code = query["code"][0]
    assert new_code != coupon and query["done"] == ["reissued"]
    fresh = coupon_of(db, new_code)
    assert fresh.status == "issued" and fresh.reissued_from_id == old.id
    assert (fresh.points, fresh.expires_at, fresh.member_id) == (
        old.points, old.expires_at, old.member_id
    )  # fmt: skip
    assert coupon_of(db, coupon).status == "cancelled"
    assert available(db, seeded.member_id) == before
    page = web.get(done.headers["location"]).text
    assert "A new code was issued on the same terms" in page and new_code in page
    old_page = web.get(COUPONS, params={"program": "bakery", "code": coupon}).text
    assert "Replaced by a new code" in old_page and "Lost the printout" in old_page


def test_the_member_page_lists_the_coupons_and_cancels_from_there(web, db, seeded, coupon):
    five = redeem_for(db, seeded.member_id, "five-off")
    token = as_role(web, "support")
    member = f"/admin/members/{seeded.member_id}"
    page = web.get(member).text
    section = page.split('<section id="coupons"')[1].split("</section>")[0]
    assert coupon in section and five in section
    assert "Free americano" in section and "5,000 KRW off" in section
    # Valid through the 30th local day after issue (2 March in Seoul).
    assert "Apr 1, 2026" in section and "Open" in section
    assert section.count('name="back" value="member"') == 2
    assert '<a href="#coupons">Coupons</a>' in page

    before = available(db, seeded.member_id)
    done = web.post(
        "/admin/rewards/coupons/bakery/cancel",
        data={"csrf_token": token, "coupon": five, "reason": "Wrong reward", "back": "member"},
        follow_redirects=False,
    )
    assert done.headers["location"] == f"{member}?program=bakery&coupon_done=cancelled#coupons"
    assert available(db, seeded.member_id) == before + 4000
    after = web.get(done.headers["location"]).text
    assert "Coupon cancelled: its points are back on the balance." in after
    row = after.split(f'data-coupon="{five}"')[1].split("</tr>")[0]
    assert "Cancelled" in row and "Cancel coupon" not in row

    # A refusal from the member's page is shown on the coupon's page, the way back kept.
    refused = web.post(
        "/admin/rewards/coupons/bakery/reissue",
        data={"csrf_token": token, "coupon": coupon, "reason": "", "back": "member"},
    )
    assert refused.status_code == 422
    assert field_errors(refused.text) == {"coupon-reason": "Fill this in."}
    assert 'name="back" value="member"' in refused.text


def test_a_viewer_sees_a_members_coupons_without_the_actions(web, seeded, coupon):
    as_role(web, "viewer")
    page = web.get(f"/admin/members/{seeded.member_id}").text
    section = page.split('<section id="coupons"')[1].split("</section>")[0]
    assert coupon in section and "Cancel coupon" not in section


# --- who may do what --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "method", "path", "status"),
    [
        ("viewer", "GET", "/admin/rewards", 200),
        ("viewer", "GET", AMERICANO_PAGE, 200),
        ("viewer", "GET", NEW, 403),
        ("viewer", "POST", NEW, 403),
        ("viewer", "POST", AMERICANO_PAGE, 403),
        ("viewer", "POST", AMERICANO_PAGE + "/stock", 403),
        ("viewer", "GET", COUPONS, 200),
        ("viewer", "POST", "/admin/rewards/coupons/bakery/cancel", 403),
        ("support", "GET", "/admin/rewards", 403),
        ("support", "GET", AMERICANO_PAGE, 403),
        ("support", "GET", COUPONS, 200),
        ("marketer", "POST", "/admin/rewards/coupons/bakery/cancel", 403),
        ("marketer", "POST", "/admin/rewards/coupons/bakery/reissue", 403),
        ("marketer", "GET", NEW, 200),
    ],
)
def test_each_role_reaches_only_what_it_may(web, db, coupon, role, method, path, status):
    token = as_role(web, role)
    data = {"csrf_token": token, "coupon": coupon, "reason": "test", "delta": "5"}
    answer = web.get(path) if method == "GET" else web.post(path, data=data)
    assert answer.status_code == status
    if status == 403:
        assert "Not for your role" in answer.text
    assert coupon_of(db, coupon).status == "issued"
    assert rows(db, Reward, Reward.code == "americano")[0].stock_left == 499


def test_a_viewer_reads_the_reward_but_gets_no_form_to_change_it(web, coupon):
    as_role(web, "viewer")
    page = web.get(AMERICANO_PAGE).text
    assert '<fieldset class="checks" disabled>' in page
    assert "Save as a new version" not in page and "Change stock" not in page
    assert "Owners and marketers can change rewards." in page


def test_a_marketer_looks_coupons_up_but_cannot_cancel_them(web, coupon):
    as_role(web, "marketer")
    page = web.get(COUPONS, params={"program": "bakery", "code": coupon}).text
    assert coupon in page and "Cancel coupon" not in page and "Reissue" not in page


@pytest.mark.parametrize(
    ("role", "sees"), [("owner", True), ("marketer", True), ("support", False)]
)
def test_the_nav_shows_rewards_to_who_may_open_them(web, role, sees):
    as_role(web, role)
    assert ('href="/admin/rewards"' in web.get("/admin/").text) is sees


def test_every_key_built_from_a_value_has_its_message():
    keys = [f"rewards.kind.{k}" for k in REWARD_KINDS]
    keys += [f"rewards.kind.{k}.help" for k in REWARD_KINDS]
    keys += [f"rewards.status.{s}" for s in pages.STATUSES]
    keys += [f"rewards.coupon.status.{s}" for s in COUPON_STATES]
    keys += [f"rewards.channel.{c}" for c in pages.CHANNELS]
    keys += [f"rewards.on_expiry.{o}" for o in pages.ON_EXPIRY]
    keys += [f"rewards.on_refund.{o}" for o in pages.ON_REFUND]
    keys += [f"rewards.done.{d}" for d in pages.NOTICES]
    keys += [f"rewards.coupons.done.{d}" for d in pages.COUPON_NOTICES]
    keys += [f"rewards.member.done.{d}" for d in pages.COUPON_NOTICES]
    keys += [f"rewards.error.{c}" for c in pages.COUPON_REFUSALS]
    keys += ["rewards.error.coupon_not_found", "rewards.error.out_of_stock"]
    keys += ["rewards.error.stock_untracked"]
    keys += [key for _start, _field, key in pages.CHECKS]
    keys += [f"rewards.coupon.source.{s}" for s in ("redeem", "bulk", "import")]
    keys += [f"rewards.stock.reason.{r}" for r in ("restock", "redeem", "cancel", "correction")]
    events = ("issued", "used", "expired", "cancelled", "restored", "reissued", "conflict")
    keys += [f"rewards.event.{e}" for e in events]
    fields = set(RewardCreate.model_fields) - {"stock"}
    keys += [f"rewards.field.{f}" for f in fields]
    assert [key for key in keys if not i18n.has_message(key)] == []


@pytest.mark.parametrize("language", ["ko", "zh"])
def test_every_page_reads_in_the_staff_members_language(web, seeded, coupon, language):
    token = as_role(web, "owner")
    web.post("/admin/account/language", data={"csrf_token": token, "language": language})
    web.post(
        "/admin/rewards/coupons/bakery/reissue",
        data={"csrf_token": token, "coupon": coupon, "reason": "분실"},
    )
    pages = [
        "/admin/rewards",
        AMERICANO_PAGE,
        f"{COUPONS}?program=bakery&code={coupon}",
        f"/admin/members/{seeded.member_id}",
        *(f"{NEW}?kind={kind}" for kind in REWARD_KINDS),
    ]
    for path in pages:
        page = web.get(path)
        assert page.status_code == 200, path
        assert f'<html lang="{language}">' in page.text
        # A message missing from the catalog would show as its key.
        assert not re.search(r"\brewards\.[a-z]", page.text.replace("/rewards", "")), path
