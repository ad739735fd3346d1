"""Request and response bodies of the REST API (they shape the OpenAPI document)."""

from __future__ import annotations

import datetime as dt
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ..query_filter import QueryPolicy

RedirectStatus = Literal[301, 302, 307, 308]


Password = Annotated[str, Field(min_length=1, max_length=256, json_schema_extra={"writeOnly": True}, description="1-256 characters.")]
Title = Annotated[str, Field(max_length=200, description="A title for people (<= 200 characters).")]
Tags = Annotated[list[str], Field(max_length=20, description="Up to 20 tags of 1-64 letters, digits, '-', '_', '.'; case-insensitive, shown in lower case.", examples=[["spring", "mail"]])]


class LinkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(..., description="The long URL (http or https by default).", examples=["https://example.com/a/long/path?x=1"])
    alias: str | None = Field(None, description="A custom code: 3-64 of A-Z a-z 0-9 _ -.", examples=["spring-sale"])
    redirect_status: RedirectStatus | None = Field(None, description="301, 302, 307 or 308; the operator default when omitted.")
    query: QueryPolicy | None = Field(None, description="Gateway query policy; the operator default when omitted.")
    title: Title | None = None
    tags: Tags | None = None
    valid_since: AwareDatetime | None = Field(None, description="Before this, the code answers 404 as if it did not exist.")
    valid_until: AwareDatetime | None = Field(None, description="From this on, the link is gone (its fallback, or 410).")
    max_visits: int | None = Field(None, ge=1, le=2**53, description="Visitors it admits in total (bots do not count); then it is gone.")
    disabled: bool = Field(False, description="Switched off by its owner: gone until enabled again.")
    fallback_url: str | None = Field(None, description="Where visitors go once the link is gone, instead of the 410 page.")
    password: Password | None = Field(None, description="Visitors must enter it first (a form, or the X-Link-Password header). Stored only as an argon2id hash; never returned.")


class LinkUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, description="A new long URL.")
    redirect_status: RedirectStatus | None = Field(None, description="A new redirect status.")
    query: QueryPolicy | None = Field(None, description="A new query policy; null returns to the operator default.")
    title: Title | None = Field(None, description="A new title; null removes it.")
    tags: Tags | None = Field(None, description="The new set of tags (replaces the old); null or [] removes all.")
    valid_since: AwareDatetime | None = Field(None, description="null removes it.")
    valid_until: AwareDatetime | None = Field(None, description="null removes it.")
    max_visits: int | None = Field(None, ge=1, le=2**53, description="null removes the limit; never below the visits counted.")
    disabled: bool | None = Field(None, description="The owner switches the link off (true) or on (false).")
    blocked: bool | None = Field(None, description="Admins only: block (true) or unblock (false).")
    fallback_url: str | None = Field(None, description="null removes it.")
    password: Password | None = Field(None, description="A new password; null removes it. Never returned.")


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
    status: Literal["active", "scheduled", "expired", "exhausted", "disabled", "blocked"] = Field(
        ..., description="Derived: blocked, disabled, expired, exhausted, scheduled or active, in that order.")
    title: str | None = None
    tags: list[str] = Field(default_factory=list)
    valid_since: datetime | None = None
    valid_until: datetime | None = None
    max_visits: int | None = None
    visits_counted: int = Field(0, description="Visits counted toward max_visits (SQL's count; replicas add theirs every second).")
    disabled: bool = False
    blocked: bool = False
    fallback_url: str | None = None
    password_protected: bool = Field(False, description="Visitors need the link's password (which is never shown).")
    visits: int = Field(0, description="Visits counted so far, bots excluded (folded from the visit stream within seconds).")


class LinkPage(BaseModel):
    data: list[LinkOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page; null on the last.")


KeyRole = Annotated[str, Field(min_length=1, max_length=64, description="A role of the authorization policy: admin, editor, reader, or one the operator added.", examples=["editor"])]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=64, description="Unique, for good: 1-64 of A-Z a-z 0-9 _ . -", examples=["ci-deploy"])
    role: KeyRole
    expires_at: AwareDatetime | None = Field(None, description="When the key stops working (RFC 3339 with a time zone); never when omitted.")
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


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    links: list[dict] = Field(..., min_length=1, max_length=1000, description="Up to 1,000 bodies of POST /api/v1/links.")


class BatchItem(BaseModel):
    index: int = Field(..., description="The item's place in the request, from 0.")
    status: int = Field(..., description="201, or the 4xx this item would have got alone.")
    link: LinkOut | None = None
    problem: dict | None = Field(None, description="The item's problem (RFC 9457), when it was refused.")


class BatchResult(BaseModel):
    results: list[BatchItem]


class TagCount(BaseModel):
    tag: str
    links: int = Field(..., description="Live links with this tag that the key may see.")


class TagList(BaseModel):
    data: list[TagCount]


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
    sources: list[StatsCount] = Field(..., description="How visitors came: `qr` (the link's QR code, GET /{code}/qr) or `link`.")


class ServiceStats(LinkStats):
    orphans: list[OrphanCount] = Field(..., description="Visits of codes that were not live, by status.")
