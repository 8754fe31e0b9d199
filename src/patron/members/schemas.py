from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

CardKind = Literal["physical", "ecard", "app"]
CardStatus = Literal["active", "blocked", "lost"]
Language = Literal["ko", "zh", "en", "ja"]
Gender = Literal["female", "male", "other", "undisclosed"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CardIn(Strict):
    number: str = Field(min_length=4, max_length=40, pattern=r"^[A-Za-z0-9-]+$")
    kind: CardKind = "physical"


class MemberFields(Strict):
    name: str | None = Field(None, min_length=1, max_length=200)
    phone: str | None = Field(None, min_length=3, max_length=30)
    email: EmailStr | None = None
    birthday: date | None = None
    gender: Gender | None = None
    language: Language | None = None
    preferences: dict[str, Any] | None = None
    attributes: dict[str, Any] | None = None
    marketing_consent: bool | None = None


class MemberCreate(MemberFields):
    name: str = Field(min_length=1, max_length=200)
    program: str | None = Field(None, max_length=40, description="Enroll in this program at once.")
    cards: list[CardIn] = Field(default_factory=list, max_length=10)


class MemberUpdate(MemberFields):
    pass


class Enrollment(Strict):
    program: str = Field(max_length=40)


class CardOut(BaseModel):
    number: str
    kind: str
    status: str
    created_at: datetime


class MemberOut(BaseModel):
    id: int
    name: str
    phone: str | None
    email: str | None
    birthday: date | None
    gender: str | None
    language: str
    preferences: dict[str, Any]
    attributes: dict[str, Any]
    marketing_consent: bool
    status: str
    cards: list[CardOut]
    programs: list[str]
    created_at: datetime
    updated_at: datetime


class MemberPage(BaseModel):
    items: list[MemberOut]
    next_cursor: str | None


class CardStatusUpdate(Strict):
    status: CardStatus


class BlockRequest(Strict):
    reason: str = Field(min_length=1, max_length=500)


class MemberRef(Strict):
    """Identify a member by exactly one of id, card number, phone or e-mail."""

    id: int | None = Field(None, ge=1, le=2**53)
    card: str | None = Field(None, min_length=1, max_length=40)
    phone: str | None = Field(None, min_length=3, max_length=30)
    email: str | None = Field(None, min_length=3, max_length=254)

    @model_validator(mode="after")
    def _exactly_one(self) -> MemberRef:
        given = [v for v in (self.id, self.card, self.phone, self.email) if v is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of member.id, member.card, member.phone or member.email"
            )
        return self


class ChangeOut(BaseModel):
    at: datetime
    actor: str
    action: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
