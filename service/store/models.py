"""SQL schema. Changes reach a database only through Alembic migrations."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import (
    JSON, BigInteger, Boolean, Date, DateTime, ForeignKey, Index, Integer, MetaData, SmallInteger, String, Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT.
RowId = BigInteger().with_variant(Integer(), "sqlite")

class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime stored; use datetime.now(UTC)")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = {
        "sqlite_autoincrement": True,
        "comment": "API keys: who may call the REST API, in which role. Rows stay after revocation.",
    }

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True, comment="Row id.")
    key_id: Mapped[str] = mapped_column(
        String(32), unique=True, nullable=False,
        comment="The public part of the key (lg_<key_id>_<secret>): safe in logs, metrics and URLs.",
    )
    name: Mapped[str] = mapped_column(
        String(64), unique=True, nullable=False,
        comment="Unique name an operator gives the key; never reused, so audit trails stay unambiguous.",
    )
    role: Mapped[str] = mapped_column(String(64), nullable=False, comment="A role of the authorization policy.")
    secret_hash: Mapped[str] = mapped_column(
        String(64), nullable=False,
        comment="Hex SHA-256 of the secret, or HMAC-SHA256 with the server's pepper; never the secret.",
    )
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, comment="False once revoked.")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, comment="When it was made (UTC).")
    expires_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), nullable=True, comment="When it stops working (UTC); NULL: never."
    )
    revoked_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), nullable=True, comment="When it was revoked (UTC)."
    )
    last_used_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), nullable=True,
        comment="Last authenticated request, written in the background at most about once a minute.",
    )


class Link(Base):
    __tablename__ = "links"
    # AUTOINCREMENT on SQLite: a row id, and so a generated code, is never reused.
    # (created_by_id, id): an editor's listing walks its own links newest first.
    __table_args__ = (
        Index("ix_links_created_by_id_id", "created_by_id", "id"),
        {"sqlite_autoincrement": True, "comment": "Short links: one row per code ever handed out."},
    )

    id: Mapped[int] = mapped_column(
        RowId, primary_key=True, autoincrement=True,
        comment="Row id; generated codes are hashids of it, and listing pages by it.",
    )
    code: Mapped[str | None] = mapped_column(
        String(64), unique=True, nullable=True,
        comment="The short code: a custom alias, or hashids(id) set in the same transaction as the insert.",
    )
    is_alias: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False,
        comment="True when the client chose the code.",
    )
    url: Mapped[str] = mapped_column(
        Text, nullable=False, comment="The long URL, normalised (ASCII, punycode host)."
    )
    redirect_status: Mapped[int] = mapped_column(
        SmallInteger, nullable=False, comment="HTTP status of the redirect: 301, 302, 307 or 308."
    )
    query_policy: Mapped[dict | None] = mapped_column(
        JSON, nullable=True,
        comment="Gateway query policy of this link; NULL means the operator default.",
    )
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, comment="When the link was created (UTC)."
    )
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, comment="When url, status or policy last changed (UTC)."
    )
    deleted_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), nullable=True,
        comment="When the link was deleted; the row stays so the code is never handed out again.",
    )
    created_by_id: Mapped[int | None] = mapped_column(
        RowId, ForeignKey("api_keys.id"), nullable=True,
        comment="The key that created the link (its owner); NULL for links made before API keys.",
    )
    updated_by_id: Mapped[int | None] = mapped_column(
        RowId, ForeignKey("api_keys.id"), nullable=True, comment="The key that last changed the link."
    )
    title: Mapped[str | None] = mapped_column(String(200), nullable=True, comment="A title for people (<= 200).")
    valid_since: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), nullable=True, comment="Before this the link answers 404, as if it did not exist yet."
    )
    valid_until: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), nullable=True, comment="From this on the link is gone (410 or its fallback)."
    )
    max_visits: Mapped[int | None] = mapped_column(
        BigInteger, nullable=True, comment="Visitors the link admits in total; NULL: no limit."
    )
    visit_count: Mapped[int] = mapped_column(
        BigInteger, nullable=False, default=0, server_default="0",
        comment="Visits counted toward max_visits, as of the last flush of the replicas' counters.",
    )
    flags: Mapped[int] = mapped_column(
        SmallInteger, nullable=False, default=0, server_default="0",
        comment="Named bits (service.lifecycle.state.LinkFlags): disabled by its owner, blocked by an admin.",
    )
    fallback_url: Mapped[str | None] = mapped_column(
        Text, nullable=True, comment="Where visitors go once the link is no longer live, instead of 410."
    )
    gone_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), nullable=True,
        comment="When the link ran out of visits (expiry is valid_until); purge uses it.",
    )
    password_hash: Mapped[str | None] = mapped_column(
        String(255), nullable=True,
        comment="argon2id hash (PHC string) of the link's password; NULL: no password. Never returned.",
    )

    @property
    def protected(self) -> bool:
        """Whether visitors need the link's password (service.pages.password)."""
        return self.password_hash is not None


