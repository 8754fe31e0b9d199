"""A program's branding: its display name per language, logo and colours, and the card design.

One JSON document per program (`program_brandings`), validated by `Branding`; a program without
a row gets the defaults. Colours are checked for contrast with the WCAG 2.x formula, and the
pairs that fall below AA for normal text (4.5:1) come back as warnings: the editor shows them,
the save is never refused (a brand's colours are the brand's choice).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.programs.models import Program, ProgramBranding

LANGUAGES = ("ko", "zh", "en")
HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
# WCAG 2.x level AA for normal-size text.
AA_RATIO = 4.5
WHITE = "#ffffff"


def _colour(value: str) -> str:
    if not HEX.match(value):
        raise ValueError("must be a colour as #RRGGBB, e.g. #1a73e8")
    return value.lower()


Colour = Annotated[
    str,
    Field(examples=["#1a73e8"], description="#RRGGBB", max_length=7),
    AfterValidator(_colour),
]


class DisplayNames(BaseModel):
    """The program's name as members read it, per language; empty means the program's name."""

    model_config = ConfigDict(extra="forbid")

    ko: str = Field("", max_length=80)
    zh: str = Field("", max_length=80)
    en: str = Field("", max_length=80)


class Branding(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: DisplayNames = Field(default_factory=DisplayNames)
    logo_url: str | None = Field(
        None,
        max_length=500,
        description="https://… or a path on this server (/static/logo.svg); none for no logo",
    )
    primary_color: Colour = "#1a56db"
    accent_color: Colour = "#f59e0b"
    card_background: Colour = "#1f2937"
    card_text: Colour = "#ffffff"

    @field_validator("logo_url")
    @classmethod
    def _logo(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if any(c.isspace() or c in "\"'<>\\" for c in value):
            raise ValueError("must be an https:// address or a path starting with /")
        if value.startswith("https://") and len(value) > len("https://"):
            return value
        if value.startswith("/") and not value.startswith("//"):
            return value
        raise ValueError("must be an https:// address or a path starting with /")

    def name_in(self, language: str, fallback: str) -> str:
        """The display name in `language`, else English, else `fallback` (the program's name)."""
        names = self.display_name
        return getattr(names, language, "") or names.en or fallback


# --- contrast (pure) --------------------------------------------------------------------------


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4


def relative_luminance(colour: str) -> float:
    """WCAG 2.x relative luminance of #RRGGBB: 0 (black) to 1 (white)."""
    hexa = _colour(colour)[1:]
    r, g, b = (int(hexa[i : i + 2], 16) for i in (0, 2, 4))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast_ratio(fg: str, bg: str) -> float:
    """(L1 + 0.05) / (L2 + 0.05), the lighter over the darker: 1 to 21."""
    a, b = relative_luminance(fg), relative_luminance(bg)
    lighter, darker = max(a, b), min(a, b)
    return (lighter + 0.05) / (darker + 0.05)


@dataclass(frozen=True)
class ContrastWarning:
    pair: str  # card_text_on_card_background | white_on_primary
    foreground: str
    background: str
    ratio: float  # rounded to 2 places, as people quote it

    def as_dict(self) -> dict[str, object]:
        return {
            "pair": self.pair,
            "foreground": self.foreground,
            "background": self.background,
            "ratio": self.ratio,
            "minimum": AA_RATIO,
        }


def contrast_pairs(branding: Branding) -> list[tuple[str, str, str]]:
    """The text/background pairs members read: (pair, foreground, background)."""
    return [
        ("card_text_on_card_background", branding.card_text, branding.card_background),
        # Buttons and headers on the portal and in e-mails put white text on the primary colour.
        ("white_on_primary", WHITE, branding.primary_color),
    ]


def contrast_warnings(branding: Branding) -> list[ContrastWarning]:
    """The pairs below WCAG AA (4.5:1). Compared unrounded: 4.48 is a warning, never 4.5."""
    out = []
    for pair, fg, bg in contrast_pairs(branding):
        ratio = contrast_ratio(fg, bg)
        if ratio < AA_RATIO:
            out.append(ContrastWarning(pair, fg, bg, round(ratio, 2)))
    return out


# --- storage ----------------------------------------------------------------------------------


def get(session: Session, program: Program) -> Branding:
    row = session.get(ProgramBranding, program.id)
    return Branding() if row is None else Branding.model_validate(row.document)


def save(
    session: Session, program: Program, branding: Branding, *, actor: Actor, now: datetime
) -> Branding:
    """Store the program's branding; audited as program.branding.updated (only what changed)."""
    row = session.get(ProgramBranding, program.id)
    before = Branding() if row is None else Branding.model_validate(row.document)
    document = branding.model_dump(mode="json")
    old, new = audit.changes(_flat(before), _flat(branding))
    if row is not None and not new:
        return branding
    if row is None:
        row = ProgramBranding(program_id=program.id, document=document, updated_at=now)
        session.add(row)
    row.document = document
    row.updated_at = now
    row.updated_by = str(actor)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="program.branding.updated",
        subject_type="program",
        subject_id=program.code,
        program_id=program.id,
        at=now,
        before=old,
        after=new,
    )
    return branding


def _flat(branding: Branding) -> dict[str, object]:
    data = branding.model_dump(mode="json")
    names = data.pop("display_name")
    return {**data, **{f"display_name.{k}": v for k, v in names.items()}}
