"""Request and response bodies of the REST API (they shape the OpenAPI document)."""

from __future__ import annotations

import datetime as dt
from datetime import datetime
from typing import Annotated, Literal

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
    created_by: str | None = Field(None, description="Name of the key that created (and owns) the link; null for links made before keys.")
    updated_by: str | None = Field(None, description="Name of the key that last changed the link.")
    visits: int = Field(0, description="Visits counted so far, bots excluded (folded from the visit stream within seconds).")


class LinkPage(BaseModel):
    data: list[LinkOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page; null on the last.")


KeyRole = Annotated[str, Field(min_length=1, max_length=64, description="A role of the authorization policy: admin, editor, reader, or one the operator added.", examples=["editor"])]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=64, description="Unique, for good: 1-64 of A-Z a-z 0-9 _ . -", examples=["ci-deploy"])
    role: KeyRole
    expires_at: datetime | None = Field(None, description="When the key stops working (RFC 3339); never when omitted.")
    expires_in: str | None = Field(None, description="Instead of expires_at: a duration from now, like 90d, 12h, 30m or 2w.", examples=["90d"])


class KeyOut(BaseModel):
    id: str = Field(..., description="The key's public id: the <id> in lg_<id>_<secret>.", examples=["3f9c2a7b1e04"])
    name: str
    role: str
    status: Literal["active", "expired", "revoked"]
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = Field(None, description="Written in the background, at most about once a minute.")


class KeyCreated(KeyOut):
    key: str = Field(..., description="The whole key. Shown this once: store it now, it cannot be read again.", examples=["lg_<id>_<secret>"])


class KeyList(BaseModel):
    data: list[KeyOut]


class StatsTotal(BaseModel):
    visits: int = Field(..., description="Visits in the range (bots added when include_bots=true).")
    bots: int = Field(..., description="Visits of bots (crawlers, link previewers, scripts) in the range.")
    unique_visitors: int = Field(..., description="The sum of each day's distinct visitors (see the docs).")


class StatsDay(BaseModel):
    date: dt.date = Field(..., description="A UTC day.")
    visits: int
    bots: int
    unique_visitors: int


class StatsCount(BaseModel):
    name: str = Field(..., description="The value (a referrer host, country code, browser, OS or device type), or `other`.")
    visits: int


class OrphanCount(BaseModel):
    status: int = Field(..., description="404: a code no link has; 410: a link that is no longer live.")
    visits: int
    bots: int


class LinkStats(BaseModel):
    total: StatsTotal
    days: list[StatsDay] = Field(..., description="Every day of the range, in order, zeros included.")
    referrers: list[StatsCount] = Field(..., description="Referrer hosts (`direct`: none); top 10 and `other`.")
    countries: list[StatsCount] = Field(..., description="ISO country codes (`unknown` without a GeoIP database); top 10 and `other`.")
    browsers: list[StatsCount] = Field(..., description="Browser families; top 10 and `other`.")
    os: list[StatsCount] = Field(..., description="Operating system families; top 10 and `other`.")
    devices: list[StatsCount] = Field(..., description="desktop, mobile, tablet, tv, bot or unknown.")


class ServiceStats(LinkStats):
    orphans: list[OrphanCount] = Field(..., description="Visits of codes that were not live, by status.")
