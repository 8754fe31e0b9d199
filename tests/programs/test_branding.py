"""Program branding: the WCAG contrast maths, validation, the API round trip, scopes, audit."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from patron import clock
from patron.audit.models import AuditRecord
from patron.audit.service import Actor
from patron.programs import branding
from patron.programs.models import ProgramBranding
from tests.conftest import T0, auth
from tests.factories import BAKERY, make_member, make_program

LOW_CARD = {"card_background": "#777777", "card_text": "#ffffff"}


# --- contrast (pure) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fg", "bg", "ratio"),
    [
        ("#000000", "#ffffff", 21.0),
        ("#ffffff", "#000000", 21.0),  # symmetric: the lighter is always on top of the formula
        ("#777777", "#ffffff", 4.48),
        ("#767676", "#ffffff", 4.54),  # the lightest grey that passes AA on white
        ("#ffffff", "#ffffff", 1.0),
        ("#ff0000", "#ffffff", 4.0),
        ("#0000ff", "#ffffff", 8.59),
        ("#777777", "#FFFFFF", 4.48),  # upper case is the same colour
    ],
)
def test_contrast_ratio_matches_the_wcag_reference_values(fg, bg, ratio):
    assert branding.contrast_ratio(fg, bg) == pytest.approx(ratio, abs=0.005)


def test_luminance_runs_from_black_to_white():
    assert branding.relative_luminance("#000000") == 0
    assert branding.relative_luminance("#ffffff") == pytest.approx(1)


def test_the_defaults_pass_aa():
    assert branding.contrast_warnings(branding.Branding()) == []


def test_low_contrast_pairs_are_warnings_with_their_ratio():
    b = branding.Branding(primary_color="#ffcc00", **LOW_CARD)
    warnings = branding.contrast_warnings(b)
    assert [(w.pair, w.ratio) for w in warnings] == [
        ("card_text_on_card_background", 4.48),
        ("white_on_primary", 1.51),
    ]
    assert warnings[0].foreground == "#ffffff" and warnings[0].background == "#777777"


def test_4_48_is_below_aa_even_though_it_rounds_to_4_5():
    ratio = branding.contrast_ratio("#777777", "#ffffff")
    assert round(ratio, 1) == 4.5 and ratio < branding.AA_RATIO


@pytest.mark.parametrize("bad", ["#fff", "123456", "#12345g", "#1234567", "red", "", " #123456"])
def test_a_colour_is_hash_and_six_hex_digits(bad):
    with pytest.raises(ValidationError):
        branding.Branding(primary_color=bad)


@pytest.mark.parametrize(
    "bad",
    [
        "http://x.example/logo.png",
        "//evil.example/x.png",
        "javascript:alert(1)",
        "logo.png",
        "https://",
        "/a b.png",
        '/x".png',
    ],
)
def test_a_logo_is_https_or_a_path(bad):
    with pytest.raises(ValidationError):
        branding.Branding(logo_url=bad)


def test_colours_are_stored_lower_case_and_a_blank_logo_is_none():
    b = branding.Branding(card_text="#ABCDEF", logo_url="  ")
    assert b.card_text == "#abcdef" and b.logo_url is None
    assert branding.Branding(logo_url="/static/logo.svg").logo_url == "/static/logo.svg"


def test_the_name_falls_back_to_english_then_the_program_name():
    b = branding.Branding(display_name={"ko": "동네 빵집", "en": "Corner Bakery"})
    assert b.name_in("ko", "x") == "동네 빵집"
    assert b.name_in("zh", "x") == "Corner Bakery"
    assert branding.Branding().name_in("zh", "Bakery") == "Bakery"


# --- service on a real database ---------------------------------------------------------------

MARKETER = Actor("user", "7")


def test_get_gives_defaults_then_what_was_saved_with_an_audit_record(db, frozen):
    with db.unit_of_work() as s:
        program = make_program(s, now=T0)
        assert branding.get(s, program) == branding.Branding()
        branding.save(s, program, branding.Branding(**LOW_CARD), actor=MARKETER, now=clock.now())
    with db.unit_of_work(readonly=True) as s:
        row = s.scalars(select(ProgramBranding)).one()
        assert row.updated_by == "user:7" and row.updated_at == T0
        assert branding.get(s, s.get(type(program), row.program_id)).card_background == "#777777"
        audit = s.scalars(
            select(AuditRecord).where(AuditRecord.action == "program.branding.updated")
        ).one()
        assert audit.actor == "user:7" and audit.subject_id == "bakery"
        assert audit.before == {"card_background": "#1f2937"}
        assert audit.after == {"card_background": "#777777"}


def test_saving_the_same_branding_again_writes_no_audit_record(db, frozen):
    with db.unit_of_work() as s:
        program = make_program(s, now=T0)
        b = branding.Branding(primary_color="#004488")
        branding.save(s, program, b, actor=MARKETER, now=T0)
        branding.save(s, program, b, actor=MARKETER, now=T0)
        rows = s.scalars(
            select(AuditRecord).where(AuditRecord.action == "program.branding.updated")
        ).all()
        assert len(rows) == 1


def test_messages_name_the_program_by_its_branding_in_the_members_language(db, frozen):
    from patron.notify import templates

    with db.unit_of_work() as s:
        program = make_program(s, now=T0)
        ko = make_member(s, now=T0, program=program, language="ko")
        zh = make_member(s, now=T0, program=program, language="zh")

        def name_for(member) -> str:
            context = templates.context_for(
                s, program, member, "points.earned", {}, now=T0, unsubscribe_url=None
            )
            return context["program"]["name"]

        assert name_for(ko) == program.name  # no branding yet: the program's own name
        names = {"ko": "동네 빵집", "en": "Corner Bakery"}
        b = branding.Branding(display_name=names)
        branding.save(s, program, b, actor=MARKETER, now=T0)
        assert name_for(ko) == "동네 빵집"
        assert name_for(zh) == "Corner Bakery"


# --- HTTP -------------------------------------------------------------------------------------


@pytest.fixture
def admin(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["admin"])


@pytest.fixture
def reader(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["read"])


@pytest.fixture
def pos(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["pos"])


@pytest.fixture
def bakery(client, admin) -> None:
    assert client.post("/api/v1/programs", json=BAKERY, headers=admin).status_code == 201


def test_the_api_round_trip_with_warnings(client, admin, reader, bakery):
    got = client.get("/api/v1/programs/bakery/branding", headers=reader)
    assert got.status_code == 200, got.text
    assert got.json()["card_text"] == "#ffffff" and got.json()["warnings"] == []

    body = {
        "display_name": {"ko": "동네 빵집", "zh": "街角面包店", "en": "Corner Bakery"},
        "logo_url": "https://cdn.example.com/bakery.png",
        "primary_color": "#1A56DB",
        "accent_color": "#f59e0b",
        **LOW_CARD,
    }
    put = client.put("/api/v1/programs/bakery/branding", json=body, headers=admin)
    assert put.status_code == 200, put.text
    assert put.json()["primary_color"] == "#1a56db"
    assert put.json()["warnings"] == [
        {
            "pair": "card_text_on_card_background",
            "foreground": "#ffffff",
            "background": "#777777",
            "ratio": 4.48,
            "minimum": 4.5,
        }
    ]
    again = client.get("/api/v1/programs/bakery/branding", headers=reader).json()
    assert again["display_name"]["ko"] == "동네 빵집"
    assert again["logo_url"] == "https://cdn.example.com/bakery.png"
    assert again["card_background"] == "#777777"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"card_text": "white"}, "card_text"),
        ({"primary_color": "#12345"}, "primary_color"),
        ({"logo_url": "http://insecure.example/logo.png"}, "logo_url"),
        ({"display_name": {"ko": "x" * 81}}, "display_name.ko"),
        ({"colour": "#ffffff"}, "colour"),
    ],
)
def test_a_bad_value_is_422_with_the_error_shape(client, admin, bakery, body, field):
    response = client.put("/api/v1/programs/bakery/branding", json=body, headers=admin)
    assert response.status_code == 422, response.text
    assert set(response.json()) == {"error", "detail"}
    assert response.json()["error"] == "validation_error"
    assert field in response.json()["detail"]


def test_scopes_read_may_read_only_admin_may_write(client, admin, reader, pos, bakery):
    url = "/api/v1/programs/bakery/branding"
    assert client.put(url, json={}, headers=reader).status_code == 403
    assert client.put(url, json={}, headers=pos).status_code == 403
    assert client.get(url, headers=pos).status_code == 403
    assert client.get(url).status_code == 401
    assert client.put(url, json={}, headers=admin).status_code == 200


def test_an_unknown_program_is_404(client, admin):
    response = client.get("/api/v1/programs/nowhere/branding", headers=admin)
    assert response.status_code == 404
    assert response.json()["error"] == "program_not_found"


def test_the_errors_are_declared_in_openapi(client):
    paths = client.get("/openapi.json").json()["paths"]["/api/v1/programs/{code}/branding"]
    assert {"401", "403", "404", "422"} <= set(paths["put"]["responses"])
    assert {"401", "403", "404"} <= set(paths["get"]["responses"])
