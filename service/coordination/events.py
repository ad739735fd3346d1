"""Link change events: written to the outbox in the transaction of the change (schema: docs/link-events.md).

Every create, update, delete and lifecycle change of a link adds a row to
``link_events`` in the same SQL transaction as the change itself (the
transactional outbox): the event exists if and only if the change
committed, without reading the database's log. The relay (relay.py)
publishes the rows to the link-event stream, to pub/sub for the other
replicas' caches, and to webhooks.

A link going gone (its expiry came, or its visits ran out) must be told
once however many replicas notice it: such events carry a ``once_key``,
unique in SQL, and a second insert of the same key is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ..lifecycle.state import LinkFlags
from ..store.models import LinkEvent

SCHEMA_VERSION = 1

CREATED, UPDATED, DELETED, GONE = "link.created", "link.updated", "link.deleted", "link.gone"
TYPES = (CREATED, UPDATED, DELETED, GONE)


def _moment(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def link_document(link, *, tags: list[str] | None = None) -> dict:
    """What an event says of its link (an ORM Link, or anything with the same attributes)."""
    flags = link.flags or 0
    document = {
        "code": link.code,
        "url": link.url,
        "redirect_status": link.redirect_status,
        "title": link.title,
        "valid_since": _moment(link.valid_since),
        "valid_until": _moment(link.valid_until),
        "max_visits": link.max_visits,
        "disabled": bool(flags & LinkFlags.DISABLED),
        "blocked": bool(flags & LinkFlags.BLOCKED),
        "created_at": _moment(link.created_at),
        "updated_at": _moment(link.updated_at),
        "deleted": link.deleted_at is not None,
    }
    if tags is not None:
        document["tags"] = list(tags)
    return document


@dataclass(frozen=True, slots=True)
class Event:
    """One change to record; `once_key` for events that must be recorded once only."""

    type: str
    link_id: int
    code: str
    owner_id: int | None
    link: dict
    reason: str | None = None
    once_key: str | None = None
    changed: tuple[str, ...] = ()

    def row(self, now: datetime) -> dict:
        data: dict = {"link": self.link}
        if self.reason is not None:
            data["reason"] = self.reason
        if self.changed:
            data["changed"] = list(self.changed)
        return {"type": self.type, "link_id": self.link_id, "code": self.code, "owner_id": self.owner_id,
                "occurred_at": now, "data": data, "once_key": self.once_key}


def change(kind: str, link, *, tags: list[str] | None = None, reason: str | None = None,
           once_key: str | None = None, changed: Iterable[str] = ()) -> Event:
    """The event of `kind` for an ORM Link (or an object with its attributes)."""
    return Event(type=kind, link_id=link.id, code=link.code, owner_id=link.created_by_id,
                 link=link_document(link, tags=tags), reason=reason, once_key=once_key,
                 changed=tuple(sorted(changed)))


def gone_once_key(link_id: int, reason: str, moment: datetime | int) -> str:
    """Expired at this valid_until, or exhausted at this max_visits: once per link and cause."""
    stamp = int(moment.timestamp()) if isinstance(moment, datetime) else moment
    return f"gone:{reason}:{link_id}:{stamp}"


async def record(*, session: AsyncSession, events: Iterable[Event], now: datetime) -> int:
    """Add the events to the outbox in the session's transaction; returns how many were added."""
    plain, once = [], []
    for event in events:
        (once if event.once_key else plain).append(event.row(now))
    table = LinkEvent.__table__  # Core inserts: the ORM's bulk path cost more than the statement
    if plain:
        await session.execute(insert(table), plain)
    added = len(plain)
    if once:
        dialect = session.bind.dialect.name
        maker = pg_insert if dialect == "postgresql" else sqlite_insert
        result = await session.execute(
            maker(table).on_conflict_do_nothing(index_elements=["once_key"]).returning(table.c.id), once
        )
        added += len(result.scalars().all())
    return added


async def record_for_codes(*, session: AsyncSession, kind: str, codes: list[str], now: datetime,
                           reason: str | None = None) -> list:
    """Record `kind` for each link among `codes`, read back in this transaction (imports, purges);
    returns the rows read (Core rows with the link's columns)."""
    if not codes:
        return []
    from sqlalchemy import select

    from ..store.models import Link

    rows = []
    for start in range(0, len(codes), 5000):
        rows += (await session.execute(
            select(*Link.__table__.columns).where(Link.code.in_(codes[start:start + 5000]))
        )).all()
    await record(session=session, now=now, events=[change(kind, row, reason=reason) for row in rows])
    return rows