class LinkTag(Base):
    __tablename__ = "link_tags"
    __table_args__ = (
        Index("ix_link_tags_tag", "tag"),
        {"comment": "Tags of links, in lower case (tags compare case-insensitively)."},
    )

    link_id: Mapped[int] = mapped_column(RowId, ForeignKey("links.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)


class PendingInvalidation(Base):
    __tablename__ = "pending_invalidations"
    __table_args__ = {"comment": "Cache entries to drop once Redis answers again (a write happened while it was down)."}

    code: Mapped[str] = mapped_column(
        String(64), primary_key=True, comment="Code whose cached entry may be stale."
    )
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), nullable=False, comment="When the write that left it stale happened."
    )


# --- visit analytics (service/visits) ------------------------------------------
# Aggregates, not rows per visit: a year of stats of any link is a few thousand
# rows. No foreign key to links: the stats of a deleted link stay, and link id
# 0 holds the whole service's figures.

Count = BigInteger().with_variant(Integer(), "sqlite")


def _link_key(comment: str = "The link's id; 0: the whole service."):
    # Never generated: the aggregates take the ids links already have.
    return mapped_column(RowId, primary_key=True, autoincrement=False, comment=comment)


def _counts() -> tuple[Mapped[int], Mapped[int]]:
    return (
        mapped_column(Count, nullable=False, default=0, comment="Visits that are not bots."),
        mapped_column(Count, nullable=False, default=0, comment="Visits of bots (crawlers, previewers, scripts)."),
    )


class VisitDay(Base):
    __tablename__ = "visit_days"
    __table_args__ = {"comment": "Visits per link per UTC day; link_id 0 is the whole service."}

    link_id: Mapped[int] = _link_key()
    day: Mapped[date] = mapped_column(Date, primary_key=True, comment="UTC day.")
    visits, bots = _counts()
    visitors: Mapped[int] = mapped_column(
        Count, nullable=False, default=0, comment="Distinct visitors (not bots) that day, by visitor hash."
    )
    bot_visitors: Mapped[int] = mapped_column(
        Count, nullable=False, default=0, comment="Distinct bot visitors that day, by visitor hash."
    )


class VisitBreakdown(Base):
    __tablename__ = "visit_breakdowns"
    __table_args__ = {
        "comment": "Visits per link, UTC day and value of a dimension (referrer, country, browser, os, device).",
    }

    link_id: Mapped[int] = _link_key()
    day: Mapped[date] = mapped_column(Date, primary_key=True, comment="UTC day.")
    dimension: Mapped[str] = mapped_column(
        String(16), primary_key=True, comment="referrer, country, browser, os or device."
    )
    value: Mapped[str] = mapped_column(
        String(255), primary_key=True, comment="The dimension's value, e.g. a referrer host."
    )
    visits, bots = _counts()


class VisitMonthBreakdown(Base):
    __tablename__ = "visit_month_breakdowns"
    __table_args__ = {
        "comment": "visit_breakdowns added up per UTC month, so long ranges read few rows; complete for the "
                   "months in visit_rollups only.",
    }

    link_id: Mapped[int] = _link_key()
    month: Mapped[date] = mapped_column(Date, primary_key=True, comment="First day of the UTC month.")
    dimension: Mapped[str] = mapped_column(
        String(16), primary_key=True, comment="referrer, country, browser, os or device."
    )
    value: Mapped[str] = mapped_column(
        String(255), primary_key=True, comment="The dimension's value, e.g. a referrer host."
    )
    visits, bots = _counts()


class VisitRollup(Base):
    __tablename__ = "visit_rollups"
    __table_args__ = {
        "comment": (
            "Months whose visit_month_breakdowns rows were added up from visit_breakdowns once no more "
            "events of the month could arrive; stats read the monthly rows of these months only."
        ),
    }

    month: Mapped[date] = mapped_column(Date, primary_key=True, comment="First day of the UTC month.")
    rolled_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, comment="When (UTC).")


class OrphanVisitDay(Base):
    __tablename__ = "orphan_visit_days"
    __table_args__ = {"comment": "Visits of codes that were not live (404 unknown, 410 no longer live) per UTC day."}

    day: Mapped[date] = mapped_column(Date, primary_key=True, comment="UTC day.")
    status: Mapped[int] = mapped_column(SmallInteger, primary_key=True, comment="The answer: 404 or 410.")
    visits, bots = _counts()


class VisitTotal(Base):
    __tablename__ = "visit_totals"
    __table_args__ = {"comment": "Visits of each link so far (what link responses show as `visits`)."}

    link_id: Mapped[int] = _link_key("The link's id.")
    visits, bots = _counts()


class VisitVisitor(Base):
    __tablename__ = "visit_visitors"
    __table_args__ = {
        "comment": (
            "Visitor hashes seen per link and UTC day, to count each visitor once a day. Kept only while "
            "events of that day can still arrive (the stream's retention), then deleted."
        ),
    }

    link_id: Mapped[int] = _link_key()
    day: Mapped[date] = mapped_column(Date, primary_key=True, comment="UTC day.")
    visitor: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=False,
        comment="The event's 64-bit visitor hash (its salt changes daily and is not stored here).",
    )


