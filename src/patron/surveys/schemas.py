"""What a survey is made of, as the API and the admin form take it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from patron.members.schemas import MemberRef

LANGUAGES = ("ko", "zh", "en")
KEY = r"^[a-z][a-z0-9_]{0,39}$"
CODE = r"^[a-z0-9][a-z0-9_-]{0,39}$"
Kind = Literal["rating", "single", "multiple", "text"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Texts(Strict):
    """One text per language; at least the survey's fallback language."""

    ko: str | None = Field(None, max_length=500)
    zh: str | None = Field(None, max_length=500)
    en: str | None = Field(None, max_length=500)

    def given(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v}


class Choice(Strict):
    key: str = Field(pattern=KEY)
    label: Texts


class Question(Strict):
    key: str = Field(pattern=KEY, description="Stable id of the question, e.g. taste")
    kind: Kind
    label: Texts
    required: bool = True
    choices: list[Choice] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _choices(self) -> Question:
        if self.kind in ("single", "multiple"):
            if len(self.choices) < 2:
                raise ValueError(f"question {self.key}: a choice question needs 2 or more choices")
            keys = [c.key for c in self.choices]
            if len(set(keys)) != len(keys):
                raise ValueError(f"question {self.key}: choice keys must be unique")
        elif self.choices:
            raise ValueError(f"question {self.key}: only choice questions have choices")
        return self


class SurveyIn(Strict):
    code: str = Field(pattern=CODE)
    status: Literal["draft", "active", "archived"] = "draft"
    title: Texts
    intro: Texts = Field(default_factory=Texts)
    fallback_language: Literal["ko", "zh", "en"] = "ko"
    questions: list[Question] = Field(min_length=1, max_length=10)
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    stores: list[str] = Field(default_factory=list, max_length=200, description="Empty: all")
    channels: list[str] = Field(default_factory=list, max_length=20, description="Empty: all")
    points: int = Field(0, ge=0, le=1_000_000, description="Points for answering; 0: none")
    cooldown_days: int = Field(30, ge=0, le=3650, description="One invitation per N days")
    answer_days: int = Field(14, ge=1, le=365, description="How long a link stays valid")

    @model_validator(mode="after")
    def _consistent(self) -> SurveyIn:
        keys = [q.key for q in self.questions]
        if len(set(keys)) != len(keys):
            raise ValueError("question keys must be unique")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        texts = [self.title, *(q.label for q in self.questions)]
        texts += [c.label for q in self.questions for c in q.choices]
        if any(self.fallback_language not in t.given() for t in texts):
            raise ValueError(
                f"every title, question and choice needs a {self.fallback_language} text "
                "(the fallback language)"
            )
        return self


class SurveyOut(BaseModel):
    code: str
    status: str
    title: dict[str, str]
    intro: dict[str, str]
    fallback_language: str
    questions: list[dict]
    starts_at: datetime | None
    ends_at: datetime | None
    stores: list[str]
    channels: list[str]
    points: int
    cooldown_days: int
    answer_days: int
    version: int
    updated_at: datetime
    updated_by: str


class InvitationIn(Strict):
    member: MemberRef
    store: str | None = Field(None, max_length=40)
    channel: str | None = Field(None, max_length=40)


class InvitationOut(BaseModel):
    id: int
    member_id: int
    store: str | None
    channel: str | None
    order: str | None
    created_at: datetime
    expires_at: datetime
    answered_at: datetime | None
    token: str | None = Field(
        None, description="Only in the answer that created it: Patron keeps its hash only"
    )
    url: str | None = None


class InvitationPage(BaseModel):
    items: list[InvitationOut]
    next_cursor: int | None


class ChoiceCount(BaseModel):
    key: str
    label: str
    count: int


class QuestionResult(BaseModel):
    key: str
    kind: str
    label: str
    answers: int
    average: float | None = None  # rating
    distribution: list[ChoiceCount] = Field(default_factory=list)  # rating 1..5 or choices


class StoreResult(BaseModel):
    store: str | None
    responses: int
    average_rating: float | None


class ResultsOut(BaseModel):
    survey: str
    date_from: str | None = Field(None, alias="from")
    date_to: str | None = Field(None, alias="to")
    store: str | None
    invitations: int
    responses: int
    response_rate: float | None
    average_rating: float | None
    points_given: int
    questions: list[QuestionResult]
    stores: list[StoreResult]

    model_config = ConfigDict(populate_by_name=True)


class TextAnswer(BaseModel):
    response_id: int
    answered_at: datetime
    store: str | None
    question: str
    text: str


class TextPage(BaseModel):
    items: list[TextAnswer]
