"""Pure checks of the row parsers (no database)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import EmailStr, TypeAdapter, ValidationError

from patron.bulk import fields

EMAIL: TypeAdapter[str] = TypeAdapter(EmailStr)


@settings(max_examples=120, deadline=None)
@given(st.from_regex(fields._PLAIN_EMAIL, fullmatch=True))
def test_the_fast_email_check_accepts_only_what_emailstr_accepts(text: str):
    if fields._plain_email(text):
        EMAIL.validate_python(text)  # raises if EmailStr disagrees


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=40))
def test_any_text_is_either_an_email_or_invalid_email(text: str):
    try:
        out = fields.parse_email(text)
    except fields.Invalid as exc:
        assert exc.code == "invalid_email"
    else:
        assert out == out.strip().lower()
        try:
            EMAIL.validate_python(text)
        except ValidationError as exc:  # pragma: no cover - the property this test states
            raise AssertionError(f"{text!r} accepted but EmailStr refuses it") from exc


def test_default_headers_map_to_fields_and_the_rest_is_ignored():
    header = ["Customer ID", "Name", "Mobile", "E-mail", "Points", "attributes.store", "Notes"]
    mapping, ignored = fields.resolve_mapping(header, {}, fields.MEMBER_FIELDS)
    assert mapping == {
        0: "external_ref",
        1: "name",
        2: "phone",
        3: "email",
        4: "opening_balance",
        5: "attributes.store",
    }
    assert ignored == ["Notes"]
    mapping, _ = fields.resolve_mapping(
        header, {"Notes": "attributes.note", "Points": "ignore"}, fields.MEMBER_FIELDS
    )
    assert mapping[6] == "attributes.note" and 4 not in mapping
