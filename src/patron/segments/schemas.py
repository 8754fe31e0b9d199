"""The segment API's documents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from patron.segments.definition import CODE_PATTERN, Definition


class SegmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=CODE_PATTERN, max_length=40, description="e.g. gold-dormant")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=1000)
    definition: Definition


class SegmentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=1000)
    definition: Definition


class SegmentOut(BaseModel):
    code: str
    name: str
    description: str
    definition: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime
    updated_by: str


class SegmentList(BaseModel):
    items: list[SegmentOut]


class PreviewIn(BaseModel):
    """A definition being edited: counted and sampled without saving it."""

    model_config = ConfigDict(extra="forbid")

    definition: Definition
    as_of: datetime | None = None
    sample: int = Field(10, ge=0, le=100)


class SampleMember(BaseModel):
    member_id: int
    name: str
    tier: str | None
    balance: int


class CountOut(BaseModel):
    count: int
    as_of: datetime
    sample: list[SampleMember] = []


class MemberPage(BaseModel):
    as_of: datetime
    items: list[int]
    next_cursor: int | None


class SnapshotIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    as_of: datetime | None = None


class SnapshotOut(BaseModel):
    id: int
    segment: str
    segment_version: int
    as_of: datetime
    taken_at: datetime
    taken_by: str
    members: int


class SnapshotList(BaseModel):
    items: list[SnapshotOut]