class VisitFold(Base):
    __tablename__ = "visit_folds"
    __table_args__ = {
        "comment": (
            "Stream entries already folded into the aggregates, as ranges of entry positions: a "
            "redelivered entry that falls in one is acknowledged and not counted again."
        ),
    }

    stream: Mapped[str] = mapped_column(String(200), primary_key=True, comment="The stream's Redis key.")
    first_position: Mapped[str] = mapped_column(
        String(40), primary_key=True, comment="The first entry id of the range, zero-padded to sort as text."
    )
    last_position: Mapped[str] = mapped_column(String(40), nullable=False, comment="The last entry id of the range.")


class VisitStream(Base):
    __tablename__ = "visit_streams"
    __table_args__ = {
        "comment": "Each visit stream's position in the aggregates; its row is locked by every fold, in order.",
    }

    stream: Mapped[str] = mapped_column(String(200), primary_key=True, comment="The stream's Redis key.")
    last_position: Mapped[str | None] = mapped_column(
        String(40), nullable=True, comment="The newest entry folded so far (zero-padded)."
    )
    events: Mapped[int] = mapped_column(Count, nullable=False, default=0, comment="Visit events folded so far.")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, comment="Last fold (UTC).")


# --- coordination (service/coordination) ---------------------------------------


class Fence(Base):
    __tablename__ = "fences"
    __table_args__ = {"comment": "The newest fencing token each Redis lock's holders wrote with (lock.py)."}

    name: Mapped[str] = mapped_column(String(64), primary_key=True, comment="The lock's name.")
    token: Mapped[int] = mapped_column(
        BigInteger, nullable=False, comment="Writes carrying an older token than this are refused."
    )


class LinkEvent(Base):
    __tablename__ = "link_events"
    __table_args__ = (
        Index("ix_link_events_published_at", "published_at"),
        {
            "sqlite_autoincrement": True,
            "comment": (
                "The outbox of link changes: written in the transaction of each change, published to the "
                "link-event stream and to webhooks by the relay (coordination/relay.py)."
            ),
        },
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True, comment="Event id, in order.")
    type: Mapped[str] = mapped_column(String(32), nullable=False, comment="link.created, link.updated, ...")
    link_id: Mapped[int] = mapped_column(RowId, nullable=False, comment="The link's id (no foreign key: purge).")
    code: Mapped[str] = mapped_column(String(64), nullable=False, comment="The link's code.")
    owner_id: Mapped[int | None] = mapped_column(
        RowId, nullable=True, comment="The key that owns the link (its owners' webhooks hear of it)."
    )
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, comment="When it happened (UTC).")
    data: Mapped[dict] = mapped_column(JSON, nullable=False, comment="The event's link document (schema v1).")
    published_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), nullable=True, comment="When the relay published it; NULL: not yet."
    )
    once_key: Mapped[str | None] = mapped_column(
        String(128), unique=True, nullable=True,
        comment="Set on events that must happen once (a link going gone): a second insert is skipped.",
    )


class Webhook(Base):
    __tablename__ = "webhooks"
    __table_args__ = {"sqlite_autoincrement": True, "comment": "HTTPS endpoints told of link events."}

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True, comment="Row id.")
    url: Mapped[str] = mapped_column(String(2048), nullable=False, comment="The https endpoint.")
    events: Mapped[list] = mapped_column(JSON, nullable=False, comment="The event types it is sent.")
    secret: Mapped[str] = mapped_column(
        String(80), nullable=False, comment="HMAC-SHA256 signing secret; answered once, at creation."
    )
    owner_id: Mapped[int | None] = mapped_column(
        RowId, ForeignKey("api_keys.id"), nullable=True,
        comment="The key that registered it: it hears of that key's links (every link: an admin's).",
    )
    all_links: Mapped[bool] = mapped_column(
        Boolean, nullable=False, comment="True when registered by a key that reaches every link."
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, comment="When it was made (UTC).")


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_state", "state", "next_attempt_at"),
        {
            "sqlite_autoincrement": True,
            "comment": "One event to one webhook: tried with backoff until delivered or failed.",
        },
    )

    id: Mapped[int] = mapped_column(RowId, primary_key=True, autoincrement=True, comment="Delivery id.")
    webhook_id: Mapped[int] = mapped_column(
        RowId, ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False, comment="The webhook."
    )
    event_id: Mapped[int] = mapped_column(RowId, nullable=False, comment="The link event delivered.")
    state: Mapped[str] = mapped_column(String(16), nullable=False, comment="pending, delivered or failed.")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, comment="Tries so far.")
    next_attempt_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), nullable=True, comment="When to try again (pending only)."
    )
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True, comment="HTTP status of the last try.")
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True, comment="Why the last try failed.")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, comment="When it was queued (UTC).")
    delivered_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime(), nullable=True, comment="When the endpoint answered 2xx."
    )
