"""The rule editor's confirmation of a large change is the server's (issue 16 item 11): the
publish replays the change itself, so a form without the page's `large` flag, or a preview of
another period, cannot publish a change beyond the threshold unconfirmed."""

from __future__ import annotations

from tests.admin.test_rules_pages import (
    SEEDED_VERSION,
    as_role,
    edit_base,
    hidden_fields,
    versions,
    web,
)

__all__ = ["web"]


def test_a_publish_without_the_pages_flag_is_still_refused_until_confirmed(web, db):
    token = as_role(web, "marketer")
    preview = web.post("/admin/rules/preview", data=edit_base(token, points="20"))
    fields = hidden_fields(preview.text, "/admin/rules/publish")
    assert fields.pop("large") == "1"
    refused = web.post("/admin/rules/publish", data=fields, follow_redirects=False)
    assert refused.status_code == 409
    assert "Not published: replayed over the last 30 days" in refused.text
    assert 'data-testid="large-change"' in refused.text and 'name="confirm_large"' in refused.text
    assert versions(db) == [1, SEEDED_VERSION]
    again = hidden_fields(refused.text, "/admin/rules/publish")
    assert again["candidate"] == fields["candidate"] and again["large"] == "1"
    done = web.post(
        "/admin/rules/publish", data={**again, "confirm_large": "1"}, follow_redirects=False
    )
    assert done.status_code == 303
    assert versions(db) == [1, SEEDED_VERSION, 3]


def test_a_preview_of_a_quiet_period_still_asks_for_the_confirmation(web, db):
    """Replayed over a year without purchases the change is nothing; the publish's own replay
    (the last 30 days) is +100 %: the page asks, and the server holds to it."""
    token = as_role(web, "marketer")
    quiet = {**edit_base(token, points="20"), "sim_from": "2020-01-01", "sim_to": "2020-12-31"}
    preview = web.post("/admin/rules/preview", data=quiet)
    assert preview.status_code == 200
    assert 'data-testid="large-change"' in preview.text
    assert "changes total points by 100.0% (more than ±10%)" in preview.text
    fields = hidden_fields(preview.text, "/admin/rules/publish")
    fields.pop("large")
    refused = web.post("/admin/rules/publish", data=fields, follow_redirects=False)
    assert refused.status_code == 409
    assert versions(db) == [1, SEEDED_VERSION]


def test_the_refusal_reads_in_korean(web, db):
    token = as_role(web, "marketer")
    web.post("/admin/account/language", data={"csrf_token": token, "language": "ko"})
    preview = web.post("/admin/rules/preview", data=edit_base(token, points="20"))
    fields = hidden_fields(preview.text, "/admin/rules/publish")
    fields.pop("large")
    refused = web.post("/admin/rules/publish", data=fields, follow_redirects=False)
    assert refused.status_code == 409
    assert "게시되지 않았습니다" in refused.text
