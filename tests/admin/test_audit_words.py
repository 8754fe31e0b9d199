"""Audit records in the staff member's words (patron.admin.audit_words): every action Patron
records has a label in ko/zh/en, values read as people write them, and the audit log and the
member page show the words, not the codes. Engine-independent: SQLite only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from patron.admin import audit_words, i18n
from tests.admin.helpers import STAFF, sign_in

SRC = Path(__file__).resolve().parents[2] / "src" / "patron"


def recorded_actions() -> set[str]:
    """Every literal action code passed to the audit log in the source."""
    found: set[str] = set()
    for path in SRC.rglob("*.py"):
        found |= set(re.findall(r'action="([a-z_]+\.[a-z_.]+)"', path.read_text(encoding="utf-8")))
    return found


def test_every_recorded_action_has_words_in_three_languages():
    catalog = i18n.catalog()
    missing = sorted(a for a in recorded_actions() if f"audit.act.{a}" not in catalog)
    assert missing == []
    for code in recorded_actions():
        texts = {lang: audit_words.action(code, lang) for lang in i18n.LANGUAGES}
        assert code not in texts.values(), texts
        assert len(set(texts.values())) == 3, texts


def test_values_read_as_people_write_them():
    assert audit_words.value(29995, "en") == "29,995"
    assert audit_words.value(None, "ko") == audit_words.value("", "ko") == "없음"
    assert audit_words.value(True, "zh") == "是"
    assert audit_words.value(["BKR100000", "BKR100001"], "en") == "BKR100000, BKR100001"
    assert audit_words.value({"email": True}, "en") == '{"email": true}'
    assert audit_words.value("x" * 500, "en").endswith("…")
    pairs = audit_words.pairs({"balance": 29495, "manual_until": None}, "ko")
    assert [(p.field, p.value) for p in pairs] == [("잔액", "29,495"), ("수동 지정 만료", "없음")]
    # An action or field with no words yet shows its code, so nothing is hidden.
    assert audit_words.action("brand_new.thing", "ko") == "brand_new.thing"
    assert audit_words.field("some_flag", "en") == "some flag"


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_the_audit_log_and_member_page_show_words(db, app, staff, seeded):
    web = TestClient(app)
    token = sign_in(web, STAFF["owner"][0])
    adjusted = web.post(
        f"/admin/members/{seeded.member_id}/adjust",
        data={"csrf_token": token, "program": "bakery", "points": "500", "reason": "Goodwill"},
        follow_redirects=False,
    )
    assert adjusted.status_code == 303, adjusted.text
    for path in ("/admin/audit", f"/admin/members/{seeded.member_id}"):
        page = web.get(path).text
        assert ">Points adjusted</span>" in page, path
        assert 'data-action="points.adjusted"' in page
        assert re.search(r"balance: [\d,]*,\d{3}", page), path
