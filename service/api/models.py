"""Request and response bodies of the REST API (they shape the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..query_filter import QueryPolicy

RedirectStatus = Literal[301, 302, 307, 308]


class LinkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(..., description="The long URL (http or https by default).", examples=["https://example.com/a/long/path?x=1"])
    alias: str | None = Field(None, description="A custom code: 3-64 of A-Z a-z 0-9 _ -.", examples=["spring-sale"])
    redirect_status: RedirectStatus | None = Field(None, description="301, 302, 307 or 308; the operator default when omitted.")
    query: QueryPolicy | None = Field(None, description="Gateway query policy; the operator default when omitted.")


class LinkUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, description="A new long URL.")
    redirect_status: RedirectStatus | None = Field(None, description="A new redirect status.")
    query: QueryPolicy | None = Field(None, description="A new query policy; null returns to the operator default.")


class LinkOut(BaseModel):
    code: str = Field(..., description="The short code.")
    short_url: str = Field(..., description="The URL to hand out.")
    url: str = Field(..., description="The long URL, as stored (normalised).")
    redirect_status: int
    query: QueryPolicy | None = Field(None, description="The link's own query policy; null means the operator default.")
    created_at: datetime
    updated_at: datetime


class LinkPage(BaseModel):
    data: list[LinkOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page; null on the last.")
