"""The HTTP contract of ``POST /v1/changes`` (shown in the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ChangeIn(BaseModel):
    """A change as a department reports it; the gateway sets the authority to the calling department."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "entity_type": "person",
                    "entity_key": "11010519491231002X",
                    "authority_version": 7,
                    "op": "u",
                    "event_type": "moved_in",
                    "valid_from": "2024-05-01T00:00:00Z",
                    "after": {
                        "id_number": "11010519491231002X",
                        "name": "王芳",
                        "sex": "2",
                        "birth_date": "1949-12-31",
                        "district_code": "110105",
                        "address": "朝阳区建国路1号",
                    },
                }
            ]
        },
    )

    entity_type: str = Field(min_length=1, description="person, household, marriage, ... (one change topic each)")
    entity_key: str = Field(min_length=1, description="the entity's stable key, e.g. the 18-digit ID number")
    authority_version: int = Field(ge=1, description="monotonic per entity at the authority")
    op: Literal["c", "u", "d", "r"]
    event_type: str = Field(min_length=1, description="created, updated, moved_in, died, identifier_upgraded, ...")
    event_id: str | None = Field(None, description="leave out: derived from (authority, type, key, version)")
    valid_from: datetime | None = None
    recorded_at: datetime | None = Field(None, description="default: now")
    correction: bool = False
    supersedes_key: str | None = None
    legal_basis: str | None = None
    restrictions: list[str] = []
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None

    def change(self, department: str) -> dict[str, Any]:
        """The envelope fields for the publisher (unset optional fields left to its defaults)."""
        data = self.model_dump(exclude_none=True)
        data["authority"] = department
        data["before"], data["after"] = self.before, self.after
        return data


class ChangeAccepted(BaseModel):
    """The broker acknowledged the change."""

    event_id: str
    topic: str
    partition: int
    offset: int


class Problem(BaseModel):
    detail: str
